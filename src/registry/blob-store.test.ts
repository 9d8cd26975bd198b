import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { FileBlobStore, randomUploadId, UploadTooLarge } from "./blob-store.ts";
import { SEGMENT_BYTES, sealedSize } from "./sealed-file.ts";

const root = mkdtempSync(join(tmpdir(), "wharf-blobs-"));
after(() => rmSync(root, { recursive: true, force: true }));
const store = new FileBlobStore(root, randomBytes(32));

const sha256 = (bytes: Buffer) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;

function blobFile(digest: string): string {
  const hex = digest.slice("sha256:".length);
  return join(root, "blobs", "sha256", hex.slice(0, 2), hex);
}

async function readAll(digest: string, size: number, start?: number, end?: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of store.read(digest, size, start, end)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A request body that delivers `bytes` in pieces and then, optionally, breaks off. */
async function* body(bytes: Buffer, piece: number, breakAfter?: number): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < bytes.length; offset += piece) {
    if (breakAfter !== undefined && offset >= breakAfter) throw new Error("client went away");
    yield bytes.subarray(offset, offset + piece);
  }
}

describe("FileBlobStore", () => {
  it("streams an upload in, verifies and commits it, and serves byte ranges", async () => {
    const data = randomBytes(SEGMENT_BYTES + 70_000);
    const id = randomUploadId();
    let length = await store.append(id, 0, body(data.subarray(0, 100_000), 10_000));
    length = await store.append(id, length, body(data.subarray(length), 33_333));
    assert.equal(length, data.length);
    const digest = sha256(data);
    assert.equal(await store.digestOf(id, length, "sha256"), digest);
    await store.commit(id, digest);
    assert.equal(await store.size(digest), data.length);
    assert.deepEqual(await store.readAll(digest, data.length), data);
    assert.deepEqual(
      await readAll(digest, data.length, SEGMENT_BYTES - 3, SEGMENT_BYTES + 3),
      data.subarray(SEGMENT_BYTES - 3, SEGMENT_BYTES + 4),
    );
    assert.equal(existsSync(join(root, "uploads", id)), false);
  });

  it("keeps an upload at its recorded length when a chunk breaks off, and resumes it", async () => {
    const data = randomBytes(3 * SEGMENT_BYTES);
    const id = randomUploadId();
    const first = await store.append(id, 0, body(data.subarray(0, 123_456), 50_000));
    // The next chunk breaks off after crossing a segment boundary.
    await assert.rejects(store.append(id, first, body(data.subarray(first), 64_000, 400_000)), /went away/);
    const total = await store.append(id, first, body(data.subarray(first), 64_000));
    assert.equal(total, data.length);
    const digest = sha256(data);
    assert.equal(await store.digestOf(id, total, "sha256"), digest);
    await store.commit(id, digest);
    assert.deepEqual(await store.readAll(digest, data.length), data);
  });

  it("commits exactly the recorded bytes when a refused chunk left more in the file", async () => {
    const data = randomBytes(5000);
    const id = randomUploadId();
    const length = await store.append(id, 0, [data]);
    await assert.rejects(store.append(id, length, [randomBytes(SEGMENT_BYTES)], length + 10), UploadTooLarge);
    const digest = sha256(data);
    assert.equal(await store.digestOf(id, length, "sha256"), digest);
    await store.commit(id, digest);
    assert.equal(statSync(blobFile(digest)).size, sealedSize(data.length));
    assert.deepEqual(await store.readAll(digest, data.length), data);
  });

  it("commits an empty upload that never received a byte", async () => {
    const id = randomUploadId();
    const digest = sha256(Buffer.alloc(0));
    assert.equal(await store.digestOf(id, 0, "sha256"), digest);
    await store.commit(id, digest);
    assert.equal(await store.size(digest), 0);
    assert.deepEqual(await store.readAll(digest, 0), Buffer.alloc(0));
  });

  it("hashes with sha512 by reading the upload back", async () => {
    const data = randomBytes(10_000);
    const id = randomUploadId();
    await store.append(id, 0, [data]);
    const digest = `sha512:${createHash("sha512").update(data).digest("hex")}`;
    assert.equal(await store.digestOf(id, data.length, "sha512"), digest);
    await store.removeUpload(id);
    assert.equal(existsSync(join(root, "uploads", id)), false);
  });

  it("stores small content once and moves blobs through the trash", async () => {
    const manifest = Buffer.from('{"schemaVersion":2}');
    const digest = sha256(manifest);
    await store.putSmall(digest, manifest);
    await store.putSmall(digest, manifest);
    assert.deepEqual(await store.readAll(digest, manifest.length), manifest);

    store.trash(digest);
    assert.equal(await store.size(digest), undefined);
    store.restore(digest);
    assert.deepEqual(await store.readAll(digest, manifest.length), manifest);

    const other = Buffer.from("garbage");
    const otherDigest = sha256(other);
    await store.putSmall(otherDigest, other);
    store.trash(digest);
    store.trash(otherDigest);
    // After a crash mid-collection: what is still wanted comes back, the rest goes.
    store.recoverTrash((d) => d === digest);
    assert.deepEqual(await store.readAll(digest, manifest.length), manifest);
    assert.equal(store.exists(otherDigest), false);
    assert.deepEqual(readdirSync(join(root, "trash")), []);

    store.trash(digest);
    await store.purge(digest);
    assert.equal(store.exists(digest), false);
  });
});
