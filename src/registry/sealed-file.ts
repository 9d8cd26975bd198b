import { type FileHandle, open } from "node:fs/promises";
import type { SealPool } from "./seal-pool.ts";
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

/** Where a segment's plaintext goes as it arrives, and how a full one is written. */
interface Segments {
  /** Plaintext bytes in the segment being filled. */
  readonly length: number;
  add(chunk: Buffer): void;
  /** Seals and writes the segment being filled at `position`, in the background; a fresh one starts. */
  flush(index: number, position: number): Promise<void>;
}

/** Seals on the event loop as bytes arrive (no copy into a segment buffer). */
class LocalSegments implements Segments {
  private sealer: SegmentSealer;

  constructor(
    private readonly handle: FileHandle,
    private readonly key: Buffer,
    index: number,
  ) {
    this.sealer = new SegmentSealer(key, index);
  }

  get length(): number {
    return this.sealer.length;
  }

  add(chunk: Buffer): void {
    this.sealer.update(chunk);
  }

  flush(index: number, position: number): Promise<void> {
    const pieces = this.sealer.finish();
    this.sealer = new SegmentSealer(this.key, index + 1);
    return this.handle.writev(pieces, position).then(ignore);
  }
}

/** Where an upload's running hash lives while a pool seals it. */
export interface PoolUpload {
  pool: SealPool;
  upload: string;
  /** Whether the pool starts the upload's running hash, continues it, or hashes nothing. */
  hash: "start" | "continue" | "none";
}

/** Copies bytes into segment buffers that a worker hashes, seals and writes (see seal-pool.ts). */
class PooledSegments implements Segments {
  private buffer: ArrayBuffer;
  private view: Buffer;
  private filled = 0;
  private readonly spare: ArrayBuffer[] = [];
  /** Bytes at the start of the current segment that the running hash has seen already. */
  private hashFrom = 0;
  private hash: PoolUpload["hash"];

  constructor(
    private readonly handle: FileHandle,
    private readonly key: Buffer,
    private readonly segmentBytes: number,
    private readonly target: PoolUpload,
  ) {
    this.buffer = new ArrayBuffer(segmentBytes);
    this.view = Buffer.from(this.buffer);
    this.hash = target.hash;
  }

  get length(): number {
    return this.filled;
  }

  /** Bytes of a re-opened tail: sealed again, but already hashed. */
  addHashed(chunk: Buffer): void {
    this.add(chunk);
    this.hashFrom = this.filled;
  }

  add(chunk: Buffer): void {
    chunk.copy(this.view, this.filled);
    this.filled += chunk.length;
  }

  flush(index: number, position: number): Promise<void> {
    const job = this.target.pool
      .seal({
        upload: this.target.upload,
        hash: this.hash,
        hashFrom: this.hashFrom,
        index,
        position,
        fd: this.handle.fd,
        key: this.key,
        buffer: this.buffer,
        length: this.filled,
      })
      .then((buffer) => {
        this.spare.push(buffer);
      });
    if (this.hash === "start") this.hash = "continue";
    this.hashFrom = 0;
    this.filled = 0;
    this.buffer = this.spare.pop() ?? new ArrayBuffer(this.segmentBytes);
    this.view = Buffer.from(this.buffer);
    return job;
  }
}

/**
 * Appends plaintext to a sealed file (see sealed-format.ts) that already holds
 * `length` plaintext bytes, creating it when `length` is 0.
 *
 * The caller records how many plaintext bytes a file holds. Bytes are sealed
 * as they come on the event loop, or, given a pool, copied into segment
 * buffers that a worker thread hashes, seals and writes. A full segment is
 * written at its place (one `writev`) while the next one fills, up to
 * MAX_IN_FLIGHT at a time, after which `write` waits. Bytes past `length` in
 * the file (a write that was cut off) are discarded by `close()`, which seals
 * the tail; until then the file still holds the first `length` bytes,
 * readable and resumable, however the append ends.
 */
export class SealedAppender {
  private readonly handle: FileHandle;
  private readonly header: Header;
  private index: number;
  private readonly segments: Segments;
  private readonly inFlight: Array<Promise<void>> = [];
  private failure: { error: unknown } | undefined;
  private released = false;

  private constructor(handle: FileHandle, header: Header, index: number, segments: Segments) {
    this.handle = handle;
    this.header = header;
    this.index = index;
    this.segments = segments;
  }

  /**
   * `segmentBytes` applies to a new file only; an existing one keeps its own. With `pool`,
   * a worker seals (and hashes, see PoolUpload) instead of the event loop.
   */
  static async open(
    path: string,
    masterKey: Buffer,
    length: number,
    segmentBytes = SEGMENT_BYTES,
    pool?: PoolUpload,
  ): Promise<SealedAppender> {
    const make = (handle: FileHandle, header: Header, index: number) =>
      new SealedAppender(
        handle,
        header,
        index,
        pool === undefined
          ? new LocalSegments(handle, header.key, index)
          : new PooledSegments(handle, header.key, header.segmentBytes, pool),
      );
    if (length === 0) {
      const { bytes, header } = newHeader(masterKey, segmentBytes);
      const handle = await open(path, "w", 0o600);
      try {
        await handle.write(bytes, 0, bytes.length, 0);
      } catch (error) {
        await handle.close();
        throw error;
      }
      return make(handle, header, 0);
    }
    const handle = await open(path, "r+");
    try {
      const header = await readHeader(handle, masterKey);
      const index = Math.floor(length / header.segmentBytes);
      const partial = length - index * header.segmentBytes;
      const appender = make(handle, header, index);
      if (partial > 0) {
        // Re-open the partial last segment: it will be sealed again, with a new nonce, once it
        // grows. It stays on disk until then, so an append cut off before that loses nothing.
        const buffer = takeSegmentBuffer(header.segmentBytes);
        try {
          const segments = appender.segments;
          for (const piece of await readSegment(handle, header, index, partial, buffer)) {
            if (segments instanceof PooledSegments) segments.addHashed(piece);
            else segments.add(piece);
          }
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
      const take = Math.min(segmentBytes - this.segments.length, chunk.length - offset);
      this.segments.add(take === chunk.length ? chunk : chunk.subarray(offset, offset + take));
      offset += take;
      if (this.segments.length === segmentBytes) {
        this.dispatch();
        this.index++;
        while (this.inFlight.length > MAX_IN_FLIGHT) await this.inFlight.shift();
        this.throwIfFailed();
      }
    }
  }

  /** Writes the current segment, sealed, in the background. */
  private dispatch(): void {
    const job = this.segments.flush(this.index, segmentOffset(this.index, this.header.segmentBytes));
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
      const tail = this.segments.length;
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
