import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { type FileHandle, open } from "node:fs/promises";
import { Readable } from "node:stream";

/**
 * Blob bytes at rest: AES-256-GCM in fixed-size segments, so that a byte range
 * can be read without decrypting the whole blob and every segment is
 * authenticated on its own.
 *
 *   header:  "WHB1" | salt (16) | segment size (u32 BE)
 *   segment: nonce (12) | ciphertext (≤ segment size) | tag (16)
 *
 * Each file has its own key, derived from the master key and the file's salt;
 * each segment has a fresh random nonce (a partial last segment is rewritten
 * with a new one when an upload grows) and the segment index as associated
 * data, so segments cannot be reordered or moved between files.
 *
 * The caller records how many plaintext bytes a file holds. An append that is
 * cut off (or whose length the caller never records) may leave more in the
 * file: the segment at the recorded end then holds the recorded bytes as a
 * prefix, and the next append starts from them. Only `close()` trims the file.
 */

const MAGIC = Buffer.from("WHB1");
const SALT_BYTES = 16;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
export const HEADER_BYTES = MAGIC.length + SALT_BYTES + 4;
export const SEGMENT_BYTES = 256 * 1024;
const OVERHEAD = NONCE_BYTES + TAG_BYTES;

export class SealedFileError extends Error {}

function fileKey(masterKey: Buffer, salt: Buffer): Buffer {
  return Buffer.from(hkdfSync("sha256", masterKey, salt, "wharf blob v1", 32));
}

function indexAad(index: number): Buffer {
  const aad = Buffer.alloc(8);
  aad.writeBigUInt64BE(BigInt(index));
  return aad;
}

function sealSegment(key: Buffer, index: number, plaintext: Buffer): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  cipher.setAAD(indexAad(index));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([nonce, body, cipher.getAuthTag()]);
}

function openSegment(key: Buffer, index: number, sealed: Buffer): Buffer {
  if (sealed.length < OVERHEAD) throw new SealedFileError(`segment ${index} is truncated`);
  const nonce = sealed.subarray(0, NONCE_BYTES);
  const tag = sealed.subarray(sealed.length - TAG_BYTES);
  const decipher = createDecipheriv("aes-256-gcm", key, nonce);
  decipher.setAAD(indexAad(index));
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([
      decipher.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES)),
      decipher.final(),
    ]);
  } catch {
    throw new SealedFileError(`segment ${index} failed authentication`);
  }
}

/** Where segment `index` starts in the file. */
function segmentOffset(index: number, segmentBytes: number): number {
  return HEADER_BYTES + index * (segmentBytes + OVERHEAD);
}

interface Header {
  key: Buffer;
  segmentBytes: number;
}

async function readHeader(handle: FileHandle, masterKey: Buffer): Promise<Header> {
  const header = Buffer.alloc(HEADER_BYTES);
  const { bytesRead } = await handle.read(header, 0, HEADER_BYTES, 0);
  if (bytesRead !== HEADER_BYTES || !header.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new SealedFileError("not a sealed blob file");
  }
  const salt = header.subarray(MAGIC.length, MAGIC.length + SALT_BYTES);
  const segmentBytes = header.readUInt32BE(MAGIC.length + SALT_BYTES);
  if (segmentBytes === 0 || segmentBytes > 64 * 1024 * 1024) throw new SealedFileError("bad segment size");
  return { key: fileKey(masterKey, salt), segmentBytes };
}

/** The size of a sealed file holding exactly `length` plaintext bytes. */
export function sealedSize(length: number, segmentBytes = SEGMENT_BYTES): number {
  const full = Math.floor(length / segmentBytes);
  const rest = length - full * segmentBytes;
  return segmentOffset(full, segmentBytes) + (rest > 0 ? rest + OVERHEAD : 0);
}

/** The plaintext length of a sealed file of `fileBytes` bytes. */
export function plaintextLength(fileBytes: number, segmentBytes = SEGMENT_BYTES): number {
  if (fileBytes <= HEADER_BYTES) return 0;
  const body = fileBytes - HEADER_BYTES;
  const full = Math.floor(body / (segmentBytes + OVERHEAD));
  const rest = body - full * (segmentBytes + OVERHEAD);
  return full * segmentBytes + (rest > OVERHEAD ? rest - OVERHEAD : 0);
}

/**
 * Appends plaintext to a sealed file that already holds `length` plaintext
 * bytes (creating it when `length` is 0). Bytes past `length` in the file (a
 * write that was cut off) are discarded by `close()`, which seals the tail;
 * until then the file still holds the first `length` bytes, readable and
 * resumable, however the append ends.
 */
export class SealedAppender {
  private readonly handle: FileHandle;
  private readonly key: Buffer;
  private readonly segmentBytes: number;
  private index: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  private constructor(handle: FileHandle, key: Buffer, segmentBytes: number, index: number) {
    this.handle = handle;
    this.key = key;
    this.segmentBytes = segmentBytes;
    this.index = index;
  }

