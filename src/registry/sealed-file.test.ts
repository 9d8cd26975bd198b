import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, describe, it } from "node:test";
import { SealPool } from "./seal-pool.ts";
import {
  HEADER_BYTES,
  plaintextLength,
  readSealed,
  SEGMENT_BYTES,
  SealedAppender,
  SealedFileError,
} from "./sealed-file.ts";
import { pipeSealed } from "./sealed-pipe.ts";

const dir = mkdtempSync(join(tmpdir(), "wharf-sealed-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const KEY = randomBytes(32);
const NONCE_AND_TAG = 12 + 16;
let files = 0;

function freshPath(): string {
  return join(dir, `file-${files++}`);
}

/** Bytes whose every position is recognisable, so a misplaced byte shows. */
function pattern(length: number, seed = 0): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = (i * 7 + seed + Math.floor(i / 251)) & 0xff;
  return out;
}

/**
 * Each suite runs three ways: sealed and opened on the event loop (`readSealed`), and through
 * the sealing workers and `pipeSealed` (as the registry's uploads and GETs do), with the
 * in-place cipher (native-gcm.ts) and with node:crypto.
 */
const MODES: Array<{ name: string; pool: SealPool | undefined }> = [
  { name: "on the event loop", pool: undefined },
  { name: "through the workers, AES-GCM in place", pool: new SealPool(2, undefined, true) },
  { name: "through the workers, node:crypto", pool: new SealPool(2, undefined, false) },
];
after(() => Promise.all(MODES.map(({ pool }) => pool?.close())));
let uploads = 0;

function appenderOf(pool: SealPool | undefined, path: string, length: number): Promise<SealedAppender> {
  return pool === undefined
    ? SealedAppender.open(path, KEY, length)
    : SealedAppender.open(path, KEY, length, SEGMENT_BYTES, { pool, upload: `u${uploads++}`, hash: "none" });
}

/** Writes `bytes` in `chunk`-sized pieces to a sealed file holding `length` bytes already. */
async function appendWith(
  pool: SealPool | undefined,
  path: string,
  length: number,
  bytes: Buffer,
  chunk = 65_536,
): Promise<void> {
  const appender = await appenderOf(pool, path, length);
  for (let offset = 0; offset < bytes.length; offset += chunk) {
    await appender.write(bytes.subarray(offset, offset + chunk));
  }
  await appender.close();
}

/** Keeps a copy of each chunk: `pipeSealed` reuses a buffer once its write has called back. */
class Collect extends Writable {
  readonly chunks: Buffer[] = [];
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.chunks.push(Buffer.from(chunk));
    done();
  }
}

async function readWith(
  pool: SealPool | undefined,
  path: string,
  length: number,
  start = 0,
  end = length - 1,
  key: Buffer = KEY,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  if (pool === undefined) {
    for await (const chunk of readSealed(path, key, length, start, end)) chunks.push(chunk as Buffer);
  } else {
    const sink = new Collect();
    await pipeSealed(path, key, length, start, end, sink, pool);
    chunks.push(...sink.chunks);
  }
  return Buffer.concat(chunks);
}

async function rejectsSealed(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof SealedFileError, `expected a SealedFileError, got ${String(error)}`);
    assert.match(error.message, pattern);
    return true;
  });
}

