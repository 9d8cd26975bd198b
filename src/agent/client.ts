import http from "node:http";
import https from "node:https";
import { Sha256 } from "@aws-crypto/sha256-js";
import { HttpRequest } from "@smithy/protocol-http";
import { SignatureV4 } from "@smithy/signature-v4";
import {
  INSTANCE_DEREGISTERED,
  type LogBatch,
  MAX_REPORTS_PER_BATCH,
  type PollRequest,
  type PollResponse,
  type RegisterNodeRequest,
  type RegisterNodeResponse,
  type ReportBatch,
  type ReportBatchResponse,
  type StatsBatch,
  type TaskReport,
} from "../shared/agent-protocol.ts";
import { AgentChannel, ChannelRefused, connectionLost, noAnswer } from "./channel.ts";

export class ServerError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Network failures that pass: the server down, restarting or out of reach for a while. */
const TRANSIENT_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "EPIPE",
]);

/**
 * Whether the server could not be reached, or failed or was busy (5xx, 408, 429): the same
 * request may succeed later. A TLS certificate not trusted, a refusal or an answer that makes
 * no sense would fail again.
 */
export function unreachable(error: unknown): boolean {
  if (error instanceof ServerError)
    return error.status >= 500 || error.status === 408 || error.status === 429;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code !== undefined) return TRANSIENT_CODES.has(code);
  return error instanceof Error && error.message.startsWith("no answer from ");
}

/**
 * Whether a failed report may succeed when sent again: the server was out of reach or failing,
 * or wants the agent to register again (401). A report it refused (bad input, a task not
 * assigned to this instance, a deregistered instance) would be refused again.
 */
export function worthRetrying(error: unknown): boolean {
  if (error instanceof ServerError && error.status === 401) return error.code !== INSTANCE_DEREGISTERED;
  return unreachable(error);
}

/** One HTTP(S) POST with a timeout and cancellation, through `agent` (keep-alive; for HTTPS, trusting Wharf's CA). */
function send(
  url: URL,
  headers: Record<string, string>,
  payload: string,
  options: { agent: http.Agent; timeoutMs: number; signal?: AbortSignal },
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const request = (url.protocol === "https:" ? https.request : http.request)(
      url,
      {
        method: "POST",
        headers,
        agent: options.agent,
        ...(options.signal === undefined ? {} : { signal: options.signal }),
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () =>
          resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
        );
        response.on("error", reject);
      },
    );
    request.setTimeout(options.timeoutMs, () => request.destroy(noAnswer(url.host, options.timeoutMs)));
    request.on("error", reject);
    request.end(payload);
  });
}

/** The server's answer of `status`, as the error it says (AWS JSON), or its text as the message. */
function failed(status: number, text: string): ServerError {
  let code = "Error";
  let message = text;
  try {
    const parsed = JSON.parse(text) as { __type?: string; message?: string };
    code = parsed.__type ?? code;
    message = parsed.message ?? message;
  } catch {
    // not JSON
  }
  return new ServerError(status, code, message);
}

/**
 * `promise`, or a failure after `timeoutMs` (as an HTTP request's timeout) or on abort, whichever
 * comes first; `promise` itself goes on.
 */
function within<T>(
  promise: Promise<T>,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  host: string,
): Promise<T> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(() => reject(noAnswer(host, timeoutMs))), timeoutMs);
    const onAbort = () => done(() => reject(signal?.reason));
    signal?.addEventListener("abort", onAbort, { once: true });
    function done(settle: () => void) {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      settle();
    }
    promise.then(
      (value) => done(() => resolve(value)),
      (error: unknown) => done(() => reject(error)),
    );
  });
}

/** A report waiting to go, and its sender's promise. */
interface WaitingReport {
  report: TaskReport;
  resolve(): void;
  reject(error: unknown): void;
}

/**
 * The agent's side of the agent protocol: JSON with timeouts. Registration is a signed POST; the
 * rest goes as frames on the agent's channel (one connection, src/shared/agent-frames.ts), or as
 * POSTs to a server that does not open one.
 */
