// One OCI distribution client, the same for every peer: node:http with keep-alive sockets, and
// blob GETs of its own (pull.ts): hashed on worker threads, one per download in flight, as
// docker's are; only counted on the main thread.
import { createHash } from "node:crypto";
import { once } from "node:events";
import { Agent, type IncomingMessage, type OutgoingHttpHeaders, request } from "node:http";
import { Worker } from "node:worker_threads";
import { MANIFEST_ACCEPT } from "./layers.ts";
import { BlobPuller, type PullJob } from "./pull.ts";
import type { PullReply, PullWorkerData } from "./pull-worker.ts";

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

/** A worker thread that pulls one blob at a time (pull-worker.ts). */
class PullWorker {
  private readonly worker: Worker;
  private waiting: { resolve(): void; reject(error: Error): void } | undefined;
  /** Why the worker is gone, once it is. */
  private exited: Error | undefined;

  constructor(data: PullWorkerData) {
    // Node 20 does not apply `--import tsx` to a worker's own module: the worker registers it first.
    const tsx = import.meta.resolve("tsx/esm/api");
    const module = new URL("./pull-worker.ts", import.meta.url).href;
    this.worker = new Worker(
      `import(${JSON.stringify(tsx)}).then((tsx) => tsx.tsImport(${JSON.stringify(module)}, ${JSON.stringify(import.meta.url)}));`,
      { eval: true, workerData: data },
    );
    this.worker.on("message", (reply: PullReply) =>
      this.settle(reply.ok ? undefined : new RegistryClientError(reply.message)),
    );
    this.worker.on("error", (error) => this.settle(error));
    this.worker.on("exit", (code) => {
      this.exited = new RegistryClientError(`pull worker exited (${code})`);
      this.settle(this.exited);
    });
  }

  pull(job: PullJob): Promise<void> {
    if (this.exited !== undefined) return Promise.reject(this.exited);
    if (this.waiting !== undefined) return Promise.reject(new Error("one pull at a time"));
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.worker.postMessage(job);
    });
  }

  close(): void {
    void this.worker.terminate();
  }

  private settle(error: Error | undefined): void {
    const waiting = this.waiting;
    this.waiting = undefined;
    if (error === undefined) waiting?.resolve();
    else waiting?.reject(error);
  }
}

/** Pullers of one kind: an idle one is reused, another made whenever every one is busy. */
class PullerPool<P extends { pull(job: PullJob): Promise<void>; close(): void }> {
  private readonly idle: P[] = [];
  private readonly all = new Set<P>();

  constructor(private readonly make: () => P) {}

  async pull(job: PullJob): Promise<void> {
    let puller = this.idle.pop();
    if (puller === undefined) {
      puller = this.make();
      this.all.add(puller);
    }
    try {
      await puller.pull(job);
    } finally {
      this.idle.push(puller);
    }
  }

  close(): void {
    for (const puller of this.all) puller.close();
    this.all.clear();
    this.idle.length = 0;
  }
}

export class RegistryClient {
  private readonly base: URL;
  private readonly authorization: string | undefined;
  private readonly agent: Agent;
  /**
   * Blob GETs. Through `node:http`'s streams every 64 KiB read is a new buffer and a trip through
   * the parser and the stream (0.5–0.65 CPU s per GB on these cores before any hashing), and one
   * thread hashed every download: the client, not the server, was what limited the pull for either
   * peer.
   */
  private readonly hashing: PullerPool<PullWorker>;
  private readonly counting: PullerPool<BlobPuller>;

  constructor(target: RegistryTarget, maxSockets: number) {
    this.base = new URL(target.url);
    if (this.base.hostname !== "127.0.0.1") throw new Error(`refusing non-loopback target ${target.url}`);
    this.authorization = target.authorization;
    this.agent = new Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
    this.hashing = new PullerPool(
      () =>
        new PullWorker({
          url: this.base.href,
          authorization: this.authorization,
          readBytes: PULL_READ_BYTES,
          timeoutMs: REQUEST_TIMEOUT_MS,
        }),
    );
    this.counting = new PullerPool(
      () => new BlobPuller(this.base, this.authorization, PULL_READ_BYTES, REQUEST_TIMEOUT_MS),
    );
  }

  close(): void {
    this.agent.destroy();
    this.hashing.close();
    this.counting.close();
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

  /** Streams a blob, checking its length and (unless told not to) its sha256, on a worker thread. */
  pullBlob(repository: string, digest: string, size: number, verify = true): Promise<void> {
    const job: PullJob = { path: `/v2/${repository}/blobs/${digest}`, digest, size, verify };
    return verify ? this.hashing.pull(job) : this.counting.pull(job);
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
