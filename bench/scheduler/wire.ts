// A minimal HTTP/1.1 client for the benchmark's load: one keep-alive connection, one request at a
// time, the request written as one string and the answer read by its Content-Length. The server
// sees the same requests as from `node:http` (method, path, headers, body); the benchmark's own
// process, which shares the server's two cores, spends a third of the CPU per request that
// `node:http`'s client does (its ClientRequest, agent, parser and streams). Plain HTTP only.
import net from "node:net";

export interface WireAnswer {
  status: number;
  text: string;
}

interface Waiting {
  resolve(answer: WireAnswer): void;
  reject(error: Error): void;
}

const HEAD_END = Buffer.from("\r\n\r\n");

export class WireConnection {
  private socket: net.Socket | undefined;
  private waiting: Waiting | undefined;
  private received: Buffer[] = [];
  private receivedBytes = 0;
  /** Where the body starts and how long it is, once the head has been read. */
  private body: { start: number; length: number; close: boolean; status: number } | undefined;

  constructor(private readonly endpoint: URL) {
    if (endpoint.protocol !== "http:") throw new Error(`wire: plain HTTP only, not ${endpoint.protocol}`);
  }

  /**
   * POSTs `body` to `path` with `headers` (`host` and `content-length` are added); resolves with
   * the status and body text, rejects if the connection fails or closes first.
   */
  post(path: string, headers: Record<string, string>, body: string): Promise<WireAnswer> {
    if (this.waiting !== undefined) return Promise.reject(new Error("wire: one request at a time"));
    let head = `POST ${path} HTTP/1.1\r\nhost: ${this.endpoint.host}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n`;
    for (const [name, value] of Object.entries(headers)) {
      const lower = name.toLowerCase();
      if (lower !== "host" && lower !== "content-length") head += `${name}: ${value}\r\n`;
    }
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.connection().write(`${head}\r\n${body}`);
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
    const socket = net.connect(Number(this.endpoint.port || 80), this.endpoint.hostname);
    socket.setNoDelay(true);
    // Events of a connection already dropped (and perhaps replaced) are not this one's.
    socket.on("data", (chunk: Buffer) => {
      if (this.socket === socket) this.take(chunk);
    });
    socket.on("error", () => undefined);
    socket.on("close", () => {
      if (this.socket === socket) this.drop(new Error("wire: the connection closed before the answer"));
    });
    this.socket = socket;
    return socket;
  }

  private take(chunk: Buffer): void {
    this.received.push(chunk);
    this.receivedBytes += chunk.length;
    const data = this.received.length === 1 ? chunk : Buffer.concat(this.received, this.receivedBytes);
    if (this.received.length > 1) this.received = [data];
    if (this.body === undefined) {
      const end = data.indexOf(HEAD_END);
      if (end < 0) return;
      const head = data.toString("latin1", 0, end);
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1]);
      const length = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head)?.[1];
      if (!Number.isInteger(status) || length === undefined) {
        this.drop(new Error(`wire: an answer without a status or Content-Length: ${head.slice(0, 200)}`));
        return;
      }
      this.body = {
        start: end + HEAD_END.length,
        length: Number(length),
        close: /\r\nconnection:[ \t]*close/i.test(head),
        status,
      };
    }
    const { start, length, close, status } = this.body;
    if (data.length < start + length) return;
    if (data.length > start + length) {
      this.drop(new Error("wire: bytes after the answer, with no request waiting for them"));
      return;
    }
    const text = data.toString("utf8", start, start + length);
    this.received = [];
    this.receivedBytes = 0;
    this.body = undefined;
    const waiting = this.waiting;
    this.waiting = undefined;
    if (close) this.drop();
    waiting?.resolve({ status, text });
  }

  /** Ends the connection (the next request opens another); the request waiting, if any, fails with `error`. */
  private drop(error?: Error): void {
    this.socket?.destroy();
    this.socket = undefined;
    this.received = [];
    this.receivedBytes = 0;
    this.body = undefined;
    const waiting = this.waiting;
    this.waiting = undefined;
    if (error !== undefined) waiting?.reject(error);
  }
}
