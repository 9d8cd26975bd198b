// One Wharf task start, measured as a user sees it: RunTask through the AWS SDK, then
// DescribeTasks every `pollMs` until lastStatus is RUNNING. Outside the measured window: the
// file-time and trace marks are read, and the task is stopped and awaited to STOPPED.

import { join } from "node:path";
import {
  CreateClusterCommand,
  DescribeTasksCommand,
  type ECSClient,
  type NetworkMode,
  RegisterTaskDefinitionCommand,
  RunTaskCommand,
  StopTaskCommand,
  TagResourceCommand,
  type Task,
} from "@aws-sdk/client-ecs";
import { fileMarks, type Marks, phasesOf, type TraceCounts, traceMarks } from "./marks.ts";
import { machineCpu, processCpu } from "./proc.ts";
import { type Summary, summarize } from "./stats.ts";
import { epochNow, type TraceEvent, type TraceLog } from "./trace.ts";

export const CONTAINER = "app";

export interface Session {
  ecs: ECSClient;
  cluster: string;
  taskDefinition: string;
  networkMode: NetworkMode;
  pollMs: number;
  timeoutMs: number;
  agentDataDir: string;
  agentPid: number;
  serverPid: number;
  trace: TraceLog | undefined;
  /** The kernel's file-stamp tick (ms), to correct coarse file birth times. */
  fileTickMs: number;
  /** Every task started, for cleanup. */
  taskIds: string[];
}

export interface CpuUse {
  agent: number;
  /** Children the agent reaped inside the window (ip, iptables, mount, runc state …). */
  agentChildren: number;
  server: number;
  bench: number;
  /** Busy time of the whole machine (all processes, all cores). */
  machine: number;
}

export interface WharfSample {
  index: number;
  taskArn: string;
  /** RunTask sent → a DescribeTasks answer said RUNNING, ms. */
  total: number;
  /** The RunTask call alone, ms. */
  runTask: number;
  describes: number;
  /** Mean latency of those DescribeTasks calls, ms. */
  describeMs: number;
  marks: Marks;
  phases: Array<{ key: string; ms: number }>;
  trace?: TraceCounts;
  cpu: CpuUse;
  /** Busy cores on the machine just before the sample. */
  background: number;
  /** StopTask → STOPPED (outside the measured time), ms. */
  stop: number;
  /** The window on the monotonic clock (µs), for the CPU profiles. */
  window: [number, number];
}

