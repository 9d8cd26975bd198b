import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { FileBlobStore, randomUploadId } from "./blob-store.ts";
import { SealPool, SealWorkerError } from "./seal-pool.ts";
import { SealedAppender, SealedFileError } from "./sealed-file.ts";
import { HEADER_BYTES, OVERHEAD, readHeader } from "./sealed-format.ts";

const dir = mkdtempSync(join(tmpdir(), "wharf-seal-pool-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const sha256 = (bytes: Buffer) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;

function segment(bytes: Buffer): ArrayBuffer {
  const buffer = new ArrayBuffer(bytes.length);
  bytes.copy(Buffer.from(buffer));
  return buffer;
}

async function* pieces(bytes: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < bytes.length; offset += size) yield bytes.subarray(offset, offset + size);
}

for (const native of [true, false]) {
  describe(`the sealing pool, AES-GCM ${native ? "in place" : "through node:crypto"}`, () => {
    it("fails a request whose write fails, and drops that upload's running hash", async () => {
      const pool = new SealPool(1, undefined, native);
      try {
        await (await open(join(dir, "read-only"), "w")).close();
        const handle = await open(join(dir, "read-only"), "r"); // so writing to it fails
        const fd = handle.fd;
        const request = {
          upload: "a",
          hashFrom: 0,
          index: 0,
          position: 0,
          key: randomBytes(32),
          length: 10,
        };
        assert.ok(
          (await pool.seal({
            ...request,
            hash: "start",
            fd: -1,
            buffer: segment(randomBytes(10)),
          })) instanceof ArrayBuffer,
        );
        assert.notEqual(await pool.digest("a"), undefined);
        await assert.rejects(
          pool.seal({ ...request, hash: "continue", fd, buffer: segment(randomBytes(10)) }),
          (error: unknown) => error instanceof SealWorkerError && /EBADF/.test(error.message),
        );
        assert.equal(await pool.digest("a"), undefined);
        // The worker lives on: a new hash starts and counts only what it is given.
        const bytes = randomBytes(10);
        await pool.seal({ ...request, upload: "b", hash: "start", fd: -1, buffer: segment(bytes) });
        assert.equal(`sha256:${await pool.digest("b")}`, sha256(bytes));
        await handle.close();
      } finally {
        await pool.close();
      }
    });

    it("fails what is in flight when its worker stops, and takes no more work once closed", async () => {
      const pool = new SealPool(1, undefined, native);
      const big = randomBytes(8 * 1024 * 1024);
      const jobs = Array.from({ length: 8 }, (_, i) =>
        pool.seal({
          upload: `u${i}`,
          hash: "start",
          hashFrom: 0,
          index: 0,
          position: 0,
          fd: -1,
          key: randomBytes(32),
          buffer: segment(big),
          length: big.length,
        }),
      );
      await pool.close();
      const outcomes = await Promise.allSettled(jobs);
      assert.ok(
        outcomes.some((o) => o.status === "rejected" && o.reason instanceof SealWorkerError),
        "some request was cut off",
      );
      assert.equal(await pool.digest("u7"), undefined);
      await assert.rejects(
        pool.seal({
          upload: "late",
          hash: "none",
          hashFrom: 0,
          index: 0,
          position: 0,
          fd: -1,
          key: randomBytes(32),
          buffer: new ArrayBuffer(1),
          length: 1,
        }),
        SealWorkerError,
      );
    });

    it("lets the blob store read an upload back when its running hash is gone", async () => {
      const pool = new SealPool(2, undefined, native);
      const store = new FileBlobStore(join(dir, "store"), randomBytes(32), pool);
      try {
        const data = randomBytes(3 * 1024 * 1024 + 5);
        const id = randomUploadId();
        const first = await store.append(id, 0, pieces(data.subarray(0, 1_500_000), 65_536));
        await pool.forget(id); // as if its worker had stopped since
        const total = await store.append(id, first, pieces(data.subarray(first), 65_536));
        assert.equal(total, data.length);
        assert.equal(await store.digestOf(id, total, "sha256"), sha256(data));

        // And with the hash kept, across appends that re-open a partial segment.
        const other = randomUploadId();
        let length = 0;
        for (const cut of [100_000, 1_048_576, 1_048_577, 2_500_000, data.length]) {
          length = await store.append(other, length, pieces(data.subarray(length, cut), 30_000));
        }
        assert.equal(await store.digestOf(other, length, "sha256"), sha256(data));
        await store.commit(other, sha256(data));
        assert.deepEqual(await store.readAll(sha256(data), data.length), data);
      } finally {
        await store.close();
      }
    });

    it("opens segments into shared buffers, reused by number, and past its limit into one-off ones", async () => {
      const segmentBytes = 4096;
      const pool = new SealPool(2, 3 * segmentBytes, native);
      const masterKey = randomBytes(32);
      const data = randomBytes(5 * segmentBytes + 100);
      const path = join(dir, "shared");
      const appender = await SealedAppender.open(path, masterKey, 0, segmentBytes);
      await appender.write(data);
      await appender.close();
      const handle = await open(path, "r");
      try {
        const { key } = await readHeader(handle, masterKey);
        const request = (index: number) => ({
          fd: handle.fd,
          key,
          segmentBytes,
          index,
          plainBytes: Math.min(segmentBytes, data.length - index * segmentBytes),
        });
        const expect = (index: number) => data.subarray(index * segmentBytes, (index + 1) * segmentBytes);
        // Four at once: three numbered buffers, then a one-off; both workers get some.
        const buffers = [0, 1, 2, 3].map(() => pool.takeShared(segmentBytes));
        assert.deepEqual(
          buffers.map((b) => b.id),
          [1, 2, 3, 0],
        );
        const lengths = await Promise.all(buffers.map((into, index) => pool.open(request(index), into)));
        buffers.forEach((into, index) => {
          assert.ok(into.bytes.subarray(0, lengths[index]).equals(expect(index)), `segment ${index}`);
        });
        for (const into of buffers) pool.giveShared(into);
        // Numbered buffers come back, and workers that know them already are sent only the number.
        for (let round = 0; round < 4; round++) {
          const into = pool.takeShared(segmentBytes);
          assert.notEqual(into.id, 0);
          const index = round + 1;
          const length = await pool.open(request(index), into);
          assert.ok(into.bytes.subarray(0, length).equals(expect(index)));
          pool.giveShared(into);
        }
        // A forged segment fails and leaves none of its plaintext in the buffer: node:crypto never
        // writes it there, the in-place cipher zeroes what it decrypted.
        const bytes = readFileSync(path);
        const at = HEADER_BYTES + 2 * (segmentBytes + OVERHEAD) + 40;
        bytes[at] = (bytes[at] as number) ^ 1;
        writeFileSync(path, bytes);
        const into = pool.takeShared(segmentBytes);
        into.bytes.fill(0xaa);
        await assert.rejects(pool.open(request(2), into), SealedFileError);
        const left = pool.nativeGcm ? 0 : 0xaa;
        assert.ok(into.bytes.every((byte) => byte === left));
      } finally {
        await handle.close();
        await pool.close();
      }
    });
  });
}

describe("the sealing pool", () => {
  it("stops a worker that leaves a request unanswered past the timeout, and fails what it held", async () => {
    // 1 ms: a worker is still loading (tsx, the addon) long after that, so nothing is answered in time.
    const pool = new SealPool(1, undefined, true, 1);
    const request = { upload: "a", hash: "start", hashFrom: 0, index: 0, position: 0, fd: -1 } as const;
    try {
      await assert.rejects(
        pool.seal({ ...request, key: Buffer.alloc(32), length: 16, buffer: new ArrayBuffer(16) }),
        (error: unknown) => error instanceof SealWorkerError && /stopped/.test(error.message),
      );
      assert.equal(await pool.digest("a"), undefined);
    } finally {
      await pool.close();
    }
  });

  it("keeps the process alive until close() resolves, even when a reply arrives while stopping", () => {
    // A process with nothing else to do: were a worker unreferenced again by the reply to
    // `forget` after close() began, the event loop would end with close() still pending
    // (Node exits with 13, "unsettled top-level await").
    const script = `
      const { SealPool } = await import(${JSON.stringify(new URL("./seal-pool.ts", import.meta.url).href)});
      for (let i = 0; i < 30; i++) {
        const pool = new SealPool(2);
        const request = { upload: "a", hash: "start", hashFrom: 0, index: 0, position: 0, fd: -1 };
        await pool.seal({ ...request, key: Buffer.alloc(32), length: 16, buffer: new ArrayBuffer(16) });
        const forgotten = pool.forget("a");
        await pool.close();
        await forgotten;
      }
      console.log("closed");
    `;
    const file = join(dir, "close-while-replying.mjs");
    writeFileSync(file, script);
    const child = spawnSync(process.execPath, ["--import", "tsx", file], {
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.equal(child.stdout.trim(), "closed", child.stderr);
    assert.equal(child.status, 0);
  });
});
