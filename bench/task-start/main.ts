// npm run bench:task-start [-- --tasks N --poll-ms N …]
//
// RunTask → RUNNING for tasks of a cached image on a real Wharf (server and node agent in their
// own processes, runc underneath), one task at a time, beside plain `runc run -d` of an
// equivalent bundle measured in the same run, interleaved. Prints p50/p99/mean of both, the
// ratio, where Wharf's time goes, and what it costs; as a table, then as JSON.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, loadavg, release, tmpdir, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { NetworkMode } from "@aws-sdk/client-ecs";
import { freeSubnet } from "../../test/agent-harness.ts";
import { ecsClient } from "../../test/helpers.ts";
import { cleanupNode, type NodeFootprint } from "./cleanup.ts";
import { type FloorSample, RuncFloor } from "./floor.ts";
import type {
  AgentReady,
  AgentSettings,
  ServerReady,
  ServerSettings,
  TraceReady,
  TraceSettings,
} from "./node.ts";
import { fileTimeGranularity, measurePrimitives, type Primitive } from "./primitives.ts";
import { type Child, processMemory, startChild, waitForQuiet } from "./proc.ts";
import { type ProfileSummary, summarizeProfile } from "./profile.ts";
import { type Context, result, text } from "./report.ts";
import { type TraceEvent, TraceLog } from "./trace.ts";
import {
  apiLatencies,
  createCluster,
  measureTaskStart,
  registerDefinition,
  type Session,
  type WharfSample,
  warmUp,
} from "./wharf.ts";

const USAGE = `usage: npm run bench:task-start -- [options]
  --tasks N             measured task starts, and as many runc runs (default 200)
  --warmup N            unmeasured task starts first; the first pulls the image (default 3)
  --poll-ms N           DescribeTasks interval while waiting for RUNNING (default 5)
  --network-mode M      bridge (ECS's default on EC2), host, none or awsvpc (default bridge)
  --trace               agent talks to the server through a recording proxy (another process),
                        which splits the agent protocol's phases finely but adds ~10 ms a start
  --no-trace            agent talks to the server directly (the default)
  --cpu-prof DIR        run server and agent under node --cpu-prof, profiles kept in DIR
  --quiet-cores X       before each sample, wait until the machine uses < X cores (default 0.5) …
  --quiet-timeout S     … but no longer than S seconds, then measure anyway (default 10)
  --primitive-reps N    repetitions of each building-block measurement (default 20)
  --timeout S           a task not RUNNING (or STOPPED) after S seconds fails the run (default 60)
  --out FILE            also write the result with every sample as JSON to FILE
  --json                print only the JSON result on stdout (the table goes to stderr)`;

interface Settings {
  tasks: number;
  warmup: number;
  pollMs: number;
  networkMode: NetworkMode;
  trace: boolean;
  cpuProfileDir: string | undefined;
  quietCores: number;
  quietTimeoutS: number;
  primitiveReps: number;
  timeoutS: number;
  out: string | undefined;
  json: boolean;
}

function settings(argv: string[]): Settings {
  const { values } = parseArgs({
    args: argv,
    options: {
      tasks: { type: "string" },
      warmup: { type: "string" },
      "poll-ms": { type: "string" },
      "network-mode": { type: "string" },
      trace: { type: "boolean" },
      "no-trace": { type: "boolean" },
      "cpu-prof": { type: "string" },
      "quiet-cores": { type: "string" },
      "quiet-timeout": { type: "string" },
      "primitive-reps": { type: "string" },
      timeout: { type: "string" },
      out: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean" },
    },
  });
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const number = (name: string, given: string | undefined, fallback: number, min: number): number => {
    const value = given === undefined ? fallback : Number(given);
    if (!Number.isFinite(value) || value < min) throw new Error(`--${name} must be a number ≥ ${min}`);
    return value;
  };
  const mode = values["network-mode"] ?? "bridge";
  if (!["bridge", "host", "none", "awsvpc"].includes(mode)) {
    throw new Error("--network-mode must be bridge, host, none or awsvpc");
  }
  return {
    tasks: Math.floor(number("tasks", values.tasks, 200, 1)),
    warmup: Math.floor(number("warmup", values.warmup, 3, 1)),
    pollMs: number("poll-ms", values["poll-ms"], 5, 0),
    networkMode: mode as NetworkMode,
    trace: values.trace === true && values["no-trace"] !== true,
    cpuProfileDir: values["cpu-prof"] === undefined ? undefined : resolve(values["cpu-prof"]),
    quietCores: number("quiet-cores", values["quiet-cores"], 0.5, 0),
    quietTimeoutS: number("quiet-timeout", values["quiet-timeout"], 10, 0),
    primitiveReps: Math.floor(number("primitive-reps", values["primitive-reps"], 20, 1)),
    timeoutS: number("timeout", values.timeout, 60, 1),
    out: values.out,
    json: values.json === true,
  };
}

