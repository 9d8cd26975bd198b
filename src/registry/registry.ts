import { createHash } from "node:crypto";
import type { Readable, Writable } from "node:stream";
import type { Store, Tx } from "../store/store.ts";
import { AccessTimes } from "./access-times.ts";
import { type BlobStore, randomUploadId, UploadTooLarge } from "./blob-store.ts";
import { ociError } from "./errors.ts";
import { accepts, MEDIA, type ParsedManifest, parseManifest } from "./manifest.ts";
import { algorithmOf, isDigest, isValidTag, requireDigest } from "./names.ts";

/** A repository as stored. */
export interface RepositoryRecord {
  name: string;
  arn: string;
  createdAt: number;
  tagMutability: "MUTABLE" | "IMMUTABLE";
  scanOnPush: boolean;
  encryptionType: "AES256" | "KMS" | "KMS_DSSE";
  kmsKey: string | null;
  policy: string | null;
  lifecyclePolicy: string | null;
  lifecycleUpdatedAt: number | null;
}

export interface ManifestRecord {
  repo: string;
  digest: string;
  mediaType: string;
  artifactType: string | null;
  subject: string | null;
  size: number;
  imageSize: number;
  annotations: string | null;
  pushedAt: number;
  lastPulledAt: number | null;
}

interface RepositoryRow {
  [column: string]: string | number | null;
  name: string;
  arn: string;
  created_at: number;
  tag_mutability: string;
  scan_on_push: number;
  encryption_type: string;
  kms_key: string | null;
  policy: string | null;
  lifecycle_policy: string | null;
  lifecycle_updated_at: number | null;
}

interface ManifestRow {
  [column: string]: string | number | null;
  repo: string;
  digest: string;
  media_type: string;
  artifact_type: string | null;
  subject: string | null;
  size: number;
  image_size: number;
  annotations: string | null;
  pushed_at: number;
  last_pulled_at: number | null;
}

function repositoryFromRow(row: RepositoryRow): RepositoryRecord {
  return {
    name: row.name,
    arn: row.arn,
    createdAt: row.created_at,
    tagMutability: row.tag_mutability === "IMMUTABLE" ? "IMMUTABLE" : "MUTABLE",
    scanOnPush: row.scan_on_push === 1,
    encryptionType: row.encryption_type as RepositoryRecord["encryptionType"],
    kmsKey: row.kms_key,
    policy: row.policy,
    lifecyclePolicy: row.lifecycle_policy,
    lifecycleUpdatedAt: row.lifecycle_updated_at,
  };
}

export function manifestFromRow(row: ManifestRow): ManifestRecord {
  return {
    repo: row.repo,
    digest: row.digest,
    mediaType: row.media_type,
    artifactType: row.artifact_type,
    subject: row.subject,
    size: row.size,
    imageSize: row.image_size,
    annotations: row.annotations,
    pushedAt: row.pushed_at,
    lastPulledAt: row.last_pulled_at,
  };
}

/** Largest manifest accepted, as distribution's default. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export interface RegistryOptions {
  store: Store;
  blobs: BlobStore;
  clock: () => Date;
  accountId: string;
  /** Unreferenced blobs younger than this are never collected (pushes in flight). */
  gcGraceMs?: number;
  /** How often pull times and blob touches held in memory are written to the store. */
  accessFlushMs?: number;
}

export interface ManifestContent {
  digest: string;
  mediaType: string;
  size: number;
  bytes: Buffer;
}

/**
 * The registry's domain: repositories, blobs, uploads, manifests and tags over
 * the Store (metadata, transactional) and the BlobStore (bytes). Both the OCI
 * /v2/ routes and the ECR API call these; neither writes the tables itself.
 */
export class Registry {
  readonly store: Store;
  readonly blobs: BlobStore;
  private readonly clock: () => Date;
  readonly accountId: string;
  private readonly gcGraceMs: number;
  /** Manifests are small and read often: keep recent ones in memory (by digest; content-addressed, never stale). */
  private readonly manifestCache = new Map<string, Buffer>();
  /** The last queued operation on each upload (see `exclusive`). */
  private readonly uploadQueues = new Map<string, Promise<unknown>>();
  /** Pull times and blob touches, written in batches rather than one transaction per GET/HEAD. */
  private readonly access: AccessTimes;

