// A recording HTTP proxy between the agent and the server: it forwards every request unchanged
// (the Host header too, so SigV4 and registry token realms still match) and notes when each
// request arrived and when its response was sent, with the task and status of agent reports and
// the tasks each poll answered with. This is how the benchmark sees the agent protocol from outside.
// It runs in a process of its own (node.ts trace), so that its clock readings do not wait behind
// the benchmark client's work; the benchmark collects its events in a TraceLog.
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface TraceEvent {
  method: string;
  path: string;
  /** Epoch ms (fractional) when the request reached the proxy. */
  start: number;
  /** Epoch ms when the proxy handed the end of the response to the agent's connection. */
  end: number;
  status: number;
  /** Agent reports: what they said. */
  report?: { taskArn: string; lastStatus: string };
  /** Agent polls: the tasks the answer listed. */
  polled?: Array<{ taskArn: string; desiredStatus: string; version: number }>;
}

export function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

function parseReport(body: Buffer): TraceEvent["report"] {
  try {
    const parsed = JSON.parse(body.toString("utf8")) as { taskArn?: unknown; lastStatus?: unknown };
    if (typeof parsed.taskArn === "string" && typeof parsed.lastStatus === "string") {
      return { taskArn: parsed.taskArn, lastStatus: parsed.lastStatus };
    }
  } catch {
    // not a report we understand
  }
  return undefined;
}

function parsePoll(body: Buffer): TraceEvent["polled"] {
  try {
    const parsed = JSON.parse(body.toString("utf8")) as {
      tasks?: Array<{ taskArn?: unknown; desiredStatus?: unknown; version?: unknown }>;
    };
    return (parsed.tasks ?? []).map((t) => ({
      taskArn: String(t.taskArn),
      desiredStatus: String(t.desiredStatus),
      version: Number(t.version),
    }));
  } catch {
    return undefined;
  }
}

/** Events as the benchmark receives them from the proxy process. */
export class TraceLog {
  readonly events: TraceEvent[] = [];

  add(event: TraceEvent): void {
    this.events.push(event);
  }

  /** Forgets events that ended before `before` (keeps memory flat over long runs). */
  forget(before: number): void {
    const keep = this.events.filter((e) => e.end >= before);
    this.events.length = 0;
    this.events.push(...keep);
  }

  /** Waits until an event matches (events arrive a little after the fact), at most `timeoutMs`. */
  async waitFor(match: (event: TraceEvent) => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (!this.events.some(match)) {
      if (performance.now() > deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    return true;
  }
}

export class TraceProxy {
  private readonly server: http.Server;
  private readonly upstream = new http.Agent({ keepAlive: true });
  private readonly target: URL;
  private readonly onEvent: (event: TraceEvent) => void;
  private address = "";

  private constructor(target: string, onEvent: (event: TraceEvent) => void) {
    this.target = new URL(target);
    this.onEvent = onEvent;
    this.server = http.createServer((request, response) => this.forward(request, response));
    this.server.requestTimeout = 0;
  }

  /** Listens on an ephemeral loopback port and forwards to `target` (http://host:port). */
  static async start(target: string, onEvent: (event: TraceEvent) => void): Promise<TraceProxy> {
    const proxy = new TraceProxy(target, onEvent);
    await new Promise<void>((resolve) => proxy.server.listen(0, "127.0.0.1", resolve));
    proxy.address = `http://127.0.0.1:${(proxy.server.address() as AddressInfo).port}`;
    return proxy;
  }

  /** The proxy's endpoint, for the agent. */
  get url(): string {
    return this.address;
  }

  private forward(request: http.IncomingMessage, response: http.ServerResponse): void {
    const start = epochNow();
    const path = request.url ?? "/";
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const body = Buffer.concat(chunks);
      const upstream = http.request(
        {
          host: this.target.hostname,
          port: this.target.port,
          method: request.method,
          path,
          headers: request.headers,
          agent: this.upstream,
        },
        (answer) => {
          const event: TraceEvent = {
            method: request.method ?? "GET",
            path,
            start,
            end: start,
            status: answer.statusCode ?? 0,
          };
          if (path === "/agent/v1/report") {
            const report = parseReport(body);
            if (report !== undefined) event.report = report;
          }
          response.on("finish", () => this.onEvent(event));
          response.writeHead(answer.statusCode ?? 502, answer.headers);
          if (path !== "/agent/v1/poll") {
            // The last bytes go to the agent as the upstream body ends.
            answer.on("end", () => {
              event.end = epochNow();
            });
            answer.pipe(response);
            return;
          }
          const parts: Buffer[] = [];
          answer.on("data", (chunk: Buffer) => parts.push(chunk));
          answer.on("end", () => {
            const text = Buffer.concat(parts);
            const polled = parsePoll(text);
            if (polled !== undefined) event.polled = polled;
            event.end = epochNow();
            response.end(text);
          });
        },
      );
      upstream.on("error", () => {
        if (!response.headersSent) response.writeHead(502);
        response.end();
      });
      // The agent gave up (a poll it aborted): give up upstream too.
      response.on("close", () => {
        if (!response.writableFinished) upstream.destroy();
      });
      upstream.end(body);
    });
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.upstream.destroy();
  }
}
