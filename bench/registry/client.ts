// One OCI distribution client, the same for every peer: node:http with keep-alive sockets, and
// for blob bodies pulled a leaner reader of its own (bench/wire.ts).
import { createHash } from "node:crypto";
import { once } from "node:events";
import { Agent, type IncomingMessage, type OutgoingHttpHeaders, request } from "node:http";
import { WireConnection } from "../wire.ts";
import { MANIFEST_ACCEPT } from "./layers.ts";

/** No single request in the benchmark may take longer than this. */
const REQUEST_TIMEOUT_MS = 120_000;

/** What one read of a pulled blob may take in at most (the socket's own buffer is a few MiB). */
const PULL_READ_BYTES = 1 << 20;

export class RegistryClientError extends Error {}

interface Response {
  status: number;
  headers: IncomingMessage["headers"];
  message: IncomingMessage;
}

export interface RegistryTarget {
  /** e.g. http://127.0.0.1:40123 */
  url: string;
  /** Sent as the Authorization header when set (Wharf: `Basic base64(AWS:<password>)`). */
  authorization?: string | undefined;
}

export class RegistryClient {
  private readonly base: URL;
  private readonly authorization: string | undefined;
  private readonly agent: Agent;
  /**
   * Keep-alive connections for blob GETs, each reading into a buffer of its own. Through
   * `node:http`'s streams every 64 KiB read is a new buffer and a trip through the parser and
   * the stream: 0.5–0.65 CPU s per GB of the client's on these two cores, taken from the server
   * being measured, and the pull's limit for either peer.
   */
  private readonly pulls: WireConnection[] = [];

  constructor(target: RegistryTarget, maxSockets: number) {
    this.base = new URL(target.url);
    if (this.base.hostname !== "127.0.0.1") throw new Error(`refusing non-loopback target ${target.url}`);
    this.authorization = target.authorization;
    this.agent = new Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
  }

  close(): void {
    this.agent.destroy();
    for (const connection of this.pulls.splice(0)) connection.close();
  }

  private exchange(
    method: string,
    url: URL,
    headers: OutgoingHttpHeaders,
    body?: Buffer | Iterable<Buffer>,
  ): Promise<Response> {
    if (url.host !== this.base.host) throw new RegistryClientError(`${method} ${url.href}: not the registry`);
    const allHeaders: OutgoingHttpHeaders = { ...headers };
    if (this.authorization !== undefined) allHeaders.authorization = this.authorization;
    return new Promise<Response>((resolve, reject) => {
      const req = request(url, { method, headers: allHeaders, agent: this.agent }, (message) =>
        resolve({ status: message.statusCode ?? 0, headers: message.headers, message }),
      );
      req.setTimeout(REQUEST_TIMEOUT_MS, () =>
        req.destroy(new RegistryClientError(`${method} ${url}: timeout`)),
      );
      req.on("error", reject);
      if (body === undefined) req.end();
      else if (Buffer.isBuffer(body)) req.end(body);
      else writeAll(req, body).catch((error: unknown) => req.destroy(error as Error));
    });
  }

  /** Sends a request whose answer must have status `expected`; returns it with its (small) body. */
  private async call(
    method: string,
    url: URL,
    expected: number,
    headers: OutgoingHttpHeaders = {},
    body?: Buffer | Iterable<Buffer>,
  ): Promise<{ headers: IncomingMessage["headers"]; body: Buffer }> {
    const response = await this.exchange(method, url, headers, body);
    const bytes = await readAll(response.message);
    if (response.status !== expected) {
      throw new RegistryClientError(
        `${method} ${url.pathname}: HTTP ${response.status}, expected ${expected}: ${bytes.toString("utf8").slice(0, 500)}`,
      );
    }
    return { headers: response.headers, body: bytes };
  }

  private url(path: string): URL {
    return new URL(path, this.base);
  }

  private location(headers: IncomingMessage["headers"], what: string): URL {
    const location = headers.location;
    if (location === undefined) throw new RegistryClientError(`${what}: no Location header`);
    return new URL(location, this.base);
  }

  /** POST an upload, PATCH the whole blob as one streamed chunk, PUT ?digest= to commit. */
  async pushBlob(repository: string, digest: string, size: number, content: Iterable<Buffer>): Promise<void> {
    const started = await this.call("POST", this.url(`/v2/${repository}/blobs/uploads/`), 202, {
      "content-length": 0,
    });
    const patched = await this.call(
      "PATCH",
      this.location(started.headers, "POST upload"),
      202,
      { "content-type": "application/octet-stream", "content-length": size },
      content,
    );
    const commit = this.location(patched.headers, "PATCH upload");
    commit.searchParams.set("digest", digest);
    const done = await this.call("PUT", commit, 201, { "content-length": 0 });
    const stored = done.headers["docker-content-digest"];
    if (stored !== undefined && stored !== digest)
      throw new RegistryClientError(`PUT upload: stored ${stored}, sent ${digest}`);
  }

  async putManifest(repository: string, reference: string, mediaType: string, bytes: Buffer): Promise<void> {
    await this.call(
      "PUT",
      this.url(`/v2/${repository}/manifests/${reference}`),
      201,
      {
        "content-type": mediaType,
        "content-length": bytes.length,
      },
      bytes,
    );
  }

  /** Streams a blob, checking its length and (unless told not to) its sha256 as the bytes arrive. */
  async pullBlob(repository: string, digest: string, size: number, verify = true): Promise<void> {
    const path = `/v2/${repository}/blobs/${digest}`;
    const hash = verify ? createHash("sha256") : undefined;
    let received = 0;
    const connection =
      this.pulls.pop() ?? new WireConnection(this.base, { readBuffer: Buffer.allocUnsafe(PULL_READ_BYTES) });
    const timer = setTimeout(() => connection.close(), REQUEST_TIMEOUT_MS);
    try {
      const answer = await connection.get(
        path,
        this.authorization === undefined ? {} : { authorization: this.authorization },
        (bytes) => {
          received += bytes.length;
          hash?.update(bytes);
        },
      );
      if (answer.status !== 200)
        throw new RegistryClientError(`GET ${path}: HTTP ${answer.status}: ${answer.text}`);
    } catch (error) {
      connection.close();
      throw error;
    } finally {
      clearTimeout(timer);
    }
    this.pulls.push(connection);
    const actual = hash === undefined ? digest : `sha256:${hash.digest("hex")}`;
    if (received !== size || actual !== digest)
      throw new RegistryClientError(`GET ${path}: got ${received} bytes ${actual}, want ${size} ${digest}`);
  }

  /** GET or HEAD a manifest by tag or digest, as docker asks; checks the digest (and body for GET). */
  async manifest(
    method: "GET" | "HEAD",
    repository: string,
    reference: string,
    digest: string,
  ): Promise<void> {
    const url = this.url(`/v2/${repository}/manifests/${reference}`);
    const { headers, body } = await this.call(method, url, 200, { accept: MANIFEST_ACCEPT });
    const named = headers["docker-content-digest"];
    if (named !== digest)
      throw new RegistryClientError(`${method} ${url.pathname}: digest ${named}, want ${digest}`);
    if (method === "GET") {
      const actual = `sha256:${createHash("sha256").update(body).digest("hex")}`;
      if (actual !== digest) throw new RegistryClientError(`GET ${url.pathname}: body is ${actual}`);
    }
  }
}

async function writeAll(req: NodeJS.WritableStream & NodeJS.EventEmitter, chunks: Iterable<Buffer>) {
  for (const chunk of chunks) {
    if (!req.write(chunk)) await once(req, "drain");
  }
  req.end();
}

async function readAll(message: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of message) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
