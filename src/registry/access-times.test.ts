import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { SqliteStore } from "../store/sqlite.ts";
import { FileBlobStore } from "./blob-store.ts";
import { MEDIA } from "./manifest.ts";
import { Registry } from "./registry.ts";

const sha256 = (bytes: Buffer) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
const REPO = "app";
const GRACE = 60_000;
const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function open(): Promise<{ registry: Registry; store: SqliteStore; clock: { now: number } }> {
  const dir = mkdtempSync(join(tmpdir(), "wharf-access-"));
  dirs.push(dir);
  const clock = { now: Date.parse("2026-01-01T00:00:00Z") };
  const store = await SqliteStore.open({ path: join(dir, "registry.db") });
  const registry = new Registry({
    store,
    blobs: new FileBlobStore(join(dir, "blobs"), randomBytes(32)),
    clock: () => new Date(clock.now),
    accountId: "000000000000",
    gcGraceMs: GRACE,
    accessFlushMs: 3_600_000, // written only when asked, in these tests
  });
  await store.transaction((tx) =>
    registry.saveRepository(tx, {
      name: REPO,
      arn: `arn:aws:ecr:us-east-1:000000000000:repository/${REPO}`,
      createdAt: clock.now,
      tagMutability: "MUTABLE",
      scanOnPush: false,
      encryptionType: "AES256",
      kmsKey: null,
      policy: null,
      lifecyclePolicy: null,
      lifecycleUpdatedAt: null,
    }),
  );
  return { registry, store, clock };
}

async function pushBlob(registry: Registry, bytes: Buffer): Promise<string> {
  const id = await registry.startUpload(REPO);
  await registry.appendUpload(REPO, id, [bytes], 0, bytes.length);
  await registry.completeUpload(REPO, id, sha256(bytes));
  return sha256(bytes);
}

describe("pull times and blob touches held in memory", () => {
  it("keep a blob touched since its row was written from collection, and are written on close", async () => {
    const { registry, store, clock } = await open();
    try {
      const digest = await pushBlob(registry, randomBytes(1000));
      const other = await pushBlob(registry, randomBytes(1000));
      clock.now += GRACE + 1000;
      assert.equal(await registry.blobSize(REPO, digest), 1000); // a HEAD: touched in memory only
      const touchedRow = () =>
        store.read((tx) =>
          tx.get<{ touched_at: number }>("SELECT touched_at FROM registry_blobs WHERE digest = ?", digest),
        );
      assert.ok(((await touchedRow())?.touched_at ?? 0) < clock.now - GRACE, "not written yet");
      assert.deepEqual(await registry.collectGarbage(), { blobs: 1, bytes: 1000 });
      assert.equal(await registry.blobSize(REPO, other), undefined);
      assert.equal(await registry.blobSize(REPO, digest), 1000);

      await registry.close();
      assert.equal((await touchedRow())?.touched_at, clock.now);
      clock.now += GRACE + 1000;
      assert.deepEqual(await registry.collectGarbage(), { blobs: 1, bytes: 1000 });
    } finally {
      await store.close();
    }
  });

  it("answer the last pull time before it is written, and write the latest", async () => {
    const { registry, store, clock } = await open();
    try {
      const config = Buffer.from("{}");
      const manifest = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: MEDIA.ociManifest,
          config: {
            mediaType: "application/vnd.oci.image.config.v1+json",
            digest: await pushBlob(registry, config),
            size: config.length,
          },
          layers: [],
        }),
      );
      const { digest } = await registry.putManifest(REPO, "v1", manifest, MEDIA.ociManifest);
      const record = async () => {
        const found = await store.read((tx) => registry.findManifest(tx, REPO, digest));
        assert.ok(found !== undefined);
        return found;
      };
      assert.equal(registry.lastPulledAt(await record()), null);
      const first = clock.now;
      registry.recordPull(REPO, digest);
      clock.now += 5000;
      registry.recordPull(REPO, digest);
      assert.equal((await record()).lastPulledAt, null, "not written yet");
      assert.equal(registry.lastPulledAt(await record()), first + 5000);
      await registry.close();
      assert.equal((await record()).lastPulledAt, first + 5000);
      assert.equal(registry.lastPulledAt(await record()), first + 5000);
    } finally {
      await store.close();
    }
  });
});
