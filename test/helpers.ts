import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ECSClient } from "@aws-sdk/client-ecs";
import { resolveConfig } from "../src/server/config.ts";
import { type RunningServer, type ServerDeps, startServer } from "../src/server/server.ts";

export interface TestServer extends RunningServer {
  dataDir: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** Stops the server and removes its data directory. */
  stop(): Promise<void>;
}

/** A real server on an ephemeral port (of loopback, or of `host`) with a fresh data directory. */
export async function startTestServer(
  options: { dataDir?: string; host?: string } & ServerDeps = {},
): Promise<TestServer> {
  const { dataDir: given, host = "127.0.0.1", ...deps } = options;
  const dataDir = given ?? mkdtempSync(join(tmpdir(), "wharf-test-"));
  const config = { ...resolveConfig({ host, port: 0, dataDir, logLevel: "warn" }, {}) };
  const server = await startServer(config, deps);
  return {
    ...server,
    dataDir,
    credentials: { accessKeyId: server.admin.accessKeyId, secretAccessKey: server.admin.secretAccessKey },
    async stop() {
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export function ecsClient(server: { endpoint: string; credentials: TestServer["credentials"] }): ECSClient {
  return new ECSClient({
    endpoint: server.endpoint,
    region: "us-east-1",
    credentials: server.credentials,
    maxAttempts: 1,
  });
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON when it is JSON. */
  json?: unknown;
}

/** Debian's AWS CLI (/usr/bin/aws, v1), isolated from any user configuration. */
export function aws(
  server: { endpoint: string; credentials: TestServer["credentials"] },
  args: string[],
  overrides: Record<string, string> = {},
): Promise<CliResult> {
  const env = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: tmpdir(),
    AWS_ACCESS_KEY_ID: server.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.credentials.secretAccessKey,
    AWS_DEFAULT_REGION: "us-east-1",
    AWS_CONFIG_FILE: "/nonexistent/wharf-test-config",
    AWS_SHARED_CREDENTIALS_FILE: "/nonexistent/wharf-test-credentials",
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_PAGER: "",
    AWS_MAX_ATTEMPTS: "1",
    AWS_RETRY_MODE: "standard",
    ...overrides,
  };
  return new Promise((resolve) => {
    execFile(
      "/usr/bin/aws",
      [...args, "--endpoint-url", server.endpoint, "--output", "json"],
      { env, timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1;
        const result: CliResult = { code, stdout, stderr };
        try {
          if (stdout.trim() !== "") result.json = JSON.parse(stdout);
        } catch {
          // not JSON
        }
        resolve(result);
      },
    );
  });
}

type CliTarget = { endpoint: string; credentials: TestServer["credentials"] };

/** `aws ecs …`, which must succeed: its JSON output (`{}` when it prints none). */
export async function awsEcs<T = Record<string, unknown>>(server: CliTarget, args: string[]): Promise<T> {
  const result = await aws(server, ["ecs", ...args]);
  if (result.code !== 0) throw new Error(`aws ecs ${args.join(" ")} exited ${result.code}: ${result.stderr}`);
  return (result.json ?? {}) as T;
}

/** `aws ecs …`, which must fail: its error output. */
export async function awsEcsFails(server: CliTarget, args: string[]): Promise<string> {
  const result = await aws(server, ["ecs", ...args]);
  if (result.code === 0) throw new Error(`aws ecs ${args.join(" ")} should have failed: ${result.stdout}`);
  return result.stderr;
}

/** `aws ecs register-task-definition --cli-input-json …`: the new revision's ARN. */
export async function registerTaskDefinitionCli(
  server: CliTarget,
  definition: Record<string, unknown>,
): Promise<string> {
  const out = await awsEcs<{ taskDefinition: { taskDefinitionArn: string } }>(server, [
    "register-task-definition",
    "--cli-input-json",
    JSON.stringify(definition),
  ]);
  return out.taskDefinition.taskDefinitionArn;
}
