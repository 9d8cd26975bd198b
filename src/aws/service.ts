import type { Identity } from "./sigv4.ts";

/** What every operation knows about the request it serves. */
export interface RequestContext {
  requestId: string;
  region: string;
  accountId: string;
  identity: Identity;
  /** The request's time, from the server's injectable clock. */
  now: Date;
}

/**
 * One API operation. `input` is the decoded wire input (a JSON object, or the
 * Query protocol's parameters unflattened into one); the operation validates
 * it at the edge and returns the wire output.
 */
export type Operation = (input: Record<string, unknown>, ctx: RequestContext) => Promise<unknown>;

interface ServiceBase {
  /** The SigV4 signing name, e.g. "ecs", "elasticloadbalancing". */
  signingName: string;
  operations: Record<string, Operation>;
}

/** A service spoken as AWS JSON 1.0/1.1 (`X-Amz-Target: <targetPrefix>.<Operation>`). */
export interface JsonService extends ServiceBase {
  protocol: "json";
  targetPrefix: string;
  jsonVersion: "1.0" | "1.1";
}

/** A service spoken as the Query protocol (`Action=…&Version=…`, XML responses). */
export interface QueryService extends ServiceBase {
  protocol: "query";
  apiVersion: string;
  xmlNamespace: string;
}

export type AwsService = JsonService | QueryService;