for (const { name, pool } of MODES) {
  const append = (path: string, length: number, bytes: Buffer, chunk?: number) =>
    appendWith(pool, path, length, bytes, chunk);
  const read = (path: string, length: number, start?: number, end?: number, key?: Buffer) =>
    readWith(pool, path, length, start, end, key);

  describe(`sealed files, ${name}`, () => {
    it("round-trip across segment boundaries, whole and by range", async () => {
      const path = freshPath();
      const data = pattern(2 * SEGMENT_BYTES + 12_345);
      await append(path, 0, data, 100_003);
      assert.equal(plaintextLength(statSync(path).size), data.length);
      assert.deepEqual(await read(path, data.length), data);
      const ranges: Array<[number, number]> = [
        [0, 0],
        [SEGMENT_BYTES - 1, SEGMENT_BYTES],
        [SEGMENT_BYTES, SEGMENT_BYTES],
        [10, 2 * SEGMENT_BYTES + 5],
        [2 * SEGMENT_BYTES, data.length - 1],
        [data.length - 1, data.length - 1],
      ];
      for (const [start, end] of ranges) {
        assert.deepEqual(
          await read(path, data.length, start, end),
          data.subarray(start, end + 1),
          `${start}-${end}`,
        );
      }
    });

    it("hold an exact number of segments and the empty file", async () => {
      const path = freshPath();
      const data = pattern(2 * SEGMENT_BYTES, 3);
      await append(path, 0, data);
      assert.equal(statSync(path).size, HEADER_BYTES + 2 * (SEGMENT_BYTES + NONCE_AND_TAG));
      assert.deepEqual(await read(path, data.length), data);
      const empty = freshPath();
      await append(empty, 0, Buffer.alloc(0));
      assert.equal(plaintextLength(statSync(empty).size), 0);
      assert.deepEqual(await read(empty, 0), Buffer.alloc(0));
    });

    it("append after reopening with a partial last segment, in several rounds", async () => {
      const path = freshPath();
      const data = pattern(3 * SEGMENT_BYTES + 777, 5);
      const cuts = [
        1,
        1000,
        SEGMENT_BYTES + 5,
        SEGMENT_BYTES + 6,
        2 * SEGMENT_BYTES,
        2 * SEGMENT_BYTES + 1,
        data.length,
      ];
      let length = 0;
      for (const cut of cuts) {
        await append(path, length, data.subarray(length, cut), 4096);
        length = cut;
        assert.equal(plaintextLength(statSync(path).size), length);
        assert.deepEqual(await read(path, length), data.subarray(0, length));
      }
    });

    it("keep what was recorded when an append is abandoned midway, and resume from there", async () => {
      const data = pattern(3 * SEGMENT_BYTES, 9);
      // Recorded lengths inside a segment and on a boundary; abandoned writes that stay in
      // the segment, fill it exactly, and run past it.
      for (const recorded of [1000, SEGMENT_BYTES]) {
        for (const extra of [10, SEGMENT_BYTES - 1000, SEGMENT_BYTES + 4321]) {
          const path = freshPath();
          await append(path, 0, data.subarray(0, recorded));
          const cut = await appenderOf(pool, path, recorded);
          await cut.write(pattern(extra, 99)); // bytes a cut-off request was carrying: never recorded
          await cut.abandon();
          assert.deepEqual(await read(path, recorded), data.subarray(0, recorded), `${recorded}+${extra}`);
          await append(path, recorded, data.subarray(recorded), 50_000);
          assert.equal(plaintextLength(statSync(path).size), data.length, `${recorded}+${extra}`);
          assert.deepEqual(await read(path, data.length), data, `${recorded}+${extra}`);
        }
      }
    });

    it("resume after a completed append whose length was never recorded", async () => {
      const path = freshPath();
      const data = pattern(SEGMENT_BYTES + 500, 11);
      await append(path, 0, data.subarray(0, 300));
      await append(path, 300, pattern(1000, 1)); // written, but the caller refused it (say, too long)
      await append(path, 300, data.subarray(300));
      assert.deepEqual(await read(path, data.length), data);
      assert.equal(plaintextLength(statSync(path).size), data.length);
    });

    it("never hold the plaintext", async () => {
      const marker = Buffer.from("WHARF-PLAINTEXT-MARKER ");
      const data = Buffer.concat(Array.from({ length: 20_000 }, () => marker));
      const path = freshPath();
      await append(path, 0, data);
      assert.equal(readFileSync(path).indexOf(marker), -1);
    });

    it("fail authentication when a byte is changed, in that segment only", async () => {
      const path = freshPath();
      const data = pattern(2 * SEGMENT_BYTES + 100, 13);
      await append(path, 0, data);
      const bytes = readFileSync(path);
      const inSecond = HEADER_BYTES + (SEGMENT_BYTES + NONCE_AND_TAG) + 12 + 500;
      bytes[inSecond] = (bytes[inSecond] as number) ^ 0x01;
      writeFileSync(path, bytes);
      await rejectsSealed(read(path, data.length), /segment 1 failed authentication/);
      await rejectsSealed(read(path, data.length, SEGMENT_BYTES + 10, SEGMENT_BYTES + 20), /segment 1/);
      assert.deepEqual(await read(path, data.length, 0, 99), data.subarray(0, 100));
      assert.deepEqual(
        await read(path, data.length, 2 * SEGMENT_BYTES, data.length - 1),
        data.subarray(2 * SEGMENT_BYTES),
      );
    });

    it("fail authentication when segments are swapped, the salt is changed or the key is wrong", async () => {
      const data = pattern(2 * SEGMENT_BYTES, 17);
      const path = freshPath();
      await append(path, 0, data);
      const original = readFileSync(path);
      const size = SEGMENT_BYTES + NONCE_AND_TAG;
      const first = original.subarray(HEADER_BYTES, HEADER_BYTES + size);
      const second = original.subarray(HEADER_BYTES + size);
      writeFileSync(path, Buffer.concat([original.subarray(0, HEADER_BYTES), second, first]));
      await rejectsSealed(read(path, data.length), /segment 0 failed authentication/);

      const salted = Buffer.from(original);
      salted[6] = (salted[6] as number) ^ 0x80;
      writeFileSync(path, salted);
      await rejectsSealed(read(path, data.length), /failed authentication/);

      writeFileSync(path, original);
      await rejectsSealed(
        read(path, data.length, 0, data.length - 1, randomBytes(32)),
        /failed authentication/,
      );
      assert.deepEqual(await read(path, data.length), data);
    });

    it("fail when the file is truncated, to read or to append", async () => {
      const data = pattern(SEGMENT_BYTES + 5000, 19);
      const path = freshPath();
      await append(path, 0, data);
      truncateSync(path, statSync(path).size - 100);
      await rejectsSealed(read(path, data.length), /segment 1 is missing/);
      assert.deepEqual(await read(path, data.length, 0, 999), data.subarray(0, 1000));
      await rejectsSealed(appenderOf(pool, path, data.length), /segment 1 is missing/);
      truncateSync(path, 10);
      await rejectsSealed(read(path, data.length), /not a sealed blob file/);
    });
  });
}
