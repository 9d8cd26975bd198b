// Turning phase results into the rows the issue asks for: Wharf ÷ distribution.
import type { PeerName } from "./peers.ts";
import type { PhaseResult } from "./phases.ts";

export interface PeerRun {
  peer: PeerName;
  round: number;
  push: PhaseResult;
  pull: PhaseResult;
  /** The same pull with the client checking lengths only. */
  pullUnhashed: PhaseResult;
  manifests: PhaseResult;
  /** Phases measured while other processes kept the machine busy. */
  noisy: string[];
  /** How many times this peer was started to get a quiet measurement. */
  attempts: number;
}

export interface Row {
  name: string;
  unit: string;
  distribution?: number;
  wharf?: number;
  /** Wharf ÷ distribution for rates (> 1: Wharf is faster); for costs, distribution ÷ Wharf. */
  ratio?: number;
}

type Phase = "push" | "pull" | "pullUnhashed" | "manifests";

const PHASES: Array<[Phase, string]> = [
  ["push", "push"],
  ["pull", "pull"],
  ["pullUnhashed", "pull without hashing"],
  ["manifests", "manifests"],
];

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

function medianOf(runs: PeerRun[], peer: PeerName, measure: (run: PeerRun) => number): number | undefined {
  const values = runs.filter((run) => run.peer === peer).map(measure);
  return values.length === 0 ? undefined : median(values);
}

function row(
  runs: PeerRun[],
  name: string,
  unit: string,
  measure: (run: PeerRun) => number,
  higherIsBetter: boolean,
): Row {
  const result: Row = { name, unit };
  const distribution = medianOf(runs, "distribution", measure);
  const wharf = medianOf(runs, "wharf", measure);
  if (distribution !== undefined) result.distribution = distribution;
  if (wharf !== undefined) result.wharf = wharf;
  if (distribution !== undefined && wharf !== undefined && distribution > 0 && wharf > 0)
    result.ratio = higherIsBetter ? wharf / distribution : distribution / wharf;
  return result;
}

const MB = 1e6;

const THREAD_LABELS = {
  main: "main thread (Wharf: event loop)",
  busiest: "2 busiest other threads (Wharf: sealing workers)",
  rest: "other threads",
  ended: "threads that ended (Wharf: direct sends)",
} as const;

/** The headline rows (rates) and the supporting ones (server CPU cost, latency). */
export function summarize(
  runs: PeerRun[],
  labels: { pushStreams: number; pullStreams: number; inFlight: number },
): { headline: Row[]; detail: Row[] } {
  const rate = (phase: Phase) => (run: PeerRun) => run[phase].bytes / MB / run[phase].seconds;
  const perSecond = (run: PeerRun) => run.manifests.requests / run.manifests.seconds;
  /** A phase's figure per GB it moved. */
  const perGb = (phase: Phase, value: (result: PhaseResult) => number) => (run: PeerRun) =>
    value(run[phase]) / (run[phase].bytes / 1e9);
  const systemPerGb = (phase: Phase) => perGb(phase, (p) => p.serverSystemCpuSeconds);
  const cpuPerGb = (phase: Phase) => perGb(phase, (p) => p.serverCpuSeconds);
  const clientShare = (phase: Phase) => (run: PeerRun) =>
    (100 * run[phase].clientCpuSeconds) / run[phase].seconds;
  const background = (run: PeerRun) => {
    const phases = PHASES.map(([phase]) => run[phase]);
    const seconds = phases.reduce((sum, p) => sum + p.seconds, 0);
    return (100 * phases.reduce((sum, p) => sum + p.backgroundCpuSeconds, 0)) / seconds;
  };
  const headline = [
    row(runs, `push (${labels.pushStreams} streams)`, "MB/s", rate("push"), true),
    row(runs, `pull (${labels.pullStreams} streams, client verifies sha256)`, "MB/s", rate("pull"), true),
    row(
      runs,
      `pull (${labels.pullStreams} streams, client does not hash)`,
      "MB/s",
      rate("pullUnhashed"),
      true,
    ),
    row(runs, `manifest GET/HEAD (${labels.inFlight} in flight)`, "req/s", perSecond, true),
  ];
  const detail = [
    row(runs, "push: server CPU per GB", "CPU s", cpuPerGb("push"), false),
    row(runs, "  of which kernel", "CPU s", systemPerGb("push"), false),
    row(runs, "pull: server CPU per GB", "CPU s", cpuPerGb("pull"), false),
    row(runs, "  of which kernel", "CPU s", systemPerGb("pull"), false),
    row(runs, "pull without hashing: server CPU per GB", "CPU s", cpuPerGb("pullUnhashed"), false),
    ...(["pull", "pullUnhashed"] as const).flatMap((phase) =>
      (["main", "busiest", "rest", "ended"] as const).map((group) =>
        row(
          runs,
          `  ${phase === "pull" ? "pull" : "without hashing"}: ${THREAD_LABELS[group]}, user + kernel`,
          "CPU s",
          perGb(phase, (p) => p.serverThreads[group].user + p.serverThreads[group].system),
          false,
        ),
      ),
    ),
    row(
      runs,
      "manifests: server CPU per 1,000 requests",
      "CPU ms",
      (run) => (run.manifests.serverCpuSeconds * 1e6) / run.manifests.requests,
      false,
    ),
    row(runs, "manifests: latency p50", "ms", (run) => run.manifests.latencyMs?.p50 ?? 0, false),
    row(runs, "manifests: latency p99", "ms", (run) => run.manifests.latencyMs?.p99 ?? 0, false),
    ...PHASES.map(([phase, label]) =>
      row(runs, `${label}: client CPU, % of one core`, "%", clientShare(phase), false),
    ),
    ...(["pull", "pullUnhashed"] as const).flatMap((phase) => [
      row(
        runs,
        `${phase === "pull" ? "pull" : "pull without hashing"}: client CPU per GB`,
        "CPU s",
        perGb(phase, (p) => p.clientCpuSeconds),
        false,
      ),
      row(
        runs,
        "  of which kernel",
        "CPU s",
        perGb(phase, (p) => p.clientSystemCpuSeconds),
        false,
      ),
      row(
        runs,
        "  client's context switches per GB, voluntary",
        "count",
        perGb(phase, (p) => p.clientSwitches.voluntary),
        false,
      ),
      row(
        runs,
        "  … involuntary",
        "count",
        perGb(phase, (p) => p.clientSwitches.involuntary),
        false,
      ),
    ]),
    row(runs, "other processes' CPU while timed, % of one core", "%", background, false),
  ];
  return { headline, detail };
}

function format(value: number | undefined, digits = 1): string {
  if (value === undefined) return "–";
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** A plain-text table: one line per row, numbers right-aligned. */
export function table(rows: Row[], ratioHeader: string): string {
  const header = ["row", "unit", "distribution", "wharf", ratioHeader];
  const lines = rows.map((r) => [
    r.name,
    r.unit,
    format(r.distribution),
    format(r.wharf),
    r.ratio === undefined ? "–" : format(r.ratio, 2),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((line) => (line[i] as string).length)));
  const render = (cells: string[]) =>
    cells
      .map((cell, i) => (i < 2 ? cell.padEnd(widths[i] as number) : cell.padStart(widths[i] as number)))
      .join("  ");
  return [render(header), widths.map((w) => "-".repeat(w)).join("  "), ...lines.map(render)].join("\n");
}
