/**
 * Private registry credentials given to the whole agent, as the ECS agent takes them:
 * `ECS_ENGINE_AUTH_TYPE` names the format of `ECS_ENGINE_AUTH_DATA`, JSON either way.
 *
 *   docker      {"registry.example.com": {"username": "u", "password": "p", "email": "…"}}
 *   dockercfg   {"https://index.docker.io/v1/": {"auth": base64("u:p"), "email": "…"}}
 *
 * Keys may carry an http:// or https:// scheme and a path. Docker Hub images take the key
 * `index.docker.io/v1/`; any other image takes the keys of its registry host, the longest one
 * that prefixes the image's name winning (`host/team` over `host`).
 */

/** The variables, unparsed, as the agent's environment gives them. */
export interface EngineAuthSettings {
  type: string;
  data: string;
}

export interface BasicCredentials {
  username: string;
  password: string;
}

export type RegistryAuths = ReadonlyMap<string, BasicCredentials>;

const DOCKER_HUB_KEY = "index.docker.io/v1/";
const DOCKER_HUB_HOSTS = new Set(["docker.io", "index.docker.io", "registry-1.docker.io"]);

/** ECS_ENGINE_AUTH_TYPE and ECS_ENGINE_AUTH_DATA from an environment; undefined when neither is set. */
export function engineAuthFromEnv(env: NodeJS.ProcessEnv): EngineAuthSettings | undefined {
  const type = env.ECS_ENGINE_AUTH_TYPE;
  const data = env.ECS_ENGINE_AUTH_DATA;
  if ((type ?? "") === "" && (data ?? "") === "") return undefined;
  return { type: type ?? "", data: data ?? "" };
}

function problem(message: string): Error {
  return new Error(`ECS_ENGINE_AUTH_DATA: ${message}`);
}

function stripScheme(key: string): string {
  return key.replace(/^https?:\/\//, "");
}

/**
 * Reads the settings into credentials by registry key (without scheme). Throws, naming the
 * entry but never a secret, when they cannot be used: the agent refuses to start rather than
 * pull anonymously what its operator meant it to pull with credentials.
 */
export function parseEngineAuth(settings: EngineAuthSettings | undefined): RegistryAuths {
  const auths = new Map<string, BasicCredentials>();
  if (settings === undefined) return auths;
  const { type, data } = settings;
  if (type !== "docker" && type !== "dockercfg") {
    throw new Error(
      type === ""
        ? "ECS_ENGINE_AUTH_DATA is set but ECS_ENGINE_AUTH_TYPE is not: set it to docker or dockercfg"
        : `ECS_ENGINE_AUTH_TYPE must be docker or dockercfg, not ${JSON.stringify(type)}`,
    );
  }
  if (data === "") throw problem(`not set, but ECS_ENGINE_AUTH_TYPE is ${type}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    throw problem(`not valid JSON (ECS_ENGINE_AUTH_TYPE ${type})`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw problem("must be a JSON object of registries");
  }
  for (const [registry, entry] of Object.entries(parsed)) {
    const key = stripScheme(registry);
    if (key === "" || typeof entry !== "object" || entry === null) {
      throw problem(`the entry for ${JSON.stringify(registry)} must be an object`);
    }
    const fields = entry as Record<string, unknown>;
    if (type === "docker") {
      if (typeof fields.username !== "string" || typeof fields.password !== "string") {
        throw problem(`the entry for ${JSON.stringify(registry)} needs a username and a password`);
      }
      auths.set(key, { username: fields.username, password: fields.password });
      continue;
    }
    const decoded = typeof fields.auth === "string" ? Buffer.from(fields.auth, "base64").toString() : "";
    const colon = decoded.indexOf(":");
    if (colon < 0) {
      throw problem(`the entry for ${JSON.stringify(registry)} needs "auth": base64 of "username:password"`);
    }
    auths.set(key, { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) });
  }
  return auths;
}

/** The credentials for an image in `registry` ("host:port", "docker.io") at `repository` ("team/app"). */
export function registryCredentials(
  auths: RegistryAuths,
  registry: string,
  repository: string,
): BasicCredentials | undefined {
  if (DOCKER_HUB_HOSTS.has(registry)) return auths.get(DOCKER_HUB_KEY);
  const name = `${registry}/${repository}`;
  let best: string | undefined;
  let fallback: string | undefined;
  for (const key of auths.keys()) {
    if (key.split("/", 1)[0] !== registry) continue;
    const prefixes = key === registry || name === key || name.startsWith(key.endsWith("/") ? key : `${key}/`);
    if (prefixes) {
      if (best === undefined || key.length > best.length) best = key;
    } else if (fallback === undefined || key < fallback) {
      // e.g. "host/v1/", as `docker login` writes keys: it names the host alone
      fallback = key;
    }
  }
  const chosen = best ?? fallback;
  return chosen === undefined ? undefined : auths.get(chosen);
}
