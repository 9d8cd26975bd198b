// Test support only (imported by *.test.ts beside it): tar layers built with tar-stream's packer,
// and a tiny OCI distribution server on 127.0.0.1 that counts requests and can demand Basic or
// Bearer auth, serve corrupt blobs, or hold blob responses until released.
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import { type Header, pack } from "tar-stream";
import { MEDIA_TYPES } from "./manifest.ts";

export const TEST_MEDIA_TYPES = {
  gzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  tar: "application/vnd.oci.image.layer.v1.tar",
  zstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  config: "application/vnd.oci.image.config.v1+json",
} as const;

export type TestEntry = Partial<Header> & { name: string; content?: string | Buffer };

/** An uncompressed tar of `entries`, in order; names are written exactly as given. */
export async function tarOf(entries: TestEntry[]): Promise<Buffer> {
  const packer = pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of packer) chunks.push(chunk as Buffer);
  })();
  for (const { content, ...header } of entries) {
    await new Promise<void>((resolve, reject) => {
      const done = (error?: Error | null): void => (error ? reject(error) : resolve());
      if (content === undefined) packer.entry({ mtime: new Date(0), ...header }, done);
      else packer.entry({ mtime: new Date(0), ...header }, content, done);
    });
  }
  packer.finalize();
  await collected;
  return Buffer.concat(chunks);
}

export const sha256 = (bytes: Buffer | string): string =>
  `sha256:${createHash("sha256").update(bytes).digest("hex")}`;

export interface TestBlob {
  mediaType: string;
  digest: string;
  size: number;
  bytes: Buffer;
}

export function blobOf(mediaType: string, bytes: Buffer): TestBlob {
  return { mediaType, digest: sha256(bytes), size: bytes.length, bytes };
}

export interface TestLayer extends TestBlob {
  diffId: string;
}

export function gzipLayer(tar: Buffer): TestLayer {
  return { ...blobOf(TEST_MEDIA_TYPES.gzip, gzipSync(tar)), diffId: sha256(tar) };
}

export function plainLayer(tar: Buffer): TestLayer {
  return { ...blobOf(TEST_MEDIA_TYPES.tar, tar), diffId: sha256(tar) };
}

export interface TestImage {
  config: TestBlob;
  manifest: TestBlob;
  layers: TestLayer[];
}

/** A config (for `platform`, with `config` as its container config) and manifest for `layers`. */
export function imageOf(
  layers: TestLayer[],
  platform: { os: string; architecture: string; variant?: string } = { os: "linux", architecture: "amd64" },
  config: Record<string, unknown> = { Cmd: ["/bin/sh"] },
): TestImage {
  const configBlob = blobOf(
    TEST_MEDIA_TYPES.config,
    Buffer.from(
      JSON.stringify({
        ...platform,
        config,
        rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
      }),
    ),
  );
  const descriptor = ({ mediaType, digest, size }: TestBlob) => ({ mediaType, digest, size });
  const manifest = blobOf(
    MEDIA_TYPES.ociManifest,
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA_TYPES.ociManifest,
        config: descriptor(configBlob),
        layers: layers.map(descriptor),
      }),
    ),
  );
  return { config: configBlob, manifest, layers };
}

/** An OCI index of `images` with their platforms. */
export function indexOf(images: { image: TestImage; platform: Record<string, string> }[]): TestBlob {
  const manifests = images.map(({ image, platform }) => ({
    mediaType: image.manifest.mediaType,
    digest: image.manifest.digest,
    size: image.manifest.size,
    platform,
  }));
  return blobOf(
    MEDIA_TYPES.ociIndex,
    Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests })),
  );
}

export type TestAuth =
  | { kind: "none" }
  | { kind: "basic"; username: string; password: string }
  | { kind: "bearer"; username?: string; password?: string; token: string };

