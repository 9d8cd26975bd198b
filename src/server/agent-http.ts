import { randomUUID } from "node:crypto";
import { type IncomingHttpHeaders, type IncomingMessage, ServerResponse, STATUS_CODES } from "node:http";
import { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { AwsError, RequestTooLarge } from "../aws/errors.ts";
import { jsonText } from "../aws/json-text.ts";
import {
  answerFrame,
  CHANNEL_PATH,
  CHANNEL_PROTOCOL,
  FrameReader,
  type FrameRequest,
  INTERIM,
  isOversized,
  MAX_REQUEST_HEAD,
  readRequest,
} from "../shared/agent-frames.ts";
import { asAwsError, jsonError } from "./front-door.ts";

/** An agent's request, its body read whole: a POST, or a frame on the agent's channel. */
export interface AgentRequest {
  method: string;
  /** The path (and query) it was sent to. */
  url: string;
  headers: IncomingHttpHeaders;
  /** The headers with repeated ones kept apart, as SigV4 reads them. */
  headersDistinct: NodeJS.Dict<string[]>;
  body: Buffer;
  /** Whether the agent has gone (its connection closed). */
  gone(): boolean;
  /** Calls `listener` once if the agent goes before the answer is sent; what it returns stops that. */
  onGone(listener: () => void): () => void;
  /**
   * Sends `body` (JSON) ahead of the answer, as an interim answer: only on the agent's channel
   * (a POST has one answer), and only until the handler has returned.
   */
  interim?(body: unknown): void;
}

export type AgentHandler = (request: AgentRequest) => Promise<unknown>;

export interface AgentRoutesOptions {
  /** Largest body taken, in bytes; a larger one is refused with RequestEntityTooLargeException. */
  bodyLimit: number;
  /** Where a request that failed on the server's side is logged, with its method and URL. */
  logError(error: unknown, request: { method: string; url: string }): void;
}

/**
 * The agent protocol's routes, served by node:http ahead of Fastify, as POSTs and as frames on
 * each agent's channel (src/shared/agent-frames.ts). Each agent sends a poll and a report for
 * every change to its tasks, so a service's scale-up is mostly these requests: Fastify's request
 * and reply, logger and content-type handling cost ~11 µs of server CPU a request on top of
 * node's own ~30, and a frame on an open connection ~17 in all (`bench/scheduler/transport.ts`:
 * two task reports). What an agent sees is the same: JSON answers, errors in the AWS JSON shape.
 * Everything else goes to Fastify as before.
 */
export class AgentRoutes {
  private readonly routes = new Map<string, AgentHandler>();
  private readonly channels = new Set<Channel>();
  /** Upgraded connections that are not channels (served plainly, or refused), until they close. */
  private readonly others = new Set<Duplex>();
  private closing = false;

  constructor(private readonly options: AgentRoutesOptions) {}

  /**
   * From now on every request is answered 503 and its connection closed, as Fastify does while it
   * closes; each channel is closed once what it is serving has been answered.
   */
  close(): void {
    this.closing = true;
    for (const channel of this.channels) channel.end();
    // An agent that does not close its end (frozen, or cut off) would hold the server's close:
    // what is left after a grace period is closed from here.
    setTimeout(() => {
      for (const channel of this.channels) channel.destroy();
      for (const socket of this.others) socket.destroy();
    }, CLOSE_GRACE_MS).unref();
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
      const request: AgentRequest = {
        method: "POST",
        url,
        headers: raw.headers,
        headersDistinct: raw.headersDistinct,
        body,
        gone: () => raw.socket.destroyed,
        onGone(listener) {
          response.once("close", listener);
          return () => response.off("close", listener);
        },
      };
      // Nothing it throws may go unhandled: the process would exit.
      this.serve(handler, request, raw, response).catch(() => response.destroy());
    });
    return true;
  }

  /**
   * Takes an upgrade request (node's server emits every one here once anything listens): the
   * agent channel's is switched to frames. Any other is answered as if it asked for no upgrade
   * (as HTTP allows a server to), by `otherwise`, on a connection closed after the answer: a
   * client offering h2c (`curl --http2`) gets its HTTP/1.1 answer. One with a body, which node
   * no longer reads once a request upgrades, is refused.
   */
  upgrade(
    raw: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    otherwise?: (request: IncomingMessage, response: ServerResponse) => void,
  ): void {
    // Node takes its own error listener off an upgraded socket: without one, a client that
    // resets the connection while it is answered would end the process.
    socket.on("error", () => socket.destroy());
    // Pipelined behind a request node is still answering on this connection: taken after that
    // answer, so that nothing is written into the middle of it.
    const answering = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
    if (answering != null)
      answering.once("finish", () => process.nextTick(() => this.takeUpgrade(raw, socket, head, otherwise)));
    else this.takeUpgrade(raw, socket, head, otherwise);
  }

  private takeUpgrade(
    raw: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    otherwise?: (request: IncomingMessage, response: ServerResponse) => void,
  ): void {
    if (socket.destroyed) return;
    const url = raw.url ?? "";
    const query = url.indexOf("?");
    const path = query === -1 ? url : url.slice(0, query);
    const protocol = raw.headers.upgrade?.toLowerCase();
    if (path !== CHANNEL_PATH || protocol !== CHANNEL_PROTOCOL) {
      this.others.add(socket);
      socket.once("close", () => this.others.delete(socket));
      const bodiless = (raw.method === "GET" || raw.method === "HEAD") && noBody(raw.headers);
      if (otherwise !== undefined && bodiless && socket instanceof Socket) {
        try {
          const response = new ServerResponse(raw);
          response.shouldKeepAlive = false;
          response.assignSocket(socket);
          response.once("finish", () => {
            response.detachSocket(socket);
            socket.destroySoon();
          });
          otherwise(raw, response);
        } catch {
          socket.destroy();
        }
        return;
      }
      refuse(
        socket,
        new AwsError("UnsupportedUpgrade", `Upgrading to ${protocol ?? ""} is not supported here.`),
      );
      return;
    }
    if (this.closing) {
      refuse(socket, CLOSING);
      return;
    }
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: ${CHANNEL_PROTOCOL}\r\n\r\n`,
    );
    const channel = new Channel(socket, raw, head, this);
    this.channels.add(channel);
    socket.once("close", () => this.channels.delete(channel));
  }

  /** How many channels are open. */
  get channelCount(): number {
    return this.channels.size;
  }

  /** The handler a channel's frame to `path` goes to; undefined when there is none. */
  handlerOf(path: string): AgentHandler | undefined {
    return this.routes.get(path);
  }

  /** Whether new requests are refused (the server is closing). */
  get isClosing(): boolean {
    return this.closing;
  }

  /** The largest body taken. */
  get bodyLimit(): number {
    return this.options.bodyLimit;
  }

  /** The error an agent's request ended in, in the AWS shape; logged when it is the server's. */
  failure(error: unknown, request: { method: string; url: string }): AwsError {
    const awsError = asAwsError(error);
    if (awsError.status >= 500) this.options.logError(error, request);
    return awsError;
  }

  private async serve(
    handler: AgentHandler,
    request: AgentRequest,
    raw: IncomingMessage,
    response: ServerResponse,
  ): Promise<void> {
    try {
      const text = jsonText(await handler(request));
      response.writeHead(200, {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(text),
      });
      response.end(text);
    } catch (error) {
      this.fail(raw, response, error);
    }
  }

  /** Answers with the error in the AWS JSON shape, as the front door does. */
  private fail(raw: IncomingMessage, response: ServerResponse, error: unknown): void {
    const awsError = this.failure(error, { method: raw.method ?? "", url: raw.url ?? "" });
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

/** Answers an upgrade request that is not taken with an error in the AWS JSON shape, and closes. */
function refuse(socket: Duplex, error: AwsError): void {
  const json = jsonError(error);
  const head = [
    `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status] ?? ""}`,
    ...Object.entries(json.headers).map(([name, value]) => `${name}: ${value}`),
    `content-length: ${Buffer.byteLength(json.body)}`,
    "connection: close",
  ];
  socket.write(`${head.join("\r\n")}\r\n\r\n${json.body}`);
  closeSoon(socket);
}

/** Whether a request's headers say it has no body. */
function noBody(headers: IncomingHttpHeaders): boolean {
  return headers["transfer-encoding"] === undefined && Number(headers["content-length"] ?? 0) === 0;
}

/**
 * Ends the connection and closes it once what was written has gone: node's server keeps
 * connections half-open, and a peer that never ends its side would hold the server's close.
 */
function closeSoon(socket: Duplex): void {
  if (socket instanceof Socket) socket.destroySoon();
  else socket.end(() => socket.destroy());
}

/** How long a closing server waits for its channels' agents before it closes them itself. */
const CLOSE_GRACE_MS = 5_000;

/** A channel that carries nothing for this long has no agent polling on it: it is closed. */
const CHANNEL_IDLE_MS = 120_000;

/** A frame to a path no route serves. */
const NO_ROUTE = (path: string) =>
  new AwsError("UnknownOperationException", `The agent channel serves no ${path}.`, { status: 404 });
const CLOSING = new AwsError("ServiceUnavailable", "The server is closing.", { status: 503 });

/**
 * One agent's channel: each request frame goes to the route its path names, with the upgrade
 * request's headers (its node token), and is answered by a frame with the same id.
 */
class Channel {
  private readonly reader: FrameReader;
  /** What is called when the connection closes, for the requests still waiting on it. */
  private readonly goneListeners = new Set<() => void>();
  private serving = 0;
  private ending = false;

  constructor(
    private readonly socket: Duplex,
    private readonly upgrade: IncomingMessage,
    head: Buffer,
    private readonly routes: AgentRoutes,
  ) {
    this.reader = new FrameReader(routes.bodyLimit + MAX_REQUEST_HEAD);
    if (socket instanceof Socket) {
      socket.setNoDelay(true);
      // An agent that vanished without closing is noticed by the kernel, not only when a write fails.
      socket.setKeepAlive(true, 30_000);
      // An agent polls again within its poll timeout; a connection silent far longer (opened and
      // left, or an agent long gone) is closed, as an idle keep-alive connection is.
      socket.setTimeout(CHANNEL_IDLE_MS, () => socket.destroy());
    }
    socket.on("data", (chunk: Buffer) => this.read(chunk));
    // node's HTTP server keeps connections half-open when the client ends its side: a channel
    // whose agent has ended is closed (and its waiting requests learn it is gone).
    socket.once("end", () => socket.destroy());
    // Errors end in "close"; the listener keeps one from being thrown.
    socket.on("error", () => undefined);
    socket.once("close", () => {
      for (const listener of this.goneListeners) listener();
      this.goneListeners.clear();
    });
    if (head.length > 0) this.read(head);
  }

  /** Closes the connection once every request taken has been answered; later ones are answered 503. */
  end(): void {
    this.ending = true;
    if (this.serving === 0) closeSoon(this.socket);
  }

  /** Closes the connection now, whatever it is serving. */
  destroy(): void {
    this.socket.destroy();
  }

  private read(chunk: Buffer): void {
    for (const frame of this.reader.push(chunk)) {
      if (isOversized(frame)) {
        // Passed over unread: refused as a POST's body over the limit is, and the channel goes on.
        this.fail(frame.id, RequestTooLarge("Request entity too large"));
        continue;
      }
      const request = readRequest(frame);
      if (request === undefined) {
        // Not a request frame: the agent does not speak this protocol; nothing after it can be read.
        this.routes.failure(new Error(`a malformed frame of ${frame.length} bytes on an agent channel`), {
          method: "POST",
          url: CHANNEL_PATH,
        });
        this.socket.destroy();
        return;
      }
      this.take(request);
    }
  }

  private take(frame: FrameRequest): void {
    if (this.ending || this.routes.isClosing) {
      this.fail(frame.id, CLOSING);
      return;
    }
    const handler = this.routes.handlerOf(frame.path);
    if (handler === undefined) {
      this.fail(frame.id, NO_ROUTE(frame.path));
      return;
    }
    if (frame.body.length > this.routes.bodyLimit) {
      this.fail(frame.id, RequestTooLarge("Request entity too large"));
      return;
    }
    const socket = this.socket;
    const listeners = this.goneListeners;
    let answered = false;
    const request: AgentRequest = {
      method: "POST",
      url: frame.path,
      headers: this.upgrade.headers,
      headersDistinct: this.upgrade.headersDistinct,
      body: frame.body,
      gone: () => socket.destroyed,
      onGone(listener) {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
      interim: (body) => {
        if (!answered) this.answer(frame.id, INTERIM, jsonText(body));
      },
    };
    this.serving++;
    // Whatever the handler throws, or its result's serialization, is answered as a POST's would be.
    (async () => jsonText(await handler(request)))()
      .then(
        (text) => {
          answered = true;
          this.answer(frame.id, 200, text);
        },
        (error: unknown) => {
          answered = true;
          this.fail(frame.id, this.routes.failure(error, { method: "POST", url: frame.path }));
        },
      )
      // An answer that cannot be written (nothing should throw here) ends the channel, not the process.
      .catch(() => socket.destroy())
      .finally(() => {
        this.serving--;
        if (this.ending && this.serving === 0) closeSoon(socket);
      });
  }

  private answer(id: number, status: number, body: string): void {
    if (!this.socket.destroyed && !this.socket.writableEnded)
      this.socket.write(answerFrame(id, status, body));
  }

  private fail(id: number, error: AwsError): void {
    this.answer(id, error.status, jsonError(error).body);
  }
}
