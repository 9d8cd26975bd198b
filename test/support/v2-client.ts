// A small OCI distribution client over Node's fetch and http, for the registry's
// end-to-end tests: what a user's tool sends, byte for byte, and nothing clever.
import { createHash } from "node:crypto";
import { request as httpRequest } from "node:http";
import { ECRClient, GetAuthorizationTokenCommand } from "@aws-sdk/client-ecr";

export const MEDIA = {
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerLayer: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayer: "application/vnd.oci.image.layer.v1.tar+gzip",
  ociEmpty: "application/vnd.oci.empty.v1+json",
} as const;

export function sha256(bytes: Buffer | string): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os: string; architecture: string };
  artifactType?: string;
}

export function descriptor(mediaType: string, bytes: Buffer): Descriptor {
  return { mediaType, digest: sha256(bytes), size: bytes.length };
}

export interface Reply {
  status: number;
  headers: Headers;
  body: Buffer;
  /** The body parsed as JSON, when it is JSON. */
  json: unknown;
}

/** The `{"errors":[…]}` codes of a reply. */
export function errorCodes(reply: Reply): string[] {
  const errors = (reply.json as { errors?: Array<{ code: string }> } | undefined)?.errors ?? [];
  return errors.map((e) => e.code);
}

function parse(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    return undefined;
  }
}

export interface RequestOptions {
  headers?: Record<string, string>;
  body?: Buffer | string | ReadableStream<Uint8Array>;
  /** Send without the client's credentials. */
  anonymous?: boolean;
  signal?: AbortSignal;
}

interface Endpoint {
  endpoint: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
}

export function ecrClient(server: Endpoint): ECRClient {
  return new ECRClient({
    endpoint: server.endpoint,
    region: "us-east-1",
    credentials: server.credentials,
    maxAttempts: 1,
  });
}

/** The registry password `aws ecr get-login-password` prints, from the SDK. */
export async function loginPassword(server: Endpoint): Promise<string> {
  const ecr = ecrClient(server);
  try {
    const out = await ecr.send(new GetAuthorizationTokenCommand({}));
    const token = out.authorizationData?.[0]?.authorizationToken ?? "";
    const decoded = Buffer.from(token, "base64").toString("utf8");
    if (!decoded.startsWith("AWS:")) throw new Error(`unexpected authorization token ${decoded}`);
    return decoded.slice(4);
  } finally {
    ecr.destroy();
  }
}

export function basicAuth(password: string): string {
  return `Basic ${Buffer.from(`AWS:${password}`).toString("base64")}`;
}

/** An OCI client for one registry endpoint, logged in as `AWS` with a registry password. */
export class V2Client {
  readonly endpoint: string;
  authorization: string | undefined;

  constructor(endpoint: string, password?: string) {
    this.endpoint = endpoint;
    this.authorization = password === undefined ? undefined : basicAuth(password);
  }

  static async login(server: Endpoint): Promise<V2Client> {
    return new V2Client(server.endpoint, await loginPassword(server));
  }

  async request(method: string, path: string, options: RequestOptions = {}): Promise<Reply> {
    const headers: Record<string, string> = { ...options.headers };
    if (this.authorization !== undefined && options.anonymous !== true)
      headers.authorization = this.authorization;
    const init: RequestInit & { duplex?: "half" } = { method, headers, redirect: "manual" };
    if (options.body !== undefined)
      init.body = Buffer.isBuffer(options.body) ? new Uint8Array(options.body) : options.body;
    if (options.body instanceof ReadableStream) init.duplex = "half";
    if (options.signal !== undefined) init.signal = options.signal;
    const response = await fetch(new URL(path, this.endpoint), init);
    const body = Buffer.from(await response.arrayBuffer());
    return { status: response.status, headers: response.headers, body, json: parse(body) };
  }

