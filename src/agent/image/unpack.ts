// Flattens an image's layers, in order, into one directory, applying OCI whiteouts. Each layer is
// streamed from its cached blob through two digest checks (the blob digest, and the diff_id of the
// uncompressed tar) into the tar parser; a mismatch fails the unpack, which the caller discards.
import { createReadStream } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { extract, type Header } from "tar-stream";
import { DigestVerifier } from "./digest.ts";
import {
  checkParents,
  createEntry,
  type EntryHeader,
  type EntryType,
  entryParts,
  finishDirectory,
  lstatOrUndefined,
  removePath,
  unsafe,
} from "./entry.ts";
import { asImageError, ImageError, isFileSystemError } from "./errors.ts";
import type { LayerCompression } from "./manifest.ts";

export interface LayerBlob {
  /** The cached (compressed) blob. */
  path: string;
  digest: string;
  /** The digest of the uncompressed tar, from the config's rootfs.diff_ids. */
  diffId: string;
  compression: LayerCompression;
}

const WHITEOUT_PREFIX = ".wh.";
const OPAQUE_WHITEOUT = ".wh..wh..opq";

const ENTRY_TYPES: Record<string, EntryType> = {
  file: "file",
  "contiguous-file": "file",
  directory: "directory",
  symlink: "symlink",
  link: "link",
  "character-device": "device",
  "block-device": "device",
  fifo: "fifo",
};

/** Mode and mtime of each directory (by relative path), applied deepest first at the end. */
type DirectoryMetadata = Map<string, { mode: number; mtime: Date }>;

/**
 * Unpacks `layers` in order into `root` (an existing, empty directory). Regular files,
 * directories, symlinks and hard links are created with their modes (setuid included), owners
 * (when running as root) and mtimes; devices and fifos are skipped. Throws INVALID_LAYER for an
 * entry that would escape `root`, DIGEST_MISMATCH for corrupt content; `root` is then left
 * half-written for the caller to delete.
 */
export async function unpackLayers(root: string, layers: LayerBlob[], signal?: AbortSignal): Promise<void> {
  const directories: DirectoryMetadata = new Map();
  for (const [i, layer] of layers.entries()) {
    signal?.throwIfAborted();
    await applyLayer(root, layer, `layer ${i + 1}/${layers.length} ${layer.digest}`, directories, signal);
  }
  const deepestFirst = [...directories].sort(([a], [b]) => b.split("/").length - a.split("/").length);
  for (const [rel, { mode, mtime }] of deepestFirst) await finishDirectory(join(root, rel), mode, mtime);
}

async function applyLayer(
  root: string,
  layer: LayerBlob,
  what: string,
  directories: DirectoryMetadata,
  signal: AbortSignal | undefined,
): Promise<void> {
  /** Paths this layer created, and their ancestors: no whiteout of this layer removes them. */
  const kept = new Set<string>();
  const forget = (rel: string): void => {
    for (const path of directories.keys()) {
      if (path === rel || path.startsWith(`${rel}/`)) directories.delete(path);
    }
  };

  const tar = extract();
  const piping = pipeline(
    createReadStream(layer.path),
    new DigestVerifier(layer.digest, what),
    layer.compression === "gzip" ? createGunzip() : new PassThrough(),
    new DigestVerifier(layer.diffId, `${what} (uncompressed, diff_id ${layer.diffId})`),
    tar,
    { signal },
  );
  piping.catch(() => {}); // awaited below, after the entries

  let entriesError: unknown;
  try {
    for await (const entry of tar) {
      const header = toHeader(entry.header);
      const parts = entryParts(header.name);
      const base = parts.at(-1) ?? "";
      if (base.startsWith(WHITEOUT_PREFIX)) {
        await drain(entry);
        const parent = parts.slice(0, -1);
        if (base === OPAQUE_WHITEOUT) {
          await removeLower(root, parent, kept, header.name, forget, true);
        } else if (!base.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) {
          // other ".wh..wh." names are AUFS bookkeeping, not whiteouts
          const name = base.slice(WHITEOUT_PREFIX.length);
          if (name === "" || name === "." || name === "..") throw unsafe(header.name, "whiteout of no name");
          await removeLower(root, [...parent, name], kept, header.name, forget, false);
        }
        continue;
      }
      const created = await createEntry(root, parts, header, entry);
      await drain(entry);
      if (created === undefined) continue;
      const rel = parts.join("/");
      if (created.type === "directory") directories.set(rel, { mode: header.mode, mtime: header.mtime });
      else if (created.replacedDirectory) forget(rel);
      for (let i = 1; i <= parts.length; i++) kept.add(parts.slice(0, i).join("/"));
    }
  } catch (error) {
    entriesError = error;
  }
  let streamError: unknown;
  try {
    await piping;
  } catch (error) {
    streamError = error;
  }
  // corrupt content explains a parse failure better than the parse failure itself
  const first =
    streamError instanceof ImageError
      ? streamError
      : entriesError instanceof ImageError
        ? entriesError
        : undefined;
  const failure = first ?? entriesError ?? streamError;
  if (failure === undefined) return;
  if (signal?.aborted) throw new ImageError("ABORTED", `${what}: aborted`, { cause: signal.reason });
  throw asImageError(failure, isFileSystemError(failure) ? "STORAGE_ERROR" : "INVALID_LAYER", what);
}

