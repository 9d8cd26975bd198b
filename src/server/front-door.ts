import { randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import {
  AwsError,
  InternalFailure,
  MissingAuthenticationToken,
  RequestTooLarge,
  Serialization,
  UnknownOperation,
} from "../aws/errors.ts";
import { jsonText } from "../aws/json-text.ts";
import { parseParams, queryError, queryResponse, unflatten } from "../aws/query.ts";
import type { AwsService, JsonService, QueryService, RequestContext } from "../aws/service.ts";
import { type Identity, parseCredential, type SignedRequest, verifySigV4 } from "../aws/sigv4.ts";

export interface FrontDoorOptions {
  services: AwsService[];
  region: string;
  accountId: string;
  clock: () => Date;
  lookupSecret(accessKeyId: string): string | undefined;
}

const JSON_TYPES = new Set(["application/x-amz-json-1.0", "application/x-amz-json-1.1"]);
const FORM_TYPE = "application/x-www-form-urlencoded";

/** The media type without parameters, lower-cased. */
function mediaType(request: FastifyRequest): string {
  return (request.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
}

export function signedRequest(request: {
  method: string;
  raw: { url?: string | undefined; headersDistinct: NodeJS.Dict<string[]> };
  body: unknown;
}): SignedRequest {
  const url = request.raw.url ?? "/";
  const q = url.indexOf("?");
  return {
    method: request.method,
    path: q === -1 ? url : url.slice(0, q),
    query: q === -1 ? "" : url.slice(q + 1),
    // Distinct values keep repeated signed headers exactly as the client signed them.
    headers: request.raw.headersDistinct,
    body: Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0),
  };
}

/** Which wire protocol a request to `/` speaks; decides the shape of its errors too. */
export function protocolOf(request: FastifyRequest): "json" | "query" {
  if (request.headers["x-amz-target"] !== undefined) return "json";
  if (mediaType(request) === FORM_TYPE || request.method === "GET") return "query";
  return "json";
}

/**
 * The AWS front door: one route that recognises JSON 1.0/1.1 and Query
 * requests, checks their SigV4 signature, runs the operation and maps any
 * error to the protocol's own shape, once.
 */
export function registerFrontDoor(app: FastifyInstance, options: FrontDoorOptions): void {
  const byTarget = new Map<string, JsonService>();
  const bySigningName = new Map<string, QueryService>();
  const byVersion = new Map<string, QueryService>();
  for (const service of options.services) {
    if (service.protocol === "json") byTarget.set(service.targetPrefix, service);
    else {
      bySigningName.set(service.signingName, service);
      byVersion.set(service.apiVersion, service);
    }
  }

  const authenticate = (request: FastifyRequest, service: AwsService, now: Date): Identity =>
    verifySigV4(signedRequest(request), {
      region: options.region,
      service: service.signingName,
      now,
      lookupSecret: options.lookupSecret,
    });

  const context = (requestId: string, identity: Identity, now: Date): RequestContext => ({
    requestId,
    region: options.region,
    accountId: options.accountId,
    identity,
    now,
  });

  async function handleJson(request: FastifyRequest, reply: FastifyReply, requestId: string): Promise<void> {
    const target = String(request.headers["x-amz-target"]);
    const dot = target.lastIndexOf(".");
    const service = dot > 0 ? byTarget.get(target.slice(0, dot)) : undefined;
    const operationName = dot > 0 ? target.slice(dot + 1) : "";
    if (service === undefined || !JSON_TYPES.has(mediaType(request))) {
      throw UnknownOperation(`Operation ${target} is not recognized.`);
    }
    const now = options.clock();
    const identity = authenticate(request, service, now);
    const operation = Object.hasOwn(service.operations, operationName)
      ? service.operations[operationName]
      : undefined;
    if (operation === undefined) throw UnknownOperation(`Operation ${operationName} is not recognized.`);
    const input = parseJsonBody(request.body);
    const output = await operation(input, context(requestId, identity, now));
    void reply
      .status(200)
      .header("content-type", `application/x-amz-json-${service.jsonVersion}`)
      .send(jsonText(output));
  }

  async function handleQuery(request: FastifyRequest, reply: FastifyReply, requestId: string): Promise<void> {
    const signed = signedRequest(request);
    const params = parseParams(signed.query);
    if (request.method !== "GET") {
      for (const [key, value] of parseParams(signed.body.toString("utf8"))) params.set(key, value);
    }
    const credential = parseCredential(signed);
    const service =
      (credential === undefined ? undefined : bySigningName.get(credential.service)) ??
      byVersion.get(params.get("Version") ?? "");
    if (service === undefined) {
      if (credential === undefined) throw MissingAuthenticationToken("Missing Authentication Token");
      throw UnknownOperation(`No service is served for the signing name '${credential.service}'.`);
    }
    try {
      await runQuery(request, reply, requestId, service, params);
    } catch (error) {
      sendAwsError(request, reply, error, service.xmlNamespace);
    }
  }

  async function runQuery(
    request: FastifyRequest,
    reply: FastifyReply,
    requestId: string,
    service: QueryService,
    params: Map<string, string>,
  ): Promise<void> {
    const now = options.clock();
    const identity = authenticate(request, service, now);
    const action = params.get("Action") ?? "";
    const version = params.get("Version") ?? "";
    const operation = Object.hasOwn(service.operations, action) ? service.operations[action] : undefined;
    if (operation === undefined) {
      throw UnknownOperation(`Could not find operation ${action} for version ${version}`);
    }
    if (version !== service.apiVersion) {
      throw new AwsError("InvalidAction", `Could not find operation ${action} for version ${version}`);
    }
    const output = await operation(unflatten(params), context(requestId, identity, now));
    void reply
      .status(200)
      .header("content-type", "text/xml")
      .send(queryResponse(action, service.xmlNamespace, output, requestId));
  }

  const handle = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const requestId = randomUUID();
    void reply.header("x-amzn-RequestId", requestId);
    if (protocolOf(request) === "json") await handleJson(request, reply, requestId);
    else await handleQuery(request, reply, requestId);
  };

  app.post("/", handle);
  app.get("/", handle);
}

