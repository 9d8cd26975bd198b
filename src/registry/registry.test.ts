import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { SqliteStore } from "../store/sqlite.ts";
import { type BlobStore, FileBlobStore } from "./blob-store.ts";
import { MEDIA } from "./manifest.ts";
import { Registry } from "./registry.ts";

const sha256 = (bytes: Buffer) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
const REPO = "app";

/** The file store, with a hook that runs right after small content (a manifest) is written. */
function hooked(inner: FileBlobStore): BlobStore & { afterPutSmall?: () => Promise<void> } {
  const store: BlobStore & { afterPutSmall?: () => Promise<void> } = {
    size: (digest) => inner.size(digest),
    read: (digest, size, start, end) => inner.read(digest, size, start, end),
    readAll: (digest, size) => inner.readAll(digest, size),
    pipe: (digest, size, start, end, sink) => inner.pipe(digest, size, start, end, sink),
    async putSmall(digest, bytes) {
      await inner.putSmall(digest, bytes);
      await store.afterPutSmall?.();
    },
    uploadLength: (id) => inner.uploadLength(id),
    append: (id, length, source, limit) => inner.append(id, length, source, limit),
    digestOf: (id, length, algorithm) => inner.digestOf(id, length, algorithm),
    commit: (id, digest) => inner.commit(id, digest),
    removeUpload: (id) => inner.removeUpload(id),
    trash: (digest) => inner.trash(digest),
    restore: (digest) => inner.restore(digest),
    purge: (digest) => inner.purge(digest),
    recoverTrash: (wanted) => inner.recoverTrash(wanted),
    close: () => inner.close(),
  };
  return store;
}

describe("Registry", () => {
  const dir = mkdtempSync(join(tmpdir(), "wharf-registry-"));
  let store: SqliteStore;
  let blobs: ReturnType<typeof hooked>;
  let registry: Registry;

  before(async () => {
    store = await SqliteStore.open({ path: join(dir, "registry.db") });
    blobs = hooked(new FileBlobStore(join(dir, "blobs"), randomBytes(32)));
    registry = new Registry({
      store,
      blobs,
      clock: () => new Date(),
      accountId: "000000000000",
      gcGraceMs: 0,
    });
    await store.transaction((tx) =>
      registry.saveRepository(tx, {
        name: REPO,
        arn: `arn:aws:ecr:us-east-1:000000000000:repository/${REPO}`,
        createdAt: Date.now(),
        tagMutability: "MUTABLE",
        scanOnPush: false,
        encryptionType: "AES256",
        kmsKey: null,
        policy: null,
        lifecyclePolicy: null,
        lifecycleUpdatedAt: null,
      }),
    );
  });
  after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function pushBlob(bytes: Buffer): Promise<string> {
    const id = await registry.startUpload(REPO);
    await registry.appendUpload(REPO, id, [bytes], 0, bytes.length);
    await registry.completeUpload(REPO, id, sha256(bytes));
    return sha256(bytes);
  }

  function manifest(config: Buffer, layer: Buffer, note: string): Buffer {
    return Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA.ociManifest,
        config: {
          mediaType: "application/vnd.oci.image.config.v1+json",
          digest: sha256(config),
          size: config.length,
        },
        layers: [
          { mediaType: "application/vnd.oci.image.layer.v1.tar", digest: sha256(layer), size: layer.length },
        ],
        annotations: { note },
      }),
    );
  }

  it("keeps a manifest whole when it is pushed again while GC collects its old bytes", async () => {
    const config = Buffer.from('{"os":"linux"}');
    const layer = randomBytes(1000);
    await pushBlob(config);
    await pushBlob(layer);
    await registry.putManifest(REPO, "anchor", manifest(config, layer, "anchor"), MEDIA.ociManifest);
    const bytes = manifest(config, layer, "again");
    const { digest } = await registry.putManifest(REPO, "again", bytes, MEDIA.ociManifest);
    assert.ok(await registry.deleteManifest(REPO, digest)); // its bytes are garbage now

    // Collection starts the moment the bytes are back in place, before the push commits.
    let collection: Promise<unknown> = Promise.resolve();
    blobs.afterPutSmall = async () => {
      blobs.afterPutSmall = undefined;
      collection = registry.collectGarbage();
      await Promise.race([collection, sleep(200)]);
    };
    await registry.putManifest(REPO, "again", bytes, MEDIA.ociManifest);
    await collection;
    await registry.collectGarbage();

    const fresh = new Registry({ store, blobs, clock: () => new Date(), accountId: "000000000000" });
    const got = await fresh.getManifest(REPO, "again");
    assert.equal(got?.digest, digest);
    assert.deepEqual(got?.bytes, bytes);
  });

  it("writes a retried chunk only after the attempt it replaces has ended", async () => {
    const data = randomBytes(700_000);
    const id = await registry.startUpload(REPO);
    await registry.appendUpload(REPO, id, [data.subarray(0, 100_000)], 0, 100_000);

    // The first attempt sends 300 000 bytes, stalls, sends 300 000 more of the wrong bytes,
    // then breaks; the client has meanwhile retried the chunk on a new connection.
    let release: () => void = () => {};
    const stalled = new Promise<void>((resolve) => {
      release = resolve;
    });
    let firstSent = false;
    const firstAttempt = registry.appendUpload(
      REPO,
      id,
      (async function* () {
        yield data.subarray(100_000, 400_000);
        firstSent = true;
        await stalled;
        yield randomBytes(300_000);
        throw new Error("connection reset");
      })(),
      100_000,
      600_000,
    );
    while (!firstSent) await sleep(5);
    const retry = registry.appendUpload(REPO, id, [data.subarray(100_000)], 100_000, 600_000);
    await sleep(50);
    release();
    await assert.rejects(firstAttempt, /connection reset/);
    assert.equal(await retry, data.length);
    assert.equal(await registry.completeUpload(REPO, id, sha256(data)), data.length);
    const chunks: Buffer[] = [];
    for await (const chunk of registry.readBlob(sha256(data), data.length)) chunks.push(chunk as Buffer);
    assert.deepEqual(Buffer.concat(chunks), data);
  });
});