function runcVersion(): string {
  try {
    return execFileSync("runc", ["--version"], { encoding: "utf8" }).split("\n")[0] ?? "";
  } catch {
    return "unknown";
  }
}

/** The main thread's profile in `dir`: the largest (tsx's loader thread writes a small one too). */
function mainThreadProfile(dir: string): string {
  const files = readdirSync(dir)
    .filter((name) => name.endsWith(".cpuprofile"))
    .map((name) => ({ path: join(dir, name), size: statSync(join(dir, name)).size }))
    .sort((a, b) => b.size - a.size);
  const largest = files[0];
  if (largest === undefined) throw new Error(`no .cpuprofile in ${dir}`);
  return largest.path;
}

/** Everything the run made, for cleanup in any state. */
interface Made {
  root: string;
  server?: Child<ServerReady>;
  agent?: Child<AgentReady>;
  node?: NodeFootprint;
  trace?: Child<TraceReady>;
  floor?: RuncFloor;
  session?: Session;
}

async function cleanup(made: Made, log: (line: string) => void): Promise<void> {
  await made.agent?.stop().catch(() => undefined);
  if (made.node !== undefined) {
    for (const problem of await cleanupNode(made.node, made.session?.taskIds ?? [])) {
      log(`cleanup: ${problem}`);
    }
  }
  await made.floor?.cleanup().catch((error: unknown) => log(`cleanup: floor: ${String(error)}`));
  await made.server?.stop().catch(() => undefined);
  await made.trace?.stop().catch(() => undefined);
  rmSync(made.root, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const options = settings(process.argv.slice(2));
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const say = options.json ? log : (line: string) => process.stdout.write(`${line}\n`);
  const interrupted = new AbortController();
  const onSignal = () => {
    if (interrupted.signal.aborted) return;
    log("interrupted: cleaning up");
    interrupted.abort(new Error("interrupted"));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const made: Made = { root: mkdtempSync(join(tmpdir(), "wharf-bench-task-start-")) };
  const loadBefore = loadavg();
  const quiet = () => waitForQuiet(options.quietCores, 250, options.quietTimeoutS * 1000);
  try {
    log("measuring building blocks…");
    const granularity = fileTimeGranularity(made.root);
    const primitives: Primitive[] = await measurePrimitives(
      join(made.root, "primitives"),
      options.primitiveReps,
    );

    log("starting the server and pushing the busybox image…");
    if (options.cpuProfileDir !== undefined) {
      for (const role of ["server", "agent"])
        rmSync(join(options.cpuProfileDir, role), { recursive: true, force: true });
    }
    const childOptions = { profileDir: options.cpuProfileDir, timeoutMs: 180_000 };
    const serverSettings: ServerSettings = {
      dataDir: join(made.root, "server"),
      repository: "bench/busybox",
    };
    made.server = await startChild<ServerReady>("server", serverSettings, childOptions);
    const { endpoint, credentials, image } = made.server.ready;
    const ecs = ecsClient({ endpoint, credentials });
    const cluster = "bench-task-start";
    const clusterArn = await createCluster(ecs, cluster);
    const traceLog = options.trace ? new TraceLog() : undefined;
    if (traceLog !== undefined) {
      const traceSettings: TraceSettings = { target: endpoint };
      made.trace = await startChild<TraceReady>("trace", traceSettings, {
        timeoutMs: 30_000,
        onLine: (line) => traceLog.add(JSON.parse(line) as TraceEvent),
      });
    }

    log("starting the agent…");
    made.node = {
      dataDir: join(made.root, "agent"),
      bridge: `wb${randomBytes(4).toString("hex")}`,
      subnet: freeSubnet(),
    };
    const agentSettings: AgentSettings = {
      server: made.trace?.ready.url ?? endpoint,
      credentials,
      cluster,
      ...made.node,
    };
    made.agent = await startChild<AgentReady>("agent", agentSettings, childOptions);
    const session: Session = {
      ecs,
      cluster,
      taskDefinition: await registerDefinition(ecs, image, options.networkMode),
      networkMode: options.networkMode,
      pollMs: options.pollMs,
      timeoutMs: options.timeoutS * 1000,
      agentDataDir: made.node.dataDir,
      agentPid: made.agent.pid,
      serverPid: made.server.pid,
      trace: traceLog,
      fileTickMs: granularity,
      taskIds: [],
    };
    made.session = session;

    log(`warming up: ${options.warmup} task(s), the first pulls the image…`);
    for (let i = 0; i < options.warmup; i++) {
      await warmUp(session, async (bundle) => {
        made.floor ??= await RuncFloor.snapshot(join(made.root, "floor"), bundle);
      });
    }
    const floor = made.floor;
    if (floor === undefined) throw new Error("no bundle to copy for the runc floor");
    for (let i = 0; i < 3; i++) await floor.runOnce(-1 - i);

    log(`measuring ${options.tasks} task starts, each followed by a plain runc run…`);
    const wharf: WharfSample[] = [];
    const runc: FloorSample[] = [];
    for (let i = 0; i < options.tasks; i++) {
      interrupted.signal.throwIfAborted();
      wharf.push(await measureTaskStart(session, i, await quiet()));
      interrupted.signal.throwIfAborted();
      await quiet();
      runc.push(await floor.runOnce(i));
      if ((i + 1) % 20 === 0 || i + 1 === options.tasks) {
        const last = wharf.slice(-20).map((s) => s.total);
        log(
          `  ${i + 1}/${options.tasks}: last ${last.length} Wharf mean ${(last.reduce((a, b) => a + b, 0) / last.length).toFixed(1)} ms`,
        );
      }
    }
    const memory = { agent: processMemory(made.agent.pid), server: processMemory(made.server.pid) };
    const lastArn = wharf[wharf.length - 1]?.taskArn;
    const api = await apiLatencies(session, clusterArn, lastArn, 20);

    log("stopping Wharf…");
    await made.agent.stop();
    await made.server.stop();
    const profiles: Record<string, ProfileSummary> = {};
    if (options.cpuProfileDir !== undefined) {
      const windows = wharf.map((s) => s.window);
      for (const role of ["server", "agent"]) {
        try {
          profiles[role] = await summarizeProfile(
            mainThreadProfile(join(options.cpuProfileDir, role)),
            windows,
          );
        } catch (error) {
          log(`no ${role} profile: ${String(error)}`);
        }
      }
    }

    const context: Context = {
      date: new Date().toISOString(),
      command: `npm run bench:task-start${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`,
      machine: {
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model ?? "unknown",
        memoryMiB: Math.round(totalmem() / 2 ** 20),
        kernel: release(),
        node: process.version,
        runc: runcVersion(),
      },
      settings: {
        tasks: options.tasks,
        concurrency: 1,
        warmup: options.warmup,
        pollMs: options.pollMs,
        networkMode: options.networkMode,
        trace: options.trace,
        cpuProfile: options.cpuProfileDir !== undefined,
        quietCores: options.quietCores,
      },
      memoryMiB: memory,
      loadBefore: loadBefore.map((l) => Math.round(l * 100) / 100),
      loadAfter: loadavg().map((l) => Math.round(l * 100) / 100),
      fileTimeGranularityMs: Math.round(granularity * 1000) / 1000,
    };
    const inputs = { context, wharf, floor: runc, primitives, api, profiles, quietCores: options.quietCores };
    const res = result(inputs);
    if (options.out !== undefined) {
      writeFileSync(options.out, `${JSON.stringify({ ...res, samples: { wharf, runc } }, null, 2)}\n`);
    }
    const report = text(inputs, res);
    say(report);
    if (options.json) process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
    else say(`\n${JSON.stringify(res, null, 2)}`);
  } finally {
    await cleanup(made, log);
  }
}

try {
  await main();
  process.exit(0);
} catch (error) {
  if (error instanceof Error && error.message === "interrupted") {
    process.stderr.write("bench:task-start interrupted; cleaned up\n");
    process.exit(130);
  }
  process.stderr.write(
    `bench:task-start failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
}
