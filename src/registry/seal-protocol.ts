/** Messages between the event loop and a sealing worker (seal-pool.ts, seal-worker.ts). */

/** A worker's `workerData`. */
export interface WorkerOptions {
  /** false: node:crypto even when the in-place cipher (native-gcm.ts) is there. */
  nativeGcm: boolean;
}

/** Seals one segment and writes it at `position` of `fd`; hashes its bytes from `hashFrom` on first. */
export interface SealSegment {
  op: "seal";
  job: number;
  upload: string;
  /** "start" a running sha256 of the upload, "continue" it, or leave it ("none"). */
  hash: "start" | "continue" | "none";
  /** Bytes at the start of `buffer` the running hash has already seen (a re-opened tail). */
  hashFrom: number;
  index: number;
  position: number;
  /** The file, open for writing until the reply arrives; -1 to hash only. */
  fd: number;
  key: Uint8Array;
  /** The plaintext, transferred; it comes back in the reply. */
  buffer: ArrayBuffer;
  length: number;
}

/** The hex sha256 of the upload's bytes so far, if the worker holds its running hash. */
export interface DigestUpload {
  op: "digest";
  job: number;
  upload: string;
}

export interface ForgetUpload {
  op: "forget";
  job: number;
  upload: string;
}

/** Reads segment `index` of `fd` (holding `plainBytes` bytes) and opens it into a shared buffer. */
export interface OpenSegment {
  op: "open";
  job: number;
  fd: number;
  key: Uint8Array;
  segmentBytes: number;
  index: number;
  plainBytes: number;
  /**
   * Where the plaintext goes: shared buffer `shared` (0: one used only this once), at least a
   * segment long. Its memory is sent the first time a worker is asked to use it, and the
   * worker keeps it by number.
   */
  shared: number;
  memory?: SharedArrayBuffer;
}

export type SealRequest = SealSegment | DigestUpload | ForgetUpload | OpenSegment;

export interface SealReply {
  job: number;
  /** A seal's plaintext buffer, given back for reuse. */
  buffer?: ArrayBuffer;
  /** The plaintext bytes an open wrote into its shared buffer. */
  length?: number;
  digest?: string | undefined;
  error?: string;
  /** The error was the file's, not the worker's (a segment missing or failing authentication). */
  sealedFileError?: boolean;
}
