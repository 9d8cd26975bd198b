import { z } from "zod";
import { isDigest } from "./digest.ts";
import { ImageError } from "./errors.ts";

export const MEDIA_TYPES = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
} as const;

/** The Accept header of manifest requests: indexes and image manifests, OCI and Docker. */
export const MANIFEST_ACCEPT = Object.values(MEDIA_TYPES).join(", ");

const INDEX_TYPES = new Set<string>([MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerList]);
const MANIFEST_TYPES = new Set<string>([MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest]);

export type LayerCompression = "gzip" | "none";

const LAYER_TYPES = new Map<string, LayerCompression | "zstd">([
  ["application/vnd.oci.image.layer.v1.tar", "none"],
  ["application/vnd.oci.image.layer.v1.tar+gzip", "gzip"],
  ["application/vnd.oci.image.layer.v1.tar+zstd", "zstd"],
  ["application/vnd.oci.image.layer.nondistributable.v1.tar", "none"],
  ["application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "gzip"],
  ["application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", "zstd"],
  ["application/vnd.docker.image.rootfs.diff.tar.gzip", "gzip"],
  ["application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "gzip"],
]);

const platformSchema = z.object({
  architecture: z.string(),
  os: z.string(),
  variant: z.string().optional(),
});

const descriptorSchema = z.object({
  mediaType: z.string(),
  digest: z.string().refine(isDigest, "digest must be sha256 or sha512"),
  size: z.number().int().nonnegative(),
  platform: platformSchema.optional(),
});

export type Descriptor = z.infer<typeof descriptorSchema>;

const indexSchema = z.object({
  schemaVersion: z.literal(2),
  manifests: z.array(descriptorSchema),
});

const manifestSchema = z.object({
  schemaVersion: z.literal(2),
  config: descriptorSchema,
  layers: z.array(descriptorSchema),
});

export type ImageManifest = z.infer<typeof manifestSchema>;

const healthcheckSchema = z.looseObject({
  Test: z.array(z.string()).nullish(),
  Interval: z.number().optional(),
  Timeout: z.number().optional(),
  StartPeriod: z.number().optional(),
  StartInterval: z.number().optional(),
  Retries: z.number().optional(),
});

const containerConfigSchema = z.looseObject({
  User: z.string().optional(),
  ExposedPorts: z.record(z.string(), z.looseObject({})).nullish(),
  Env: z.array(z.string()).nullish(),
  Entrypoint: z.array(z.string()).nullish(),
  Cmd: z.array(z.string()).nullish(),
  WorkingDir: z.string().optional(),
  Labels: z.record(z.string(), z.string()).nullish(),
  StopSignal: z.string().optional(),
  Healthcheck: healthcheckSchema.nullish(),
});

const imageConfigSchema = z.looseObject({
  architecture: z.string().optional(),
  os: z.string().optional(),
  variant: z.string().optional(),
  config: containerConfigSchema.nullish(),
  rootfs: z.object({ type: z.string(), diff_ids: z.array(z.string().refine(isDigest)) }),
});

/** The OCI/Docker image config, typed for what the agent uses; other fields are kept as they came. */
export type ImageConfig = z.infer<typeof imageConfigSchema>;

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export type ParsedManifest =
  | { kind: "index"; mediaType: string; manifests: Descriptor[] }
  | { kind: "manifest"; mediaType: string; manifest: ImageManifest };

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new ImageError("INVALID_MANIFEST", `${what} is not valid JSON`);
  }
}

function check<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue === undefined ? "" : ` at ${issue.path.join(".") || "top level"}: ${issue.message}`;
    throw new ImageError("INVALID_MANIFEST", `${what} is invalid${where}`);
  }
  return result.data;
}

/**
 * Parses a manifest or index. Its kind comes from its own `mediaType`, else the response's
 * Content-Type, else its shape; Docker schema 1 and artifacts of other types are refused.
 */
