import http from "node:http";
import https from "node:https";
import { Socket } from "node:net";
import type { Duplex } from "node:stream";
import {
  CHANNEL_PATH,
  CHANNEL_PROTOCOL,
  FrameReader,
  isInterim,
  isOversized,
  readAnswer,
  requestFrame,
} from "../shared/agent-frames.ts";

/** An answer, as an HTTP response would have had it. */
export interface ChannelAnswer {
  status: number;
  text: string;
}

/** The server answered the upgrade with a response of its own: it does not take the channel now. */
export class ChannelRefused extends Error {
  constructor(
    readonly status: number,
    readonly text: string,
  ) {
    super(`the server did not open the agent channel (HTTP ${status}): ${text}`);
  }
}

/** The largest answer taken: a poll's answer lists every task of the instance. */
const MAX_ANSWER_BYTES = 256 * 1024 * 1024;

interface Waiting {
  /** When it was sent (performance.now). */
  sentAt: number;
  resolve(answer: ChannelAnswer): void;
  reject(error: unknown): void;
  timer: NodeJS.Timeout;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  onInterim: ((text: string) => void) | undefined;
}

/**
 * A request that waited `timeoutMs` for `host` in vain, over a channel or as a POST: `unreachable`
 * (client.ts) knows it by its message, as worth sending again.
 */
export function noAnswer(host: string, timeoutMs: number): Error {
  return new Error(`no answer from ${host} in ${timeoutMs} ms`);
}

/** A connection lost: the same code a reset HTTP request fails with, so callers retry alike. */
export function connectionLost(host: string): Error {
  return Object.assign(new Error(`the agent channel to ${host} closed`), { code: "ECONNRESET" });
}

/**
 * The agent's end of its channel (src/shared/agent-frames.ts): requests written as frames on one
 * connection, each answered by the frame with its id. Once the connection closes every request
 * still waiting fails as a reset HTTP request would, and the channel is done (`closed`): a new one
 * is opened.
 */
export class AgentChannel {
  private readonly waiting = new Map<number, Waiting>();
  private readonly reader = new FrameReader(MAX_ANSWER_BYTES);
  private nextId = 1;
  private done = false;
  /** When the server last sent anything (performance.now). */
  private heardAt = performance.now();

  private constructor(
    private readonly socket: Duplex,
    private readonly host: string,
    /** The node token it was opened with, which every request on it carries. */
    readonly token: string,
    head: Buffer,
  ) {
    if (socket instanceof Socket) {
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 30_000);
    }
    // Idle, it does not keep the process alive (as a keep-alive agent's free sockets do not).
    this.unrefIdle();
    socket.on("data", (chunk: Buffer) => this.read(chunk));
    // The server ending its side ends the channel.
    socket.once("end", () => socket.destroy());
    socket.on("error", () => undefined);
    socket.once("close", () => this.lost());
    if (head.length > 0) this.read(head);
  }

  /**
   * Opens a channel to the server at `endpoint` with the node token; rejects with ChannelRefused
   * when the server answers without switching, or as an HTTP request fails.
   */
  static open(
    endpoint: string,
    token: string,
    options: { ca?: string; timeoutMs: number },
  ): Promise<AgentChannel> {
    const url = new URL(CHANNEL_PATH, endpoint);
    return new Promise((resolve, reject) => {
      const request = (url.protocol === "https:" ? https.request : http.request)(url, {
        method: "GET",
        headers: { connection: "Upgrade", upgrade: CHANNEL_PROTOCOL, authorization: `Bearer ${token}` },
        agent: false,
        ...(options.ca === undefined ? {} : { ca: options.ca }),
      });
      request.setTimeout(options.timeoutMs, () => request.destroy(noAnswer(url.host, options.timeoutMs)));
      request.once("upgrade", (_response, socket, head) => {
        request.setTimeout(0);
        resolve(new AgentChannel(socket, url.host, token, head));
      });
      request.once("response", (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.once("end", () =>
          reject(new ChannelRefused(response.statusCode ?? 0, Buffer.concat(chunks).toString("utf8"))),
        );
        response.once("error", reject);
      });
      request.once("error", reject);
      request.end();
    });
  }

  /** Whether the connection has closed: nothing more can be sent on it. */
  get closed(): boolean {
    return this.done || this.socket.destroyed;
  }

  /**
   * Sends `body` (JSON) to `path`; resolves with its answer, or fails after `timeoutMs`, on abort
   * or when the connection closes. Interim answers before it go to `onInterim`, in order; one it
   * throws on fails the request.
   */
  request(
    path: string,
    body: string,
    timeoutMs: number,
    signal?: AbortSignal,
    onInterim?: (text: string) => void,
  ): Promise<ChannelAnswer> {
    if (this.closed) return Promise.reject(connectionLost(this.host));
    if (signal?.aborted) return Promise.reject(signal.reason);
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    return new Promise((resolve, reject) => {
      const entry: Waiting = {
        sentAt: performance.now(),
        resolve,
        reject,
        timer: setTimeout(() => {
          const timedOut = this.settle(id);
          timedOut?.reject(noAnswer(this.host, timeoutMs));
          // Only this request fails, unless the server has sent nothing at all since it went: then
          // the connection is taken to be dead, as an HTTP request's timeout would take its own.
          if (timedOut !== undefined && this.heardAt < timedOut.sentAt) this.socket.destroy();
        }, timeoutMs),
        signal,
        onAbort: undefined,
        onInterim,
      };
      if (signal !== undefined) {
        entry.onAbort = () => this.settle(id)?.reject(signal.reason);
        signal.addEventListener("abort", entry.onAbort, { once: true });
      }
      if (this.waiting.size === 0) this.ref();
      this.waiting.set(id, entry);
      this.socket.write(requestFrame(id, path, body));
    });
  }

  /** Closes the connection; requests still waiting fail. */
  close(): void {
    this.socket.destroy();
  }

  private read(chunk: Buffer): void {
    this.heardAt = performance.now();
    for (const frame of this.reader.push(chunk)) {
      if (isOversized(frame)) {
        this.settle(frame.id)?.reject(
          new Error(
            `an answer of ${frame.length} bytes from ${this.host}, more than ${MAX_ANSWER_BYTES} are taken`,
          ),
        );
        continue;
      }
      const answer = readAnswer(frame);
      if (answer === undefined) {
        this.socket.destroy();
        return;
      }
      if (isInterim(answer.status)) {
        const entry = this.waiting.get(answer.id);
        try {
          entry?.onInterim?.(answer.text);
        } catch (error) {
          this.settle(answer.id)?.reject(error);
        }
        continue;
      }
      // An answer to a request given up on (timed out or aborted) is dropped.
      this.settle(answer.id)?.resolve({ status: answer.status, text: answer.text });
    }
  }

  /** Takes the request out of those waiting, its timer and abort listener with it. */
  private settle(id: number): Waiting | undefined {
    const entry = this.waiting.get(id);
    if (entry === undefined) return undefined;
    this.waiting.delete(id);
    clearTimeout(entry.timer);
    if (entry.onAbort !== undefined) entry.signal?.removeEventListener("abort", entry.onAbort);
    if (this.waiting.size === 0) this.unrefIdle();
    return entry;
  }

  private lost(): void {
    this.done = true;
    for (const id of [...this.waiting.keys()]) this.settle(id)?.reject(connectionLost(this.host));
  }

  private ref(): void {
    if (this.socket instanceof Socket) this.socket.ref();
  }

  private unrefIdle(): void {
    if (this.socket instanceof Socket) this.socket.unref();
  }
}
