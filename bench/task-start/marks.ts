// Where a task start spends its time, seen from outside Wharf: the timestamps DescribeTasks
// returns, the birth times of the files the agent and runc create on the way (read while the
// task runs, before they are removed), and the agent protocol as the trace proxy saw it.
import { stat } from "node:fs/promises";
import { join } from "node:path";
import type { TraceEvent } from "./trace.ts";

/** Epoch ms of each step of one task start; absent when not observed. */
export interface Marks {
  /** The benchmark sent RunTask. */
  call: number;
  /** DescribeTasks createdAt: the server handled RunTask. */
  created?: number;
  /** The agent's long poll was answered with the task (trace). */
  pollAnswered?: number;
  /** The task's state directory appeared: the engine's first state save. */
  engine?: number;
  /** The server acknowledged the first PENDING report (trace): network and images ready. */
  report1?: number;
  /** The task's network record was written: address (and host ports) reserved. */
  netRecord?: number;
  /** The task's hostname file was written: namespace, veth and rules are in place. */
  netDone?: number;
  /** DescribeTasks pullStartedAt (agent clock). */
  pullStarted?: number;
  /** DescribeTasks pullStoppedAt (agent clock). */
  pullStopped?: number;
  /** The server acknowledged a second PENDING report (trace), if there was one. */
  report2?: number;
  /** The container's bundle directory appeared. */
  bundle?: number;
  /** The overlay's upper directory appeared (just before the mount). */
  upper?: number;
  /** overlayfs created work/work: the mount happened. */
  mounted?: number;
  /** config.json was written. */
  spec?: number;
  /** stdout.log was opened: the supervisor is being spawned. */
  spawn?: number;
  /** runc.log appeared: runc is running. */
  runcLog?: number;
  /** runc wrote the pid file: the container process exists. */
  pid?: number;
  /** DescribeTasks startedAt: the agent's RUNNING report time. */
  started?: number;
  /** The server acknowledged the RUNNING report (trace). */
  report3?: number;
  /** A DescribeTasks poll saw RUNNING. */
  seen: number;
}

export type MarkName = keyof Marks;

/**
 * The steps on the critical path, in the order a task start passes them. The agent sets up the
 * network while it pulls the image and mounts the root filesystem, and sends its PENDING reports
 * without waiting for them: those steps are in SIDE, measured from where they branch off.
 */
export const ORDER: readonly MarkName[] = [
  "call",
  "created",
  "pollAnswered",
  "engine",
  "netRecord",
  "netDone",
  "spec",
  "spawn",
  "runcLog",
  "pid",
  "started",
  "report3",
  "seen",
];

/** Steps beside the critical path: [from, to] pairs, each phase shown when both are observed. */
export const SIDE: ReadonlyArray<readonly [MarkName, MarkName]> = [
  ["engine", "report1"],
  ["engine", "pullStarted"],
  ["pullStarted", "pullStopped"],
  ["pullStopped", "bundle"],
  ["bundle", "upper"],
  ["upper", "mounted"],
  ["mounted", "spec"],
  ["pullStopped", "report2"],
];

/** What happens between two marks (when both are observed). */
const NAMES: Record<string, string> = {
  "call→created": "RunTask reaches the handler (SDK, HTTP, SigV4)",
  "created→pollAnswered": "server → agent: notify, poll heartbeat txn, answer",
  "pollAnswered→engine": "agent: apply the assignment, engine starts",
  "created→engine": "server → agent notification, engine starts",
  "engine→netRecord": "network: reserve address, write record",
  "netRecord→netDone": "network: netns, veth (2 × ip -batch), files",
  "netDone→spec": "spec, runtime prelude, config.json (after network and rootfs)",
  "spec→spawn": "open log files",
  "spawn→runcLog": "spawn supervisor sh, exec runc",
  "runcLog→pid": "runc create (namespaces, cgroup, rootfs)",
  "pid→started": "agent notices the pid file (fs.watch / 20 ms poll)",
  "started→report3": "report RUNNING (HTTP + txn)",
  "report3→seen": "DescribeTasks sees RUNNING (poll granularity)",
  "started→seen": "report RUNNING + DescribeTasks poll",
  "engine→report1": "∥ report PENDING with the pull times (after network and pull), not waited for",
  "engine→pullStarted": "∥ (gap)",
  "pullStarted→pullStopped": "∥ image: pull of a cached image (one manifest GET)",
  "pullStopped→bundle": "∥ bundle directory",
  "bundle→upper": "∥ overlay directories",
  "upper→mounted": "∥ overlay mount (mount exec)",
  "mounted→spec": "∥ rootfs ready → spec written (waits for the network)",
  "pullStopped→report2": "∥ a second PENDING report (awsvpc: PROVISIONING → PENDING first)",
};

export function phaseName(key: string): string {
  return NAMES[key] ?? key;
}

