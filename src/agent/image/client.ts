import http, { type IncomingMessage } from "node:http";
import https from "node:https";
import { type Challenge, parseChallenges } from "./auth.ts";
import { asImageError, ImageError } from "./errors.ts";
import { MANIFEST_ACCEPT } from "./manifest.ts";
import { DOCKER_HUB } from "./reference.ts";

export type Credentials = { username: string; password: string } | { token: string };

/** Chooses the connection pool for a URL: the caller owns the agents (and their CA certificates). */
export type AgentFor = (url: URL) => http.Agent;

export interface ClientOptions {
  registry: string;
  repository: string;
  /** Plain HTTP instead of HTTPS. */
  insecure: boolean;
  agentFor: AgentFor;
  /** Asked at most once, on the first 401 (or before the first request, with `basicFirst`). */
  credentials?: () => Promise<Credentials | undefined>;
  /**
   * Sends Basic credentials with the first request instead of waiting for the registry's 401
   * and fetching a token: for a registry known to take them on every request, as Wharf's own
   * does. A 401 all the same falls back to the registry's challenge.
   */
  basicFirst?: boolean;
  /** Per request: the wait for an answer, and the longest silence while a body streams. */
  timeoutMs: number;
}

const MAX_REDIRECTS = 5;
/** distribution refuses manifests over 4 MiB; a little slack for other registries. */
const MAX_MANIFEST_BYTES = 8 * 1024 * 1024;
const MAX_SMALL_BODY = 1024 * 1024;

/**
 * An OCI distribution client for one repository: GETs manifests and blobs, answers 401 challenges
 * with Basic credentials or a Bearer token from the challenge's realm, follows redirects (dropping
 * credentials when they leave the registry's origin), and maps failures to ImageErrors.
 */
export class RegistryClient {
  private readonly base: URL;
  private authorization: string | undefined;
  private credentials: Promise<Credentials | undefined> | undefined;
  private authenticating: Promise<void> | undefined;

  constructor(private readonly options: ClientOptions) {
    const host = options.registry === DOCKER_HUB ? "registry-1.docker.io" : options.registry;
    this.base = new URL(`${options.insecure ? "http" : "https"}://${host}/v2/`);
  }

  /** The manifest or index that `reference` (a tag or a digest) names, unverified. */
  async getManifest(
    reference: string,
    signal: AbortSignal | undefined,
  ): Promise<{ bytes: Buffer; contentType: string | undefined }> {
    const response = await this.get(`manifests/${reference}`, MANIFEST_ACCEPT, signal);
    const bytes = await readBody(response, MAX_MANIFEST_BYTES, `manifest ${reference}`);
    return { bytes, contentType: response.headers["content-type"] };
  }

  /** A 200 response streaming the blob; the caller verifies and consumes (or destroys) it. */
  openBlob(digest: string, signal: AbortSignal | undefined): Promise<IncomingMessage> {
    return this.get(`blobs/${digest}`, undefined, signal);
  }

  private async get(path: string, accept: string | undefined, signal: AbortSignal | undefined) {
    const url = new URL(`${this.options.repository}/${path}`, this.base);
    const what = `${this.options.registry}/${this.options.repository} ${path}`;
    const attempt = async (): Promise<IncomingMessage> => {
      const headers: Record<string, string> = {};
      if (accept !== undefined) headers.accept = accept;
      if (this.authorization !== undefined) headers.authorization = this.authorization;
      return this.send(url, headers, signal, what);
    };
    if (this.options.basicFirst === true && this.authorization === undefined) await this.presetBasic();
    let response = await attempt();
    if (response.statusCode === 401) {
      const sent = this.authorization;
      const challenges = parseChallenges(response.headersDistinct["www-authenticate"] ?? []);
      response.resume();
      // requests that failed together authenticate once
      if (this.authorization === sent) {
        this.authenticating ??= this.authenticate(challenges, signal, what).finally(() => {
          this.authenticating = undefined;
        });
        await this.authenticating;
      }
      response = await attempt();
    }
    const status = response.statusCode ?? 0;
    if (status >= 200 && status < 300) return response;
    const detail = await errorDetail(response);
    if (status === 401 || status === 403) {
      throw new ImageError("UNAUTHORIZED", `${what}: access denied (HTTP ${status})${detail}`);
    }
    if (status === 404) throw new ImageError("NOT_FOUND", `${what}: not found${detail}`);
    throw new ImageError("REGISTRY_ERROR", `${what}: HTTP ${status}${detail}`);
  }

  private async presetBasic(): Promise<void> {
    this.credentials ??= this.options.credentials?.() ?? Promise.resolve(undefined);
    const credentials = await this.credentials;
    if (this.authorization !== undefined || credentials === undefined || !("username" in credentials)) return;
    this.authorization = basicAuthorization(credentials);
  }

  private async authenticate(challenges: Challenge[], signal: AbortSignal | undefined, what: string) {
    const challenge = challenges.find((c) => c.scheme === "basic" || c.scheme === "bearer");
    if (challenge === undefined) {
      const offered = challenges.map((c) => c.scheme).join(", ") || "none";
      throw new ImageError("UNAUTHORIZED", `${what}: unsupported authentication challenge (${offered})`);
    }
    this.credentials ??= this.options.credentials?.() ?? Promise.resolve(undefined);
    const credentials = await this.credentials;
    const basic =
      credentials !== undefined && "username" in credentials ? basicAuthorization(credentials) : undefined;
    if (challenge.scheme === "basic") {
      if (basic === undefined) {
        throw new ImageError("UNAUTHORIZED", `${what}: the registry wants a username and password`);
      }
      this.authorization = basic;
      return;
    }
    if (credentials !== undefined && "token" in credentials) {
      this.authorization = `Bearer ${credentials.token}`;
      return;
    }
    this.authorization = `Bearer ${await this.fetchToken(challenge, basic, signal, what)}`;
  }

