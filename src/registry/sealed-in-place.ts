import { randomFillSync } from "node:crypto";
import { readSync, readvSync, writeSync } from "node:fs";
import type { NativeGcm } from "./native-gcm.ts";
import { NONCE_BYTES, OVERHEAD, SealedFileError, segmentRead, TAG_BYTES } from "./sealed-format.ts";

/**
 * Segments of the sealed format (sealed-format.ts) sealed and opened with the native cipher
 * (native-gcm.ts), straight between the file and a given buffer: no allocation per segment.
 * A sealing worker thread uses these; the buffers below are that thread's own, reused from one
 * segment to the next (a thread handles one segment at a time).
 */

const nonce = Buffer.alloc(NONCE_BYTES);
const tag = Buffer.alloc(TAG_BYTES);
const aad = Buffer.alloc(8);
/** nonce, the plaintext's place, tag: one `preadv` puts the ciphertext where its plaintext goes. */
const vectors: Buffer[] = [nonce, Buffer.alloc(0), tag];
/** A whole sealed segment (grown to the largest needed). */
let scratch = Buffer.alloc(0);

function scratchOf(bytes: number): Buffer {
  if (scratch.length < bytes) scratch = Buffer.allocUnsafeSlow(bytes);
  return scratch;
}

/** The associated data of segment `index` (as sealed-format.ts's indexAad). */
function aadOf(index: number): Buffer {
  aad.writeBigUInt64BE(BigInt(index));
  return aad;
}

/**
 * Reads segment `index` of `fd`, holding `plainBytes` bytes, and opens it into `out` (at least a
 * segment long); the plaintext's length comes back. A whole segment's ciphertext is read into
 * `out` itself and decrypted there. When the segment is missing or fails authentication this
 * throws SealedFileError and leaves the segment's range of `out` zeroed: no unauthenticated
 * plaintext is left where a caller could send it.
 *
 * A partial segment is read aside first, as it may be sealed with more bytes than recorded
 * (see `openRead` in sealed-format.ts, which this follows).
 */
export function openSegmentInto(
  gcm: NativeGcm,
  fd: number,
  key: Uint8Array,
  segmentBytes: number,
  index: number,
  plainBytes: number,
  out: Buffer,
): number {
  if (plainBytes <= 0 || plainBytes > segmentBytes || out.length < segmentBytes)
    throw new Error(`no room for segment ${index} (${plainBytes} bytes) in ${out.length}`);
  const { position, bytes } = segmentRead(segmentBytes, index, plainBytes);
  if (plainBytes === segmentBytes) {
    let bytesRead: number;
    vectors[1] = out.length === plainBytes ? out : out.subarray(0, plainBytes);
    try {
      bytesRead = readvSync(fd, vectors, position);
    } finally {
      vectors[1] = scratch; // hold no reference to `out` between requests
    }
    if (bytesRead < bytes) {
      out.fill(0, 0, plainBytes);
      throw new SealedFileError(`segment ${index} is missing`);
    }
    if (!gcm.open(key, nonce, aadOf(index), out, 0, out, 0, plainBytes, tag))
      throw new SealedFileError(`segment ${index} failed authentication`);
    return plainBytes;
  }
  const sealed = scratchOf(bytes);
  const bytesRead = readSync(fd, sealed, 0, bytes, position);
  if (bytesRead < plainBytes + OVERHEAD) throw new SealedFileError(`segment ${index} is missing`);
  sealed.copy(nonce, 0, 0, NONCE_BYTES);
  // Sealed with exactly the recorded bytes, or (an append cut off) with more that begin with them.
  const sizes = bytesRead === plainBytes + OVERHEAD ? [plainBytes] : [plainBytes, bytesRead - OVERHEAD];
  for (const sealedBytes of sizes) {
    sealed.copy(tag, 0, NONCE_BYTES + sealedBytes, OVERHEAD + sealedBytes);
    if (gcm.open(key, nonce, aadOf(index), sealed, NONCE_BYTES, out, 0, sealedBytes, tag)) return plainBytes;
  }
  throw new SealedFileError(`segment ${index} failed authentication`);
}

/**
 * Seals `plaintext` as segment `index` with a fresh random nonce and writes it at `position` of
 * `fd` (nonce | ciphertext | tag, one write unless the file takes less at once).
 */
export function sealSegmentAt(
  gcm: NativeGcm,
  fd: number,
  key: Uint8Array,
  index: number,
  plaintext: Uint8Array,
  position: number,
): void {
  const length = plaintext.length;
  const sealed = scratchOf(length + OVERHEAD);
  randomFillSync(nonce);
  nonce.copy(sealed, 0);
  gcm.seal(key, nonce, aadOf(index), plaintext, 0, sealed, NONCE_BYTES, length, tag);
  tag.copy(sealed, NONCE_BYTES + length);
  let written = 0;
  while (written < length + OVERHEAD) {
    const now = writeSync(fd, sealed, written, length + OVERHEAD - written, position + written);
    if (now === 0) throw new Error(`segment ${index}: the file took no bytes`);
    written += now;
  }
}
