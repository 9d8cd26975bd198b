import { Sha256 } from "@aws-crypto/sha256-js";
import { HttpRequest } from "@smithy/protocol-http";
import { SignatureV4 } from "@smithy/signature-v4";
import type {
  LogBatch,
  PollRequest,
  PollResponse,
  RegisterNodeRequest,
  RegisterNodeResponse,
  StatsBatch,
  TaskReport,
} from "../shared/agent-protocol.ts";

export class ServerError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The agent's side of the agent protocol: HTTP JSON with timeouts. */
export class ServerClient {
  private token: string | undefined;

  constructor(
    private readonly endpoint: string,
    private readonly credentials: { accessKeyId: string; secretAccessKey: string },
    private readonly region: string,
  ) {}

  private async post<T>(path: string, body: unknown, timeoutMs: number, signal?: AbortSignal): Promise<T> {
    const url = new URL(path, this.endpoint);
    const payload = JSON.stringify(body);
    let headers: Record<string, string> = { "content-type": "application/json", host: url.host };
    if (path.endsWith("/register")) {
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
    const signals = [AbortSignal.timeout(timeoutMs), ...(signal === undefined ? [] : [signal])];
    const response = await fetch(url, {
      method: "POST",
      headers,
      body: payload,
      signal: AbortSignal.any(signals),
    });
    const text = await response.text();
    if (!response.ok) {
      let code = "Error";
      let message = text;
      try {
        const parsed = JSON.parse(text) as { __type?: string; message?: string };
        code = parsed.__type ?? code;
        message = parsed.message ?? message;
      } catch {
        // not JSON
      }
      throw new ServerError(response.status, code, message);
    }
    return JSON.parse(text === "" ? "{}" : text) as T;
  }

  async register(request: RegisterNodeRequest): Promise<RegisterNodeResponse> {
    const response = await this.post<RegisterNodeResponse>("/agent/v1/register", request, 30_000);
    this.token = response.nodeToken;
    return response;
  }

  poll(request: PollRequest, timeoutMs: number, signal?: AbortSignal): Promise<PollResponse> {
    return this.post<PollResponse>("/agent/v1/poll", request, timeoutMs, signal);
  }

  report(report: TaskReport): Promise<unknown> {
    return this.post("/agent/v1/report", report, 15_000);
  }

  logs(batch: LogBatch): Promise<unknown> {
    return this.post("/agent/v1/logs", batch, 15_000);
  }

  stats(batch: StatsBatch): Promise<unknown> {
    return this.post("/agent/v1/stats", batch, 15_000);
  }
}
