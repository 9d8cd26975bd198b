import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { Writable } from "node:stream";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { SealPool } from "./seal-pool.ts";
import { HEADER_BYTES, SealedFileError } from "./sealed-file.ts";
import { pipeSealed } from "./sealed-pipe.ts";
import { OVERHEAD, SealedFiles, SMALL } from "./testing.ts";

const files = new SealedFiles("sealed-pipe");
const KEY = files.key;
const sealed = (data: Buffer, segmentBytes?: number) => files.seal(data, segmentBytes);

/**
 * A sink like a socket that is slow to take bytes: it calls back for each chunk a little
 * later, and checks then that the chunk still holds what it held when written (a buffer
 * reused before its callback would show).
 */
class SlowSink extends Writable {
  readonly received: Buffer[] = [];
  constructor(private readonly delayMs = 1) {
    super({ highWaterMark: 2 * SMALL });
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    const copy = Buffer.from(chunk);
    setTimeout(() => {
      if (!copy.equals(chunk)) done(new Error("a chunk changed before its callback"));
      else {
        this.received.push(copy);
        done();
      }
    }, this.delayMs);
  }
}

async function pipeWith(
  pool: SealPool,
  path: string,
  length: number,
  start: number,
  end: number,
  readAhead?: number,
) {
  const sink = new SlowSink();
  await pipeSealed(path, KEY, length, start, end, sink, pool, readAhead);
  await new Promise<void>((resolve, reject) =>
    sink.end((error?: Error | null) => (error ? reject(error) : resolve())),
  );
  return Buffer.concat(sink.received);
}

for (const native of [true, false]) {
  describe(`piping sealed files through the worker pool, AES-GCM ${native ? "in place" : "through node:crypto"}`, () => {
    const pool = new SealPool(2, undefined, native);
    after(() => pool.close());
    const pipe = (path: string, length: number, start: number, end: number, readAhead?: number) =>
      pipeWith(pool, path, length, start, end, readAhead);

    it("writes every range, with any read-ahead, and reuses no buffer before the sink is done with it", async () => {
      const data = randomBytes(9 * SMALL + 77);
      const path = await sealed(data);
      for (const readAhead of [0, 1, 3]) {
        for (const [start, end] of [
          [0, data.length - 1],
          [SMALL - 1, SMALL],
          [5, 6 * SMALL + 9],
          [9 * SMALL, data.length - 1],
        ] as const) {
          assert.deepEqual(
            await pipe(path, data.length, start, end, readAhead),
            data.subarray(start, end + 1),
            `${start}-${end} ahead ${readAhead}`,
          );
        }
      }
      // Several at once share the buffers.
      const big = randomBytes(3 * 1024 * 1024 + 5);
      const bigPath = await sealed(big, 1024 * 1024);
      const results = await Promise.all([0, 1, 2, 3].map(() => pipe(bigPath, big.length, 0, big.length - 1)));
      for (const result of results) assert.ok(result.equals(big));
    });

    it("uses one-off buffers once the shared ones are all in use", async () => {
      const small = new SealPool(2, 3 * SMALL, native);
      try {
        const data = randomBytes(20 * SMALL + 3);
        const path = await sealed(data);
        const results = await Promise.all(
          [0, 1, 2, 3].map(async (i) => {
            const sink = new SlowSink();
            await pipeSealed(path, KEY, data.length, i * 100, data.length - 1 - i, sink, small, 2);
            await new Promise<void>((resolve, reject) =>
              sink.end((error?: Error | null) => (error ? reject(error) : resolve())),
            );
            return Buffer.concat(sink.received);
          }),
        );
        results.forEach((result, i) => {
          assert.ok(result.equals(data.subarray(i * 100, data.length - i)), `pipe ${i}`);
        });
      } finally {
        await small.close();
      }
    });

    it("writes the segments before a forged one and nothing of it, then fails, and closes the file", async () => {
      const data = randomBytes(6 * SMALL);
      const path = await sealed(data);
      const bytes = readFileSync(path);
      const inFourth = HEADER_BYTES + 3 * (SMALL + OVERHEAD) + 50;
      bytes[inFourth] = (bytes[inFourth] as number) ^ 0x01;
      writeFileSync(path, bytes);
      const before = readdirSync("/proc/self/fd").length;
      const sink = new SlowSink();
      await assert.rejects(
        pipeSealed(path, KEY, data.length, 0, data.length - 1, sink, pool, 4),
        (error: unknown) => error instanceof SealedFileError && /segment 3 failed/.test(error.message),
      );
      await sleep(20);
      assert.deepEqual(Buffer.concat(sink.received), data.subarray(0, 3 * SMALL));
      assert.equal(readdirSync("/proc/self/fd").length, before);
      assert.deepEqual(await pipe(path, data.length, 0, 3 * SMALL - 1, 4), data.subarray(0, 3 * SMALL));
    });

    it("stops when the sink goes away, once nothing in flight uses the file", async () => {
      const data = randomBytes(64 * SMALL);
      const path = await sealed(data);
      const before = readdirSync("/proc/self/fd").length;
      const sink = new SlowSink(5);
      setTimeout(() => sink.destroy(), 20);
      await assert.rejects(pipeSealed(path, KEY, data.length, 0, data.length - 1, sink, pool, 3));
      assert.equal(readdirSync("/proc/self/fd").length, before);
    });
  });
}
