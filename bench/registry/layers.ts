// The benchmark's data: layers of random-looking bytes, reproducible from a seed.
import { createCipheriv, createHash } from "node:crypto";

export const MIB = 1024 * 1024;

/** Bytes handed to the socket per write while a layer streams. */
const CHUNK_BYTES = MIB;
const ZEROS = Buffer.alloc(CHUNK_BYTES);

export interface LayerSpec {
  index: number;
  size: number;
  /** The AES-256-CTR key whose keystream is the layer's content. */
  key: Buffer;
}

export interface Layer extends LayerSpec {
  digest: string;
}

/** A small deterministic PRNG (mulberry32) for sizes and choices; content comes from AES-CTR. */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function seedNumber(seed: string): number {
  return createHash("sha256").update(seed).digest().readUInt32BE(0);
}

/**
 * Layer sizes drawn uniformly from [minBytes, maxBytes] until `totalBytes`
 * are covered; the last layer takes what is left (at least `minBytes`, so
 * it may end a little over `maxBytes`). Sizes are not multiples of anything.
 */
export function planLayers(
  seed: string,
  totalBytes: number,
  minBytes: number,
  maxBytes: number,
): LayerSpec[] {
  if (minBytes <= 0 || maxBytes < minBytes) throw new Error("layer sizes must satisfy 0 < min <= max");
  const random = prng(seedNumber(seed));
  const layers: LayerSpec[] = [];
  let remaining = totalBytes;
  while (remaining > 0) {
    let size = Math.min(minBytes + Math.floor(random() * (maxBytes - minBytes + 1)), remaining);
    if (remaining - size < minBytes) size = remaining;
    const index = layers.length;
    const key = createHash("sha256").update(`${seed}/layer/${index}`).digest();
    layers.push({ index, size, key });
    remaining -= size;
  }
  return layers;
}

/** The layer's bytes, in chunks of up to 1 MiB, generated as they are consumed. */
export function* layerChunks(layer: LayerSpec): Generator<Buffer> {
  const cipher = createCipheriv("aes-256-ctr", layer.key, Buffer.alloc(16));
  let left = layer.size;
  while (left > 0) {
    const take = Math.min(left, CHUNK_BYTES);
    yield cipher.update(take === CHUNK_BYTES ? ZEROS : ZEROS.subarray(0, take));
    left -= take;
  }
}

/** Computes every layer's sha256 by streaming its content once (never a whole layer in memory). */
export function digestLayers(specs: LayerSpec[]): Layer[] {
  return specs.map((spec) => {
    const hash = createHash("sha256");
    for (const chunk of layerChunks(spec)) hash.update(chunk);
    return { ...spec, digest: `sha256:${hash.digest("hex")}` };
  });
}

export const MEDIA = {
  manifest: "application/vnd.oci.image.manifest.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  layer: "application/vnd.oci.image.layer.v1.tar+gzip",
} as const;

/** What docker sends when it asks for a manifest. */
export const MANIFEST_ACCEPT = [
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.oci.image.index.v1+json",
  MEDIA.manifest,
].join(", ");

export interface Blob {
  digest: string;
  size: number;
}

export interface Image {
  tag: string;
  config: Blob & { bytes: Buffer };
  layers: Layer[];
  manifest: Blob & { bytes: Buffer };
}

function sha256(bytes: Buffer): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/** Deals the layers round-robin into `count` OCI images, each with its own config. */
export function buildImages(layers: Layer[], count: number, seed: string): Image[] {
  const images: Image[] = [];
  for (let i = 0; i < Math.min(count, layers.length); i++) {
    const own = layers.filter((layer) => layer.index % count === i);
    const configBytes = Buffer.from(
      JSON.stringify({
        architecture: "amd64",
        os: "linux",
        config: { Env: [`BENCH_SEED=${seed}`, `BENCH_IMAGE=${i}`] },
        rootfs: { type: "layers", diff_ids: own.map((layer) => layer.digest) },
      }),
    );
    const config = { digest: sha256(configBytes), size: configBytes.length, bytes: configBytes };
    const manifestBytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA.manifest,
        config: { mediaType: MEDIA.config, digest: config.digest, size: config.size },
        layers: own.map((layer) => ({ mediaType: MEDIA.layer, digest: layer.digest, size: layer.size })),
      }),
    );
    images.push({
      tag: `image-${i}`,
      config,
      layers: own,
      manifest: { digest: sha256(manifestBytes), size: manifestBytes.length, bytes: manifestBytes },
    });
  }
  return images;
}
