import type { IncomingMessage, OutgoingHttpHeaders } from "node:http";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import {
  authorize,
  basicPassword,
  type Principal,
  PULL_ACTIONS,
  PUSH_ACTIONS,
  type RegistryTokens,
} from "./auth.ts";
import { ociError, ociErrorBody, RegistryError } from "./errors.ts";
import { MEDIA } from "./manifest.ts";
import { isDigest, requireDigest, requireName } from "./names.ts";
import { MAX_MANIFEST_BYTES, type Registry } from "./registry.ts";

export interface V2Options {
  registry: Registry;
  tokens: RegistryTokens;
  accountId: string;
  clock: () => Date;
  /** The user an active access key belongs to, for authorization; undefined when the key is unknown. */
  userOf(accessKeyId: string): string | undefined;
  /** Called after a manifest is pushed (lifecycle policies run then). */
  onPush?(repo: string): void;
}

type Route =
  | { kind: "base" }
  | { kind: "token" }
  | { kind: "catalog" }
  | { kind: "tags"; name: string }
  | { kind: "manifest"; name: string; reference: string }
  | { kind: "blob"; name: string; digest: string }
  | { kind: "uploads"; name: string }
  | { kind: "upload"; name: string; id: string }
  | { kind: "referrers"; name: string; digest: string };

const ROUTES: Array<[RegExp, (m: RegExpExecArray) => Route]> = [
  [/^\/v2\/?$/, () => ({ kind: "base" })],
  [/^\/v2\/token$/, () => ({ kind: "token" })],
  [/^\/v2\/_catalog$/, () => ({ kind: "catalog" })],
  [/^\/v2\/(.+)\/tags\/list$/, (m) => ({ kind: "tags", name: m[1] as string })],
  [
    /^\/v2\/(.+)\/manifests\/([^/]+)$/,
    (m) => ({ kind: "manifest", name: m[1] as string, reference: m[2] as string }),
  ],
  [/^\/v2\/(.+)\/blobs\/uploads\/?$/, (m) => ({ kind: "uploads", name: m[1] as string })],
  [
    /^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/,
    (m) => ({ kind: "upload", name: m[1] as string, id: m[2] as string }),
  ],
  [/^\/v2\/(.+)\/blobs\/([^/]+)$/, (m) => ({ kind: "blob", name: m[1] as string, digest: m[2] as string })],
  [
    /^\/v2\/(.+)\/referrers\/([^/]+)$/,
    (m) => ({ kind: "referrers", name: m[1] as string, digest: m[2] as string }),
  ],
];

function route(path: string): Route | undefined {
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    return undefined;
  }
  for (const [pattern, build] of ROUTES) {
    const match = pattern.exec(decoded);
    if (match !== null) return build(match);
  }
  return undefined;
}

const PULL_METHODS = new Set(["GET", "HEAD"]);

/**
 * The ECR actions a /v2/ request needs, as ECR names them for its own registry: a pull
 * needs `ecr:BatchGetImage` for manifests and `ecr:GetDownloadUrlForLayer` for layers
 * (a policy granting just those two makes a repository pullable); deleting a manifest
 * is `ecr:BatchDeleteImage`; anything else writes and needs every push action.
 */
function actionsFor(
  kind: Exclude<Route["kind"], "base" | "token" | "catalog">,
  method: string,
): readonly string[] {
  if (PULL_METHODS.has(method))
    return kind === "blob" ? ["ecr:GetDownloadUrlForLayer"] : ["ecr:BatchGetImage"];
  if (kind === "manifest" && method === "DELETE") return ["ecr:BatchDeleteImage"];
  return PUSH_ACTIONS;
}

