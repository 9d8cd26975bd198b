import { createWriteStream } from "node:fs";
import {
  chmod,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  writeFile,
} from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import { basename, dirname, join, resolve } from "node:path";
import { pipeline } from "node:stream/promises";
import { rootCertificates } from "node:tls";
import { type Credentials, RegistryClient } from "./client.ts";
import { Coalescer } from "./coalesce.ts";
import { DigestVerifier, parseDigest, verifyBytes } from "./digest.ts";
import { asImageError, ImageError, isFileSystemError } from "./errors.ts";
import { Layout } from "./layout.ts";
import {
  checkConfigPlatform,
  type Descriptor,
  type ImageConfig,
  type ImageManifest,
  layerCompression,
  type Platform,
  parseImageConfig,
} from "./manifest.ts";
import { formatReference, type ImageReference, parseReference } from "./reference.ts";
import { type ManifestBytes, resolveImage } from "./resolve.ts";
import { type LayerBlob, unpackLayers } from "./unpack.ts";

export interface PullOptions {
  platform: Platform;
  /** Credentials for a registry host ("localhost:4700"), or undefined for anonymous. */
  credentials?(registry: string): Promise<Credentials | undefined>;
  /** Hosts to reach over plain HTTP (loopback registries); others use HTTPS. */
  insecure?(registry: string): boolean;
  /** Hosts that take Basic credentials on every request (Wharf's own registry): sent up front. */
  basicFirst?(registry: string): boolean;
  /** Extra CA certificates (PEM) to trust for HTTPS registries, besides Node's roots. */
  ca?: string;
  signal?: AbortSignal;
  /** Per network call: the wait for an answer and the longest stall of a body (default 30 s). */
  timeoutMs?: number;
}

export interface PulledImage {
  /** The canonical reference: "docker.io/library/busybox:latest". */
  reference: string;
  /** The image manifest's digest (for an index, the manifest chosen for the platform). */
  manifestDigest: string;
  /** The digest of the index the manifest was chosen from, when the reference named one. */
  indexDigest?: string;
  configDigest: string;
  config: ImageConfig;
  /** Absolute path of the unpacked root filesystem: shared, read-only by convention. */
  rootfs: string;
}

/** What images/<config hex>.json holds: the blobs an unpacked rootfs came from. */
interface ImageRecord {
  configDigest: string;
  layers: string[];
}

const DEFAULT_TIMEOUT_MS = 30_000;
/** Platform manifests and image configs kept in memory, each (a few KiB apiece). */
const CACHED_ENTRIES = 256;
const PARALLEL_DOWNLOADS = 3;

/**
 * The agent's image cache: pulls images from OCI registries into verified blobs, flattens each
 * image into one root filesystem per config digest, and prunes what no task uses. Concurrent pulls
 * of one blob, or one image, in this process share one download and one unpack.
 */
export class ImageStore {
  private readonly layout: Layout;
  private readonly downloads = new Coalescer<string>();
  private readonly unpacks = new Coalescer<string>();
  /** Digests that pulls in flight use, counted: prune keeps their blobs and rootfs. */
  private readonly pinned = new Map<string, number>();
  private readonly agents = new Map<string, http.Agent>();
  /** Verified platform manifests by `repository@digest`, oldest first (see ManifestCache). */
  private readonly manifests = new Map<string, ManifestBytes>();
  /** Image configs read from verified blobs, by digest (content-addressed: they never change). */
  private readonly configs = new Map<string, ImageConfig>();
  private ready: Promise<void> | undefined;

  constructor(root: string) {
    this.layout = new Layout(resolve(root));
  }

  async pull(reference: string, options: PullOptions): Promise<PulledImage> {
    const ref = parseReference(reference);
    const { signal } = options;
    const credentials = options.credentials;
    const client = new RegistryClient({
      registry: ref.registry,
      repository: ref.repository,
      insecure: options.insecure?.(ref.registry) ?? false,
      basicFirst: options.basicFirst?.(ref.registry) ?? false,
      agentFor: (url) => this.agentFor(url, options.ca),
      credentials: credentials === undefined ? undefined : () => credentials(ref.registry),
      timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    });
    try {
      await this.init();
      return await this.pullWith(client, ref, options.platform, signal);
    } catch (error) {
      if (signal?.aborted) throw new ImageError("ABORTED", `pull of ${reference} aborted`, { cause: error });
      throw asImageError(
        error,
        isFileSystemError(error) ? "STORAGE_ERROR" : "REGISTRY_ERROR",
        `pull of ${reference}`,
      );
    }
  }

