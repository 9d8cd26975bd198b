// A minimal HTTP/1.1 client for the benchmarks' load: one keep-alive connection, one request at a
// time, the request written as one string and the answer read by its Content-Length. The server
// sees the same requests as from `node:http` (method, path, headers, body); the benchmark's own
// process, which shares the server's two cores, spends a third of the CPU per request that
// `node:http`'s client does (its ClientRequest, agent, parser and streams). Plain HTTP only.
//
// A large body can go to a sink as it arrives instead of into the answer, and a connection can
// read into one buffer of its own, reused for every read (`net.Socket`'s `onread`), instead of a
// new one each time: then reading 1 GB costs the client about a third of what it costs through
// `node:http`'s streams (bench/registry pulls blobs so; see docs/benchmarks.md).
import net from "node:net";

export interface WireAnswer {
  status: number;
  /** The body as text; empty when a sink took it. */
  text: string;
}

export interface WireOptions {
  /**
   * Reads go into this buffer, the same one every time, rather than into a new one each. Whatever
   * must outlive a read (the head, a body that is not sunk) is copied out of it.
   */
  readBuffer?: Buffer;
}

/** Takes a 2xx answer's body as it arrives; `bytes` is valid only during the call. */
export type WireSink = (bytes: Buffer) => void;

interface Waiting {
  resolve(answer: WireAnswer): void;
  reject(error: Error): void;
  sink: WireSink | undefined;
}

/** The answer being read, once its head has been. */
interface Body {
  status: number;
  /** Bytes of the body still to come. */
  left: number;
  close: boolean;
  /** The body when no sink takes it (or the answer is not a 2xx one). */
  parts: Buffer[];
  sunk: boolean;
}

const HEAD_END = Buffer.from("\r\n\r\n");

export class WireConnection {
  private socket: net.Socket | undefined;
  private waiting: Waiting | undefined;
  /** The head so far, until it is whole. */
  private head: Buffer[] = [];
  private headBytes = 0;
  private body: Body | undefined;

  constructor(
    private readonly endpoint: URL,
    private readonly options: WireOptions = {},
  ) {
    if (endpoint.protocol !== "http:") throw new Error(`wire: plain HTTP only, not ${endpoint.protocol}`);
  }

  /**
   * POSTs `body` to `path` with `headers` (`host` and `content-length` are added); resolves with
   * the status and body text, rejects if the connection fails or closes first.
   */
  post(path: string, headers: Record<string, string>, body: string): Promise<WireAnswer> {
    return this.request(`POST ${path}`, headers, body, undefined);
  }

  /**
   * GETs `path` with `headers` (`host` is added). The body of a 2xx answer goes to `sink` as it
   * arrives (the answer's text is then empty); any other answer's comes back as its text.
   */
  get(path: string, headers: Record<string, string>, sink?: WireSink): Promise<WireAnswer> {
    return this.request(`GET ${path}`, headers, undefined, sink);
  }

  private request(
    line: string,
    headers: Record<string, string>,
    body: string | undefined,
    sink: WireSink | undefined,
  ): Promise<WireAnswer> {
    if (this.waiting !== undefined) return Promise.reject(new Error("wire: one request at a time"));
    let head = `${line} HTTP/1.1\r\nhost: ${this.endpoint.host}\r\n`;
    if (body !== undefined) head += `content-length: ${Buffer.byteLength(body)}\r\n`;
    for (const [name, value] of Object.entries(headers)) {
      const lower = name.toLowerCase();
      if (lower !== "host" && lower !== "content-length") head += `${name}: ${value}\r\n`;
    }
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject, sink };
      this.connection().write(`${head}\r\n${body ?? ""}`);
    });
  }

  /** Opens the connection now, rather than with the first request; resolves once it is open. */
  open(): Promise<void> {
    const socket = this.connection();
    if (!socket.connecting) return Promise.resolve();
    return new Promise((resolve, reject) => {
      socket.once("connect", () => resolve());
      socket.once("close", () => reject(new Error("wire: the connection closed as it opened")));
    });
  }

  /** Ends the connection; a request on its way fails. */
  close(): void {
    this.drop(new Error("wire: the connection was closed"));
  }

  private connection(): net.Socket {
    if (this.socket !== undefined) return this.socket;
    const port = Number(this.endpoint.port || 80);
    const host = this.endpoint.hostname;
    const buffer = this.options.readBuffer;
    // Events of a connection already dropped (and perhaps replaced) are not this one's.
    const socket: net.Socket =
      buffer === undefined
        ? net.connect(port, host).on("data", (chunk: Buffer) => {
            if (this.socket === socket) this.take(chunk, false);
          })
        : net.connect({
            port,
            host,
            onread: {
              buffer,
              callback: (length: number, read: Uint8Array) => {
                if (this.socket === socket)
                  this.take(Buffer.from(read.buffer, read.byteOffset, length), true);
                return true;
              },
            },
          });
    socket.setNoDelay(true);
    socket.on("error", () => undefined);
    socket.on("close", () => {
      if (this.socket === socket) this.drop(new Error("wire: the connection closed before the answer"));
    });
    this.socket = socket;
    return socket;
  }

  /** Takes bytes read; `reused` says they are in the read buffer, which the next read overwrites. */
  private take(chunk: Buffer, reused: boolean): void {
    let bytes = chunk;
    let stable = !reused;
    if (this.body === undefined) {
      this.head.push(reused ? Buffer.from(chunk) : chunk);
      this.headBytes += chunk.length;
      const data =
        this.head.length === 1 ? (this.head[0] as Buffer) : Buffer.concat(this.head, this.headBytes);
      this.head = [data];
      const end = data.indexOf(HEAD_END);
      if (end < 0) return;
      const text = data.toString("latin1", 0, end);
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1]);
      const length = /\r\ncontent-length:[ \t]*(\d+)/i.exec(text)?.[1];
      if (!Number.isInteger(status) || length === undefined) {
        this.drop(new Error(`wire: an answer without a status or Content-Length: ${text.slice(0, 200)}`));
        return;
      }
      this.body = {
        status,
        left: Number(length),
        close: /\r\nconnection:[ \t]*close/i.test(text),
        parts: [],
        sunk: this.waiting?.sink !== undefined && status >= 200 && status < 300,
      };
      this.head = [];
      this.headBytes = 0;
      bytes = data.subarray(end + HEAD_END.length);
      stable = true;
    }
    const body = this.body;
    if (bytes.length > body.left) {
      this.drop(new Error("wire: bytes after the answer, with no request waiting for them"));
      return;
    }
    body.left -= bytes.length;
    if (body.sunk) this.waiting?.sink?.(bytes);
    else if (bytes.length > 0) body.parts.push(stable ? bytes : Buffer.from(bytes));
    if (body.left > 0) return;
    this.body = undefined;
    const waiting = this.waiting;
    this.waiting = undefined;
    if (body.close) this.drop();
    waiting?.resolve({ status: body.status, text: Buffer.concat(body.parts).toString("utf8") });
  }

  /** Ends the connection (the next request opens another); the request waiting, if any, fails with `error`. */
  private drop(error?: Error): void {
    this.socket?.destroy();
    this.socket = undefined;
    this.head = [];
    this.headBytes = 0;
    this.body = undefined;
    const waiting = this.waiting;
    this.waiting = undefined;
    if (error !== undefined) waiting?.reject(error);
  }
}
