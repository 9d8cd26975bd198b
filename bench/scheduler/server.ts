// The Wharf server under test: `bin/wharf.js server` as a child with a fresh data directory, with
// the node options that file's first line gives it, optionally under --cpu-prof; its credentials
// come from `wharf env`, as a user gets them.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { WHARF, WHARF_NODE_OPTIONS } from "../wharf-command.ts";

export interface WharfServer {
  pid: number;
  /** The node options it runs with, besides a profiler's. */
  nodeOptions: string[];
  endpoint: string;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  dataDir: string;
  /** SIGINT (the server closes cleanly and writes its profile), SIGKILL after `graceMs`; removes the data. */
  stop(graceMs?: number): Promise<void>;
}

function wharfEnv(dataDir: string): Promise<Record<string, string>> {
  return new Promise((done, fail) => {
    execFile(process.execPath, [WHARF, "env", "--data-dir", dataDir], (error, stdout) => {
      if (error !== null) return fail(error);
      const vars: Record<string, string> = {};
      for (const match of stdout.matchAll(/^export (\w+)='((?:[^']|'\\'')*)'$/gm)) {
        vars[match[1] as string] = (match[2] as string).replaceAll("'\\''", "'");
      }
      done(vars);
    });
  });
}

export async function startWharf(options: { profileDir?: string; timeoutMs?: number }): Promise<WharfServer> {
  const dataDir = mkdtempSync(join(tmpdir(), "wharf-bench-scheduler-"));
  const profile =
    options.profileDir === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", options.profileDir];
  const nodeOptions = [
    ...WHARF_NODE_OPTIONS,
    ...(process.env.WHARF_BENCH_SERVER_FLAGS?.split(" ").filter(Boolean) ?? []),
  ];
  const child: ChildProcess = spawn(
    process.execPath,
    [
      ...profile,
      ...nodeOptions,
      WHARF,
      "server",
      "--port",
      "0",
      "--data-dir",
      dataDir,
      "--log-level",
      "warn",
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  let stopping: Promise<void> | undefined;
  const stop = (graceMs = 60_000) => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGINT");
        const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dataDir, { recursive: true, force: true });
    })();
    return stopping;
  };
  try {
    const endpoint = await new Promise<string>((done, fail) => {
      const timer = setTimeout(
        () => fail(new Error("the server did not start in time")),
        options.timeoutMs ?? 60_000,
      );
      child.once("exit", (code, signal) => fail(new Error(`the server exited (${signal ?? code})`)));
      const lines = createInterface({ input: child.stdout as NonNullable<ChildProcess["stdout"]> });
      lines.on("line", (line) => {
        const match = /serving the AWS APIs and the registry at (\S+)/.exec(line);
        if (match !== null) {
          clearTimeout(timer);
          done(match[1] as string);
        }
      });
    });
    const vars = await wharfEnv(dataDir);
    const accessKeyId = vars.AWS_ACCESS_KEY_ID;
    const secretAccessKey = vars.AWS_SECRET_ACCESS_KEY;
    if (accessKeyId === undefined || secretAccessKey === undefined) throw new Error("wharf env gave no key");
    return {
      pid: child.pid ?? 0,
      nodeOptions,
      endpoint,
      region: vars.AWS_DEFAULT_REGION ?? "us-east-1",
      credentials: { accessKeyId, secretAccessKey },
      dataDir,
      stop,
    };
  } catch (error) {
    await stop(5000);
    throw error;
  }
}