export function parseManifest(bytes: Buffer, contentType: string | undefined, what: string): ParsedManifest {
  const json = parseJson(bytes, what);
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new ImageError("INVALID_MANIFEST", `${what} is not a JSON object`);
  }
  const declared = "mediaType" in json && typeof json.mediaType === "string" ? json.mediaType : undefined;
  const header = contentType?.split(";")[0]?.trim();
  let mediaType = declared ?? header ?? "";
  if (!INDEX_TYPES.has(mediaType) && !MANIFEST_TYPES.has(mediaType)) {
    if ("schemaVersion" in json && json.schemaVersion === 1) {
      throw new ImageError("UNSUPPORTED_MEDIA_TYPE", `${what} is a Docker schema 1 manifest: not supported`);
    }
    if (declared !== undefined || (header !== undefined && header !== "application/json")) {
      throw new ImageError("UNSUPPORTED_MEDIA_TYPE", `${what} has unsupported media type "${mediaType}"`);
    }
    mediaType = "manifests" in json ? MEDIA_TYPES.ociIndex : MEDIA_TYPES.ociManifest;
  }
  if (INDEX_TYPES.has(mediaType)) {
    return { kind: "index", mediaType, manifests: check(indexSchema, json, what).manifests };
  }
  return { kind: "manifest", mediaType, manifest: check(manifestSchema, json, what) };
}

export function parseImageConfig(bytes: Buffer, what: string): ImageConfig {
  return check(imageConfigSchema, parseJson(bytes, what), what);
}

/** How a layer of this media type is compressed; zstd and non-layer types are refused. */
export function layerCompression(mediaType: string): LayerCompression {
  const compression = LAYER_TYPES.get(mediaType);
  if (compression === undefined) {
    throw new ImageError("UNSUPPORTED_MEDIA_TYPE", `unsupported layer media type "${mediaType}"`);
  }
  if (compression === "zstd") {
    throw new ImageError("UNSUPPORTED_MEDIA_TYPE", `zstd-compressed layers are not supported (${mediaType})`);
  }
  return compression;
}

const ARCH_ALIASES: Record<string, string> = {
  x86_64: "amd64",
  "x86-64": "amd64",
  aarch64: "arm64",
  armhf: "arm",
  armel: "arm",
};
const DEFAULT_VARIANTS: Record<string, string> = { arm64: "v8", arm: "v7", amd64: "v1" };

function normalise(platform: Platform): { os: string; architecture: string; variant: string | undefined } {
  const architecture = ARCH_ALIASES[platform.architecture] ?? platform.architecture;
  return { os: platform.os, architecture, variant: platform.variant ?? DEFAULT_VARIANTS[architecture] };
}

export function formatPlatform(platform: Platform): string {
  return [platform.os, platform.architecture, platform.variant].filter((part) => part).join("/");
}

/**
 * The manifest of an index that runs on `platform`: the same OS and architecture, and the same
 * variant (architectures' default variants filled in). When the caller named no variant, any
 * variant of the architecture is taken, its default first.
 */
export function selectPlatform(manifests: Descriptor[], platform: Platform, what: string): Descriptor {
  const want = normalise(platform);
  const candidates = manifests.filter((descriptor) => {
    if (descriptor.platform === undefined || !MANIFEST_TYPES.has(descriptor.mediaType)) return false;
    const have = normalise(descriptor.platform);
    return have.os === want.os && have.architecture === want.architecture;
  });
  const exact = candidates.find((descriptor) => {
    const have = descriptor.platform === undefined ? undefined : normalise(descriptor.platform);
    return have?.variant === want.variant;
  });
  const chosen = exact ?? (platform.variant === undefined ? candidates[0] : undefined);
  if (chosen === undefined) {
    const available = manifests.flatMap((d) =>
      d.platform === undefined ? [] : [formatPlatform(d.platform)],
    );
    throw new ImageError(
      "PLATFORM_MISMATCH",
      `${what} has no manifest for ${formatPlatform(platform)} (available: ${available.join(", ") || "none"})`,
    );
  }
  return chosen;
}

/** Throws PLATFORM_MISMATCH when a config names an OS or architecture other than `platform`'s. */
export function checkConfigPlatform(config: ImageConfig, platform: Platform, what: string): void {
  const want = normalise(platform);
  const os = config.os;
  const architecture =
    config.architecture === undefined
      ? undefined
      : (ARCH_ALIASES[config.architecture] ?? config.architecture);
  if (
    (os !== undefined && os !== want.os) ||
    (architecture !== undefined && architecture !== want.architecture)
  ) {
    throw new ImageError(
      "PLATFORM_MISMATCH",
      `${what} is built for ${formatPlatform({ os: os ?? "?", architecture: architecture ?? "?" })}, not ${formatPlatform(platform)}`,
    );
  }
}