  /** A request whose path goes on the wire exactly as given (fetch would normalise `..` and `//`). */
  raw(method: string, path: string, headers: Record<string, string> = {}): Promise<Reply> {
    const url = new URL(this.endpoint);
    return new Promise((resolve, reject) => {
      const req = httpRequest(
        {
          host: url.hostname,
          port: url.port,
          method,
          path,
          headers: {
            ...headers,
            ...(this.authorization === undefined ? {} : { authorization: this.authorization }),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("end", () => {
            const body = Buffer.concat(chunks);
            const replyHeaders = new Headers();
            for (const [name, value] of Object.entries(res.headers)) {
              if (typeof value === "string") replyHeaders.set(name, value);
            }
            resolve({ status: res.statusCode ?? 0, headers: replyHeaders, body, json: parse(body) });
          });
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end();
    });
  }

  /** A monolithic upload (POST ?digest=); throws unless the registry answers 201. */
  async pushBlob(repo: string, bytes: Buffer): Promise<string> {
    const digest = sha256(bytes);
    const reply = await this.request("POST", `/v2/${repo}/blobs/uploads/?digest=${digest}`, {
      headers: { "content-type": "application/octet-stream" },
      body: bytes,
    });
    if (reply.status !== 201) throw new Error(`blob push answered ${reply.status}: ${reply.body.toString()}`);
    return digest;
  }

  /** Pushes a manifest; throws unless 201. Returns the digest the registry reports. */
  async pushManifest(repo: string, reference: string, manifest: object | Buffer, mediaType: string) {
    const body = Buffer.isBuffer(manifest) ? manifest : Buffer.from(JSON.stringify(manifest));
    const reply = await this.request("PUT", `/v2/${repo}/manifests/${reference}`, {
      headers: { "content-type": mediaType },
      body,
    });
    if (reply.status !== 201)
      throw new Error(`manifest push answered ${reply.status}: ${reply.body.toString()}`);
    return { digest: reply.headers.get("docker-content-digest") ?? "", reply, bytes: body };
  }

  /** Fetches a blob and checks that its bytes hash to its digest. */
  async pullBlob(repo: string, digest: string): Promise<Buffer> {
    const reply = await this.request("GET", `/v2/${repo}/blobs/${digest}`);
    if (reply.status !== 200) throw new Error(`blob ${digest} answered ${reply.status}`);
    if (sha256(reply.body) !== digest) throw new Error(`blob ${digest} came back with other bytes`);
    return reply.body;
  }
}

export interface PushedImage {
  digest: string;
  manifest: Buffer;
  config: Buffer;
  layers: Buffer[];
  blobs: string[];
}

/**
 * Pushes an image of its own config and the given layers (each uploaded
 * monolithically) and tags it; `mediaType` picks Docker schema 2 or OCI.
 */
export async function pushImage(
  client: V2Client,
  repo: string,
  tag: string,
  options: { layers?: Buffer[]; mediaType?: string; config?: Buffer } = {},
): Promise<PushedImage> {
  const oci = options.mediaType !== MEDIA.dockerManifest;
  const layers = options.layers ?? [Buffer.from(`layer of ${repo}:${tag} ${Math.random()}`)];
  const config =
    options.config ??
    Buffer.from(
      JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers" }, repo, tag }),
    );
  const blobs = [await client.pushBlob(repo, config)];
  for (const layer of layers) blobs.push(await client.pushBlob(repo, layer));
  const mediaType = oci ? MEDIA.ociManifest : MEDIA.dockerManifest;
  const manifest = {
    schemaVersion: 2,
    mediaType,
    config: descriptor(oci ? MEDIA.ociConfig : MEDIA.dockerConfig, config),
    layers: layers.map((layer) => descriptor(oci ? MEDIA.ociLayer : MEDIA.dockerLayer, layer)),
  };
  const pushed = await client.pushManifest(repo, tag, manifest, mediaType);
  return { digest: pushed.digest, manifest: pushed.bytes, config, layers, blobs };
}
