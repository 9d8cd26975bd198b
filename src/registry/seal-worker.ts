// A sealing worker (see seal-pool.ts): hashes each upload's bytes in order, seals
// segments and writes them at their place, off the event loop.
import { createHash, type Hash } from "node:crypto";
import { readSync, writevSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { nativeGcm } from "./native-gcm.ts";
import type { SealReply, SealRequest, WorkerOptions } from "./seal-protocol.ts";
import { OVERHEAD, openRead, SealedFileError, SegmentSealer, segmentRead } from "./sealed-format.ts";
import { openSegmentInto, sealSegmentAt } from "./sealed-in-place.ts";

const port = parentPort;
if (port === null) throw new Error("seal-worker.ts runs as a worker thread");
/** The in-place cipher, unless the pool asked for node:crypto (or the addon is not there). */
const gcm = (workerData as WorkerOptions | undefined)?.nativeGcm === false ? undefined : nativeGcm;

/** Running hashes of uploads in progress, by upload id. */
const hashes = new Map<string, Hash>();
/** Plaintext buffers shared with the event loop, by number (see seal-pool.ts `takeShared`). */
const shared = new Map<number, Buffer>();
/** Where sealed segments are read to (grown to the largest segment seen). */
let scratch = Buffer.alloc(0);

/**
 * Reads and opens one segment into the request's shared buffer; its length comes back. With
 * the in-place cipher, the ciphertext is read into the buffer and decrypted there, and a
 * segment that fails leaves its range zeroed; with node:crypto, the plaintext is copied there
 * only once the whole segment has authenticated. Either way the event loop reads the buffer
 * only after a reply without an error.
 */
function openInto(request: Extract<SealRequest, { op: "open" }>): number {
  const { segmentBytes, index, plainBytes } = request;
  if (request.memory !== undefined && request.shared !== 0)
    shared.set(request.shared, Buffer.from(request.memory));
  const out = request.memory === undefined ? shared.get(request.shared) : Buffer.from(request.memory);
  if (out === undefined) throw new Error(`no shared buffer ${request.shared}`);
  if (gcm !== undefined)
    return openSegmentInto(gcm, request.fd, request.key, segmentBytes, index, plainBytes, out);
  if (scratch.length < segmentBytes + OVERHEAD) scratch = Buffer.allocUnsafeSlow(segmentBytes + OVERHEAD);
  const { position, bytes } = segmentRead(segmentBytes, index, plainBytes);
  const bytesRead = readSync(request.fd, scratch, 0, bytes, position);
  let length = 0;
  for (const piece of openRead(
    Buffer.from(request.key),
    segmentBytes,
    index,
    plainBytes,
    scratch,
    bytesRead,
  )) {
    // `fill` with a buffer copies it once with memcpy; `copy` (TypedArray set) into shared
    // memory moves it a word at a time (V8's relaxed_memmove), twice as slow here.
    out.fill(piece, length, length + piece.length);
    length += piece.length;
  }
  return length;
}

/** Seals one segment with node:crypto and writes it at its place (one `writev` of its pieces). */
function sealWithNodeCrypto(request: Extract<SealRequest, { op: "seal" }>, plaintext: Buffer): void {
  const sealer = new SegmentSealer(Buffer.from(request.key), request.index);
  sealer.update(plaintext);
  const pieces = sealer.finish();
  let position = request.position;
  let left = pieces.reduce((sum, piece) => sum + piece.length, 0);
  while (left > 0) {
    const written = writevSync(request.fd, pieces, position);
    if (written === left) break;
    // A short write (rare for regular files): write the rest.
    let skip = written;
    while (skip > 0 && pieces.length > 0) {
      const first = pieces[0] as Buffer;
      if (first.length <= skip) {
        skip -= first.length;
        pieces.shift();
      } else {
        pieces[0] = first.subarray(skip);
        skip = 0;
      }
    }
    position += written;
    left -= written;
  }
}

function handle(request: SealRequest): SealReply {
  switch (request.op) {
    case "seal": {
      const plaintext = Buffer.from(request.buffer, 0, request.length);
      if (request.hash === "start") hashes.set(request.upload, createHash("sha256"));
      // "continue" without a running hash (this worker was started since): the caller reads back.
      if (request.hash !== "none") hashes.get(request.upload)?.update(plaintext.subarray(request.hashFrom));
      if (request.fd >= 0 && gcm !== undefined)
        sealSegmentAt(gcm, request.fd, request.key, request.index, plaintext, request.position);
      else if (request.fd >= 0) sealWithNodeCrypto(request, plaintext);
      return { job: request.job, buffer: request.buffer };
    }
    case "digest": {
      const hash = hashes.get(request.upload);
      return { job: request.job, digest: hash === undefined ? undefined : hash.copy().digest("hex") };
    }
    case "forget":
      hashes.delete(request.upload);
      return { job: request.job };
    case "open":
      return { job: request.job, length: openInto(request) };
  }
}

port.on("message", (request: SealRequest) => {
  let reply: SealReply;
  try {
    reply = handle(request);
  } catch (error) {
    if (request.op === "seal") hashes.delete(request.upload); // the running hash no longer matches
    reply = {
      job: request.job,
      error: error instanceof Error ? error.message : String(error),
      sealedFileError: error instanceof SealedFileError,
      ...(request.op === "seal" ? { buffer: request.buffer } : {}),
    };
  }
  port.postMessage(reply, reply.buffer === undefined ? [] : [reply.buffer]);
});
