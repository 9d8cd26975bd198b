import { ociError } from "./errors.ts";
import { isDigest } from "./names.ts";

export const MEDIA = {
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
} as const;

export const MANIFEST_TYPES: readonly string[] = Object.values(MEDIA);
const INDEX_TYPES = new Set<string>([MEDIA.dockerList, MEDIA.ociIndex]);
/** Layers that registries do not hold (Windows foreign layers). */
const FOREIGN_LAYERS = new Set([
  "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  "application/vnd.oci.image.layer.nondistributable.v1.tar",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
]);

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  platform?: { architecture?: string; os?: string; variant?: string };
}

/** What Wharf needs to know of a manifest to store it and check it. */
export interface ParsedManifest {
  mediaType: string;
  isIndex: boolean;
  /** Blobs it references that must exist (config and layers). */
  blobs: Descriptor[];
  /** Manifests it references that must exist (index children). */
  manifests: Descriptor[];
  subject?: string;
  artifactType?: string;
  annotations?: Record<string, string>;
  /** Sum of config and layer sizes: ECR's imageSizeInBytes. */
  imageSize: number;
  configMediaType?: string;
}

function descriptor(value: unknown, where: string): Descriptor {
  if (typeof value !== "object" || value === null)
    throw ociError("MANIFEST_INVALID", `${where} is not a descriptor`);
  const d = value as Record<string, unknown>;
  if (typeof d.mediaType !== "string" || typeof d.digest !== "string" || typeof d.size !== "number") {
    throw ociError("MANIFEST_INVALID", `${where} needs mediaType, digest and size`);
  }
  if (!isDigest(d.digest))
    throw ociError("MANIFEST_INVALID", `${where} has an invalid digest`, { digest: d.digest });
  if (!Number.isSafeInteger(d.size) || d.size < 0)
    throw ociError("MANIFEST_INVALID", `${where} has an invalid size`);
  const out: Descriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  if (typeof d.artifactType === "string") out.artifactType = d.artifactType;
  if (typeof d.annotations === "object" && d.annotations !== null)
    out.annotations = d.annotations as Record<string, string>;
  if (typeof d.platform === "object" && d.platform !== null)
    out.platform = d.platform as Descriptor["platform"] & object;
  return out;
}

/**
 * Parses a manifest's bytes. The media type comes from the request's
 * Content-Type, else from the manifest's own `mediaType`; they must agree
 * when both are present.
 */
export function parseManifest(bytes: Buffer, contentType: string | undefined): ParsedManifest {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString("utf8"));
  } catch {
    throw ociError("MANIFEST_INVALID", "manifest is not valid JSON");
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw ociError("MANIFEST_INVALID", "manifest is not a JSON object");
  }
  const m = json as Record<string, unknown>;
  const declared = typeof m.mediaType === "string" ? m.mediaType : undefined;
  const header = contentType?.split(";")[0]?.trim();
  const headerType = header !== undefined && MANIFEST_TYPES.includes(header) ? header : undefined;
  if (declared !== undefined && headerType !== undefined && declared !== headerType) {
    throw ociError(
      "MANIFEST_INVALID",
      `manifest mediaType ${declared} does not match Content-Type ${headerType}`,
    );
  }
  const mediaType =
    declared ??
    headerType ??
    (Array.isArray(m.manifests) ? MEDIA.ociIndex : m.config !== undefined ? MEDIA.ociManifest : "");
  if (!MANIFEST_TYPES.includes(mediaType)) {
    throw ociError("MANIFEST_INVALID", `unsupported manifest media type ${mediaType || "(none)"}`);
  }
  if (m.schemaVersion !== 2) throw ociError("MANIFEST_INVALID", "schemaVersion must be 2");
  const parsed: ParsedManifest = {
    mediaType,
    isIndex: INDEX_TYPES.has(mediaType),
    blobs: [],
    manifests: [],
    imageSize: 0,
  };
  if (typeof m.artifactType === "string") parsed.artifactType = m.artifactType;
  if (typeof m.annotations === "object" && m.annotations !== null) {
    parsed.annotations = m.annotations as Record<string, string>;
  }
  if (m.subject !== undefined) parsed.subject = descriptor(m.subject, "subject").digest;
  if (parsed.isIndex) {
    if (!Array.isArray(m.manifests)) throw ociError("MANIFEST_INVALID", "an index needs a manifests array");
    parsed.manifests = m.manifests.map((child, i) => descriptor(child, `manifests[${i}]`));
    return parsed;
  }
  const config = descriptor(m.config, "config");
  if (!Array.isArray(m.layers)) throw ociError("MANIFEST_INVALID", "an image manifest needs a layers array");
  const layers = m.layers.map((layer, i) => descriptor(layer, `layers[${i}]`));
  parsed.configMediaType = config.mediaType;
  parsed.blobs = [config, ...layers.filter((layer) => !FOREIGN_LAYERS.has(layer.mediaType))];
  parsed.imageSize = layers.reduce((sum, layer) => sum + layer.size, 0);
  return parsed;
}

/** Whether an Accept header admits a media type (no header admits everything). */
export function accepts(accept: string | undefined, mediaType: string): boolean {
  if (accept === undefined || accept.trim() === "") return true;
  return accept
    .split(",")
    .map((part) => part.split(";")[0]?.trim())
    .some((type) => type === mediaType || type === "*/*");
}
