// npm run bench:scheduler [-- --instances N --tasks N --quick …]
//
// The real placement and persistence path, no containers: a Wharf server in its own process,
// simulated instances registered and long-polling through the agent protocol (they acknowledge
// every task with a RUNNING report), then
//   (a) RunTask of `count` 10 (signed JSON over HTTP, or the AWS SDK with `--client sdk`),
//       `--concurrency` calls in flight, until `--tasks`
//       tasks are placed (or `--budget` seconds pass): placements/s and latency per call;
//   (b) in a second cluster with as many fresh instances, one service scaled from 0 to
//       `--service-tasks` with UpdateService: time until every task has reached its agent (the
//       table's figure: its row committed, then a poll answered with it, seen as it happens), until
//       DescribeServices, asked every 250 ms, counts every task (running + pending = desired),
//       and until runningCount = desired.
// Each timed phase starts after a `sync`, as the registry benchmark's do, so that the write-back
// of what came before (setting up, the warm-up, a run just finished) is not timed with it.
// Prints a table, then the result as JSON.
import { execFileSync } from "node:child_process";
import { cpus, loadavg, totalmem } from "node:os";
import { parseArgs } from "node:util";
import {
  CreateClusterCommand,
  CreateServiceCommand,
  DescribeServicesCommand,
  ECSClient,
  RegisterTaskDefinitionCommand,
  UpdateServiceCommand,
} from "@aws-sdk/client-ecs";
import { processCpu, processMemory } from "../task-start/proc.ts";
import { round1, roundSummary, summarize, table } from "../task-start/stats.ts";
import { Fleet, type FleetClient } from "./fleet.ts";
import { monotonicUs, type Span, summarizeProfiles } from "./profile.ts";
import { type ClientKind, type RunTaskCaller, runTaskCaller } from "./run-task-client.ts";
import { startWharf, type WharfServer } from "./server.ts";

const USAGE = `usage: npm run bench:scheduler -- [options]
  --instances N       simulated container instances per cluster (default 5000)
  --tasks N           tasks RunTask places, in calls of count 10 (default 100000)
  --service-tasks N   desired count the service is scaled to from 0 (default 10000)
  --quick             500 instances, 10000 tasks, service to 1000
  --concurrency N     RunTask calls in flight (default 8)
  --budget S          stop issuing RunTask after S seconds, and give the service S seconds (default 900)
  --no-ack            agents poll but never report RUNNING (phase b then waits for placement only)
  --skip-run-task     only phase (b);   --skip-service: only phase (a)
  --warm-up N         tasks run untimed first, on 1 instance per 20 of a cluster of their own (default 5000; 0: none)
  --cpu-prof DIR      run the server under node --cpu-prof, profile written to DIR and summarised
                      over the timed phases
  --client KIND       how RunTask is called: http (signed JSON over keep-alive HTTP, the default) or
                      sdk (@aws-sdk/client-ecs; costs the shared cores more, see run-task-client.ts)
  --fleet-client KIND how the simulated agents poll and report: channel (each agent's channel, as
                      wharf agent does; the default), wire (POSTs through a minimal HTTP/1.1 client,
                      as agents did before the channel) or agent (the agent's own client; see fleet.ts)`;

interface Settings {
  instances: number;
  tasks: number;
  serviceTasks: number;
  concurrency: number;
  budgetS: number;
  ack: boolean;
  runTask: boolean;
  service: boolean;
  profileDir: string | undefined;
  warmUpTasks: number;
  client: ClientKind;
  fleetClient: FleetClient;
}