  constructor(options: RegistryOptions) {
    this.store = options.store;
    this.blobs = options.blobs;
    this.clock = options.clock;
    this.accountId = options.accountId;
    this.gcGraceMs = options.gcGraceMs ?? 60 * 60_000;
    this.access = new AccessTimes(this.store, options.accessFlushMs);
  }

  /**
   * Waits for upload operations still running (a request whose client went away ends its
   * append after the HTTP server has closed), writes the pull times and blob touches still
   * held in memory, and stops the blob store's workers.
   */
  async close(): Promise<void> {
    while (this.uploadQueues.size > 0) await Promise.all(this.uploadQueues.values());
    await this.access.close();
    await this.blobs.close();
  }

  private now(): number {
    return this.clock().getTime();
  }

  // Repositories.

  async findRepository(tx: Tx, name: string): Promise<RepositoryRecord | undefined> {
    const row = await tx.get<RepositoryRow>("SELECT * FROM registry_repositories WHERE name = ?", name);
    return row === undefined ? undefined : repositoryFromRow(row);
  }

  async repository(name: string): Promise<RepositoryRecord> {
    const repo = await this.store.read((tx) => this.findRepository(tx, name));
    if (repo === undefined) throw repositoryUnknown(name, this.accountId);
    return repo;
  }

  async saveRepository(tx: Tx, repo: RepositoryRecord): Promise<void> {
    await tx.run(
      `INSERT INTO registry_repositories (name, arn, created_at, tag_mutability, scan_on_push, encryption_type, kms_key,
         policy, lifecycle_policy, lifecycle_updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET tag_mutability = excluded.tag_mutability, scan_on_push = excluded.scan_on_push,
         policy = excluded.policy, lifecycle_policy = excluded.lifecycle_policy,
         lifecycle_updated_at = excluded.lifecycle_updated_at`,
      repo.name,
      repo.arn,
      repo.createdAt,
      repo.tagMutability,
      repo.scanOnPush ? 1 : 0,
      repo.encryptionType,
      repo.kmsKey,
      repo.policy,
      repo.lifecyclePolicy,
      repo.lifecycleUpdatedAt,
    );
  }

  /** Removes a repository and everything in it; its blobs become garbage for GC. */
  async dropRepository(tx: Tx, name: string): Promise<void> {
    for (const table of [
      "registry_tags",
      "registry_manifest_refs",
      "registry_manifests",
      "registry_repo_blobs",
    ]) {
      await tx.run(`DELETE FROM ${table} WHERE repo = ?`, name);
    }
    await tx.run("DELETE FROM registry_uploads WHERE repo = ?", name);
    await tx.run("DELETE FROM registry_lifecycle_previews WHERE repo = ?", name);
    await tx.run("DELETE FROM registry_repositories WHERE name = ?", name);
  }

  async catalog(last: string | undefined, n: number): Promise<string[]> {
    const rows = await this.store.read((tx) =>
      tx.all<{ name: string }>(
        "SELECT name FROM registry_repositories WHERE name > ? ORDER BY name LIMIT ?",
        last ?? "",
        n,
      ),
    );
    return rows.map((row) => row.name);
  }

  // Blobs.

  /** The size of a blob linked into `repo`, or undefined. Touches it so GC leaves it alone a while. */
  async blobSize(repo: string, digest: string): Promise<number | undefined> {
    const row = await this.store.read((tx) =>
      tx.get<{ size: number }>(
        `SELECT b.size FROM registry_blobs b JOIN registry_repo_blobs l ON l.digest = b.digest
         WHERE l.repo = ? AND b.digest = ?`,
        repo,
        digest,
      ),
    );
    if (row === undefined) return undefined;
    this.access.touch(digest, this.now());
    return row.size;
  }

  readBlob(digest: string, size: number, start?: number, end?: number): Readable {
    return this.blobs.read(digest, size, start, end);
  }

  /** Writes bytes [start, end] of a blob to `sink` (see BlobStore.pipe). */
  pipeBlob(digest: string, size: number, start: number, end: number, sink: Writable): Promise<void> {
    return this.blobs.pipe(digest, size, start, end, sink);
  }

