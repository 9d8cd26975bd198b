// The benchmark's RunTask caller, two ways:
//   "sdk"  — `@aws-sdk/client-ecs`, as a user's program calls it;
//   "http" — the same request on the wire (JSON 1.1, `X-Amz-Target`, SigV4 signed by the SDK's own
//            signer, keep-alive HTTP/1.1 through `bench/wire.ts`, a connection per call in flight),
//            answered by the same server path, without the SDK's middleware stack and its walk of
//            every response shape. The load generator shares the server's two cores, so what it
//            costs is taken from the server being measured; this caller costs less of them. Both
//            read every task and failure of each answer.
import { createHash, createHmac, type Hash, type Hmac } from "node:crypto";
import { type ECSClient, RunTaskCommand } from "@aws-sdk/client-ecs";
import { HttpRequest } from "@smithy/protocol-http";
import { SignatureV4 } from "@smithy/signature-v4";
import { WireConnection } from "../wire.ts";
import type { WharfServer } from "./server.ts";

export type ClientKind = "sdk" | "http";

export interface RunTaskAnswer {
  /** Tasks placed by the call. */
  tasks: number;
  /** Each failure's reason, as ECS gives it (`RESOURCE:CPU`, …). */
  failures: string[];
}

export type RunTaskCaller = (
  cluster: string,
  taskDefinition: string,
  count: number,
) => Promise<RunTaskAnswer>;

type SourceData = string | ArrayBuffer | ArrayBufferView;

function bytes(data: SourceData): string | Uint8Array {
  if (typeof data === "string") return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** node:crypto's SHA-256 and HMAC-SHA-256 in the shape the SigV4 signer takes. */
class NodeSha256 {
  private hash: Hash | Hmac;

  constructor(private readonly secret?: SourceData) {
    this.hash = this.fresh();
  }

  private fresh(): Hash | Hmac {
    return this.secret === undefined ? createHash("sha256") : createHmac("sha256", bytes(this.secret));
  }

  update(data: SourceData): void {
    this.hash.update(bytes(data));
  }

  async digest(): Promise<Uint8Array> {
    return this.hash.digest();
  }

  reset(): void {
    this.hash = this.fresh();
  }
}

function sdkCaller(ecs: ECSClient): RunTaskCaller {
  return async (cluster, taskDefinition, count) => {
    const answer = await ecs.send(new RunTaskCommand({ cluster, taskDefinition, count }));
    return {
      tasks: answer.tasks?.length ?? 0,
      failures: (answer.failures ?? []).map((f) => f.reason ?? "?"),
    };
  };
}

function httpCaller(server: WharfServer): RunTaskCaller {
  const url = new URL(server.endpoint);
  // Connections not in use; a call takes one (or opens one) and gives it back.
  const idle: WireConnection[] = [];
  const signer = new SignatureV4({
    service: "ecs",
    region: server.region,
    credentials: server.credentials,
    sha256: NodeSha256,
  });
  return async (cluster, taskDefinition, count) => {
    const body = JSON.stringify({ cluster, taskDefinition, count });
    const signed = await signer.sign(
      new HttpRequest({
        method: "POST",
        protocol: url.protocol,
        hostname: url.hostname,
        port: Number(url.port),
        path: "/",
        headers: {
          host: url.host,
          "content-type": "application/x-amz-json-1.1",
          "x-amz-target": "AmazonEC2ContainerServiceV20141113.RunTask",
          "content-length": String(Buffer.byteLength(body)),
        },
        body,
      }),
    );
    const connection = idle.pop() ?? new WireConnection(url);
    const { status, text } = await connection.post("/", signed.headers, body);
    idle.push(connection);
    const answer = JSON.parse(text) as {
      __type?: string;
      message?: string;
      tasks?: unknown[];
      failures?: Array<{ reason?: string }>;
    };
    if (status !== 200) throw new Error(`RunTask: HTTP ${status} ${answer.__type}: ${answer.message}`);
    return {
      tasks: answer.tasks?.length ?? 0,
      failures: (answer.failures ?? []).map((f) => f.reason ?? "?"),
    };
  };
}

export function runTaskCaller(kind: ClientKind, ecs: ECSClient, server: WharfServer): RunTaskCaller {
  return kind === "sdk" ? sdkCaller(ecs) : httpCaller(server);
}