/** Reads a request body up to `limit` bytes. */
async function readBody(stream: AsyncIterable<Buffer>, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += chunk.length;
    if (size > limit) throw ociError("SIZE_INVALID", `body larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function bodyStream(request: FastifyRequest): AsyncIterable<Buffer> {
  const body = request.body as IncomingMessage | undefined;
  return body ?? (async function* () {})();
}

/** `Content-Range: <start>-<end>` (docker also sends `bytes <start>-<end>/*`). */
function parseContentRange(header: string | undefined): { start: number; end: number } | undefined {
  if (header === undefined) return undefined;
  const match = /^(?:bytes )?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/.exec(header.trim());
  if (match === null) throw ociError("BLOB_UPLOAD_INVALID", "invalid Content-Range", undefined);
  const start = Number(match[1]);
  const end = Number(match[2]);
  if (end < start) throw ociError("BLOB_UPLOAD_INVALID", "invalid Content-Range");
  return { start, end };
}

/** A chunk's Content-Range and Content-Length, which must agree when both are given. */
function chunkHeaders(request: FastifyRequest): {
  range: { start: number; end: number } | undefined;
  declared: number | undefined;
} {
  const range = parseContentRange(request.headers["content-range"] as string | undefined);
  const declared = contentLength(request);
  if (range !== undefined && declared !== undefined && declared !== range.end - range.start + 1) {
    throw ociError("SIZE_INVALID", "Content-Length does not match Content-Range");
  }
  return { range, declared };
}

function contentLength(request: FastifyRequest): number | undefined {
  const header = request.headers["content-length"];
  if (header === undefined) return undefined;
  const length = Number(header);
  if (!Number.isSafeInteger(length) || length < 0) throw ociError("SIZE_INVALID", "invalid Content-Length");
  return length;
}

function pageParams(request: FastifyRequest): { n: number; last: string | undefined } {
  const query = request.query as Record<string, string | undefined>;
  const n = query.n === undefined ? 1000 : Number(query.n);
  if (!Number.isInteger(n) || n < 0)
    throw new RegistryError("UNSUPPORTED", "n must be a non-negative integer", undefined, 400);
  return { n: Math.min(n, 10_000), last: query.last };
}

function nextLink(path: string, n: number, last: string | undefined): string | undefined {
  if (last === undefined) return undefined;
  return `<${path}?n=${n}&last=${encodeURIComponent(last)}>; rel="next"`;
}

/**
 * The OCI Distribution API at /v2/, authenticated with the ECR token as
 * Basic auth (user `AWS`), with anonymous pulls for public repositories.
 */
export function registerV2(app: FastifyInstance, options: V2Options): void {
  const { registry } = options;

  app.register(async (v2) => {
    // Bodies stay streams: blobs go to disk as they arrive.
    v2.removeAllContentTypeParsers();
    v2.addContentTypeParser("*", (_request, payload, done) => done(null, payload));
    v2.setErrorHandler((error, request, reply) => sendOciError(request, reply, error));

    const handler = async (request: FastifyRequest, reply: FastifyReply) => {
      void reply.header("Docker-Distribution-API-Version", "registry/2.0");
      const path = (request.raw.url ?? "/").split("?")[0] ?? "/";
      const target = route(path);
      if (target === undefined) throw ociError("NAME_UNKNOWN", "unknown path", { path });
      if (target.kind === "token") return issueToken(request, reply);
      const principal = authenticate(request);
      if (target.kind === "base") {
        if (principal.kind === "anonymous") throw challenge(request);
        return reply.status(200).header("content-type", "application/json").send("{}");
      }
      if (target.kind === "catalog") {
        if (principal.kind === "anonymous") throw challenge(request);
        const { n, last } = pageParams(request);
        const repositories = await registry.catalog(last, n + 1);
        const more = repositories.length > n;
        const page = repositories.slice(0, n);
        const link = more ? nextLink("/v2/_catalog", n, page[page.length - 1]) : undefined;
        if (link !== undefined) void reply.header("Link", link);
        return reply.header("content-type", "application/json").send(JSON.stringify({ repositories: page }));
      }
      requireName(target.name);
      await authorizeRepository(request, principal, target.name, actionsFor(target.kind, request.method));
      switch (target.kind) {
        case "tags":
          return listTags(request, reply, target.name);
        case "manifest":
          return manifest(request, reply, target.name, target.reference);
        case "blob":
          return blob(request, reply, target.name, target.digest);
        case "uploads":
          return startUpload(request, reply, target.name);
        case "upload":
          return upload(request, reply, target.name, target.id);
        case "referrers":
          return referrers(request, reply, target.name, target.digest);
      }
    };
    v2.route({
      method: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
      url: "/v2",
      handler,
      exposeHeadRoute: false,
    });
    v2.route({
      method: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
      url: "/v2/*",
      handler,
      exposeHeadRoute: false,
    });
  });

  /**
   * Clients are sent to the token endpoint (the distribution token flow), so
   * docker can pull public repositories without logging in; Basic auth with
   * the ECR password is accepted on every request too, as ECR does.
   */
  function challenge(request: FastifyRequest): RegistryError {
    const host = request.headers.host ?? "wharf";
    const scheme = (request.raw.socket as { encrypted?: boolean }).encrypted === true ? "https" : "http";
    const error = ociError("UNAUTHORIZED", "authentication required");
    error.challenge = `Bearer realm="${scheme}://${host}/v2/token",service="${host}"`;
    return error;
  }

  function refused(request: FastifyRequest): RegistryError {
    const error = challenge(request);
    error.message = "authentication token is invalid or has expired";
    return error;
  }

  /** The principal a password or token names; anonymous for an anonymous token. */
  function principalOf(request: FastifyRequest, password: string): Principal {
    const accessKeyId = options.tokens.verify(password, options.clock());
    if (accessKeyId === "") return { kind: "anonymous" };
    const user = accessKeyId === undefined ? undefined : options.userOf(accessKeyId);
    if (accessKeyId === undefined || user === undefined) throw refused(request);
    return { kind: "user", accessKeyId, arn: `arn:aws:iam::${options.accountId}:user/${user}` };
  }

  function authenticate(request: FastifyRequest): Principal {
    const header = request.headers.authorization;
    if (header !== undefined && /^bearer /i.test(header)) return principalOf(request, header.slice(7).trim());
    // GetDownloadUrlForLayer's URLs carry their token in the query, like a pre-signed URL.
    const urlToken = (request.query as Record<string, string | undefined>)["X-Wharf-Token"];
    const basic =
      basicPassword(header) ??
      (urlToken !== undefined && request.method === "GET" ? { user: "AWS", password: urlToken } : undefined);
    // Empty Basic credentials (skopeo's answer to a challenge without a login) are no credentials.
    if (basic === undefined || (basic.user === "" && basic.password === "")) return { kind: "anonymous" };
    if (basic.user !== "AWS") throw refused(request);
    return principalOf(request, basic.password);
  }

  /** GET /v2/token: a bearer token for the caller's credentials, or an anonymous one. */
  function issueToken(request: FastifyRequest, reply: FastifyReply) {
    if (request.method !== "GET" && request.method !== "POST") throw unsupported();
    const principal = authenticate(request);
    const now = options.clock();
    const issued =
      principal.kind === "anonymous"
        ? options.tokens.issueAnonymous(now)
        : options.tokens.issue(principal.accessKeyId, now);
    const expiresIn = Math.floor((issued.expiresAt.getTime() - now.getTime()) / 1000);
    return reply.header("content-type", "application/json").send(
      JSON.stringify({
        token: issued.password,
        access_token: issued.password,
        expires_in: expiresIn,
        issued_at: now.toISOString(),
      }),
    );
  }

  async function authorizeRepository(
    request: FastifyRequest,
    principal: Principal,
    name: string,
    actions: readonly string[],
  ): Promise<void> {
    const repo = await registry.store.read((tx) => registry.findRepository(tx, name));
    if (repo === undefined) {
      // Nobody learns which repositories exist without credentials.
      if (principal.kind === "anonymous") throw challenge(request);
      throw ociError(
        "NAME_UNKNOWN",
        `The repository with name '${name}' does not exist in the registry with id '${options.accountId}'`,
        { name },
      );
    }
    const allowed = actions.every((action) => authorize(repo.policy, principal, action, options.accountId));
    if (allowed) return;
    if (principal.kind === "anonymous") throw challenge(request);
    throw ociError(
      "DENIED",
      `User: ${principal.arn} is not authorized to perform this action on repository ${name}`,
    );
  }

  async function listTags(request: FastifyRequest, reply: FastifyReply, name: string) {
    if (request.method !== "GET" && request.method !== "HEAD") throw unsupported();
    const { n, last } = pageParams(request);
    const tags = await registry.tags(name, last, n + 1);
    const page = tags.slice(0, n);
    const link = tags.length > n ? nextLink(`/v2/${name}/tags/list`, n, page[page.length - 1]) : undefined;
    if (link !== undefined) void reply.header("Link", link);
    return reply.header("content-type", "application/json").send(JSON.stringify({ name, tags: page }));
  }

  async function manifest(request: FastifyRequest, reply: FastifyReply, name: string, reference: string) {
    switch (request.method) {
      case "GET":
      case "HEAD": {
        const content = await registry.getManifest(name, reference, request.headers.accept);
        if (content === undefined)
          throw ociError("MANIFEST_UNKNOWN", "manifest unknown", { name, reference });
        void reply
          .header("content-type", content.mediaType)
          .header("Docker-Content-Digest", content.digest)
          .header("ETag", `"${content.digest}"`)
          .header("content-length", content.size);
        if (request.method === "HEAD") return reply.status(200).send();
        registry.recordPull(name, content.digest);
        return reply.status(200).send(content.bytes);
      }
      case "PUT": {
        const bytes = await readBody(bodyStream(request), MAX_MANIFEST_BYTES);
        const { digest, parsed } = await registry.putManifest(
          name,
          reference,
          bytes,
          request.headers["content-type"],
        );
        options.onPush?.(name);
        if (parsed.subject !== undefined) void reply.header("OCI-Subject", parsed.subject);
        return reply
          .status(201)
          .header("Location", `/v2/${name}/manifests/${digest}`)
          .header("Docker-Content-Digest", digest)
          .header("content-length", 0)
          .send();
      }
      case "DELETE": {
        const deleted = await registry.deleteManifest(name, reference);
        if (!deleted) throw ociError("MANIFEST_UNKNOWN", "manifest unknown", { name, reference });
        return reply.status(202).header("content-length", 0).send();
      }
      default:
        throw unsupported();
    }
  }

  async function blob(request: FastifyRequest, reply: FastifyReply, name: string, digest: string) {
    if (!isDigest(digest)) throw ociError("DIGEST_INVALID", "invalid digest", { digest });
    if (request.method === "DELETE") {
      if (!(await registry.unlinkBlob(name, digest)))
        throw ociError("BLOB_UNKNOWN", "blob unknown to registry", { digest });
      return reply.status(202).header("content-length", 0).send();
    }
    if (request.method !== "GET" && request.method !== "HEAD") throw unsupported();
    const size = await registry.blobSize(name, digest);
    if (size === undefined) throw ociError("BLOB_UNKNOWN", "blob unknown to registry", { digest });
    void reply
      .header("content-type", "application/octet-stream")
      .header("Docker-Content-Digest", digest)
      .header("ETag", `"${digest}"`)
      .header("Accept-Ranges", "bytes")
      .header("Cache-Control", "max-age=31536000");
    const range = parseRange(request.headers.range, size);
    if (range === "invalid") {
      return reply.status(416).header("Content-Range", `bytes */${size}`).header("content-length", 0).send();
    }
    const [start, end] = range ?? [0, size - 1];
    void reply.header("content-length", end - start + 1);
    if (range !== undefined) void reply.status(206).header("Content-Range", `bytes ${start}-${end}/${size}`);
    if (request.method === "HEAD" || size === 0) return reply.send();
    return sendBlob(request, reply, digest, size, start, end);
  }

  /**
   * Streams a blob's bytes into the response itself (Fastify steps aside), so that segment
   * buffers can be reused once the socket has taken them. Headers are final by now; a failure
   * past them can only cut the response short.
   */
  async function sendBlob(
    request: FastifyRequest,
    reply: FastifyReply,
    digest: string,
    size: number,
    start: number,
    end: number,
  ): Promise<void> {
    reply.hijack();
    const raw = reply.raw;
    const headers: OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(reply.getHeaders())) {
      if (value !== undefined) headers[name] = typeof value === "number" ? String(value) : value;
    }
    raw.writeHead(reply.statusCode, headers);
    try {
      await registry.pipeBlob(digest, size, start, end, raw);
      raw.end();
    } catch (error) {
      if (!raw.destroyed) request.log.error({ err: error }, "registry blob read failed");
      raw.destroy();
    }
  }

  async function startUpload(request: FastifyRequest, reply: FastifyReply, name: string) {
    if (request.method !== "POST") throw unsupported();
    const query = request.query as Record<string, string | undefined>;
    if (query.mount !== undefined && query.from !== undefined) {
      requireDigest(query.mount);
      requireName(query.from);
      const principal = authenticate(request);
      const source = await registry.store.read((tx) => registry.findRepository(tx, query.from as string));
      const mayPull =
        source !== undefined &&
        PULL_ACTIONS.every((a) => authorize(source.policy, principal, a, options.accountId));
      if (mayPull && (await registry.mount(name, query.mount, query.from)) !== undefined) {
        return reply
          .status(201)
          .header("Location", `/v2/${name}/blobs/${query.mount}`)
          .header("Docker-Content-Digest", query.mount)
          .header("content-length", 0)
          .send();
      }
    }
    const id = await registry.startUpload(name);
    if (query.digest !== undefined) {
      // Monolithic upload: POST carries the whole blob.
      requireDigest(query.digest);
      await registry.appendUpload(name, id, bodyStream(request), 0, contentLength(request));
      await registry.completeUpload(name, id, query.digest);
      return reply
        .status(201)
        .header("Location", `/v2/${name}/blobs/${query.digest}`)
        .header("Docker-Content-Digest", query.digest)
        .header("content-length", 0)
        .send();
    }
    return uploadAccepted(reply, name, id, 0);
  }

  function uploadAccepted(reply: FastifyReply, name: string, id: string, length: number, status = 202) {
    return reply
      .status(status)
      .header("Location", `/v2/${name}/blobs/uploads/${id}`)
      .header("Range", `0-${Math.max(length - 1, 0)}`)
      .header("Docker-Upload-UUID", id)
      .header("OCI-Chunk-Min-Length", 0)
      .header("content-length", 0)
      .send();
  }

  async function upload(request: FastifyRequest, reply: FastifyReply, name: string, id: string) {
    switch (request.method) {
      case "GET": {
        const length = await registry.uploadLength(name, id);
        return uploadAccepted(reply, name, id, length, 204);
      }
      case "PATCH": {
        const { range, declared } = chunkHeaders(request);
        const current = await registry.uploadLength(name, id);
        if (range !== undefined && range.start !== current) {
          return reply
            .status(416)
            .header("Location", `/v2/${name}/blobs/uploads/${id}`)
            .header("Range", `0-${Math.max(current - 1, 0)}`)
            .header("content-type", "application/json")
            .send(ociErrorBody(ociError("BLOB_UPLOAD_INVALID", `chunk must start at ${current}`)));
        }
        const expected = range === undefined ? declared : range.end - range.start + 1;
        const length = await registry.appendUpload(name, id, bodyStream(request), range?.start, expected);
        return uploadAccepted(reply, name, id, length);
      }
      case "PUT": {
        const query = request.query as Record<string, string | undefined>;
        if (query.digest === undefined) throw ociError("DIGEST_INVALID", "digest parameter is required");
        requireDigest(query.digest);
        const { range, declared } = chunkHeaders(request);
        if (declared === undefined || declared > 0 || request.headers["transfer-encoding"] !== undefined) {
          const expected = range === undefined ? declared : range.end - range.start + 1;
          await registry.appendUpload(name, id, bodyStream(request), range?.start, expected);
        }
        await registry.completeUpload(name, id, query.digest);
        return reply
          .status(201)
          .header("Location", `/v2/${name}/blobs/${query.digest}`)
          .header("Docker-Content-Digest", query.digest)
          .header("content-length", 0)
          .send();
      }
      case "DELETE":
        await registry.cancelUpload(name, id);
        return reply.status(204).send();
      default:
        throw unsupported();
    }
  }

  async function referrers(request: FastifyRequest, reply: FastifyReply, name: string, digest: string) {
    if (request.method !== "GET") throw unsupported();
    if (!isDigest(digest)) throw ociError("DIGEST_INVALID", "invalid digest", { digest });
    const artifactType = (request.query as Record<string, string | undefined>).artifactType;
    const found = await registry.referrers(name, digest, artifactType);
    if (artifactType !== undefined) void reply.header("OCI-Filters-Applied", "artifactType");
    const manifests = found.map((m) => {
      const descriptor: Record<string, unknown> = { mediaType: m.mediaType, digest: m.digest, size: m.size };
      if (m.artifactType !== null) descriptor.artifactType = m.artifactType;
      if (m.annotations !== null) descriptor.annotations = JSON.parse(m.annotations);
      return descriptor;
    });
    // A Buffer, so the media type goes out exactly (Fastify adds a charset to strings).
    return reply
      .header("content-type", MEDIA.ociIndex)
      .send(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.ociIndex, manifests })));
  }
}