function parseJsonBody(body: unknown): Record<string, unknown> {
  const text = Buffer.isBuffer(body) ? body.toString("utf8") : "";
  if (text.trim() === "") return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw Serialization("Start of structure or map found where not expected.");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw Serialization("Start of structure or map found where not expected.");
  }
  return parsed as Record<string, unknown>;
}

/** Fastify's own errors (body too large, bad content type, …) as the AWS error they are. */
export function asAwsError(error: unknown): AwsError {
  if (error instanceof AwsError) return error;
  const fastifyError = error as { code?: string; statusCode?: number; message?: string };
  if (fastifyError.code === "FST_ERR_CTP_BODY_TOO_LARGE") return RequestTooLarge("Request entity too large");
  const status = fastifyError.statusCode;
  if (typeof status === "number" && Number.isInteger(status) && status >= 400 && status < 500) {
    return new AwsError("SerializationException", fastifyError.message ?? "Malformed request", {
      status,
      queryCode: "MalformedQueryString",
    });
  }
  return InternalFailure("We encountered an internal error. Please try again.");
}

/** Writes an error in the shape of the protocol the request spoke. */
export function sendAwsError(
  request: FastifyRequest,
  reply: FastifyReply,
  error: unknown,
  xmlNamespace?: string,
): void {
  const awsError = asAwsError(error);
  if (awsError.status >= 500) request.log.error({ err: error }, "request failed");
  const requestId = (reply.getHeader("x-amzn-RequestId") as string | undefined) ?? randomUUID();
  void reply.header("x-amzn-RequestId", requestId).status(awsError.status);
  if (protocolOf(request) === "query") {
    void reply.header("content-type", "text/xml").send(queryError(awsError, xmlNamespace, requestId));
    return;
  }
  const json = jsonError(awsError);
  void reply.headers(json.headers).send(json.body);
}

/** An error in the AWS JSON protocol's shape: its headers (but the request id) and its body. */
export function jsonError(awsError: AwsError): { headers: Record<string, string>; body: string } {
  return {
    headers: { "content-type": "application/x-amz-json-1.1", "x-amzn-ErrorType": awsError.code },
    body: JSON.stringify({ __type: awsError.code, message: awsError.message }),
  };
}
