import { type FileHandle, open } from "node:fs/promises";
import {
  giveSegmentBuffer,
  type Header,
  newHeader,
  OVERHEAD,
  readHeader,
  readSegment,
  SEGMENT_BYTES,
  SegmentSealer,
  segmentOffset,
  takeSegmentBuffer,
} from "./sealed-format.ts";

export {
  HEADER_BYTES,
  LEGACY_SEGMENT_BYTES,
  plaintextLength,
  SEGMENT_BYTES,
  SealedFileError,
  sealedSize,
} from "./sealed-format.ts";
export { readSealed, sealedLayout, sealedLength } from "./sealed-reader.ts";

/** Sealed segments being written while the next one fills (bounds memory; back-pressure beyond). */
const MAX_IN_FLIGHT = 2;

const ignore = () => undefined;

/**
 * Appends plaintext to a sealed file (see sealed-format.ts) that already holds
 * `length` plaintext bytes, creating it when `length` is 0.
 *
 * The caller records how many plaintext bytes a file holds. Incoming bytes go
 * through the cipher as they come (no copy into a segment buffer); a sealed
 * segment is written at its place with one `writev` while the next one fills,
 * up to MAX_IN_FLIGHT at a time, after which `write` waits. Bytes past
 * `length` in the file (a write that was cut off) are discarded by `close()`,
 * which seals the tail; until then the file still holds the first `length`
 * bytes, readable and resumable, however the append ends.
 */
export class SealedAppender {
  private readonly handle: FileHandle;
  private readonly header: Header;
  private index: number;
  private sealer: SegmentSealer;
  private readonly inFlight: Array<Promise<void>> = [];
  private failure: { error: unknown } | undefined;
  private released = false;

  private constructor(handle: FileHandle, header: Header, index: number) {
    this.handle = handle;
    this.header = header;
    this.index = index;
    this.sealer = new SegmentSealer(header.key, index);
  }

  /** `segmentBytes` applies to a new file only; an existing one keeps its own. */
  static async open(
    path: string,
    masterKey: Buffer,
    length: number,
    segmentBytes = SEGMENT_BYTES,
  ): Promise<SealedAppender> {
    if (length === 0) {
      const { bytes, header } = newHeader(masterKey, segmentBytes);
      const handle = await open(path, "w", 0o600);
      try {
        await handle.write(bytes, 0, bytes.length, 0);
      } catch (error) {
        await handle.close();
        throw error;
      }
      return new SealedAppender(handle, header, 0);
    }
    const handle = await open(path, "r+");
    try {
      const header = await readHeader(handle, masterKey);
      const index = Math.floor(length / header.segmentBytes);
      const partial = length - index * header.segmentBytes;
      const appender = new SealedAppender(handle, header, index);
      if (partial > 0) {
        // Re-open the partial last segment: it will be sealed again, with a new nonce, once it
        // grows. It stays on disk until then, so an append cut off before that loses nothing.
        const buffer = takeSegmentBuffer(header.segmentBytes);
        try {
          for (const piece of await readSegment(handle, header, index, partial, buffer))
            appender.sealer.update(piece);
        } finally {
          giveSegmentBuffer(buffer);
        }
      }
      return appender;
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  /** Takes `chunk` (its bytes are consumed before this returns; it may be reused at once). */
  async write(chunk: Buffer): Promise<void> {
    this.throwIfFailed();
    const { segmentBytes } = this.header;
    let offset = 0;
    while (offset < chunk.length) {
      const take = Math.min(segmentBytes - this.sealer.length, chunk.length - offset);
      this.sealer.update(take === chunk.length ? chunk : chunk.subarray(offset, offset + take));
      offset += take;
      if (this.sealer.length === segmentBytes) {
        this.dispatch();
        this.index++;
        this.sealer = new SegmentSealer(this.header.key, this.index);
        while (this.inFlight.length > MAX_IN_FLIGHT) await this.inFlight.shift();
        this.throwIfFailed();
      }
    }
  }

  /** Writes the current segment, sealed, in the background. */
  private dispatch(): void {
    const position = segmentOffset(this.index, this.header.segmentBytes);
    const job = this.handle.writev(this.sealer.finish(), position).then(ignore);
    job.catch((error: unknown) => {
      this.failure ??= { error };
    });
    this.inFlight.push(job);
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure.error;
  }

  /** Waits until no segment is being written (their outcome is in `failure`). */
  private async drain(): Promise<void> {
    await Promise.all(this.inFlight.splice(0).map((job) => job.catch(ignore)));
  }

  /** Closes the file once nothing uses it. */
  private async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.drain();
    await this.handle.close();
  }

  /** Seals what is buffered, drops anything past it, makes it durable and closes the file. */
  async close(): Promise<void> {
    try {
      const tail = this.sealer.length;
      if (tail > 0) this.dispatch();
      await this.drain();
      this.throwIfFailed();
      const end = segmentOffset(this.index, this.header.segmentBytes) + (tail > 0 ? tail + OVERHEAD : 0);
      await this.handle.truncate(end);
      await this.handle.sync();
    } finally {
      await this.release();
    }
  }

  /** Closes without sealing the buffered tail (the write is being abandoned). */
  async abandon(): Promise<void> {
    await this.release();
  }
}
