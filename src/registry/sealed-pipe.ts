import { open } from "node:fs/promises";
import type { Writable } from "node:stream";
import type { SealPool, SharedBuffer } from "./seal-pool.ts";
import { readHeader } from "./sealed-format.ts";
import { READ_AHEAD } from "./sealed-reader.ts";

const ignore = () => undefined;

/**
 * Waits, as often as asked, until `sink` can take more, failing once it has closed. Its two
 * listeners are added once per pipe and removed by `dispose`: a wait comes for nearly every
 * segment of a pull, and listeners (and named closures) made per wait showed in its profile.
 */
class DrainWaits {
  private resolve: (() => void) | undefined;
  private reject: ((error: Error) => void) | undefined;
  private closed = false;
  private readonly onDrain = (): void => this.settle(undefined);
  private readonly onClose = (): void => {
    this.closed = true;
    this.settle(new Error("the sink closed"));
  };

  constructor(private readonly sink: Writable) {
    sink.on("drain", this.onDrain);
    sink.on("close", this.onClose);
  }

  /** Resolves once the sink drains; rejects when it closes first (or has closed). */
  next(): Promise<void> {
    if (this.closed || this.sink.destroyed) return Promise.reject(new Error("the sink closed"));
    return new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  private settle(error: Error | undefined): void {
    const { resolve, reject } = this;
    this.resolve = undefined;
    this.reject = undefined;
    if (error === undefined) resolve?.();
    else reject?.(error);
  }

  dispose(): void {
    this.sink.off("drain", this.onDrain);
    this.sink.off("close", this.onClose);
  }
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
  const drains = new DrainWaits(sink);
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
      if (!more && sink.writableLength > segmentBytes) await drains.next();
    }
  } finally {
    drains.dispose();
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
