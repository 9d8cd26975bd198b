import { createHash, type Hash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { ImageError, type ImageErrorCode } from "./errors.ts";

/** The digest algorithms we verify, with the length of their hex encoding. */
const HEX_LENGTH = { sha256: 64, sha512: 128 } as const;

export type DigestAlgorithm = keyof typeof HEX_LENGTH;

export interface ParsedDigest {
  algorithm: DigestAlgorithm;
  /** Lowercase hex: safe to use as a file name. */
  hex: string;
}

function isAlgorithm(value: string): value is DigestAlgorithm {
  return Object.hasOwn(HEX_LENGTH, value);
}

/** Parses `sha256:<64 hex>` or `sha512:<128 hex>`; anything else throws an ImageError of `code`. */
export function parseDigest(digest: string, code: ImageErrorCode = "INVALID_MANIFEST"): ParsedDigest {
  const colon = digest.indexOf(":");
  const algorithm = digest.slice(0, colon);
  const hex = digest.slice(colon + 1);
  if (colon === -1 || !isAlgorithm(algorithm)) {
    throw new ImageError(code, `unsupported digest "${digest}": only sha256 and sha512 are verified`);
  }
  if (hex.length !== HEX_LENGTH[algorithm] || !/^[0-9a-f]+$/.test(hex)) {
    throw new ImageError(code, `invalid ${algorithm} digest "${digest}"`);
  }
  return { algorithm, hex };
}

export function isDigest(value: string): boolean {
  try {
    parseDigest(value);
    return true;
  } catch {
    return false;
  }
}

/** The digest of `bytes` computed with `algorithm`, as `algorithm:hex`. */
export function digestOf(bytes: Uint8Array, algorithm: DigestAlgorithm = "sha256"): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest("hex")}`;
}

/** Throws DIGEST_MISMATCH unless `bytes` hash to `digest` (and have `size` bytes, when given). */
export function verifyBytes(bytes: Uint8Array, digest: string, what: string, size?: number): void {
  const { algorithm } = parseDigest(digest);
  if (size !== undefined && bytes.length !== size) {
    throw new ImageError("DIGEST_MISMATCH", `${what}: expected ${size} bytes, got ${bytes.length}`);
  }
  const actual = digestOf(bytes, algorithm);
  if (actual !== digest) {
    throw new ImageError("DIGEST_MISMATCH", `${what}: content has digest ${actual}, expected ${digest}`);
  }
}

/**
 * A pass-through stream that hashes what flows through it and fails the stream (so a pipeline
 * rejects) when the total does not match `digest`, or as soon as it exceeds `size` bytes.
 */
export class DigestVerifier extends Transform {
  private readonly hash: Hash;
  private readonly algorithm: DigestAlgorithm;
  private bytes = 0;

  constructor(
    private readonly digest: string,
    private readonly what: string,
    private readonly size?: number,
  ) {
    super();
    this.algorithm = parseDigest(digest).algorithm;
    this.hash = createHash(this.algorithm);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.size !== undefined && this.bytes > this.size) {
      callback(new ImageError("DIGEST_MISMATCH", `${this.what}: more than the expected ${this.size} bytes`));
      return;
    }
    this.hash.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (this.size !== undefined && this.bytes !== this.size) {
      callback(
        new ImageError("DIGEST_MISMATCH", `${this.what}: expected ${this.size} bytes, got ${this.bytes}`),
      );
      return;
    }
    const actual = `${this.algorithm}:${this.hash.digest("hex")}`;
    if (actual !== this.digest) {
      callback(
        new ImageError(
          "DIGEST_MISMATCH",
          `${this.what}: content has digest ${actual}, expected ${this.digest}`,
        ),
      );
      return;
    }
    callback();
  }
}
