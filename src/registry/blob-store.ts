import { createHash, randomUUID } from "node:crypto";
import { mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { ServerResponse } from "node:http";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { algorithmOf } from "./names.ts";
import { SealPool } from "./seal-pool.ts";
import {
  type PoolUpload,
  readSealed,
  SEGMENT_BYTES,
  SealedAppender,
  sealedLayout,
  sealedLength,
  sealedSize,
} from "./sealed-file.ts";
import { pipeSealed } from "./sealed-pipe.ts";
import { canSendSealed, sendSealed } from "./sealed-send.ts";

/**
 * Content-addressed blob storage. Uploads are written (sealed) under
 * `uploads/`, hashed as they stream in, and made visible by one atomic rename
 * into `blobs/` once their digest is verified; nothing half-written is ever
 * at a blob's path. Every path is drawn here:
 *
 *   <root>/blobs/<alg>/<first two hex>/<hex>   committed blobs
 *   <root>/uploads/<upload id>                 uploads in progress
 *   <root>/trash/<alg>-<hex>                   blobs being collected
 */
export interface BlobStore {
  /** Plaintext size of a committed blob, or undefined. */
  size(digest: string): Promise<number | undefined>;
  /** Streams bytes [start, end] of a committed blob of `size` bytes. */
  read(digest: string, size: number, start?: number, end?: number): Readable;
  readAll(digest: string, size: number): Promise<Buffer>;
  /**
   * Writes bytes [start, end] of a committed blob of `size` bytes to `sink` (which must not hold
   * a chunk after its write callback, as a socket does not), opening it off the event loop. An
   * HTTP response on a plain TCP socket gets them from the addon's thread (sealed-send.ts), its
   * headers flushed first.
   */
  pipe(digest: string, size: number, start: number, end: number, sink: Writable): Promise<void>;
  /** Stores small content (manifests) whose digest the caller computed. */
  putSmall(digest: string, bytes: Buffer): Promise<void>;
  /** Bytes an upload holds so far, as recorded on disk. */
  uploadLength(uploadId: string): Promise<number>;
  /** Appends a stream to an upload holding `length` bytes; returns the new length. */
  append(
    uploadId: string,
    length: number,
    source: AsyncIterable<Buffer> | Iterable<Buffer>,
    limit?: number,
  ): Promise<number>;
  /**
   * The digest of an upload's bytes (using the running hash when it is current). Anything
   * past `length` that a cut-off append left in the file is dropped first (and an empty
   * upload gets its file), so what is committed holds exactly the blob.
   */
  digestOf(uploadId: string, length: number, algorithm: "sha256" | "sha512"): Promise<string>;
  /** Moves a verified upload to its blob path. */
  commit(uploadId: string, digest: string): Promise<void>;
  removeUpload(uploadId: string): Promise<void>;
  /** Moves a blob aside (within a transaction that deletes its row); `restore` undoes, `purge` finishes. */
  trash(digest: string): void;
  restore(digest: string): void;
  purge(digest: string): Promise<void>;
  /** After a crash: blobs left in the trash go back if still referenced, else away. */
  recoverTrash(stillWanted: (digest: string) => boolean): void;
  /** Releases what the store runs (worker threads); called once uploads have ended. */
  close(): Promise<void>;
}

export class UploadTooLarge extends Error {}

/** An upload whose running sha256 a sealing worker holds, covering its first `length` bytes. */
interface RunningHash {
  length: number;
}

export class FileBlobStore implements BlobStore {
  private readonly root: string;
  private readonly masterKey: Buffer;
  /** Uploads in progress with a running hash, so a PUT after PATCHes need not re-read the bytes. */
  private readonly hashes = new Map<string, RunningHash>();
  /** Worker threads that hash and seal uploads off the event loop. */
  private readonly pool: SealPool;

  constructor(root: string, masterKey: Buffer, pool = new SealPool()) {
    this.root = root;
    this.masterKey = masterKey;
    this.pool = pool;
    for (const dir of ["blobs", "uploads", "trash"])
      mkdirSync(join(root, dir), { recursive: true, mode: 0o700 });
  }

  private blobPath(digest: string): string {
    const [algorithm, hex] = digest.split(":") as [string, string];
    return join(this.root, "blobs", algorithm, hex.slice(0, 2), hex);
  }

  private uploadPath(uploadId: string): string {
    if (!/^[a-f0-9-]{36}$/.test(uploadId)) throw new Error("bad upload id");
    return join(this.root, "uploads", uploadId);
  }

  private trashPath(digest: string): string {
    return join(this.root, "trash", digest.replace(":", "-"));
  }

  async size(digest: string): Promise<number | undefined> {
    try {
      return await sealedLength(this.blobPath(digest));
    } catch {
      return undefined;
    }
  }

  read(digest: string, size: number, start = 0, end = size - 1): Readable {
    return readSealed(this.blobPath(digest), this.masterKey, size, start, end);
  }

  pipe(digest: string, size: number, start: number, end: number, sink: Writable): Promise<void> {
    if (sink instanceof ServerResponse && canSendSealed(sink))
      return sendSealed(this.blobPath(digest), this.masterKey, size, start, end, sink);
    return pipeSealed(this.blobPath(digest), this.masterKey, size, start, end, sink, this.pool);
  }

  async readAll(digest: string, size: number): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of this.read(digest, size)) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  async putSmall(digest: string, bytes: Buffer): Promise<void> {
    if ((await this.size(digest)) === bytes.length) return;
    const id = randomUploadId();
    const appender = await SealedAppender.open(this.uploadPath(id), this.masterKey, 0);
    try {
      await appender.write(bytes);
      await appender.close();
      await this.commit(id, digest);
    } catch (error) {
      await this.removeUpload(id);
      throw error;
    }
  }

  async uploadLength(uploadId: string): Promise<number> {
    try {
      return (await sealedLength(this.uploadPath(uploadId))) ?? 0;
    } catch {
      return 0;
    }
  }

  async append(
    uploadId: string,
    length: number,
    source: AsyncIterable<Buffer> | Iterable<Buffer>,
    limit = Number.MAX_SAFE_INTEGER,
  ) {
    const running = this.hashes.get(uploadId);
    const hash: PoolUpload["hash"] =
      length === 0 ? "start" : running?.length === length ? "continue" : "none";
    this.hashes.delete(uploadId);
    const appender = await SealedAppender.open(
      this.uploadPath(uploadId),
      this.masterKey,
      length,
      SEGMENT_BYTES,
      {
        pool: this.pool,
        upload: uploadId,
        hash,
      },
    );
    let total = length;
    try {
      for await (const chunk of source) {
        total += chunk.length;
        if (total > limit) throw new UploadTooLarge(`upload exceeds ${limit} bytes`);
        await appender.write(chunk);
      }
      await appender.close();
    } catch (error) {
      await appender.abandon();
      await this.pool.forget(uploadId);
      throw error;
    }
    if (hash !== "none") this.hashes.set(uploadId, { length: total });
    return total;
  }

  async digestOf(uploadId: string, length: number, algorithm: "sha256" | "sha512"): Promise<string> {
    // (An empty upload may have no file at all yet.)
    const path = this.uploadPath(uploadId);
    const layout = length === 0 ? undefined : await sealedLayout(path);
    if (layout === undefined || layout.fileBytes !== sealedSize(length, layout.segmentBytes)) {
      await (await SealedAppender.open(path, this.masterKey, length)).close();
    }
    const running = this.hashes.get(uploadId);
    if (running !== undefined && running.length === length && algorithm === "sha256") {
      const hex = length === 0 ? undefined : await this.pool.digest(uploadId);
      if (hex !== undefined) return `sha256:${hex}`;
    }
    const hash = createHash(algorithm);
    if (length > 0) {
      for await (const chunk of readSealed(this.uploadPath(uploadId), this.masterKey, length))
        hash.update(chunk as Buffer);
    }
    return `${algorithm}:${hash.digest("hex")}`;
  }

  async commit(uploadId: string, digest: string): Promise<void> {
    algorithmOf(digest);
    const target = this.blobPath(digest);
    mkdirSync(join(target, ".."), { recursive: true, mode: 0o700 });
    await rename(this.uploadPath(uploadId), target);
    this.hashes.delete(uploadId); // (the caller removes the upload, and with it the worker's hash)
  }

  async removeUpload(uploadId: string): Promise<void> {
    this.hashes.delete(uploadId);
    await this.pool.forget(uploadId);
    await rm(this.uploadPath(uploadId), { force: true });
  }

  /** Stops the sealing workers (uploads have ended). */
  async close(): Promise<void> {
    await this.pool.close();
  }

  trash(digest: string): void {
    try {
      renameSync(this.blobPath(digest), this.trashPath(digest));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
  }

  restore(digest: string): void {
    try {
      renameSync(this.trashPath(digest), this.blobPath(digest));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
  }

  async purge(digest: string): Promise<void> {
    await rm(this.trashPath(digest), { force: true });
  }

  recoverTrash(stillWanted: (digest: string) => boolean): void {
    for (const entry of readdirSync(join(this.root, "trash"))) {
      const digest = entry.replace("-", ":");
      if (stillWanted(digest)) {
        mkdirSync(join(this.blobPath(digest), ".."), { recursive: true, mode: 0o700 });
        this.restore(digest);
      } else rmSync(this.trashPath(digest), { force: true });
    }
  }

  /** Whether a committed blob file is present (for tests and recovery checks). */
  exists(digest: string): boolean {
    try {
      statSync(this.blobPath(digest));
      return true;
    } catch {
      return false;
    }
  }
}

export function randomUploadId(): string {
  return randomUUID();
}
