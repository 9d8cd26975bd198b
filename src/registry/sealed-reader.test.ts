import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  HEADER_BYTES,
  LEGACY_SEGMENT_BYTES,
  plaintextLength,
  readSealed,
  SealedAppender,
  SealedFileError,
  sealedLength,
} from "./sealed-file.ts";

const dir = mkdtempSync(join(tmpdir(), "wharf-sealed-read-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const KEY = randomBytes(32);
const OVERHEAD = 12 + 16;
/** Small segments, so that a few kilobytes span many of them. */
const SMALL = 4096;
let files = 0;

function freshPath(): string {
  return join(dir, `file-${files++}`);
}

async function write(path: string, data: Buffer, segmentBytes: number, chunk = 10_000): Promise<void> {
  const appender = await SealedAppender.open(path, KEY, 0, segmentBytes);
  for (let offset = 0; offset < data.length; offset += chunk)
    await appender.write(data.subarray(offset, offset + chunk));
  await appender.close();
}

async function read(
  path: string,
  length: number,
  start?: number,
  end?: number,
  readAhead?: number,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of readSealed(path, KEY, length, start, end, readAhead))
    chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function openFds(): number {
  return readdirSync("/proc/self/fd").length;
}

describe("reading sealed files ahead", () => {
  it("returns every range, with any read-ahead, across segment boundaries", async () => {
    const path = freshPath();
    const data = randomBytes(7 * SMALL + 123);
    await write(path, data, SMALL);
    const ranges: Array<[number, number]> = [
      [0, data.length - 1],
      [0, 0],
      [SMALL - 1, SMALL],
      [SMALL, 2 * SMALL - 1],
      [SMALL + 1, 5 * SMALL + 7],
      [7 * SMALL, data.length - 1],
      [data.length - 1, data.length - 1],
    ];
    for (const readAhead of [0, 1, 2, 10]) {
      for (const [start, end] of ranges) {
        assert.deepEqual(
          await read(path, data.length, start, end, readAhead),
          data.subarray(start, end + 1),
          `${start}-${end} ahead ${readAhead}`,
        );
      }
    }
  });

  it("reads ahead no further than the range: a damaged segment past it does not matter", async () => {
    const path = freshPath();
    const data = randomBytes(6 * SMALL);
    await write(path, data, SMALL);
    const bytes = readFileSync(path);
    const inFourth = HEADER_BYTES + 3 * (SMALL + OVERHEAD) + 100;
    bytes[inFourth] = (bytes[inFourth] as number) ^ 0xff;
    writeFileSync(path, bytes);
    assert.deepEqual(await read(path, data.length, 0, 3 * SMALL - 1, 5), data.subarray(0, 3 * SMALL));
    assert.deepEqual(await read(path, data.length, 4 * SMALL, data.length - 1, 5), data.subarray(4 * SMALL));
    // Through it: the segments before it arrive, then the stream fails.
    const received: Buffer[] = [];
    await assert.rejects(
      (async () => {
        for await (const chunk of readSealed(path, KEY, data.length, 0, data.length - 1, 5))
          received.push(chunk as Buffer);
      })(),
      (error: unknown) => error instanceof SealedFileError && /segment 3 failed/.test(error.message),
    );
    assert.deepEqual(Buffer.concat(received), data.subarray(0, 3 * SMALL));
  });

  it("closes the file when the reader stops early, with reads still in flight", async () => {
    const path = freshPath();
    const data = randomBytes(40 * SMALL);
    await write(path, data, SMALL);
    const before = openFds();
    for (let round = 0; round < 20; round++) {
      const stream = readSealed(path, KEY, data.length, 0, data.length - 1, 8);
      for await (const chunk of stream) {
        assert.deepEqual(chunk, data.subarray(0, SMALL));
        break; // destroys the stream
      }
    }
    const deadline = Date.now() + 5_000;
    while (openFds() > before && Date.now() < deadline) await sleep(10);
    assert.equal(openFds(), before);
  });
});

describe("segment sizes", () => {
  it("reads, measures and appends to files with 256 KiB segments (written before 1 MiB)", async () => {
    const path = freshPath();
    const data = randomBytes(3 * LEGACY_SEGMENT_BYTES + 1000);
    await write(path, data.subarray(0, LEGACY_SEGMENT_BYTES + 10), LEGACY_SEGMENT_BYTES, 65_536);
    assert.equal(await sealedLength(path), LEGACY_SEGMENT_BYTES + 10);
    const appender = await SealedAppender.open(path, KEY, LEGACY_SEGMENT_BYTES + 10);
    await appender.write(data.subarray(LEGACY_SEGMENT_BYTES + 10));
    await appender.close();
    assert.equal(statSync(path).size, HEADER_BYTES + 3 * (LEGACY_SEGMENT_BYTES + OVERHEAD) + 1000 + OVERHEAD);
    assert.equal(plaintextLength(statSync(path).size, LEGACY_SEGMENT_BYTES), data.length);
    assert.equal(await sealedLength(path), data.length);
    assert.deepEqual(await read(path, data.length), data);
    assert.deepEqual(
      await read(path, data.length, LEGACY_SEGMENT_BYTES - 5, 2 * LEGACY_SEGMENT_BYTES + 5),
      data.subarray(LEGACY_SEGMENT_BYTES - 5, 2 * LEGACY_SEGMENT_BYTES + 6),
    );
    assert.equal(await sealedLength(join(dir, "absent")), undefined);
  });

  it("keeps what was recorded when an append with many segments in flight is abandoned", async () => {
    const data = randomBytes(30 * SMALL);
    const path = freshPath();
    await write(path, data.subarray(0, 1000), SMALL);
    const cut = await SealedAppender.open(path, KEY, 1000);
    await cut.write(randomBytes(20 * SMALL)); // one write fills many segments; never recorded
    await cut.abandon();
    assert.deepEqual(await read(path, 1000), data.subarray(0, 1000));
    const rest = await SealedAppender.open(path, KEY, 1000);
    await rest.write(data.subarray(1000));
    await rest.close();
    assert.equal(await sealedLength(path), data.length);
    assert.deepEqual(await read(path, data.length), data);
  });
});
