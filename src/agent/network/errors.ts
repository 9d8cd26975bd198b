/**
 * Errors of the node network. Each has a stable `code` the agent maps once
 * onto what it reports to the server (for example a task that stops with
 * `PORT_IN_USE` as its reason).
 */

export type NetworkErrorCode =
  | "INVALID_ARGUMENT"
  | "PORT_IN_USE"
  | "NO_FREE_PORT"
  | "NO_FREE_ADDRESS"
  | "COMMAND_FAILED";

export class NetworkError extends Error {
  readonly code: NetworkErrorCode;

  constructor(code: NetworkErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "NetworkError";
    this.code = code;
  }
}

export function invalidArgument(message: string): NetworkError {
  return new NetworkError("INVALID_ARGUMENT", message);
}