  static async open(path: string, masterKey: Buffer, length: number): Promise<SealedAppender> {
    if (length === 0) {
      const handle = await open(path, "w", 0o600);
      const salt = randomBytes(SALT_BYTES);
      const header = Buffer.alloc(HEADER_BYTES);
      MAGIC.copy(header, 0);
      salt.copy(header, MAGIC.length);
      header.writeUInt32BE(SEGMENT_BYTES, MAGIC.length + SALT_BYTES);
      await handle.write(header, 0, HEADER_BYTES, 0);
      return new SealedAppender(handle, fileKey(masterKey, salt), SEGMENT_BYTES, 0);
    }
    const handle = await open(path, "r+");
    try {
      const { key, segmentBytes } = await readHeader(handle, masterKey);
      const index = Math.floor(length / segmentBytes);
      const partial = length - index * segmentBytes;
      const appender = new SealedAppender(handle, key, segmentBytes, index);
      if (partial > 0) {
        // Re-open the partial last segment: it will be sealed again, with a new nonce, once it
        // grows. It stays on disk until then, so an append cut off before that loses nothing.
        appender.pending.push(await readTail(handle, key, index, segmentBytes, partial));
        appender.pendingBytes = partial;
      }
      return appender;
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  async write(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      const take = Math.min(this.segmentBytes - this.pendingBytes, chunk.length - offset);
      this.pending.push(chunk.subarray(offset, offset + take));
      this.pendingBytes += take;
      offset += take;
      if (this.pendingBytes === this.segmentBytes) await this.flushSegment();
    }
  }

  private async flushSegment(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const plaintext = this.pending.length === 1 ? (this.pending[0] as Buffer) : Buffer.concat(this.pending);
    const sealed = sealSegment(this.key, this.index, plaintext);
    await this.handle.write(sealed, 0, sealed.length, segmentOffset(this.index, this.segmentBytes));
    if (this.pendingBytes === this.segmentBytes) this.index++;
    this.pending = [];
    this.pendingBytes = 0;
  }

  /** Seals what is buffered, drops anything past it, makes it durable and closes the file. */
  async close(): Promise<void> {
    try {
      const tail = this.pendingBytes;
      await this.flushSegment();
      const end = segmentOffset(this.index, this.segmentBytes) + (tail > 0 ? tail + OVERHEAD : 0);
      await this.handle.truncate(end);
      await this.handle.sync();
    } finally {
      await this.handle.close();
    }
  }

  /** Closes without sealing the buffered tail (the write is being abandoned). */
  async abandon(): Promise<void> {
    await this.handle.close();
  }
}

/**
 * The first `partial` plaintext bytes of segment `index`, the last one a file
 * is recorded to hold. The segment is either sealed with exactly those bytes
 * or, after an append that was cut off or never recorded, with more (up to a
 * whole segment) that begin with them.
 */
async function readTail(
  handle: FileHandle,
  key: Buffer,
  index: number,
  segmentBytes: number,
  partial: number,
): Promise<Buffer> {
  const sealed = Buffer.alloc(segmentBytes + OVERHEAD);
  const { bytesRead } = await handle.read(sealed, 0, sealed.length, segmentOffset(index, segmentBytes));
  if (bytesRead < partial + OVERHEAD) throw new SealedFileError(`segment ${index} is missing`);
  try {
    return openSegment(key, index, sealed.subarray(0, partial + OVERHEAD));
  } catch (error) {
    if (bytesRead === partial + OVERHEAD) throw error;
    return openSegment(key, index, sealed.subarray(0, bytesRead)).subarray(0, partial);
  }
}

/**
 * Streams plaintext bytes [start, end] (inclusive) of a sealed file holding
 * `length` plaintext bytes. Every segment read is authenticated first.
 */
export function readSealed(
  path: string,
  masterKey: Buffer,
  length: number,
  start = 0,
  end = length - 1,
): Readable {
  async function* segments(): AsyncGenerator<Buffer> {
    if (length === 0 || end < start) return;
    const handle = await open(path, "r");
    try {
      const { key, segmentBytes } = await readHeader(handle, masterKey);
      const first = Math.floor(start / segmentBytes);
      const last = Math.floor(end / segmentBytes);
      const buffer = Buffer.alloc(segmentBytes + OVERHEAD);
      for (let index = first; index <= last; index++) {
        const plainBytes = Math.min(segmentBytes, length - index * segmentBytes);
        let plaintext: Buffer;
        if (plainBytes < segmentBytes)
          plaintext = await readTail(handle, key, index, segmentBytes, plainBytes);
        else {
          const sealedBytes = plainBytes + OVERHEAD;
          const { bytesRead } = await handle.read(buffer, 0, sealedBytes, segmentOffset(index, segmentBytes));
          if (bytesRead !== sealedBytes) throw new SealedFileError(`segment ${index} is missing`);
          plaintext = openSegment(key, index, buffer.subarray(0, sealedBytes));
        }
        const from = index === first ? start - index * segmentBytes : 0;
        const to = index === last ? end - index * segmentBytes + 1 : plaintext.length;
        yield plaintext.subarray(from, to);
      }
    } finally {
      await handle.close();
    }
  }
  return Readable.from(segments(), { objectMode: false });
}
