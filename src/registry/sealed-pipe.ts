import { open } from "node:fs/promises";
import type { Writable } from "node:stream";
import type { SealPool, SharedBuffer } from "./seal-pool.ts";
import { readHeader } from "./sealed-format.ts";
import { READ_AHEAD } from "./sealed-reader.ts";

const ignore = () => undefined;

/**
 * Resolves once `sink` can take more, or rejects when it closes first. Plain listeners, removed
 * again either way: this runs for nearly every segment of a pull, and an AbortController with
 * `once` made an AbortError (a stack trace, source-mapped under tsx) each time.
 */
function drained(sink: Writable): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const settle = (error?: Error) => {
      sink.off("drain", onDrain);
      sink.off("close", onClose);
      if (error === undefined) resolve();
      else reject(error);
    };
    const onDrain = () => settle();
    const onClose = () => settle(new Error("the sink closed"));
    if (sink.destroyed) return onClose();
    sink.on("drain", onDrain);
    sink.on("close", onClose);
  });
}

/**
 * Writes plaintext bytes [start, end] (inclusive) of a sealed file holding
 * `length` plaintext bytes to `sink` (an HTTP response), without the event loop
 * touching a cipher: workers of `pool` read and open segments, `readAhead`
 * past the one being written, into buffers shared with them, which are reused
 * once the sink has called back for them (a sink must not hold a chunk after
 * its write callback, as a socket does not). No buffer moves between threads
 * per segment, so the event loop's heap takes on no external memory (and no GC)
 * for the bytes. Every
 * segment is authenticated before any of its bytes is written. Resolves when
 * the last byte is handed to the sink; rejects (having written a prefix) when a
 * segment fails or the sink closes; in both cases only after nothing in flight
 * uses the file any more.
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
  const pending: Array<{ into: SharedBuffer; job: Promise<number> }> = [];
  try {
    const { key, segmentBytes } = await readHeader(handle, masterKey);
    const first = Math.floor(start / segmentBytes);
    const last = Math.floor(end / segmentBytes);
    let next = first;
    for (let index = first; index <= last; index++) {
      while (next <= last && next - index <= readAhead) {
        const into = pool.takeShared(segmentBytes);
        const request = {
          fd: handle.fd,
          key,
          segmentBytes,
          index: next,
          plainBytes: Math.min(segmentBytes, length - next * segmentBytes),
        };
        const job = pool.open(request, into);
        job.catch(ignore); // awaited in turn below, or in `finally`
        pending.push({ into, job });
        next++;
      }
      const { into, job } = pending.shift() as { into: SharedBuffer; job: Promise<number> };
      let plainBytes: number;
      try {
        plainBytes = await job;
      } catch (error) {
        pool.giveShared(into); // the worker is done with it: it answered, or it stopped
        throw error;
      }
      const from = index === first ? start - index * segmentBytes : 0;
      const to = index === last ? end - index * segmentBytes + 1 : plainBytes;
      if (sink.destroyed) {
        pool.giveShared(into);
        throw new Error("the sink closed");
      }
      // Back to the pool once the sink is done with it, whether the write went through or not.
      const more = sink.write(into.bytes.subarray(from, to), () => pool.giveShared(into));
      // Up to a segment may wait in the sink besides what the socket took at once.
      if (!more && sink.writableLength > segmentBytes) await drained(sink);
    }
  } finally {
    // Buffers of jobs nobody waits for any more go back once their worker is done with them.
    await Promise.all(
      pending.map(({ into, job }) =>
        job.then(
          () => pool.giveShared(into),
          () => pool.giveShared(into),
        ),
      ),
    );
    await handle.close();
  }
}