  private async pullWith(
    client: RegistryClient,
    ref: ImageReference,
    platform: Platform,
    signal: AbortSignal | undefined,
  ): Promise<PulledImage> {
    const what = formatReference(ref);
    const resolved = await resolveImage(client, ref, platform, signal, {
      get: (key) => this.manifests.get(key),
      set: (key, value) => {
        this.manifests.set(key, value);
        const oldest = this.manifests.keys().next().value;
        if (this.manifests.size > CACHED_ENTRIES && oldest !== undefined) this.manifests.delete(oldest);
      },
    });
    const { manifest } = resolved;
    const configDigest = manifest.config.digest;
    const digests = [configDigest, ...manifest.layers.map((layer) => layer.digest)];
    this.pin(digests, 1);
    try {
      const config = await this.config(client, manifest.config, signal, what);
      checkConfigPlatform(config, platform, what);
      if (config.rootfs.diff_ids.length !== manifest.layers.length) {
        throw new ImageError(
          "INVALID_MANIFEST",
          `${what}: ${manifest.layers.length} layers but ${config.rootfs.diff_ids.length} diff_ids in the config`,
        );
      }
      for (const layer of manifest.layers) layerCompression(layer.mediaType); // refuse before downloading
      const hex = parseDigest(configDigest).hex;
      const rootfs = await this.unpacks.run(hex, signal, (shared) =>
        this.unpack(client, manifest, config, shared),
      );
      const pulled: PulledImage = {
        reference: what,
        manifestDigest: resolved.manifestDigest,
        configDigest,
        config,
        rootfs,
      };
      if (resolved.indexDigest !== undefined) pulled.indexDigest = resolved.indexDigest;
      return pulled;
    } finally {
      this.pin(digests, -1);
    }
  }

  /** The image's config, from memory once its blob has been read and verified. */
  private async config(
    client: RegistryClient,
    descriptor: Descriptor,
    signal: AbortSignal | undefined,
    what: string,
  ): Promise<ImageConfig> {
    const known = this.configs.get(descriptor.digest);
    if (known !== undefined) return structuredClone(known);
    const bytes = await readFile(await this.blob(client, descriptor, signal));
    verifyBytes(bytes, descriptor.digest, `config of ${what}`, descriptor.size);
    const config = parseImageConfig(bytes, `config of ${what}`);
    this.configs.set(descriptor.digest, config);
    const oldest = this.configs.keys().next().value;
    if (this.configs.size > CACHED_ENTRIES && oldest !== undefined) this.configs.delete(oldest);
    return config;
  }

  /** The image's rootfs, unpacked from its layers (downloaded as needed) unless already there. */
  private async unpack(
    client: RegistryClient,
    manifest: ImageManifest,
    config: ImageConfig,
    signal: AbortSignal,
  ): Promise<string> {
    const hex = parseDigest(manifest.config.digest).hex;
    const destination = this.layout.imageRootfs(hex);
    if (await exists(destination)) return destination;
    const paths = await mapLimit(manifest.layers, PARALLEL_DOWNLOADS, (layer) =>
      this.blob(client, layer, signal),
    );
    const layers = manifest.layers.map(
      (layer, i): LayerBlob => ({
        path: paths[i] ?? "",
        digest: layer.digest,
        diffId: config.rootfs.diff_ids[i] ?? "",
        compression: layerCompression(layer.mediaType),
      }),
    );
    const temp = await mkdtemp(join(this.layout.tmp, `rootfs-${hex.slice(0, 12)}-`));
    try {
      await unpackLayers(temp, layers, signal);
      await chmod(temp, 0o755);
      const record: ImageRecord = {
        configDigest: manifest.config.digest,
        layers: layers.map((l) => l.digest),
      };
      await writeAtomically(this.layout, this.layout.image(hex), `${JSON.stringify(record)}\n`);
      await rename(temp, destination);
    } catch (error) {
      await rm(temp, { recursive: true, force: true });
      // another process may have put the same image in place first
      if (await exists(destination)) return destination;
      throw error;
    }
    return destination;
  }

  /** The path of a verified, cached blob, downloading it (once, however many ask) if needed. */
  private blob(
    client: RegistryClient,
    descriptor: Descriptor,
    signal: AbortSignal | undefined,
  ): Promise<string> {
    const path = this.layout.blob(parseDigest(descriptor.digest));
    return this.downloads.run(descriptor.digest, signal, async (shared) => {
      const cached = await stat(path).catch(() => undefined);
      if (cached?.isFile() && cached.size === descriptor.size) return path;
      await mkdir(dirname(path), { recursive: true, mode: 0o700 });
      const temp = this.layout.temp("blob");
      try {
        const response = await client.openBlob(descriptor.digest, shared);
        const verifier = new DigestVerifier(descriptor.digest, `blob ${descriptor.digest}`, descriptor.size);
        // flush: fsync before close, so that a renamed blob survives a crash whole
        const file = createWriteStream(temp, { flags: "wx", mode: 0o600, flush: true });
        await pipeline(response, verifier, file, { signal: shared });
        await rename(temp, path);
        return path;
      } catch (error) {
        await rm(temp, { force: true });
        if (error instanceof ImageError) throw error;
        throw new ImageError(
          isFileSystemError(error) ? "STORAGE_ERROR" : "REGISTRY_ERROR",
          `blob ${descriptor.digest}: ${error instanceof Error ? error.message : String(error)}`,
          { cause: error },
        );
      }
    });
  }

