import { randomUUID } from "node:crypto";
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { RequestTooLarge } from "../aws/errors.ts";
import { jsonText } from "../aws/json-text.ts";
import { asAwsError, jsonError } from "./front-door.ts";

/** An agent's request, its body read whole. */
export interface AgentRequest {
  method: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  raw: IncomingMessage;
  /** Its answer: "close" is emitted once it is sent, or when the connection goes first. */
  response: ServerResponse;
}

export type AgentHandler = (request: AgentRequest) => Promise<unknown>;

export interface AgentRoutesOptions {
  /** Largest body taken, in bytes; a larger one is refused with RequestEntityTooLargeException. */
  bodyLimit: number;
  /** Where a request that failed on the server's side is logged, with its method and URL. */
  logError(error: unknown, request: { method: string; url: string }): void;
}

/**
 * The agent protocol's routes, served by node:http ahead of Fastify. Each agent sends a poll and
 * a report for every change to its tasks, so a service's scale-up is mostly these requests, and
 * Fastify's request and reply, logger and content-type handling cost ~11 µs of server CPU a
 * request on top of node's own ~41 (`bench/scheduler/transport.ts`: a keep-alive POST of two
 * task reports). What an agent sees is the same: JSON answers, errors in the AWS JSON shape.
 * Everything else goes to Fastify as before.
 */
export class AgentRoutes {
  private readonly routes = new Map<string, AgentHandler>();
  private closing = false;

  constructor(private readonly options: AgentRoutesOptions) {}

  /** From now on every request is answered 503 and its connection closed, as Fastify does while it closes. */
  close(): void {
    this.closing = true;
  }

  /** Serves POSTs to `path` with `handler`, whose result is the JSON answer. */
  post(path: string, handler: AgentHandler): void {
    this.routes.set(path, handler);
  }

  /** Serves the request when it is a POST to one of the routes; false leaves it to Fastify. */
  handle(raw: IncomingMessage, response: ServerResponse): boolean {
    if (raw.method !== "POST") return false;
    const url = raw.url ?? "";
    const query = url.indexOf("?");
    const handler = this.routes.get(query === -1 ? url : url.slice(0, query));
    if (handler === undefined) return false;
    if (this.closing) {
      response.writeHead(503, { connection: "close", "content-length": 0 });
      response.end();
      return true;
    }
    const chunks: Buffer[] = [];
    let length = 0;
    let refused = false;
    // A client that goes away mid-body: nothing is answered (there is no one to answer).
    raw.once("error", () => {
      refused = true;
    });
    raw.on("data", (chunk: Buffer) => {
      if (refused) return;
      length += chunk.length;
      if (length > this.options.bodyLimit) {
        refused = true;
        response.setHeader("connection", "close");
        this.fail(raw, response, RequestTooLarge("Request entity too large"));
        return;
      }
      chunks.push(chunk);
    });
    raw.once("end", () => {
      if (refused) return;
      const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, length);
      // Nothing it throws may go unhandled: the process would exit.
      this.serve(handler, { method: "POST", headers: raw.headers, body, raw, response }).catch(() =>
        response.destroy(),
      );
    });
    return true;
  }

  private async serve(handler: AgentHandler, request: AgentRequest): Promise<void> {
    const response = request.response;
    try {
      const text = jsonText(await handler(request));
      response.writeHead(200, {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(text),
      });
      response.end(text);
    } catch (error) {
      this.fail(request.raw, response, error);
    }
  }

  /** Answers with the error in the AWS JSON shape, as the front door does. */
  private fail(raw: IncomingMessage, response: ServerResponse, error: unknown): void {
    const awsError = asAwsError(error);
    if (awsError.status >= 500)
      this.options.logError(error, { method: raw.method ?? "", url: raw.url ?? "" });
    if (response.headersSent) {
      response.destroy();
      return;
    }
    const json = jsonError(awsError);
    response.writeHead(awsError.status, {
      ...json.headers,
      "content-length": Buffer.byteLength(json.body),
      "x-amzn-RequestId": randomUUID(),
    });
    response.end(json.body);
  }
}
