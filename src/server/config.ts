/** Server settings: embedded defaults, overridden by environment, overridden by flags. */
export interface ServerConfig {
  host: string;
  port: number;
  dataDir: string;
  region: string;
  accountId: string;
  logLevel: string;
  /** Largest AWS API request body accepted, in bytes. */
  maxRequestBytes: number;
  /** `host:port` in repositoryUri and proxyEndpoint; default `localhost:<port>`. */
  registryHost?: string | undefined;
  /** HTTPS on the one endpoint; undefined serves plain HTTP. */
  tls?: TlsConfig | undefined;
}

export interface TlsConfig {
  /** Names and addresses the generated certificate covers (besides localhost, 127.0.0.1, ::1). */
  hosts: string[];
  /** The operator's own certificate and key instead of Wharf's generated CA. */
  certPath?: string | undefined;
  keyPath?: string | undefined;
}

export interface ConfigFlags {
  host?: string | undefined;
  port?: string | number | undefined;
  dataDir?: string | undefined;
  logLevel?: string | undefined;
  registryHost?: string | undefined;
  tls?: boolean | undefined;
  tlsHost?: string[] | undefined;
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
}

export const DEFAULT_PORT = 4700;
export const DEFAULT_HOST = "127.0.0.1";
export const DEFAULT_DATA_DIR = ".wharf";

function portOf(value: string | number): number {
  const port = typeof value === "number" ? value : Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid port: ${value}`);
  return port;
}

export function resolveConfig(flags: ConfigFlags = {}, env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const accountId = env.WHARF_ACCOUNT_ID ?? "000000000000";
  if (!/^\d{12}$/.test(accountId)) throw new Error(`WHARF_ACCOUNT_ID must be 12 digits, got ${accountId}`);
  return {
    host: flags.host ?? env.WHARF_HOST ?? DEFAULT_HOST,
    port: portOf(flags.port ?? env.WHARF_PORT ?? DEFAULT_PORT),
    dataDir: flags.dataDir ?? env.WHARF_DATA_DIR ?? DEFAULT_DATA_DIR,
    region: env.WHARF_REGION ?? "us-east-1",
    accountId,
    logLevel: flags.logLevel ?? env.WHARF_LOG_LEVEL ?? "info",
    maxRequestBytes: 8 * 1024 * 1024,
    registryHost: flags.registryHost ?? env.WHARF_REGISTRY_HOST,
    tls: tlsConfig(flags, env),
  };
}

function tlsConfig(flags: ConfigFlags, env: NodeJS.ProcessEnv): TlsConfig | undefined {
  const certPath = flags.tlsCert ?? env.WHARF_TLS_CERT;
  const keyPath = flags.tlsKey ?? env.WHARF_TLS_KEY;
  const enabled =
    flags.tls === true || env.WHARF_TLS === "1" || env.WHARF_TLS === "true" || certPath !== undefined;
  if (!enabled) return undefined;
  if ((certPath === undefined) !== (keyPath === undefined))
    throw new Error("--tls-cert and --tls-key go together");
  const hosts = [
    ...(flags.tlsHost ?? []),
    ...(env.WHARF_TLS_HOSTS?.split(",").filter((h) => h !== "") ?? []),
  ];
  return { hosts, certPath, keyPath };
}