  /**
   * Removes unpacked images whose rootfs is not in `inUse` (paths as `pull` returned them), then
   * blobs no remaining image came from. Images and blobs of pulls in flight are kept; leftovers of
   * interrupted pulls are cleared when none is in flight. A rootfs a pull has just returned is not
   * protected once that pull has returned: callers serialise prune with marking new images in use.
   */
  async prune(inUse: Set<string>): Promise<void> {
    await this.init();
    // Configs come from memory only while their blobs are on disk: the next pull reads them again.
    this.configs.clear();
    const keepImages = new Set(this.unpacks.keys());
    for (const path of inUse) {
      const absolute = resolve(path);
      if (dirname(absolute) === this.layout.rootfs) keepImages.add(basename(absolute));
    }
    const keepBlobs = new Set([...this.pinned.keys(), ...this.downloads.keys()]);
    for (const digest of keepBlobs) keepImages.add(digest.slice(digest.indexOf(":") + 1));

    for (const name of await readdir(this.layout.rootfs)) {
      if (keepImages.has(name)) continue;
      const trash = this.layout.temp("trash");
      await rename(join(this.layout.rootfs, name), trash);
      await rm(trash, { recursive: true, force: true });
    }
    for (const name of await readdir(this.layout.images)) {
      const hex = name.replace(/\.json$/, "");
      if (await exists(this.layout.imageRootfs(hex))) {
        for (const digest of await recordedBlobs(join(this.layout.images, name))) keepBlobs.add(digest);
      } else if (!keepImages.has(hex)) {
        await rm(join(this.layout.images, name), { force: true });
      }
    }
    for (const algorithm of await readdir(this.layout.blobs)) {
      for (const hex of await readdir(this.layout.blobDir(algorithm))) {
        if (!keepBlobs.has(`${algorithm}:${hex}`))
          await rm(join(this.layout.blobDir(algorithm), hex), { force: true });
      }
    }
    if (this.pinned.size === 0 && this.downloads.size === 0 && this.unpacks.size === 0) {
      for (const name of await readdir(this.layout.tmp)) {
        await rm(join(this.layout.tmp, name), { recursive: true, force: true });
      }
    }
  }

  /** Closes idle registry connections. The store stays usable. */
  close(): void {
    for (const agent of this.agents.values()) agent.destroy();
    this.agents.clear();
  }

  private init(): Promise<void> {
    this.ready ??= (async () => {
      for (const [path, mode] of this.layout.directories()) {
        await mkdir(path, { recursive: true, mode });
        await chmod(path, mode);
      }
    })().catch((error: unknown) => {
      this.ready = undefined; // try again on the next call
      throw error;
    });
    return this.ready;
  }

  private pin(digests: string[], delta: 1 | -1): void {
    for (const digest of digests) {
      const count = (this.pinned.get(digest) ?? 0) + delta;
      if (count > 0) this.pinned.set(digest, count);
      else this.pinned.delete(digest);
    }
  }

  private agentFor(url: URL, ca: string | undefined): http.Agent {
    const key = url.protocol === "https:" ? `https:${ca ?? ""}` : "http:";
    let agent = this.agents.get(key);
    if (agent === undefined) {
      agent =
        url.protocol === "https:"
          ? new https.Agent({ keepAlive: true, ca: ca === undefined ? undefined : [...rootCertificates, ca] })
          : new http.Agent({ keepAlive: true });
      this.agents.set(key, agent);
    }
    return agent;
  }
}

async function exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined)) !== undefined;
}

/** Writes `text` to a temp file, fsyncs it and renames it to `path`. */
async function writeAtomically(layout: Layout, path: string, text: string): Promise<void> {
  const temp = layout.temp("record");
  try {
    const file = await open(temp, "wx", 0o600);
    try {
      await writeFile(file, text);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/**
 * Maps with at most `limit` calls in flight, starting no new call after a failure; rejects with
 * the first failure once the calls in flight have settled.
 */
async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < items.length && !failed; i = next++) {
      try {
        results[i] = await fn(items[i] as T);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  const settled = await Promise.allSettled(Array.from({ length: Math.min(limit, items.length) }, worker));
  const rejected = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (rejected !== undefined) throw rejected.reason;
  return results;
}

/** The blobs an image record names; none if it is unreadable (they are fetched again if needed). */
async function recordedBlobs(path: string): Promise<string[]> {
  try {
    const record: unknown = JSON.parse(await readFile(path, "utf8"));
    if (typeof record !== "object" || record === null) return [];
    const { configDigest, layers } = record as Partial<ImageRecord>;
    return [configDigest, ...(Array.isArray(layers) ? layers : [])].filter((d) => typeof d === "string");
  } catch {
    return [];
  }
}