export function taskIdOf(taskArn: string): string {
  return taskArn.slice(taskArn.lastIndexOf("/") + 1);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** Creates the cluster; returns its ARN. */
export async function createCluster(ecs: ECSClient, cluster: string): Promise<string> {
  const created = await ecs.send(new CreateClusterCommand({ clusterName: cluster }));
  const arn = created.cluster?.clusterArn;
  if (arn === undefined) throw new Error("CreateCluster returned no ARN");
  return arn;
}

/** `sleep 300` from the busybox image: 64 MiB, stopTimeout 2, no log driver. */
export async function registerDefinition(
  ecs: ECSClient,
  image: string,
  networkMode: NetworkMode,
): Promise<string> {
  const registered = await ecs.send(
    new RegisterTaskDefinitionCommand({
      family: "bench-task-start",
      networkMode,
      containerDefinitions: [
        {
          name: CONTAINER,
          image,
          memory: 64,
          essential: true,
          command: ["sleep", "300"],
          stopTimeout: 2,
        },
      ],
    }),
  );
  const arn = registered.taskDefinition?.taskDefinitionArn;
  if (arn === undefined) throw new Error("RegisterTaskDefinition returned no ARN");
  return arn;
}

async function describe(session: Session, taskArn: string): Promise<Task> {
  const answer = await session.ecs.send(
    new DescribeTasksCommand({ cluster: session.cluster, tasks: [taskArn] }),
  );
  const task = answer.tasks?.[0];
  if (task === undefined) throw new Error(`DescribeTasks does not know ${taskArn}`);
  return task;
}

async function runTask(session: Session): Promise<string> {
  const answer = await session.ecs.send(
    new RunTaskCommand({
      cluster: session.cluster,
      taskDefinition: session.taskDefinition,
      count: 1,
      ...(session.networkMode === "awsvpc"
        ? { networkConfiguration: { awsvpcConfiguration: { subnets: ["subnet-wharf"] } } }
        : {}),
    }),
  );
  const arn = answer.tasks?.[0]?.taskArn;
  if (arn === undefined) {
    throw new Error(`RunTask placed no task: ${JSON.stringify(answer.failures ?? [])}`);
  }
  session.taskIds.push(taskIdOf(arn));
  return arn;
}

/** Polls DescribeTasks every `everyMs` until the task is `status`; fails if it stops first. */
async function waitFor(
  session: Session,
  taskArn: string,
  status: "RUNNING" | "STOPPED",
  everyMs: number,
): Promise<{ task: Task; describes: number; describeMs: number }> {
  const deadline = performance.now() + session.timeoutMs;
  let describes = 0;
  let spent = 0;
  for (;;) {
    const started = performance.now();
    const task = await describe(session, taskArn);
    spent += performance.now() - started;
    describes++;
    if (task.lastStatus === status) return { task, describes, describeMs: spent / describes };
    if (task.lastStatus === "STOPPED") {
      throw new Error(`task ${taskIdOf(taskArn)} stopped: ${task.stopCode} ${task.stoppedReason ?? ""}`);
    }
    if (performance.now() > deadline) {
      throw new Error(`task ${taskIdOf(taskArn)} not ${status} after ${session.timeoutMs} ms`);
    }
    await sleep(everyMs);
  }
}

async function stopTask(session: Session, taskArn: string): Promise<number> {
  const started = performance.now();
  await session.ecs.send(new StopTaskCommand({ cluster: session.cluster, task: taskArn }));
  await waitFor(session, taskArn, "STOPPED", 50);
  return performance.now() - started;
}

/**
 * Runs a task to RUNNING without measuring it (the first pulls the image); `whileRunning` gets the
 * container's bundle directory before the task is stopped.
 */
export async function warmUp(session: Session, whileRunning?: (bundle: string) => Promise<void>) {
  const taskArn = await runTask(session);
  try {
    await waitFor(session, taskArn, "RUNNING", session.pollMs);
    await whileRunning?.(join(session.agentDataDir, "tasks", taskIdOf(taskArn), CONTAINER));
  } finally {
    await stopTask(session, taskArn);
  }
}

function cpuNow(session: Session) {
  const agent = processCpu(session.agentPid);
  const bench = process.cpuUsage();
  return {
    agent: agent.self,
    agentChildren: agent.children,
    server: processCpu(session.serverPid).self,
    bench: (bench.user + bench.system) / 1000,
    machine: machineCpu().busy,
  };
}

/** One measured task start. */
export async function measureTaskStart(
  session: Session,
  index: number,
  background: number,
): Promise<WharfSample> {
  const cpu0 = cpuNow(session);
  const monotonic0 = monotonicUs();
  const call = epochNow();
  const started = performance.now();
  const taskArn = await runTask(session);
  const runTaskMs = performance.now() - started;
  const { task, describes, describeMs } = await waitFor(session, taskArn, "RUNNING", session.pollMs);
  const total = performance.now() - started;
  const seen = epochNow();
  const window: [number, number] = [monotonic0, monotonicUs()];
  const cpu1 = cpuNow(session);

  const marks: Marks = {
    call,
    seen,
    ...(await fileMarks(session.agentDataDir, taskIdOf(taskArn), CONTAINER, session.fileTickMs)),
  };
  const at = (date: Date | undefined) => (date === undefined ? undefined : date.getTime());
  const fromServer: Array<[keyof Marks, number | undefined]> = [
    ["created", at(task.createdAt)],
    ["pullStarted", at(task.pullStartedAt)],
    ["pullStopped", at(task.pullStoppedAt)],
    ["started", at(task.startedAt)],
  ];
  for (const [name, value] of fromServer) if (value !== undefined) marks[name] = value;
  let trace: TraceCounts | undefined;
  if (session.trace !== undefined) {
    // The proxy relays the RUNNING report's answer around the time DescribeTasks sees it.
    const running = (e: TraceEvent) => e.report?.taskArn === taskArn && e.report.lastStatus === "RUNNING";
    await session.trace.waitFor(running, 1000);
    const seenByTrace = traceMarks(session.trace.events, taskArn, call, seen);
    Object.assign(marks, seenByTrace.marks);
    trace = seenByTrace.counts;
  }
  const stop = await stopTask(session, taskArn);
  session.trace?.forget(epochNow());
  const cpu: CpuUse = {
    agent: cpu1.agent - cpu0.agent,
    agentChildren: cpu1.agentChildren - cpu0.agentChildren,
    server: cpu1.server - cpu0.server,
    bench: cpu1.bench - cpu0.bench,
    machine: cpu1.machine - cpu0.machine,
  };
  return {
    index,
    taskArn,
    total,
    runTask: runTaskMs,
    describes,
    describeMs,
    marks,
    phases: phasesOf(marks),
    ...(trace === undefined ? {} : { trace }),
    cpu,
    background,
    stop,
    window,
  };
}

/** Latency of a read (DescribeTasks) and of a write (TagResource: one store transaction) through the SDK. */
export async function apiLatencies(
  session: Session,
  clusterArn: string,
  taskArn: string | undefined,
  reps: number,
): Promise<{ read: Summary | undefined; write: Summary | undefined }> {
  const reads: number[] = [];
  const writes: number[] = [];
  for (let i = 0; i < reps; i++) {
    if (taskArn !== undefined) {
      const started = performance.now();
      await describe(session, taskArn);
      reads.push(performance.now() - started);
    }
    const started = performance.now();
    await session.ecs.send(
      new TagResourceCommand({ resourceArn: clusterArn, tags: [{ key: "bench", value: String(i) }] }),
    );
    writes.push(performance.now() - started);
  }
  return { read: summarize(reads), write: summarize(writes) };
}
