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
}

export interface ConfigFlags {
  host?: string | undefined;
  port?: string | number | undefined;
  dataDir?: string | undefined;
  logLevel?: string | undefined;
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
  };
}
