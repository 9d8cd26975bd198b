import { type CipherGCM, createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import type { FileHandle } from "node:fs/promises";

/**
 * The at-rest format of a blob file: AES-256-GCM in fixed-size segments, so that
 * a byte range can be read without decrypting the whole blob and every segment
 * is authenticated on its own.
 *
 *   header:  "WHB1" | salt (16) | segment size (u32 BE)
 *   segment: nonce (12) | ciphertext (≤ segment size) | tag (16)
 *
 * Each file has its own key, derived from the master key and the file's salt;
 * each segment has a fresh random nonce and the segment index as associated
 * data, so segments cannot be reordered or moved between files. The segment
 * size is the file's own: files written with 256 KiB segments (before 1 MiB
 * became the default) read and grow as they are.
 *
 * A segment is sealed and opened in pieces of at most PIECE_BYTES, kept as a
 * list and never concatenated: outputs this small come back from malloc's free
 * lists, while a fresh megabyte each time would be mapped and page-faulted in
 * anew (about 0.4 CPU s/GB in the kernel).
 */

const MAGIC = Buffer.from("WHB1");
const SALT_BYTES = 16;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
export const HEADER_BYTES = MAGIC.length + SALT_BYTES + 4;
/** The segment size of new files. */
export const SEGMENT_BYTES = 1024 * 1024;
/** The segment size files had before 1 MiB; still read and appended to. */
export const LEGACY_SEGMENT_BYTES = 256 * 1024;
export const OVERHEAD = NONCE_BYTES + TAG_BYTES;
const MAX_SEGMENT_BYTES = 64 * 1024 * 1024;
/** Largest piece given to the cipher at once (at glibc's default mmap threshold; see above). */
const PIECE_BYTES = 128 * 1024;

export class SealedFileError extends Error {}

function fileKey(masterKey: Buffer, salt: Buffer): Buffer {
  return Buffer.from(hkdfSync("sha256", masterKey, salt, "wharf blob v1", 32));
}

function indexAad(index: number): Buffer {
  const aad = Buffer.alloc(8);
  aad.writeBigUInt64BE(BigInt(index));
  return aad;
}

/** Seals one segment from plaintext given in any number of pieces. */
export class SegmentSealer {
  private readonly cipher: CipherGCM;
  /** nonce, then ciphertext pieces; the tag follows once `finish` is called. */
  private readonly pieces: Buffer[];
  /** Plaintext bytes taken so far. */
  length = 0;

  constructor(key: Buffer, index: number) {
    const nonce = randomBytes(NONCE_BYTES);
    this.cipher = createCipheriv("aes-256-gcm", key, nonce);
    this.cipher.setAAD(indexAad(index));
    this.pieces = [nonce];
  }

  update(plaintext: Buffer): void {
    for (let offset = 0; offset < plaintext.length; offset += PIECE_BYTES) {
      const out = this.cipher.update(plaintext.subarray(offset, offset + PIECE_BYTES));
      if (out.length > 0) this.pieces.push(out);
    }
    this.length += plaintext.length;
  }

  /** nonce | ciphertext | tag, as pieces to be written one after the other. */
  finish(): Buffer[] {
    const last = this.cipher.final();
    if (last.length > 0) this.pieces.push(last);
    this.pieces.push(this.cipher.getAuthTag());
    return this.pieces;
  }
}

/** The plaintext of a sealed segment (nonce | ciphertext | tag), in pieces; nothing unless it authenticates. */
export function openSegment(key: Buffer, index: number, sealed: Buffer): Buffer[] {
  if (sealed.length < OVERHEAD) throw new SealedFileError(`segment ${index} is truncated`);
  const decipher = createDecipheriv("aes-256-gcm", key, sealed.subarray(0, NONCE_BYTES));
  decipher.setAAD(indexAad(index));
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  const end = sealed.length - TAG_BYTES;
  const pieces: Buffer[] = [];
  try {
    for (let offset = NONCE_BYTES; offset < end; offset += PIECE_BYTES) {
      const out = decipher.update(sealed.subarray(offset, Math.min(offset + PIECE_BYTES, end)));
      if (out.length > 0) pieces.push(out);
    }
    const last = decipher.final();
    if (last.length > 0) pieces.push(last);
  } catch {
    throw new SealedFileError(`segment ${index} failed authentication`);
  }
  return pieces;
}

/** Bytes [from, to) of the concatenation of `pieces`, without copying. */
export function slicePieces(pieces: Buffer[], from: number, to: number): Buffer[] {
  const out: Buffer[] = [];
  let offset = 0;
  for (const piece of pieces) {
    const start = Math.max(from - offset, 0);
    const end = Math.min(to - offset, piece.length);
    if (start < end) out.push(start === 0 && end === piece.length ? piece : piece.subarray(start, end));
    offset += piece.length;
    if (offset >= to) break;
  }
  return out;
}

/** Where segment `index` starts in the file. */
export function segmentOffset(index: number, segmentBytes: number): number {
  return HEADER_BYTES + index * (segmentBytes + OVERHEAD);
}

export interface Header {
  key: Buffer;
  segmentBytes: number;
}

/** A new file's header and key. */
export function newHeader(masterKey: Buffer, segmentBytes: number): { bytes: Buffer; header: Header } {
  if (segmentBytes <= 0 || segmentBytes > MAX_SEGMENT_BYTES) throw new SealedFileError("bad segment size");
  const salt = randomBytes(SALT_BYTES);
  const bytes = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(bytes, 0);
  salt.copy(bytes, MAGIC.length);
  bytes.writeUInt32BE(segmentBytes, MAGIC.length + SALT_BYTES);
  return { bytes, header: { key: fileKey(masterKey, salt), segmentBytes } };
}

async function readHeaderBytes(handle: FileHandle): Promise<Buffer> {
  const header = Buffer.alloc(HEADER_BYTES);
  const { bytesRead } = await handle.read(header, 0, HEADER_BYTES, 0);
  if (bytesRead !== HEADER_BYTES || !header.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new SealedFileError("not a sealed blob file");
  }
  const segmentBytes = header.readUInt32BE(MAGIC.length + SALT_BYTES);
  if (segmentBytes === 0 || segmentBytes > MAX_SEGMENT_BYTES) throw new SealedFileError("bad segment size");
  return header;
}

export async function readHeader(handle: FileHandle, masterKey: Buffer): Promise<Header> {
  const header = await readHeaderBytes(handle);
  const salt = header.subarray(MAGIC.length, MAGIC.length + SALT_BYTES);
  return {
    key: fileKey(masterKey, salt),
    segmentBytes: header.readUInt32BE(MAGIC.length + SALT_BYTES),
  };
}

/** The segment size a sealed file was written with. */
export async function readSegmentBytes(handle: FileHandle): Promise<number> {
  return (await readHeaderBytes(handle)).readUInt32BE(MAGIC.length + SALT_BYTES);
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

/** How many bytes to read for segment `index` holding `plainBytes` bytes, and from where. */
export function segmentRead(
  segmentBytes: number,
  index: number,
  plainBytes: number,
): { position: number; bytes: number } {
  const partial = plainBytes < segmentBytes;
  return {
    position: segmentOffset(index, segmentBytes),
    bytes: (partial ? segmentBytes : plainBytes) + OVERHEAD,
  };
}

/**
 * Opens segment `index`, holding `plainBytes` bytes, from the `bytesRead` bytes that
 * `segmentRead` asked for (in `sealed`). The plaintext comes back in pieces of its own.
 *
 * A partial segment, the last one a file is recorded to hold, is either sealed
 * with exactly those bytes or, after an append that was cut off or never
 * recorded, with more (up to a whole segment) that begin with them.
 */
export function openRead(
  key: Buffer,
  segmentBytes: number,
  index: number,
  plainBytes: number,
  sealed: Buffer,
  bytesRead: number,
): Buffer[] {
  if (bytesRead < plainBytes + OVERHEAD) throw new SealedFileError(`segment ${index} is missing`);
  if (plainBytes === segmentBytes) return openSegment(key, index, sealed.subarray(0, plainBytes + OVERHEAD));
  try {
    return openSegment(key, index, sealed.subarray(0, plainBytes + OVERHEAD));
  } catch (error) {
    if (bytesRead === plainBytes + OVERHEAD) throw error;
    return slicePieces(openSegment(key, index, sealed.subarray(0, bytesRead)), 0, plainBytes);
  }
}

/**
 * Reads and opens segment `index`, which holds `plainBytes` bytes, using
 * `buffer` (at least a segment and its overhead long; free again once this
 * resolves). See `openRead`.
 */
export async function readSegment(
  handle: FileHandle,
  header: Header,
  index: number,
  plainBytes: number,
  buffer: Buffer,
): Promise<Buffer[]> {
  const { key, segmentBytes } = header;
  const { position, bytes } = segmentRead(segmentBytes, index, plainBytes);
  const { bytesRead } = await handle.read(buffer, 0, bytes, position);
  return openRead(key, segmentBytes, index, plainBytes, buffer, bytesRead);
}

/** Segment buffers kept for reuse, so that streaming a blob does not allocate one per segment. */
const spareBuffers = new Map<number, Buffer[]>();
const MAX_SPARE_BUFFERS = 16;

/** A buffer for one sealed segment of a file with `segmentBytes` segments (contents undefined). */
export function takeSegmentBuffer(segmentBytes: number): Buffer {
  return spareBuffers.get(segmentBytes)?.pop() ?? Buffer.allocUnsafeSlow(segmentBytes + OVERHEAD);
}

/** Gives back a buffer from `takeSegmentBuffer` that nothing uses any more. */
export function giveSegmentBuffer(buffer: Buffer): void {
  const segmentBytes = buffer.length - OVERHEAD;
  const spare = spareBuffers.get(segmentBytes) ?? [];
  spareBuffers.set(segmentBytes, spare);
  if (spare.length < MAX_SPARE_BUFFERS) spare.push(buffer);
}
