/**
 * Errors of the container runtime seam. Each has a stable `code` the engine
 * maps once (for example to ECS `stoppedReason` or `CannotStartContainerError`).
 */

export type RuntimeErrorCode =
  /** The container definition cannot be turned into a spec (bad user, path, capability, …). */
  | "invalid_spec"
  /** A container id that is not safe to use as a runc id and file name. */
  | "invalid_id"
  /** runc refused or failed to start the container; the message carries runc's own words. */
  | "start_failed"
  /** The container is not known to runc and left no exit record. */
  | "not_found"
  /** A runc command failed. */
  | "runc_failed"
  /** An operation ran out of time. */
  | "timeout"
  /** The caller's AbortSignal fired. */
  | "aborted";

export class RuntimeError extends Error {
  readonly code: RuntimeErrorCode;

  constructor(code: RuntimeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "RuntimeError";
    this.code = code;
  }
}

const CONTAINER_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

/** Throws `invalid_id` unless `id` is safe as a runc container id and a file name. */
export function assertContainerId(id: string): void {
  if (!CONTAINER_ID.test(id)) {
    throw new RuntimeError(
      "invalid_id",
      `invalid container id ${JSON.stringify(id)}: it must match ${CONTAINER_ID.source}`,
    );
  }
}
