import { once } from "node:events";
import { open } from "node:fs/promises";
import type { Writable } from "node:stream";
import type { SealPool } from "./seal-pool.ts";
import { readHeader } from "./sealed-format.ts";
import { READ_AHEAD } from "./sealed-reader.ts";

/** Plaintext segment buffers that have come back from the sink, by segment size. */
const spare = new Map<number, ArrayBuffer[]>();
const MAX_SPARE = 32;

function takeBuffer(segmentBytes: number): ArrayBuffer {
  return spare.get(segmentBytes)?.pop() ?? new ArrayBuffer(segmentBytes);
}

function giveBuffer(buffer: ArrayBuffer): void {
  const list = spare.get(buffer.byteLength) ?? [];
  spare.set(buffer.byteLength, list);
  if (list.length < MAX_SPARE) list.push(buffer);
}

const ignore = () => undefined;

/** Resolves once `sink` can take more, or rejects when it closes or fails first. */
async function drained(sink: Writable): Promise<void> {
  const controller = new AbortController();
  try {
    await Promise.race([
      once(sink, "drain", { signal: controller.signal }),
      once(sink, "close", { signal: controller.signal }).then(() => {
        throw new Error("the sink closed");
      }),
    ]);
  } finally {
    controller.abort();
  }
}

/**
 * Writes plaintext bytes [start, end] (inclusive) of a sealed file holding
 * `length` plaintext bytes to `sink` (an HTTP response), without the event loop
 * touching a cipher: workers of `pool` read and open segments, `readAhead`
 * past the one being written, into buffers that are reused once the sink has
 * called back for them (a sink must not hold a chunk after its write callback,
 * as a socket does not). Every segment is authenticated before any of its
 * bytes is written. Resolves when the last byte is handed to the sink; rejects
 * (having written a prefix) when a segment fails or the sink closes; in both
 * cases only after nothing in flight uses the file any more.
 */
export async function pipeSealed(
  path: string,
  masterKey: Buffer,
  length: number,
  start: number,
  end: number,
  sink: Writable,
  pool: SealPool,
  readAhead = READ_AHEAD,
): Promise<void> {
  if (length === 0 || end < start) return;
  const handle = await open(path, "r");
  const pending: Array<Promise<{ buffer: ArrayBuffer; length: number }>> = [];
  try {
    const { key, segmentBytes } = await readHeader(handle, masterKey);
    const first = Math.floor(start / segmentBytes);
    const last = Math.floor(end / segmentBytes);
    let next = first;
    for (let index = first; index <= last; index++) {
      while (next <= last && next - index <= readAhead) {
        const job = pool.open({
          fd: handle.fd,
          key,
          segmentBytes,
          index: next,
          plainBytes: Math.min(segmentBytes, length - next * segmentBytes),
          buffer: takeBuffer(segmentBytes),
        });
        job.catch(ignore); // awaited in turn below, or in `finally`
        pending.push(job);
        next++;
      }
      const { buffer, length: plainBytes } = await (pending.shift() as Promise<{
        buffer: ArrayBuffer;
        length: number;
      }>);
      const from = index === first ? start - index * segmentBytes : 0;
      const to = index === last ? end - index * segmentBytes + 1 : plainBytes;
      if (sink.destroyed) throw new Error("the sink closed");
      const more = sink.write(Buffer.from(buffer, from, to - from), (error) => {
        if (error === undefined || error === null) giveBuffer(buffer);
      });
      // Up to a segment may wait in the sink besides what the socket took at once.
      if (!more && sink.writableLength > segmentBytes) await drained(sink);
    }
  } finally {
    // Buffers of jobs nobody waits for any more are simply dropped.
    await Promise.all(pending.map((job) => job.catch(ignore)));
    await handle.close();
  }
}