  /** Exchanges (optional) Basic credentials for a Bearer token at the challenge's realm. */
  private async fetchToken(
    challenge: Challenge,
    basic: string | undefined,
    signal: AbortSignal | undefined,
    what: string,
  ): Promise<string> {
    const { realm, service, scope } = challenge.params;
    let url: URL;
    try {
      url = new URL(realm ?? "");
    } catch {
      throw new ImageError("UNAUTHORIZED", `${what}: Bearer challenge without a valid realm`);
    }
    if (url.protocol !== "https:" && !(url.protocol === "http:" && this.options.insecure)) {
      throw new ImageError("UNAUTHORIZED", `${what}: refusing token realm ${url.origin} over plain HTTP`);
    }
    if (service !== undefined) url.searchParams.set("service", service);
    const scopes = scope?.split(" ").filter((s) => s !== "") ?? [];
    if (scopes.length === 0) scopes.push(`repository:${this.options.repository}:pull`);
    for (const s of scopes) url.searchParams.append("scope", s);
    const headers: Record<string, string> = { accept: "application/json" };
    if (basic !== undefined) headers.authorization = basic;
    const response = await this.send(url, headers, signal, `token from ${url.origin}`);
    const status = response.statusCode ?? 0;
    if (status !== 200) {
      const detail = await errorDetail(response);
      const code = status === 401 || status === 403 ? "UNAUTHORIZED" : "REGISTRY_ERROR";
      throw new ImageError(code, `${what}: token service ${url.origin} answered HTTP ${status}${detail}`);
    }
    const body = await readBody(response, MAX_SMALL_BODY, "token response");
    let token: unknown;
    try {
      const json: unknown = JSON.parse(body.toString("utf8"));
      if (typeof json === "object" && json !== null) {
        token = "token" in json ? json.token : "access_token" in json ? json.access_token : undefined;
      }
    } catch {
      // reported below
    }
    if (typeof token !== "string" || token === "") {
      throw new ImageError("UNAUTHORIZED", `${what}: token service ${url.origin} returned no token`);
    }
    return token;
  }

  /** One GET, following redirects; credentials go only to the origin they were sent to first. */
  private async send(
    url: URL,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
    what: string,
  ): Promise<IncomingMessage> {
    let current = url;
    let currentHeaders = headers;
    for (let hop = 0; ; hop++) {
      const response = await request(current, currentHeaders, this.options, signal, what);
      const status = response.statusCode ?? 0;
      const location = response.headers.location;
      if (![301, 302, 303, 307, 308].includes(status) || location === undefined) return response;
      response.resume();
      if (hop === MAX_REDIRECTS) throw new ImageError("REGISTRY_ERROR", `${what}: too many redirects`);
      const next = new URL(location, current);
      if (next.protocol !== "https:" && next.protocol !== "http:") {
        throw new ImageError("REGISTRY_ERROR", `${what}: redirect to unsupported URL ${next.protocol}`);
      }
      if (next.origin !== current.origin) {
        const { authorization: _dropped, ...rest } = currentHeaders;
        currentHeaders = rest;
      }
      current = next;
    }
  }
}

function request(
  url: URL,
  headers: Record<string, string>,
  options: ClientOptions,
  signal: AbortSignal | undefined,
  what: string,
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new ImageError("ABORTED", `${what}: aborted`, { cause: signal.reason }));
      return;
    }
    const send = url.protocol === "https:" ? https.request : http.request;
    // `timeout` is the socket's idle timeout, armed before it connects: it covers the lookup and
    // connection, the wait for an answer, and any stall while the body streams
    const req = send(
      url,
      { method: "GET", headers, agent: options.agentFor(url), signal, timeout: options.timeoutMs },
      resolve,
    );
    req.on("timeout", () => {
      req.destroy(new ImageError("TIMEOUT", `${what}: no data from ${url.host} for ${options.timeoutMs} ms`));
    });
    req.on("error", (error) => {
      if (signal?.aborted) reject(new ImageError("ABORTED", `${what}: aborted`, { cause: signal.reason }));
      else reject(asImageError(error, "REGISTRY_ERROR", `${what}: ${url.host}`));
    });
    req.end();
  });
}

function basicAuthorization(credentials: { username: string; password: string }): string {
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64")}`;
}

/** The whole body, refused beyond `limit` bytes. */
export async function readBody(response: IncomingMessage, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of response) {
    const buffer = chunk as Buffer;
    length += buffer.length;
    if (length > limit) {
      response.destroy();
      throw new ImageError("REGISTRY_ERROR", `${what}: larger than ${limit} bytes`);
    }
    chunks.push(buffer);
  }
  return Buffer.concat(chunks);
}

/** ": <message>" from an OCI error body (`{"errors":[{"code","message"}]}`), or "". */
async function errorDetail(response: IncomingMessage): Promise<string> {
  try {
    const body = await readBody(response, 64 * 1024, "error body");
    const json: unknown = JSON.parse(body.toString("utf8"));
    if (typeof json === "object" && json !== null && "errors" in json && Array.isArray(json.errors)) {
      const first: unknown = json.errors[0];
      if (typeof first === "object" && first !== null) {
        const code = "code" in first && typeof first.code === "string" ? first.code : "";
        const message = "message" in first && typeof first.message === "string" ? first.message : "";
        return `: ${[code, message].filter((part) => part !== "").join(" ")}`;
      }
    }
  } catch {
    // no usable detail
  }
  return "";
}
