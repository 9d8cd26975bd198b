import { open } from "node:fs/promises";
import { Readable } from "node:stream";
import {
  giveSegmentBuffer,
  HEADER_BYTES,
  plaintextLength,
  readHeader,
  readSegment,
  readSegmentBytes,
  SEGMENT_BYTES,
  slicePieces,
  takeSegmentBuffer,
} from "./sealed-format.ts";

/** Segments read and opened ahead of the one being sent, so the disk and the cipher never wait on the socket. */
export const READ_AHEAD = 2;

const ignore = () => undefined;

/**
 * Streams plaintext bytes [start, end] (inclusive) of a sealed file holding
 * `length` plaintext bytes. Every segment is authenticated before any of its
 * bytes is passed on; up to `readAhead` segments past the one being passed on
 * are read meanwhile (positional reads on the thread pool, each opened as soon
 * as it lands), and whatever is still in flight when the stream ends or is
 * destroyed is waited for before the file is closed.
 */
export function readSealed(
  path: string,
  masterKey: Buffer,
  length: number,
  start = 0,
  end = length - 1,
  readAhead = READ_AHEAD,
): Readable {
  async function* segments(): AsyncGenerator<Buffer> {
    if (length === 0 || end < start) return;
    const handle = await open(path, "r");
    const pending: Array<Promise<Buffer[]>> = [];
    try {
      const header = await readHeader(handle, masterKey);
      const { segmentBytes } = header;
      const first = Math.floor(start / segmentBytes);
      const last = Math.floor(end / segmentBytes);
      let next = first;
      const load = async (index: number): Promise<Buffer[]> => {
        const buffer = takeSegmentBuffer(segmentBytes);
        try {
          const plainBytes = Math.min(segmentBytes, length - index * segmentBytes);
          return await readSegment(handle, header, index, plainBytes, buffer);
        } finally {
          giveSegmentBuffer(buffer); // the plaintext pieces are buffers of their own
        }
      };
      for (let index = first; index <= last; index++) {
        while (next <= last && next - index <= readAhead) {
          const job = load(next++);
          job.catch(ignore); // awaited in turn below, or in `finally` when the stream ends early
          pending.push(job);
        }
        const pieces = (await pending.shift()) as Buffer[];
        const from = index === first ? start - index * segmentBytes : 0;
        const to = index === last ? end - index * segmentBytes + 1 : segmentBytes;
        yield* slicePieces(pieces, from, to);
      }
    } finally {
      await Promise.all(pending.map((job) => job.catch(ignore)));
      await handle.close();
    }
  }
  return Readable.from(segments(), { objectMode: false });
}

/** A sealed file's size and segment size; undefined when there is no such file. */
export async function sealedLayout(
  path: string,
): Promise<{ fileBytes: number; segmentBytes: number } | undefined> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  try {
    const { size } = await handle.stat();
    if (size <= HEADER_BYTES) return { fileBytes: size, segmentBytes: SEGMENT_BYTES };
    return { fileBytes: size, segmentBytes: await readSegmentBytes(handle) };
  } finally {
    await handle.close();
  }
}

/** The plaintext length of a sealed file, by its size and its own segment size; undefined when absent. */
export async function sealedLength(path: string): Promise<number | undefined> {
  const layout = await sealedLayout(path);
  return layout === undefined ? undefined : plaintextLength(layout.fileBytes, layout.segmentBytes);
}