function unsupported(): RegistryError {
  return ociError("UNSUPPORTED", "The operation is unsupported.");
}

/** `Range: bytes=a-b`, `bytes=a-`, `bytes=-n`; undefined for none, "invalid" when unsatisfiable. */
function parseRange(header: string | undefined, size: number): [number, number] | undefined | "invalid" {
  if (header === undefined) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (match === null || (match[1] === "" && match[2] === "")) return "invalid";
  let start: number;
  let end: number;
  if (match[1] === "") {
    const suffix = Number(match[2]);
    start = Math.max(size - suffix, 0);
    end = size - 1;
  } else {
    start = Number(match[1]);
    end = match[2] === "" ? size - 1 : Math.min(Number(match[2]), size - 1);
  }
  if (start > end || start >= size) return "invalid";
  return [start, end];
}

/** Writes an error as the distribution spec's `{"errors":[…]}` envelope. */
export function sendOciError(request: FastifyRequest, reply: FastifyReply, error: unknown): void {
  let registryError: RegistryError;
  if (error instanceof RegistryError) registryError = error;
  else {
    const status = (error as { statusCode?: number }).statusCode;
    if (typeof status === "number" && status < 500) {
      registryError = new RegistryError("UNSUPPORTED", (error as Error).message, undefined, status);
    } else {
      request.log.error({ err: error }, "registry request failed");
      registryError = new RegistryError("UNSUPPORTED", "internal error", undefined, 500);
    }
  }
  if (registryError.challenge !== undefined) void reply.header("WWW-Authenticate", registryError.challenge);
  void reply
    .status(registryError.status)
    .header("Docker-Distribution-API-Version", "registry/2.0")
    .header("content-type", "application/json")
    .send(ociErrorBody(registryError));
}