/** Consecutive observed marks of the critical path, then the side phases, as `from→to` → ms. */
export function phasesOf(marks: Marks): Array<{ key: string; ms: number }> {
  const present = ORDER.filter((name) => marks[name] !== undefined);
  const phases: Array<{ key: string; ms: number }> = [];
  for (let i = 1; i < present.length; i++) {
    const from = present[i - 1] as MarkName;
    const to = present[i] as MarkName;
    phases.push({ key: `${from}→${to}`, ms: (marks[to] as number) - (marks[from] as number) });
  }
  for (const [from, to] of SIDE) {
    const a = marks[from];
    const b = marks[to];
    if (a !== undefined && b !== undefined) phases.push({ key: `${from}→${to}`, ms: b - a });
  }
  return phases;
}

async function birthNs(path: string): Promise<bigint | undefined> {
  try {
    const info = await stat(path, { bigint: true });
    return info.birthtimeNs > 0n ? info.birthtimeNs : info.mtimeNs;
  } catch {
    return undefined;
  }
}

/**
 * Stamps in ms. The kernel stamps most new files from its coarse clock (the last tick, up to
 * `tickMs` early) but some from the fine one (multigrain timestamps). Coarse stamps share one
 * phase within the tick: those get half a tick added, the others are kept as they are.
 */
export function correctStamps(
  stamps: ReadonlyArray<bigint | undefined>,
  tickMs: number,
): Array<number | undefined> {
  const tick = BigInt(Math.round(tickMs * 1e6));
  if (tick <= 0n) return stamps.map((ns) => (ns === undefined ? undefined : Number(ns) / 1e6));
  const phases = stamps.filter((ns): ns is bigint => ns !== undefined).map((ns) => ns % tick);
  const near = (a: bigint, b: bigint) => (a > b ? a - b : b - a) <= 5000n;
  let coarse: bigint | undefined;
  let best = 1;
  for (const phase of phases) {
    const count = phases.filter((other) => near(other, phase)).length;
    if (count > best) {
      best = count;
      coarse = phase;
    }
  }
  return stamps.map((ns) => {
    if (ns === undefined) return undefined;
    const isCoarse = coarse !== undefined && near(ns % tick, coarse);
    return Number(ns) / 1e6 + (isCoarse ? tickMs / 2 : 0);
  });
}

/** Birth times of the files the agent (and runc) made for a running task, corrected as above. */
export async function fileMarks(
  agentDataDir: string,
  taskId: string,
  container: string,
  tickMs: number,
): Promise<Partial<Marks>> {
  const task = join(agentDataDir, "tasks", taskId);
  const bundle = join(task, container);
  const network = join(agentDataDir, "network");
  const files: Array<[MarkName, string]> = [
    ["engine", task],
    ["netRecord", join(network, "tasks", `${taskId}.json`)],
    ["netDone", join(network, "files", taskId, "hostname")],
    ["bundle", bundle],
    ["upper", join(bundle, "upper")],
    ["mounted", join(bundle, "work", "work")],
    ["spec", join(bundle, "config.json")],
    ["spawn", join(bundle, "stdout.log")],
    ["runcLog", join(bundle, "runc.log")],
    ["pid", join(bundle, "pid")],
  ];
  const stamps = correctStamps(await Promise.all(files.map(([, path]) => birthNs(path))), tickMs);
  const marks: Partial<Marks> = {};
  files.forEach(([name], i) => {
    const value = stamps[i];
    if (value !== undefined) marks[name] = value;
  });
  return marks;
}

/** What the agent protocol trace says about one task start in [from, to]. */
export interface TraceCounts {
  polls: number;
  reports: number;
  registry: number;
  other: number;
  /** Summed time of the registry requests (the image "pull" of a cached image). */
  registryMs: number;
}

export function traceMarks(
  events: readonly TraceEvent[],
  taskArn: string,
  from: number,
  to: number,
): { marks: Partial<Marks>; counts: TraceCounts } {
  const inWindow = events.filter((e) => e.end >= from && e.start <= to);
  const marks: Partial<Marks> = {};
  const answered = inWindow
    .filter((e) => e.polled?.some((t) => t.taskArn === taskArn) === true)
    .sort((a, b) => a.end - b.end)[0];
  if (answered !== undefined) marks.pollAnswered = answered.end;
  const reports = inWindow
    .filter((e) => e.report?.taskArn === taskArn)
    .sort((a, b) => a.start - b.start)
    .map((e) => ({ status: e.report?.lastStatus, end: e.end }));
  const pending = reports.filter((r) => r.status === "PENDING");
  if (pending[0] !== undefined) marks.report1 = pending[0].end;
  if (pending[1] !== undefined) marks.report2 = pending[1].end;
  const running = reports.find((r) => r.status === "RUNNING");
  if (running !== undefined) marks.report3 = running.end;
  const registry = inWindow.filter((e) => e.path.startsWith("/v2/"));
  const counts: TraceCounts = {
    polls: inWindow.filter((e) => e.path === "/agent/v1/poll").length,
    reports: inWindow.filter((e) => e.path === "/agent/v1/report").length,
    registry: registry.length,
    other: inWindow.filter((e) => e.path !== "/agent/v1/poll" && !e.path.startsWith("/v2/")).length,
    registryMs: registry.reduce((sum, e) => sum + (e.end - e.start), 0),
  };
  counts.other -= counts.reports;
  return { marks, counts };
}