function settings(): Settings {
  const { values } = parseArgs({
    options: {
      instances: { type: "string" },
      tasks: { type: "string" },
      "service-tasks": { type: "string" },
      quick: { type: "boolean", default: false },
      concurrency: { type: "string", default: "8" },
      budget: { type: "string", default: "900" },
      "no-ack": { type: "boolean", default: false },
      "skip-run-task": { type: "boolean", default: false },
      "skip-service": { type: "boolean", default: false },
      "cpu-prof": { type: "string" },
      "warm-up": { type: "string" },
      client: { type: "string", default: "http" },
      "fleet-client": { type: "string", default: "channel" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const int = (value: string | undefined, fallback: number) => {
    const n = value === undefined ? fallback : Number(value);
    if (!Number.isInteger(n) || n < 0) throw new Error(`not a whole number: ${value}\n${USAGE}`);
    return n;
  };
  if (values.client !== "http" && values.client !== "sdk") {
    throw new Error(`--client is http or sdk, not ${values.client}\n${USAGE}`);
  }
  const fleetClient = values["fleet-client"];
  if (fleetClient !== "channel" && fleetClient !== "wire" && fleetClient !== "agent") {
    throw new Error(`--fleet-client is channel, wire or agent, not ${fleetClient}\n${USAGE}`);
  }
  return {
    instances: int(values.instances, values.quick ? 500 : 5000),
    tasks: int(values.tasks, values.quick ? 10_000 : 100_000),
    serviceTasks: int(values["service-tasks"], values.quick ? 1000 : 10_000),
    concurrency: int(values.concurrency, 8),
    budgetS: int(values.budget, 900),
    ack: !values["no-ack"],
    runTask: !values["skip-run-task"],
    service: !values["skip-service"],
    profileDir: values["cpu-prof"],
    warmUpTasks: int(values["warm-up"], values.quick ? 1000 : 5000),
    client: values.client,
    fleetClient,
  };
}

// Room for 64 tasks per instance: the issue's density (20 per instance) never runs out of capacity.
const INSTANCE = { cpu: 4096, memory: 8192 };
const TASK = { cpu: 64, memory: 128 };

function log(message: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

/** A cluster of `instances` simulated instances, registered and each with its long poll waiting. */
async function setUpCluster(
  ecs: ECSClient,
  server: WharfServer,
  name: string,
  s: Settings,
  instances = s.instances,
) {
  await ecs.send(new CreateClusterCommand({ clusterName: name }));
  const fleet = new Fleet(server, { cluster: name, ack: s.ack, client: s.fleetClient, ...INSTANCE });
  const registerMs = await fleet.register(instances);
  fleet.start();
  // Nothing is timed while the agents come up: a fleet's first polls are not placement work.
  await fleet.polling();
  log(`${name}: ${instances} instances registered in ${(registerMs / 1000).toFixed(1)} s, all polling`);
  return { fleet, registerMs };
}

/**
 * Runs `tasks` tasks in RunTask calls of count 10 on a small cluster of its own, untimed, and
 * waits for them to be acknowledged, so that the timed phases run on a server whose hot paths are
 * compiled (as the registry benchmark warms each peer up before timing it).
 */
async function warmUp(
  ecs: ECSClient,
  runTask: RunTaskCaller,
  server: WharfServer,
  definition: string,
  s: Settings,
): Promise<void> {
  if (s.warmUpTasks === 0) return;
  const cluster = "bench-warm-up";
  const { fleet } = await setUpCluster(ecs, server, cluster, s, Math.max(1, Math.ceil(s.warmUpTasks / 20)));
  let issued = 0;
  const calls = Math.ceil(s.warmUpTasks / 10);
  const worker = async () => {
    while (issued < calls) {
      const count = Math.min(10, s.warmUpTasks - issued * 10);
      issued++;
      await runTask(cluster, definition, count);
    }
  };
  await Promise.all(Array.from({ length: s.concurrency }, worker));
  const deadline = performance.now() + 60_000;
  while (s.ack && fleet.counters.acked < s.warmUpTasks && performance.now() < deadline) {
    await new Promise((done) => setTimeout(done, 250));
  }
  await fleet.stop();
  log(`warm-up: ${s.warmUpTasks} tasks run on a cluster of their own, not timed`);
}

interface Window {
  /** Tasks placed so far at the end of the window. */
  placed: number;
  seconds: number;
  placementsPerS: number;
  p99Ms: number;
}

async function runTaskPhase(
  ecs: ECSClient,
  runTask: RunTaskCaller,
  server: WharfServer,
  definition: string,
  s: Settings,
) {
  const { fleet, registerMs } = await setUpCluster(ecs, server, "bench-run-task", s);
  const calls = Math.ceil(s.tasks / 10);
  const latencies: number[] = [];
  const windows: Window[] = [];
  const failures = new Map<string, number>();
  let placed = 0;
  let issued = 0;
  let errors = 0;
  let lastError: string | undefined;
  execFileSync("sync");
  const cpu0 = processCpu(server.pid).self;
  const benchCpu0 = process.cpuUsage();
  const span = { fromUs: monotonicUs(), toUs: 0 };
  const started = performance.now();
  const deadline = started + s.budgetS * 1000;
  let windowStart = started;
  let windowLatencies: number[] = [];
  let windowPlaced = 0;
  const windowCalls = Math.max(1, Math.floor(calls / 20));
  const closeWindow = () => {
    const now = performance.now();
    const seconds = (now - windowStart) / 1000;
    windows.push({
      placed,
      seconds: round1(seconds),
      placementsPerS: round1(windowPlaced / seconds),
      p99Ms: round1(summarize(windowLatencies)?.p99 ?? 0),
    });
    log(
      `run-task: ${placed}/${s.tasks} placed; last window ${(windowPlaced / seconds).toFixed(0)}/s, p99 ${(summarize(windowLatencies)?.p99 ?? 0).toFixed(0)} ms; acked ${fleet.counters.acked}`,
    );
    windowStart = now;
    windowLatencies = [];
    windowPlaced = 0;
  };
  const worker = async () => {
    while (issued < calls && performance.now() < deadline) {
      issued++;
      const count = Math.min(10, s.tasks - (issued - 1) * 10);
      const t0 = performance.now();
      try {
        const answer = await runTask("bench-run-task", definition, count);
        const ms = performance.now() - t0;
        latencies.push(ms);
        windowLatencies.push(ms);
        placed += answer.tasks;
        windowPlaced += answer.tasks;
        for (const reason of answer.failures) failures.set(reason, (failures.get(reason) ?? 0) + 1);
      } catch (error) {
        errors++;
        lastError = String(error);
      }
      if (latencies.length % windowCalls === 0) closeWindow();
    }
  };
  await Promise.all(Array.from({ length: s.concurrency }, worker));
  const wallMs = performance.now() - started;
  span.toUs = monotonicUs();
  const serverCpuMs = processCpu(server.pid).self - cpu0;
  const benchCpu = process.cpuUsage(benchCpu0);
  // Acknowledgements trail placement: wait (bounded) for the agents to report the rest RUNNING.
  const ackDeadline = performance.now() + 120_000;
  while (s.ack && fleet.counters.acked < placed && performance.now() < ackDeadline) {
    await new Promise((done) => setTimeout(done, 250));
  }
  const ackedMs = performance.now() - started;
  const acked = fleet.counters.acked;
  await fleet.stop();
  return {
    instances: s.instances,
    registerSeconds: round1(registerMs / 1000),
    requestedTasks: s.tasks,
    calls: latencies.length,
    errors,
    ...(lastError === undefined ? {} : { lastError }),
    placed,
    failures: Object.fromEntries(failures),
    completed: placed >= s.tasks,
    wallSeconds: round1(wallMs / 1000),
    placementsPerS: round1(placed / (wallMs / 1000)),
    latencyMs: roundSummary(summarize(latencies)),
    serverCpuSeconds: round1(serverCpuMs / 1000),
    // This process: the RunTask client and the simulated fleet, on the same two cores as the server.
    benchCpuSeconds: round1((benchCpu.user + benchCpu.system) / 1e6),
    acked,
    ackedSeconds: round1(ackedMs / 1000),
    agent: { ...fleet.counters },
    windows,
    span,
  };
}

async function servicePhase(ecs: ECSClient, server: WharfServer, definition: string, s: Settings) {
  const cluster = "bench-service";
  const { fleet, registerMs } = await setUpCluster(ecs, server, cluster, s);
  await ecs.send(
    new CreateServiceCommand({ cluster, serviceName: "scale", taskDefinition: definition, desiredCount: 0 }),
  );
  execFileSync("sync");
  const cpu0 = processCpu(server.pid).self;
  const benchCpu0 = process.cpuUsage();
  const span = { fromUs: monotonicUs(), toUs: 0 };
  const started = performance.now();
  await ecs.send(new UpdateServiceCommand({ cluster, service: "scale", desiredCount: s.serviceTasks }));
  const updateMs = performance.now() - started;
  const deadline = started + s.budgetS * 1000;
  let allPlacedMs: number | undefined;
  let allRunningMs: number | undefined;
  let last = { running: 0, pending: 0 };
  const describeMs: number[] = [];
  let lastLog = 0;
  while (performance.now() < deadline) {
    const t0 = performance.now();
    const answer = await ecs.send(new DescribeServicesCommand({ cluster, services: ["scale"] }));
    describeMs.push(performance.now() - t0);
    const service = answer.services?.[0];
    last = { running: service?.runningCount ?? 0, pending: service?.pendingCount ?? 0 };
    const now = performance.now() - started;
    if (allPlacedMs === undefined && last.running + last.pending >= s.serviceTasks) allPlacedMs = now;
    if (last.running >= s.serviceTasks) {
      allRunningMs = now;
      break;
    }
    if (!s.ack && allPlacedMs !== undefined) break;
    if (now - lastLog > 10_000) {
      lastLog = now;
      log(`service: ${last.running} running, ${last.pending} pending of ${s.serviceTasks}`);
    }
    await new Promise((done) => setTimeout(done, 250));
  }
  span.toUs = monotonicUs();
  // When the last task reached its agent: after its row committed, so no sooner than it was placed,
  // and seen as it happens rather than at the next DescribeServices.
  const allDeliveredMs =
    fleet.counters.delivered >= s.serviceTasks ? fleet.counters.lastDeliveredAt - started : undefined;
  const serverCpuMs = processCpu(server.pid).self - cpu0;
  const benchCpu = process.cpuUsage(benchCpu0);
  await fleet.stop();
  const seconds = (ms: number | undefined) => (ms === undefined ? undefined : round1(ms / 1000));
  return {
    instances: s.instances,
    registerSeconds: round1(registerMs / 1000),
    desired: s.serviceTasks,
    updateServiceMs: round1(updateMs),
    allPlacedSeconds: seconds(allPlacedMs),
    allDeliveredSeconds: seconds(allDeliveredMs),
    allRunningSeconds: seconds(allRunningMs),
    placementsPerS: allPlacedMs === undefined ? undefined : round1(s.serviceTasks / (allPlacedMs / 1000)),
    deliveredPerS:
      allDeliveredMs === undefined ? undefined : round1(s.serviceTasks / (allDeliveredMs / 1000)),
    runningPerS: allRunningMs === undefined ? undefined : round1(s.serviceTasks / (allRunningMs / 1000)),
    final: last,
    describeServicesMs: roundSummary(summarize(describeMs)),
    serverCpuSeconds: round1(serverCpuMs / 1000),
    benchCpuSeconds: round1((benchCpu.user + benchCpu.system) / 1e6),
    agent: { ...fleet.counters },
    span,
  };
}

async function main(): Promise<void> {
  const s = settings();
  log(`starting Wharf (${s.profileDir === undefined ? "no profile" : `--cpu-prof into ${s.profileDir}`})`);
  const server = await startWharf(s.profileDir === undefined ? {} : { profileDir: s.profileDir });
  const stopServer = () => void server.stop(5000);
  process.once("SIGINT", stopServer);
  process.once("SIGTERM", stopServer);
  let runTask: Awaited<ReturnType<typeof runTaskPhase>> | undefined;
  let service: Awaited<ReturnType<typeof servicePhase>> | undefined;
  let peakRssMiB = 0;
  try {
    const ecs = new ECSClient({
      endpoint: server.endpoint,
      region: server.region,
      credentials: server.credentials,
      maxAttempts: 1,
      requestHandler: { requestTimeout: 300_000 },
    });
    const registered = await ecs.send(
      new RegisterTaskDefinitionCommand({
        family: "bench-scheduler",
        containerDefinitions: [
          { name: "app", image: "busybox:latest", essential: true, command: ["sleep", "3600"], ...TASK },
        ],
      }),
    );
    const definition = registered.taskDefinition?.taskDefinitionArn;
    if (definition === undefined) throw new Error("RegisterTaskDefinition returned no ARN");
    const caller = runTaskCaller(s.client, ecs, server);
    await warmUp(ecs, caller, server, definition, s);
    if (s.runTask) runTask = await runTaskPhase(ecs, caller, server, definition, s);
    if (s.service) service = await servicePhase(ecs, server, definition, s);
    peakRssMiB = processMemory(server.pid).peakMiB;
  } finally {
    await server.stop();
  }
  // The timed phases only: not start-up, registration or the warm-up.
  const spans: Span[] = [runTask?.span, service?.span].filter((span) => span !== undefined);
  const profile =
    s.profileDir === undefined
      ? undefined
      : await summarizeProfiles(s.profileDir, spans).catch(() => undefined);
  const result = {
    benchmark: "scheduler",
    date: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      model: cpus()[0]?.model ?? "?",
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      load: loadavg().map(round1),
    },
    node: process.version,
    settings: { ...s, instance: INSTANCE, task: TASK },
    serverNodeOptions: server.nodeOptions,
    serverPeakRssMiB: peakRssMiB,
    runTask,
    service,
    reference: {
      nomadMillionContainers: "3,750 containers/s (published, five servers; not run here)",
      kubernetesSchedulerFloor: "~800 pods/s at 5,000 nodes (published threshold; not run here)",
    },
    ...(profile === undefined ? {} : { profile }),
  };
  const rows: string[][] = [];
  if (runTask !== undefined) {
    rows.push([
      `RunTask x10 (${runTask.instances} inst.)`,
      `${runTask.placed}/${runTask.requestedTasks}`,
      runTask.wallSeconds.toFixed(1),
      runTask.placementsPerS.toFixed(0),
      runTask.latencyMs?.p50.toFixed(1) ?? "–",
      runTask.latencyMs?.p99.toFixed(1) ?? "–",
      `${runTask.acked}`,
      `${runTask.serverCpuSeconds.toFixed(1)} / ${runTask.benchCpuSeconds.toFixed(1)}`,
    ]);
  }
  if (service !== undefined) {
    rows.push([
      `Service 0→${service.desired} (${service.instances} inst.)`,
      `${service.final.running + service.final.pending}/${service.desired}`,
      service.allDeliveredSeconds?.toFixed(1) ?? "–",
      service.deliveredPerS?.toFixed(0) ?? "–",
      "–",
      `UpdateService ${service.updateServiceMs.toFixed(0)}`,
      `${service.final.running} (${service.allRunningSeconds?.toFixed(1) ?? "–"} s)`,
      `${service.serverCpuSeconds.toFixed(1)} / ${service.benchCpuSeconds.toFixed(1)}`,
    ]);
  }
  process.stderr.write(
    `\n${table(
      ["phase", "placed", "wall s", "placements/s", "p50 ms", "p99 ms", "RUNNING", "CPU s: server / bench"],
      rows,
    )}\n`,
  );
  if (service !== undefined) {
    process.stderr.write(
      `service: the last task reached its agent ${service.allDeliveredSeconds ?? "–"} s after UpdateService; ` +
        `DescribeServices (every 250 ms) first counted them all at ${service.allPlacedSeconds ?? "–"} s ` +
        `(${service.placementsPerS?.toFixed(0) ?? "–"}/s)\n`,
    );
  }
  process.stderr.write("reference (published, not run here): Nomad 3,750/s; Kubernetes floor ~800/s\n\n");
  if (profile !== undefined) {
    process.stderr.write(
      `server profile, self time:\n${table(
        ["function", "ms", "%"],
        profile.self.slice(0, 20).map((f) => [f.name, f.ms.toFixed(0), f.percent.toFixed(1)]),
      )}\n\ninclusive time:\n${table(
        ["function", "ms", "%"],
        profile.inclusive.map((f) => [f.name, f.ms.toFixed(0), f.percent.toFixed(1)]),
      )}\n\n`,
    );
  }
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
