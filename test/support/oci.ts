// OCI image layouts written by hand, and Debian's skopeo, for registry end-to-end tests.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { gzip } from "node:zlib";
import { BUSYBOX, BUSYBOX_APPLETS } from "./docker.ts";
import { type RunResult, run, SYSTEM_PATH } from "./process.ts";
import { type TarEntry, tar } from "./tar.ts";

export const SKOPEO = "/usr/bin/skopeo";

export const MEDIA_TYPES = {
  index: "application/vnd.oci.image.index.v1+json",
  manifest: "application/vnd.oci.image.manifest.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  layerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
} as const;

/** The tag under which the layout's index.json names the image index. */
export const LAYOUT_REF = "latest";

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { architecture: string; os: string; variant?: string };
  annotations?: Record<string, string>;
}

export interface MultiPlatformLayout {
  /** Digest of the image index (what `skopeo inspect --raw oci:<dir>` returns). */
  indexDigest: string;
  /** Digests of the linux/amd64 and linux/arm64 manifests, in that order. */
  manifestDigests: string[];
  /** Digests of the two config blobs, in the same order. */
  configDigests: string[];
  /** Digest of the gzip layer both manifests share. */
  layerDigest: string;
}

const PLATFORMS = [
  { architecture: "amd64", os: "linux" },
  { architecture: "arm64", os: "linux", variant: "v8" },
] as const;

const CREATED = "2026-01-01T00:00:00Z";

/**
 * Writes an OCI image layout at `dir` (created if needed; index.json is replaced) holding one image
 * index, tagged LAYOUT_REF, with linux/amd64 and linux/arm64 manifests. Both share one gzip layer
 * (this host's busybox-static with applet symlinks and /hello.txt holding `content`, so only the
 * host's architecture actually runs) and have distinct configs. Byte-for-byte reproducible.
 */
export async function writeMultiPlatformLayout(
  dir: string,
  content = "hello from an OCI layout\n",
): Promise<MultiPlatformLayout> {
  await mkdir(join(dir, "blobs", "sha256"), { recursive: true });
  const put = async (mediaType: string, bytes: Buffer): Promise<Descriptor> => {
    const hex = createHash("sha256").update(bytes).digest("hex");
    await writeFile(join(dir, "blobs", "sha256", hex), bytes);
    return { mediaType, digest: `sha256:${hex}`, size: bytes.length };
  };
  const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value), "utf8");

  const layerTar = tar(busyboxRootfs(content));
  const diffId = `sha256:${createHash("sha256").update(layerTar).digest("hex")}`;
  const layer = await put(MEDIA_TYPES.layerGzip, await promisify(gzip)(layerTar, { level: 9 }));

  const configs: Descriptor[] = [];
  const manifests: Descriptor[] = [];
  for (const platform of PLATFORMS) {
    const config = await put(
      MEDIA_TYPES.config,
      json({
        created: CREATED,
        ...platform,
        config: { Env: ["PATH=/bin"], Cmd: ["/bin/sh"] },
        rootfs: { type: "layers", diff_ids: [diffId] },
        history: [{ created: CREATED, created_by: "wharf test/support/oci.ts" }],
      }),
    );
    const manifest = await put(
      MEDIA_TYPES.manifest,
      json({ schemaVersion: 2, mediaType: MEDIA_TYPES.manifest, config, layers: [layer] }),
    );
    configs.push(config);
    manifests.push({ ...manifest, platform: { ...platform } });
  }
  const index = await put(
    MEDIA_TYPES.index,
    json({ schemaVersion: 2, mediaType: MEDIA_TYPES.index, manifests }),
  );

  await writeFile(join(dir, "oci-layout"), json({ imageLayoutVersion: "1.0.0" }));
  await writeFile(
    join(dir, "index.json"),
    json({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.index,
      manifests: [{ ...index, annotations: { "org.opencontainers.image.ref.name": LAYOUT_REF } }],
    }),
  );
  return {
    indexDigest: index.digest,
    manifestDigests: manifests.map((m) => m.digest),
    configDigests: configs.map((c) => c.digest),
    layerDigest: layer.digest,
  };
}

/** /bin/busybox, its applet symlinks and /hello.txt, as tar entries. */
function busyboxRootfs(content: string): TarEntry[] {
  return [
    { type: "dir", path: "bin" },
    { type: "file", path: "bin/busybox", data: readFileSync(BUSYBOX), mode: 0o755 },
    ...BUSYBOX_APPLETS.map(
      (applet): TarEntry => ({ type: "symlink", path: `bin/${applet}`, target: "busybox" }),
    ),
    { type: "file", path: "hello.txt", data: Buffer.from(content, "utf8") },
  ];
}

/**
 * Runs Debian's skopeo (120 s default timeout) with no signature policy and none of the host's
 * credentials; pass `--dest-creds`/`--creds` and `--*-tls-verify=false` as a test needs.
 */
export function skopeo(args: string[], opts: { timeoutMs?: number } = {}): Promise<RunResult> {
  return run(SKOPEO, ["--insecure-policy", ...args], {
    env: {
      PATH: SYSTEM_PATH,
      HOME: "/nonexistent/wharf-skopeo-home",
      REGISTRY_AUTH_FILE: "/nonexistent/wharf-skopeo-auth.json",
    },
    timeoutMs: opts.timeoutMs ?? 120_000,
  });
}
