// A process that hosts one part of bench/task-start: `node.ts server` (the server, with the
// busybox test image pushed to its registry), `node.ts agent` (a real node agent) or
// `node.ts trace` (the recording proxy between them, one JSON line per request). Settings
// come as JSON in WHARF_BENCH_NODE; once ready it prints one JSON line on stdout; a line (or EOF)
// on stdin, SIGINT or SIGTERM stops it, and it exits 0 so that --cpu-prof writes its profile.
import { Agent, type AgentLogger } from "../../src/agent/agent.ts";
import { defaultAgentConfig } from "../../src/agent/config.ts";
import { pushBusybox } from "../../test/agent-harness.ts";
import { startTestServer } from "../../test/helpers.ts";
import { TraceProxy } from "./trace.ts";

export interface ServerSettings {
  dataDir: string;
  repository: string;
}

export interface ServerReady {
  endpoint: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  image: string;
}

export interface AgentSettings {
  server: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  cluster: string;
  dataDir: string;
  bridge: string;
  subnet: string;
}

export interface AgentReady {
  containerInstanceArn: string;
}

export interface TraceSettings {
  target: string;
}

export interface TraceReady {
  url: string;
}

function settings<T>(): T {
  const text = process.env.WHARF_BENCH_NODE;
  if (text === undefined) throw new Error("WHARF_BENCH_NODE is not set");
  return JSON.parse(text) as T;
}

/** Resolves on the first line or EOF on stdin, SIGINT or SIGTERM. */
function stopRequested(): Promise<void> {
  return new Promise((resolve) => {
    process.stdin.once("data", () => resolve());
    process.stdin.once("end", () => resolve());
    process.once("SIGINT", () => resolve());
    process.once("SIGTERM", () => resolve());
  });
}

const verbose = process.env.WHARF_BENCH_VERBOSE === "1";
const logger: AgentLogger = {
  info: (fields, message) => (verbose ? console.error("agent:", message, fields) : undefined),
  warn: (fields, message) => console.error("agent warning:", message, fields),
  error: (fields, message) => console.error("agent error:", message, fields),
};

async function server(): Promise<void> {
  const { dataDir, repository } = settings<ServerSettings>();
  const running = await startTestServer({ dataDir });
  try {
    const image = await pushBusybox(running, repository);
    const ready: ServerReady = { endpoint: running.endpoint, credentials: running.credentials, image };
    process.stdout.write(`${JSON.stringify(ready)}\n`);
    await stopRequested();
  } finally {
    await running.close();
  }
}

async function agent(): Promise<void> {
  const given = settings<AgentSettings>();
  const config = defaultAgentConfig({
    server: given.server,
    credentials: given.credentials,
    cluster: given.cluster,
    dataDir: given.dataDir,
    bridge: given.bridge,
    subnet: given.subnet,
    availabilityZone: "us-east-1a",
  });
  const node = new Agent(config, logger);
  const stop = stopRequested();
  await node.start();
  try {
    const ready: AgentReady = { containerInstanceArn: node.containerInstanceArn ?? "" };
    process.stdout.write(`${JSON.stringify(ready)}\n`);
    await stop;
  } finally {
    // Tasks keep running; the benchmark removes what is left (containers, mounts, network).
    await node.stop();
  }
}

async function trace(): Promise<void> {
  const { target } = settings<TraceSettings>();
  const proxy = await TraceProxy.start(target, (event) => process.stdout.write(`${JSON.stringify(event)}\n`));
  try {
    const ready: TraceReady = { url: proxy.url };
    process.stdout.write(`${JSON.stringify(ready)}\n`);
    await stopRequested();
  } finally {
    await proxy.close();
  }
}

const role = process.argv[2];
try {
  if (role === "server") await server();
  else if (role === "agent") await agent();
  else if (role === "trace") await trace();
  else throw new Error(`unknown role ${JSON.stringify(role)}: expected server, agent or trace`);
  process.exit(0);
} catch (error) {
  console.error(`bench/task-start ${role ?? "?"}:`, error);
  process.exit(1);
}
