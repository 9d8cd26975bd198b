/**
 * The OCI distribution error registry: each code with its HTTP status, mapped
 * to the `{"errors":[…]}` envelope once, by the /v2/ routes.
 */

export const OCI_ERRORS = {
  BLOB_UNKNOWN: 404,
  BLOB_UPLOAD_INVALID: 400,
  BLOB_UPLOAD_UNKNOWN: 404,
  DIGEST_INVALID: 400,
  MANIFEST_BLOB_UNKNOWN: 400,
  MANIFEST_INVALID: 400,
  MANIFEST_UNKNOWN: 404,
  NAME_INVALID: 400,
  NAME_UNKNOWN: 404,
  SIZE_INVALID: 400,
  TAG_INVALID: 400,
  UNAUTHORIZED: 401,
  DENIED: 403,
  UNSUPPORTED: 405,
  TOOMANYREQUESTS: 429,
} as const;

export type OciErrorCode = keyof typeof OCI_ERRORS;

export class RegistryError extends Error {
  readonly code: OciErrorCode;
  readonly status: number;
  readonly detail: unknown;
  /** A `WWW-Authenticate` challenge to send with the error (UNAUTHORIZED). */
  challenge?: string;

  constructor(code: OciErrorCode, message: string, detail?: unknown, status?: number) {
    super(message);
    this.name = code;
    this.code = code;
    this.status = status ?? OCI_ERRORS[code];
    this.detail = detail;
  }
}

export function ociError(code: OciErrorCode, message: string, detail?: unknown): RegistryError {
  return new RegistryError(code, message, detail);
}

export function ociErrorBody(error: RegistryError): string {
  const entry: Record<string, unknown> = { code: error.code, message: error.message };
  if (error.detail !== undefined) entry.detail = error.detail;
  return JSON.stringify({ errors: [entry] });
}