/**
 * Removes what lower layers left at `parts` (for an opaque whiteout: inside the directory at
 * `parts`), sparing what this layer created (`kept`). Parents are checked like entries'.
 */
async function removeLower(
  root: string,
  parts: string[],
  kept: Set<string>,
  name: string,
  forget: (rel: string) => void,
  contentsOnly: boolean,
): Promise<void> {
  // for an opaque directory, the directory itself must be a real directory too
  const checked = contentsOnly ? [...parts, ""] : parts;
  if (!(await checkParents(root, checked, name, false))) return;
  const walk = async (at: string[], removeSelf: boolean): Promise<void> => {
    const rel = at.join("/");
    const path = join(root, ...at);
    const stat = await lstatOrUndefined(path);
    if (stat === undefined) return;
    if (removeSelf && !kept.has(rel)) {
      await removePath(path);
      forget(rel);
      return;
    }
    if (!stat.isDirectory()) return;
    for (const child of await readdir(path)) await walk([...at, child], true);
  };
  await walk(parts, !contentsOnly);
}

function toHeader(raw: Header): EntryHeader {
  // tar-stream reports unknown type flags as null, and a missing link name as null
  const rawType: string | null = raw.type;
  const type = rawType !== null && Object.hasOwn(ENTRY_TYPES, rawType) ? ENTRY_TYPES[rawType] : undefined;
  if (type === undefined) {
    throw new ImageError("INVALID_LAYER", `tar entry "${raw.name}" has an unsupported type (${rawType})`);
  }
  const pax = paxRecords(raw.pax);
  const paxNumber = (key: string): number | undefined => {
    const value = pax[key];
    const parsed = value === undefined ? Number.NaN : Number(value);
    return Number.isFinite(parsed) ? parsed : undefined;
  };
  const paxTime = paxNumber("mtime");
  const linkname: string | null = raw.linkname;
  return {
    name: raw.name,
    type,
    mode: raw.mode & 0o7777,
    uid: paxNumber("uid") ?? raw.uid,
    gid: paxNumber("gid") ?? raw.gid,
    mtime: paxTime === undefined ? raw.mtime : new Date(paxTime * 1000),
    linkname: linkname ?? "",
  };
}

function paxRecords(pax: unknown): Record<string, string> {
  const records: Record<string, string> = {};
  if (typeof pax !== "object" || pax === null) return records;
  for (const [key, value] of Object.entries(pax)) if (typeof value === "string") records[key] = value;
  return records;
}

async function drain(body: AsyncIterable<unknown>): Promise<void> {
  for await (const _chunk of body) {
    // discarded: whiteouts, links and skipped entries carry no content we keep
  }
}
