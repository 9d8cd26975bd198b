import type { RegistryClient } from "./client.ts";
import { digestOf, verifyBytes } from "./digest.ts";
import { ImageError } from "./errors.ts";
import { type ImageManifest, type Platform, parseManifest, selectPlatform } from "./manifest.ts";
import { formatReference, type ImageReference } from "./reference.ts";

/** A fetched manifest, as the registry sent it. */
export interface ManifestBytes {
  bytes: Buffer;
  contentType: string | undefined;
}

/**
 * Platform manifests already fetched and verified, by `repository@digest`: content-addressed,
 * so they never change. Only the manifest an index names is taken from here, after the index
 * itself came from the registry in the same pull, so the registry still checks every pull's access.
 */
export interface ManifestCache {
  get(key: string): ManifestBytes | undefined;
  set(key: string, value: ManifestBytes): void;
}

export interface ResolvedImage {
  manifest: ImageManifest;
  /** The digest of the image manifest used (the platform's, when the reference named an index). */
  manifestDigest: string;
  /** The digest of the index the manifest was chosen from, if any. */
  indexDigest?: string;
}

/**
 * Fetches the manifest a reference names and, for an image index or manifest list, the manifest
 * for `platform`. Anything fetched by digest is verified against it.
 */
export async function resolveImage(
  client: RegistryClient,
  ref: ImageReference,
  platform: Platform,
  signal: AbortSignal | undefined,
  cache?: ManifestCache,
): Promise<ResolvedImage> {
  const what = formatReference(ref);
  const top = await client.getManifest(ref.digest ?? ref.tag ?? "latest", signal);
  if (ref.digest !== undefined) verifyBytes(top.bytes, ref.digest, `manifest of ${what}`);
  const topDigest = ref.digest ?? digestOf(top.bytes);
  const parsed = parseManifest(top.bytes, top.contentType, `manifest of ${what}`);
  if (parsed.kind === "manifest") return { manifest: parsed.manifest, manifestDigest: topDigest };

  const chosen = selectPlatform(parsed.manifests, platform, `image index of ${what}`);
  const key = `${ref.registry}/${ref.repository}@${chosen.digest}`;
  const innerWhat = `manifest ${chosen.digest} of ${what}`;
  let inner = cache?.get(key);
  if (inner === undefined) {
    inner = await client.getManifest(chosen.digest, signal);
    verifyBytes(inner.bytes, chosen.digest, innerWhat, chosen.size);
    cache?.set(key, inner);
  }
  const image = parseManifest(inner.bytes, inner.contentType, innerWhat);
  if (image.kind !== "manifest") {
    throw new ImageError("INVALID_MANIFEST", `${innerWhat} is an index inside an index: not supported`);
  }
  return { manifest: image.manifest, manifestDigest: chosen.digest, indexDigest: topDigest };
}
