import { ociError } from "./errors.ts";

/** Repository names as the distribution spec defines them: lower-case components joined by `/`. */
const NAME = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
const DIGEST = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;
/** ECR's own limit on repository names. */
export const MAX_NAME_LENGTH = 256;

export function isValidName(name: string): boolean {
  return name.length >= 2 && name.length <= MAX_NAME_LENGTH && NAME.test(name);
}

export function isValidTag(tag: string): boolean {
  return TAG.test(tag);
}

export function isDigest(reference: string): boolean {
  return DIGEST.test(reference);
}

export function requireName(name: string): void {
  if (!isValidName(name)) throw ociError("NAME_INVALID", "invalid repository name", { name });
}

/** A digest Wharf can verify; other algorithms are refused as DIGEST_INVALID (or UNSUPPORTED by callers). */
export function requireDigest(digest: string): void {
  if (!isDigest(digest))
    throw ociError("DIGEST_INVALID", "provided digest did not match uploaded content", { digest });
}

export function algorithmOf(digest: string): "sha256" | "sha512" {
  return digest.startsWith("sha512:") ? "sha512" : "sha256";
}
