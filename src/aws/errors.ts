/**
 * Typed AWS errors. Domain code throws these; each wire protocol maps them
 * once (JSON 1.1 `__type`, Query `<Code>`), so no handler builds an error
 * response by hand.
 */

export type Fault = "Sender" | "Receiver";

export interface AwsErrorOptions {
  /** HTTP status; 400 unless the error says otherwise. */
  status?: number;
  /** Who is at fault, for the Query protocol's `<Type>`. */
  fault?: Fault;
  /** The code the Query protocol uses when it differs from the JSON one. */
  queryCode?: string;
}

export class AwsError extends Error {
  readonly code: string;
  readonly status: number;
  readonly fault: Fault;
  readonly queryCode: string;

  constructor(code: string, message: string, options: AwsErrorOptions = {}) {
    super(message);
    this.name = code;
    this.code = code;
    this.status = options.status ?? 400;
    this.fault = options.fault ?? (this.status >= 500 ? "Receiver" : "Sender");
    this.queryCode = options.queryCode ?? code;
  }
}

/** Declares an error code once, with its status and Query code, for reuse. */
export function errorType(code: string, options: AwsErrorOptions = {}) {
  return (message: string) => new AwsError(code, message, options);
}

// Errors the front door itself raises, shared by every service.

export const MissingAuthenticationToken = errorType("MissingAuthenticationTokenException", {
  status: 403,
  queryCode: "MissingAuthenticationToken",
});
export const UnrecognizedClient = errorType("UnrecognizedClientException", {
  status: 403,
  queryCode: "InvalidClientTokenId",
});
export const InvalidSignature = errorType("InvalidSignatureException", {
  status: 403,
  queryCode: "SignatureDoesNotMatch",
});
export const IncompleteSignature = errorType("IncompleteSignatureException", {
  status: 400,
  queryCode: "IncompleteSignature",
});
export const UnknownOperation = errorType("UnknownOperationException", { queryCode: "InvalidAction" });
export const Serialization = errorType("SerializationException", { queryCode: "MalformedQueryString" });
export const RequestTooLarge = errorType("RequestEntityTooLargeException", {
  status: 413,
  queryCode: "RequestEntityTooLarge",
});
export const InternalFailure = errorType("InternalFailure", { status: 500, queryCode: "InternalFailure" });
export const MissingParameter = errorType("MissingParameter", { queryCode: "MissingParameter" });
export const InvalidParameterValue = errorType("InvalidParameterValue");