export class ServerClient {
  private token: string | undefined;
  private readonly agent: http.Agent;
  /** Reports not yet sent: each request carries every one waiting when it leaves. */
  private readonly reportsWaiting: WaitingReport[] = [];
  private reporting: Promise<void> | undefined;
  /** The channel, open or opening; undefined until needed, and again once it has closed. */
  private channel: Promise<AgentChannel> | undefined;
  /** The channel `channel` opened, once it has: what most requests go on. */
  private ready: AgentChannel | undefined;
  /** The server's host and port, as errors name it. */
  private readonly host: string;
  /** The server answered the upgrade without switching (an older one): POSTs from then on. */
  private postsOnly = false;
  private closed = false;

  constructor(
    private readonly endpoint: string,
    private readonly credentials: { accessKeyId: string; secretAccessKey: string },
    private readonly region: string,
    private readonly ca?: string,
  ) {
    this.host = new URL(endpoint).host;
    this.agent = endpoint.startsWith("https:")
      ? new https.Agent({ keepAlive: true, ...(ca === undefined ? {} : { ca }) })
      : new http.Agent({ keepAlive: true });
  }

  /** Closes the channel and the connections kept alive; a request made later goes as a POST. */
  close(): void {
    this.closed = true;
    this.postsOnly = true;
    this.dropChannel();
    this.agent.destroy();
  }

  private dropChannel(): void {
    const channel = this.channel;
    this.channel = undefined;
    this.ready = undefined;
    channel?.then(
      (open) => open.close(),
      () => undefined,
    );
  }

  /**
   * The channel for the current token, opened when there is none; undefined when the server does
   * not open one. Waits at most `timeoutMs` and until `signal` aborts (the opening goes on, shared
   * with the next request).
   */
  private async openChannel(timeoutMs: number, signal?: AbortSignal): Promise<AgentChannel | undefined> {
    // Most requests find it open: no timer, no promise of their own.
    const ready = this.ready;
    if (ready !== undefined && !ready.closed && ready.token === this.token && !this.postsOnly) return ready;
    for (;;) {
      const token = this.token;
      if (token === undefined || this.postsOnly) return undefined;
      let channel = this.channel;
      const fresh = channel === undefined;
      if (channel === undefined) {
        channel = AgentChannel.open(this.endpoint, token, {
          ...(this.ca === undefined ? {} : { ca: this.ca }),
          timeoutMs: 30_000,
        });
        this.channel = channel;
        // One that fails is forgotten (the next request opens another).
        const opening = channel;
        opening.catch(() => {
          if (this.channel === opening) this.channel = undefined;
        });
      }
      let open: AgentChannel;
      try {
        open = await within(channel, timeoutMs, signal, this.host);
      } catch (error) {
        if (error instanceof ChannelRefused) {
          // Busy or closing: the same request may succeed later, as such a POST may.
          if (error.status >= 500 || error.status === 408 || error.status === 429)
            throw failed(error.status, error.text);
          this.postsOnly = true;
          return undefined;
        }
        throw error;
      }
      if (this.closed) {
        open.close();
        throw new Error("the client is closed");
      }
      if (open.token === this.token && !open.closed) {
        this.ready = open;
        return open;
      }
      // Opened with the token of an earlier registration, or closed since it was opened: another
      // one. (One closed as soon as it opened fails the request, as a reset POST would.)
      if (this.channel === channel) this.channel = undefined;
      if (open.token !== this.token) open.close();
      else if (fresh) throw connectionLost(this.host);
    }
  }

  private async post<T>(
    path: string,
    body: unknown,
    timeoutMs: number,
    signal?: AbortSignal,
    onInterim?: (answer: T) => void,
  ): Promise<T> {
    const url = new URL(path, this.endpoint);
    const payload = JSON.stringify(body);
    // The channel is waited for at most `timeoutMs`, and the answer then as long again: a request
    // sent with what little time an opening left would time out on a healthy channel.
    const channel = path.endsWith("/register") ? undefined : await this.openChannel(timeoutMs, signal);
    const interim = onInterim === undefined ? undefined : (text: string) => onInterim(JSON.parse(text) as T);
    const response =
      channel !== undefined
        ? await channel.request(url.pathname, payload, timeoutMs, signal, interim)
        : await this.send(url, payload, timeoutMs, signal);
    if (response.status < 200 || response.status >= 300) throw failed(response.status, response.text);
    return JSON.parse(response.text === "" ? "{}" : response.text) as T;
  }

