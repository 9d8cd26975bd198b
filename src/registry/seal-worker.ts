// A sealing worker (see seal-pool.ts): hashes each upload's bytes in order, seals
// segments and writes them at their place, off the event loop.
import { createHash, type Hash } from "node:crypto";
import { readSync, writevSync } from "node:fs";
import { parentPort } from "node:worker_threads";
import type { SealReply, SealRequest } from "./seal-protocol.ts";
import { OVERHEAD, openRead, SealedFileError, SegmentSealer, segmentRead } from "./sealed-format.ts";

const port = parentPort;
if (port === null) throw new Error("seal-worker.ts runs as a worker thread");

/** Running hashes of uploads in progress, by upload id. */
const hashes = new Map<string, Hash>();
/** Where sealed segments are read to (grown to the largest segment seen). */
let scratch = Buffer.alloc(0);

/** Reads and opens one segment into the request's buffer; its length comes back. */
function openInto(request: Extract<SealRequest, { op: "open" }>): number {
  const { segmentBytes, index, plainBytes } = request;
  if (scratch.length < segmentBytes + OVERHEAD) scratch = Buffer.allocUnsafeSlow(segmentBytes + OVERHEAD);
  const { position, bytes } = segmentRead(segmentBytes, index, plainBytes);
  const bytesRead = readSync(request.fd, scratch, 0, bytes, position);
  const out = Buffer.from(request.buffer);
  let length = 0;
  for (const piece of openRead(
    Buffer.from(request.key),
    segmentBytes,
    index,
    plainBytes,
    scratch,
    bytesRead,
  )) {
    piece.copy(out, length);
    length += piece.length;
  }
  return length;
}

function handle(request: SealRequest): SealReply {
  switch (request.op) {
    case "seal": {
      const plaintext = Buffer.from(request.buffer, 0, request.length);
      if (request.hash === "start") hashes.set(request.upload, createHash("sha256"));
      // "continue" without a running hash (this worker was started since): the caller reads back.
      if (request.hash !== "none") hashes.get(request.upload)?.update(plaintext.subarray(request.hashFrom));
      if (request.fd >= 0) {
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
      return { job: request.job, buffer: request.buffer, length: openInto(request) };
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
      ...(request.op === "seal" || request.op === "open" ? { buffer: request.buffer } : {}),
    };
  }
  port.postMessage(reply, reply.buffer === undefined ? [] : [reply.buffer]);
});
