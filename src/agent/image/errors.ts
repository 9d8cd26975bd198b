/**
 * Errors of the image puller, each with a stable code. The agent reports them to the server as
 * they are (`code` and `message`); nothing here knows about HTTP responses of its own.
 */

export const IMAGE_ERROR_CODES = [
  /** The image reference does not parse. */
  "INVALID_REFERENCE",
  /** The registry answered 401/403, or gave a challenge we cannot meet. */
  "UNAUTHORIZED",
  /** The registry has no such repository, tag, manifest or blob. */
  "NOT_FOUND",
  /** Any other unexpected registry answer, or a failed connection. */
  "REGISTRY_ERROR",
  /** A network call took longer than its timeout. */
  "TIMEOUT",
  /** The caller's signal fired. */
  "ABORTED",
  /** Content did not match its digest or size. */
  "DIGEST_MISMATCH",
  /** A manifest, index or config that does not parse, or a media type we do not handle. */
  "INVALID_MANIFEST",
  "UNSUPPORTED_MEDIA_TYPE",
  /** An index with no manifest for the requested platform, or an image built for another one. */
  "PLATFORM_MISMATCH",
  /** A layer that would write outside the root filesystem, or that is not a valid tar. */
  "INVALID_LAYER",
  /** The local filesystem failed (full disk, permissions). */
  "STORAGE_ERROR",
] as const;

export type ImageErrorCode = (typeof IMAGE_ERROR_CODES)[number];

export class ImageError extends Error {
  readonly code: ImageErrorCode;

  constructor(code: ImageErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ImageError";
    this.code = code;
  }
}

const FILE_SYSCALLS = new Set([
  "open",
  "close",
  "write",
  "writev",
  "fsync",
  "fdatasync",
  "rename",
  "mkdir",
  "mkdtemp",
  "unlink",
  "rmdir",
  "rm",
  "stat",
  "lstat",
  "fstat",
  "chmod",
  "fchmod",
  "chown",
  "fchown",
  "lchown",
  "utime",
  "futime",
  "lutime",
  "symlink",
  "link",
  "scandir",
  "readdir",
  "copyfile",
]);

/**
 * Whether a Node system error came from writing to the filesystem (a failed socket read has
 * syscall "read", which is therefore not counted; the puller never writes to a socket mid-body).
 */
export function isFileSystemError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if ("path" in error && typeof error.path === "string") return true;
  return "syscall" in error && typeof error.syscall === "string" && FILE_SYSCALLS.has(error.syscall);
}

/** `error` when it is already an ImageError, else one of `code` wrapping it. */
export function asImageError(error: unknown, code: ImageErrorCode, context: string): ImageError {
  if (error instanceof ImageError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new ImageError(code, `${context}: ${message}`, { cause: error });
}