  /** One POST: registration signed with SigV4, anything else with the node token. */
  private async send(url: URL, payload: string, timeoutMs: number, signal?: AbortSignal) {
    let headers: Record<string, string> = { "content-type": "application/json", host: url.host };
    if (url.pathname.endsWith("/register")) {
      const signer = new SignatureV4({
        service: "ecs",
        region: this.region,
        credentials: this.credentials,
        sha256: Sha256,
      });
      const signed = await signer.sign(
        new HttpRequest({
          method: "POST",
          hostname: url.hostname,
          port: Number(url.port),
          path: url.pathname,
          headers,
          body: payload,
        }),
      );
      headers = signed.headers;
    } else if (this.token !== undefined) {
      headers.authorization = `Bearer ${this.token}`;
    }
    return send(url, headers, payload, {
      agent: this.agent,
      timeoutMs,
      ...(signal === undefined ? {} : { signal }),
    });
  }

  async register(request: RegisterNodeRequest): Promise<RegisterNodeResponse> {
    const response = await this.post<RegisterNodeResponse>("/agent/v1/register", request, 30_000);
    this.token = response.nodeToken;
    // The channel speaks with the token it was opened with: a new one needs a new channel (and a
    // server that did not open one before may now: it may have been upgraded meanwhile).
    this.dropChannel();
    if (!this.closed) this.postsOnly = false;
    return response;
  }

  /**
   * Long-polls for the instance's tasks. With `onChange`, the poll follows its changes (on the
   * channel; a POST cannot): each comes to `onChange` while the server holds the poll, and what it
   * resolves with is the last word, `unchanged` meaning as the last change.
   */
  poll(
    request: PollRequest,
    timeoutMs: number,
    signal?: AbortSignal,
    onChange?: (response: PollResponse) => void,
  ): Promise<PollResponse> {
    const body = onChange === undefined ? request : { ...request, follow: true };
    return this.post<PollResponse>("/agent/v1/poll", body, timeoutMs, signal, onChange);
  }

  /**
   * Sends a task's report; resolves once the server applied it, rejects with its failure. Reports
   * made while a request is on its way, or in the same turn of the event loop (the tasks one poll
   * started), go together in the next request.
   */
  report(report: TaskReport): Promise<void> {
    return new Promise((resolve, reject) => {
      this.reportsWaiting.push({ report, resolve, reject });
      this.reporting ??= this.sendReports();
    });
  }

  private async sendReports(): Promise<void> {
    try {
      await new Promise((done) => setImmediate(done));
      while (this.reportsWaiting.length > 0) {
        const batch = this.reportsWaiting.splice(0, MAX_REPORTS_PER_BATCH);
        const request: ReportBatch = { reports: batch.map((waiting) => waiting.report) };
        let response: ReportBatchResponse;
        try {
          response = await this.post<ReportBatchResponse>("/agent/v1/reports", request, 15_000);
        } catch (error) {
          for (const waiting of batch) waiting.reject(error);
          continue;
        }
        const failures = new Map((response.failures ?? []).map((failure) => [failure.taskArn, failure]));
        for (const waiting of batch) {
          const failure = failures.get(waiting.report.taskArn);
          if (failure === undefined) waiting.resolve();
          else waiting.reject(new ServerError(400, failure.code, failure.message));
        }
      }
    } finally {
      this.reporting = undefined;
    }
  }

  logs(batch: LogBatch): Promise<unknown> {
    return this.post("/agent/v1/logs", batch, 15_000);
  }

  stats(batch: StatsBatch): Promise<unknown> {
    return this.post("/agent/v1/stats", batch, 15_000);
  }
}