export class TestRegistry {
  readonly requests: string[] = [];
  auth: TestAuth = { kind: "none" };
  /** Blob digests served with one byte flipped. */
  readonly corrupt = new Set<string>();
  /** While set, blob responses wait for it. */
  hold: Promise<void> | undefined;
  private readonly manifests = new Map<string, TestBlob>();
  private readonly blobs = new Map<string, TestBlob>();
  private server: Server | undefined;
  host = "";

  async start(): Promise<this> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((error: unknown) => {
        res.statusCode = 500;
        res.end(String(error));
      });
    });
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    this.host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Serves `image` (its manifest under `tag`, and by digest) in `repository`. */
  push(repository: string, image: TestImage, tag?: string): void {
    for (const blob of [image.config, ...image.layers]) this.blobs.set(`${repository}@${blob.digest}`, blob);
    this.putManifest(repository, image.manifest, tag);
  }

  putManifest(repository: string, manifest: TestBlob, tag?: string): void {
    this.manifests.set(`${repository}@${manifest.digest}`, manifest);
    if (tag !== undefined) this.manifests.set(`${repository}:${tag}`, manifest);
  }

  count(pattern: RegExp): number {
    return this.requests.filter((line) => pattern.test(line)).length;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", `http://${this.host}`);
    this.requests.push(`${req.method} ${url.pathname}${url.search}`);
    if (url.pathname === "/token") return this.token(req, url, res);
    if (!this.authorized(req, res)) return;
    const match = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
    if (match === null) {
      res.writeHead(url.pathname === "/v2/" ? 200 : 404).end("{}");
      return;
    }
    const [, repository, kind, ref] = match;
    if (kind === "manifests") {
      const manifest = this.manifests.get(`${repository}${ref?.includes(":") ? "@" : ":"}${ref}`);
      if (manifest === undefined) return notFound(res, "MANIFEST_UNKNOWN");
      res.writeHead(200, { "content-type": manifest.mediaType, "docker-content-digest": manifest.digest });
      res.end(manifest.bytes);
      return;
    }
    const blob = this.blobs.get(`${repository}@${ref}`);
    if (blob === undefined) return notFound(res, "BLOB_UNKNOWN");
    await this.hold;
    let bytes = blob.bytes;
    if (this.corrupt.has(blob.digest)) {
      bytes = Buffer.from(bytes);
      bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff;
    }
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": bytes.length });
    res.end(bytes);
  }

  private authorized(req: IncomingMessage, res: ServerResponse): boolean {
    const auth = this.auth;
    const given = req.headers.authorization;
    if (auth.kind === "none") return true;
    if (auth.kind === "basic" && given === basic(auth.username, auth.password)) return true;
    if (auth.kind === "bearer" && given === `Bearer ${auth.token}`) return true;
    const repository = /^\/v2\/(.+)\/(?:manifests|blobs)\//.exec(req.url ?? "")?.[1] ?? "";
    const challenge =
      auth.kind === "basic"
        ? 'Basic realm="test registry"'
        : `Bearer realm="http://${this.host}/token",service="test-registry",scope="repository:${repository}:pull"`;
    res.writeHead(401, { "www-authenticate": challenge, "content-type": "application/json" });
    res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "authentication required" }] }));
    return false;
  }

  private token(req: IncomingMessage, url: URL, res: ServerResponse): void {
    const auth = this.auth;
    if (auth.kind !== "bearer" || url.searchParams.get("service") !== "test-registry") {
      res.writeHead(400).end();
      return;
    }
    if (
      auth.username !== undefined &&
      req.headers.authorization !== basic(auth.username, auth.password ?? "")
    ) {
      res.writeHead(401).end();
      return;
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ token: auth.token, expires_in: 300 }));
  }
}

function basic(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;
}

function notFound(res: ServerResponse, code: string): void {
  res.writeHead(404, { "content-type": "application/json" });
  res.end(JSON.stringify({ errors: [{ code, message: "not here" }] }));
}