  /** Links an existing blob from `from` into `repo` (cross-repository mount); false when it cannot. */
  async mount(repo: string, digest: string, from: string): Promise<number | undefined> {
    const now = this.now();
    return this.store.transaction(async (tx) => {
      const row = await tx.get<{ size: number }>(
        `SELECT b.size FROM registry_blobs b JOIN registry_repo_blobs l ON l.digest = b.digest
         WHERE l.repo = ? AND b.digest = ?`,
        from,
        digest,
      );
      if (row === undefined) return undefined;
      await tx.run("INSERT OR IGNORE INTO registry_repo_blobs (repo, digest) VALUES (?, ?)", repo, digest);
      await tx.run("UPDATE registry_blobs SET touched_at = ? WHERE digest = ?", now, digest);
      return row.size;
    });
  }

  /** Deletes a blob's link from one repository (the bytes go when GC finds them unreferenced). */
  async unlinkBlob(repo: string, digest: string): Promise<boolean> {
    const changed = await this.store.transaction((tx) =>
      tx.run("DELETE FROM registry_repo_blobs WHERE repo = ? AND digest = ?", repo, digest),
    );
    return changed > 0;
  }

  // Uploads.

  /**
   * Runs operations on one upload one at a time. A client that retries a chunk whose
   * connection broke can arrive before the server has seen the old request end; its bytes
   * must not be written into the file while the old request's still are.
   */
  private exclusive<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.uploadQueues.get(id) ?? Promise.resolve();
    const result = previous.then(fn, fn);
    const settled = result.catch(() => undefined);
    this.uploadQueues.set(id, settled);
    void settled.then(() => {
      if (this.uploadQueues.get(id) === settled) this.uploadQueues.delete(id);
    });
    return result;
  }

  async startUpload(repo: string): Promise<string> {
    const id = randomUploadId();
    const now = this.now();
    await this.store.transaction((tx) =>
      tx.run(
        "INSERT INTO registry_uploads (id, repo, length, created_at, updated_at) VALUES (?, ?, 0, ?, ?)",
        id,
        repo,
        now,
        now,
      ),
    );
    return id;
  }

  /** The bytes an upload holds; BLOB_UPLOAD_UNKNOWN when it does not exist in `repo`. */
  async uploadLength(repo: string, id: string): Promise<number> {
    const row = await this.store.read((tx) =>
      tx.get<{ length: number }>("SELECT length FROM registry_uploads WHERE id = ? AND repo = ?", id, repo),
    );
    if (row === undefined) throw ociError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", { id });
    return row.length;
  }

  /**
   * Appends a chunk at `start` (which must equal the upload's length: chunks
   * arrive in order). The new length is recorded only once the bytes are on
   * disk, so a cut-off chunk is as if never sent and the client can resume.
   */
  async appendUpload(
    repo: string,
    id: string,
    source: AsyncIterable<Buffer> | Iterable<Buffer>,
    start?: number,
    expectedLength?: number,
  ): Promise<number> {
    return this.exclusive(id, () => this.appendInOrder(repo, id, source, start, expectedLength));
  }

  private async appendInOrder(
    repo: string,
    id: string,
    source: AsyncIterable<Buffer> | Iterable<Buffer>,
    start: number | undefined,
    expectedLength: number | undefined,
  ): Promise<number> {
    const length = await this.uploadLength(repo, id);
    if (start !== undefined && start !== length) {
      throw ociError(
        "BLOB_UPLOAD_INVALID",
        `chunk starts at ${start}, upload holds ${length} bytes`,
        undefined,
      );
    }
    let total: number;
    try {
      total = await this.blobs.append(
        id,
        length,
        source,
        expectedLength === undefined ? undefined : length + expectedLength,
      );
    } catch (error) {
      if (error instanceof UploadTooLarge)
        throw ociError("SIZE_INVALID", "chunk is longer than its Content-Length");
      throw error;
    }
    if (expectedLength !== undefined && total - length !== expectedLength) {
      throw ociError("SIZE_INVALID", `received ${total - length} bytes, expected ${expectedLength}`);
    }
    await this.store.transaction((tx) =>
      tx.run("UPDATE registry_uploads SET length = ?, updated_at = ? WHERE id = ?", total, this.now(), id),
    );
    return total;
  }

  /** Verifies the upload against `digest` and makes it a blob of `repo`; the upload ends either way. */
  completeUpload(repo: string, id: string, digest: string): Promise<number> {
    return this.exclusive(id, async () => {
      const length = await this.uploadLength(repo, id);
      requireDigest(digest);
      return this.commitUpload(repo, id, digest, length);
    });
  }

  private async commitUpload(repo: string, id: string, digest: string, length: number): Promise<number> {
    const actual = await this.blobs.digestOf(id, length, algorithmOf(digest));
    if (actual !== digest) {
      await this.dropUpload(id);
      throw ociError("DIGEST_INVALID", "provided digest did not match uploaded content", {
        expected: digest,
        actual,
      });
    }
    const now = this.now();
    await this.store.transaction(async (tx) => {
      const existing = await tx.get<{ size: number }>(
        "SELECT size FROM registry_blobs WHERE digest = ?",
        digest,
      );
      if (existing === undefined || !(await this.blobs.size(digest))) {
        // The rename happens inside the transaction, so GC (also transactional) never sees it half-done.
        await this.blobs.commit(id, digest);
        await tx.run(
          "INSERT INTO registry_blobs (digest, size, created_at, touched_at) VALUES (?, ?, ?, ?) ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at",
          digest,
          length,
          now,
          now,
        );
      } else {
        await tx.run("UPDATE registry_blobs SET touched_at = ? WHERE digest = ?", now, digest);
      }
      await tx.run("INSERT OR IGNORE INTO registry_repo_blobs (repo, digest) VALUES (?, ?)", repo, digest);
      await tx.run("DELETE FROM registry_uploads WHERE id = ?", id);
    });
    await this.blobs.removeUpload(id);
    return length;
  }

  cancelUpload(repo: string, id: string): Promise<void> {
    return this.exclusive(id, async () => {
      await this.uploadLength(repo, id);
      await this.dropUpload(id);
    });
  }

  private async dropUpload(id: string): Promise<void> {
    await this.store.transaction((tx) => tx.run("DELETE FROM registry_uploads WHERE id = ?", id));
    await this.blobs.removeUpload(id);
  }

  // Manifests and tags.

  async findManifest(tx: Tx, repo: string, digest: string): Promise<ManifestRecord | undefined> {
    const row = await tx.get<ManifestRow>(
      "SELECT * FROM registry_manifests WHERE repo = ? AND digest = ?",
      repo,
      digest,
    );
    return row === undefined ? undefined : manifestFromRow(row);
  }

  /** The digest a tag or digest reference names in `repo`, or undefined. */
  async resolve(tx: Tx, repo: string, reference: string): Promise<string | undefined> {
    if (isDigest(reference)) return reference;
    const row = await tx.get<{ digest: string }>(
      "SELECT digest FROM registry_tags WHERE repo = ? AND tag = ?",
      repo,
      reference,
    );
    return row?.digest;
  }

  /**
   * Stores a manifest and, for a tag reference, points the tag at it, in one
   * transaction after checking that everything it references exists here.
   */
  async putManifest(
    repoName: string,
    reference: string,
    bytes: Buffer,
    contentType: string | undefined,
  ): Promise<{ digest: string; parsed: ParsedManifest }> {
    if (bytes.length > MAX_MANIFEST_BYTES) throw ociError("SIZE_INVALID", "manifest is too large");
    const byDigest = isDigest(reference);
    if (!byDigest && !isValidTag(reference))
      throw ociError("TAG_INVALID", "manifest tag did not match URI", { tag: reference });
    const algorithm = byDigest ? algorithmOf(reference) : "sha256";
    const digest = `${algorithm}:${createHash(algorithm).update(bytes).digest("hex")}`;
    if (byDigest && digest !== reference) {
      throw ociError("DIGEST_INVALID", "manifest digest did not match the reference", {
        expected: reference,
        actual: digest,
      });
    }
    const parsed = parseManifest(bytes, contentType);
    const now = this.now();
    await this.store.transaction(async (tx) => {
      const repo = await this.findRepository(tx, repoName);
      if (repo === undefined) throw repositoryUnknown(repoName, this.accountId);
      for (const blob of parsed.blobs) {
        const linked = await tx.get(
          "SELECT 1 AS present FROM registry_repo_blobs WHERE repo = ? AND digest = ?",
          repoName,
          blob.digest,
        );
        if (linked === undefined)
          throw ociError("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry", { digest: blob.digest });
      }
      for (const child of parsed.manifests) {
        if ((await this.findManifest(tx, repoName, child.digest)) === undefined) {
          throw ociError("MANIFEST_BLOB_UNKNOWN", "manifest unknown to registry", { digest: child.digest });
        }
      }
      if (!byDigest && repo.tagMutability === "IMMUTABLE") {
        const current = await this.resolve(tx, repoName, reference);
        if (current !== undefined && current !== digest) {
          throw ociError(
            "TAG_INVALID",
            `The image tag '${reference}' already exists in the '${repoName}' repository and cannot be overwritten because the repository is immutable.`,
          );
        }
      }
      // Written only once the manifest is accepted (a refused one leaves no file behind), and
      // inside the transaction, so GC cannot collect the bytes between this check and the commit.
      await this.blobs.putSmall(digest, bytes);
      const existing = await this.findManifest(tx, repoName, digest);
      if (existing === undefined) {
        await tx.run(
          `INSERT INTO registry_manifests (repo, digest, media_type, artifact_type, subject, size, image_size, annotations, pushed_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          repoName,
          digest,
          parsed.mediaType,
          parsed.artifactType ?? parsed.configMediaType ?? null,
          parsed.subject ?? null,
          bytes.length,
          parsed.imageSize,
          parsed.annotations === undefined ? null : JSON.stringify(parsed.annotations),
          now,
        );
        for (const ref of [...parsed.blobs, ...parsed.manifests]) {
          await tx.run(
            "INSERT OR IGNORE INTO registry_manifest_refs (repo, manifest, ref) VALUES (?, ?, ?)",
            repoName,
            digest,
            ref.digest,
          );
        }
      }
      await tx.run(
        "INSERT INTO registry_blobs (digest, size, created_at, touched_at) VALUES (?, ?, ?, ?) ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at",
        digest,
        bytes.length,
        now,
        now,
      );
      if (!byDigest) {
        await tx.run(
          "INSERT INTO registry_tags (repo, tag, digest, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (repo, tag) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
          repoName,
          reference,
          digest,
          now,
        );
      }
    });
    this.manifestCache.set(digest, bytes);
    return { digest, parsed };
  }

  /** A manifest by tag or digest; with `accept`, an index is resolved to linux/amd64 for clients that cannot take one. */
  async getManifest(repo: string, reference: string, accept?: string): Promise<ManifestContent | undefined> {
    const record = await this.store.read(async (tx) => {
      const digest = await this.resolve(tx, repo, reference);
      return digest === undefined ? undefined : this.findManifest(tx, repo, digest);
    });
    if (record === undefined) return undefined;
    const content = await this.manifestBytes(record);
    if (accept === undefined || accepts(accept, record.mediaType)) return content;
    if (record.mediaType === MEDIA.ociIndex || record.mediaType === MEDIA.dockerList) {
      const index = JSON.parse(content.bytes.toString("utf8")) as {
        manifests: Array<{ digest: string; platform?: { os?: string; architecture?: string } }>;
      };
      const child = index.manifests.find(
        (m) => m.platform?.os === "linux" && m.platform.architecture === "amd64",
      );
      if (child !== undefined) return this.getManifest(repo, child.digest);
    }
    return content;
  }

  async manifestBytes(record: ManifestRecord): Promise<ManifestContent> {
    let bytes = this.manifestCache.get(record.digest);
    if (bytes === undefined) {
      bytes = await this.blobs.readAll(record.digest, record.size);
      if (this.manifestCache.size >= 1024) this.manifestCache.clear();
      this.manifestCache.set(record.digest, bytes);
    }
    return { digest: record.digest, mediaType: record.mediaType, size: record.size, bytes };
  }

  /** Records a pull (ECR's lastRecordedPullTime; held in memory a few seconds, see AccessTimes). */
  recordPull(repo: string, digest: string): void {
    this.access.recordPull(repo, digest, this.now());
  }

  /** When a manifest was last pulled: `stored` (its row's value) or a later pull not yet written. */
  lastPulledAt(manifest: ManifestRecord): number | null {
    return this.access.pulledAt(manifest.repo, manifest.digest, manifest.lastPulledAt);
  }

  /** Deletes a tag, or a manifest by digest with every tag pointing at it. */
  async deleteManifest(repo: string, reference: string): Promise<boolean> {
    return this.store.transaction(async (tx) => {
      if (!isDigest(reference)) {
        return (await tx.run("DELETE FROM registry_tags WHERE repo = ? AND tag = ?", repo, reference)) > 0;
      }
      return this.dropManifest(tx, repo, reference);
    });
  }

  /** Removes a manifest, its tags and references inside a transaction. */
  async dropManifest(tx: Tx, repo: string, digest: string): Promise<boolean> {
    const removed = await tx.run(
      "DELETE FROM registry_manifests WHERE repo = ? AND digest = ?",
      repo,
      digest,
    );
    if (removed === 0) return false;
    await tx.run("DELETE FROM registry_tags WHERE repo = ? AND digest = ?", repo, digest);
    await tx.run("DELETE FROM registry_manifest_refs WHERE repo = ? AND manifest = ?", repo, digest);
    return true;
  }

  async tags(repo: string, last: string | undefined, n: number): Promise<string[]> {
    const rows = await this.store.read((tx) =>
      tx.all<{ tag: string }>(
        "SELECT tag FROM registry_tags WHERE repo = ? AND tag > ? ORDER BY tag LIMIT ?",
        repo,
        last ?? "",
        n,
      ),
    );
    return rows.map((row) => row.tag);
  }

  async referrers(repo: string, subject: string, artifactType?: string): Promise<ManifestRecord[]> {
    const rows = await this.store.read((tx) =>
      tx.all<ManifestRow>(
        "SELECT * FROM registry_manifests WHERE repo = ? AND subject = ? ORDER BY pushed_at, digest",
        repo,
        subject,
      ),
    );
    return rows
      .map(manifestFromRow)
      .filter((m) => artifactType === undefined || m.artifactType === artifactType);
  }

  // Garbage collection.

  /**
   * Deletes blobs that no manifest references, no repository links, and
   * nobody touched within the grace period, and uploads abandoned for a day.
   * Each blob goes in its own transaction, which re-checks it and moves the
   * file aside before committing, so a push that refers to it concurrently
   * either finds it whole or not at all.
   */
  async collectGarbage(): Promise<{ blobs: number; bytes: number }> {
    const cutoff = this.now() - this.gcGraceMs;
    const candidates = await this.store.read((tx) =>
      tx.all<{ digest: string }>(
        `SELECT digest FROM registry_blobs b WHERE touched_at < ?
           AND NOT EXISTS (SELECT 1 FROM registry_manifest_refs r WHERE r.ref = b.digest)
           AND NOT EXISTS (SELECT 1 FROM registry_manifests m WHERE m.digest = b.digest)`,
        cutoff,
      ),
    );
    let blobs = 0;
    let bytes = 0;
    for (const { digest } of candidates) {
      const size = await this.store.transaction(async (tx) => {
        const row = await tx.get<{ size: number }>(
          `SELECT size FROM registry_blobs b WHERE digest = ? AND touched_at < ?
             AND NOT EXISTS (SELECT 1 FROM registry_manifest_refs r WHERE r.ref = b.digest)
             AND NOT EXISTS (SELECT 1 FROM registry_manifests m WHERE m.digest = b.digest)`,
          digest,
          cutoff,
        );
        // A touch still held in memory counts as much as one in the row.
        if (row === undefined || (this.access.touchedAt(digest) ?? 0) >= cutoff) return undefined;
        await tx.run("DELETE FROM registry_repo_blobs WHERE digest = ?", digest);
        await tx.run("DELETE FROM registry_blobs WHERE digest = ?", digest);
        this.blobs.trash(digest);
        return row.size;
      });
      if (size !== undefined) {
        await this.blobs.purge(digest);
        this.manifestCache.delete(digest);
        blobs++;
        bytes += size;
      }
    }
    const stale = await this.store.read((tx) =>
      tx.all<{ id: string }>(
        "SELECT id FROM registry_uploads WHERE updated_at < ?",
        this.now() - 24 * 60 * 60_000,
      ),
    );
    for (const { id } of stale) {
      await this.store.transaction((tx) => tx.run("DELETE FROM registry_uploads WHERE id = ?", id));
      await this.blobs.removeUpload(id);
    }
    return { blobs, bytes };
  }

  /** After a crash mid-collection: files in the trash whose rows survived go back. */
  async recover(): Promise<void> {
    const known = new Set(
      (await this.store.read((tx) => tx.all<{ digest: string }>("SELECT digest FROM registry_blobs"))).map(
        (r) => r.digest,
      ),
    );
    this.blobs.recoverTrash((digest) => known.has(digest));
  }
}

export function repositoryUnknown(name: string, accountId: string) {
  return ociError(
    "NAME_UNKNOWN",
    `The repository with name '${name}' does not exist in the registry with id '${accountId}'`,
    { name },
  );
}
