// Turning samples into the figures the issue asks for: Wharf's RunTask → RUNNING beside plain
// runc, the ratio, where Wharf's time goes, and what it costs in CPU.
import type { FloorSample } from "./floor.ts";
import { phaseName } from "./marks.ts";
import type { Primitive } from "./primitives.ts";
import type { ProfileSummary } from "./profile.ts";
import { ms, round1, roundSummary, type Summary, summarize, table } from "./stats.ts";
import type { WharfSample } from "./wharf.ts";

export const TARGET_P50_MS = 150;
export const TARGET_RATIO = 3;

export interface Context {
  date: string;
  command: string;
  machine: Record<string, string | number>;
  settings: Record<string, string | number | boolean>;
  /** Resident (and peak) memory of the Wharf processes after the measured task starts. */
  memoryMiB: Record<string, { rssMiB: number; peakMiB: number }>;
  loadBefore: number[];
  loadAfter: number[];
  fileTimeGranularityMs: number;
}

export interface Inputs {
  context: Context;
  wharf: WharfSample[];
  floor: FloorSample[];
  primitives: Primitive[];
  api: { read: Summary | undefined; write: Summary | undefined };
  profiles: Record<string, ProfileSummary>;
  quietCores: number;
}

export interface PhaseRow {
  key: string;
  what: string;
  p50: number;
  p99: number;
  mean: number;
  /** Share of the mean total. */
  share: number;
}

function mean(values: readonly number[]): number {
  return values.length === 0 ? 0 : values.reduce((sum, v) => sum + v, 0) / values.length;
}

function phaseRows(samples: readonly WharfSample[]): PhaseRow[] {
  const byKey = new Map<string, number[]>();
  for (const sample of samples) {
    for (const phase of sample.phases) {
      const list = byKey.get(phase.key) ?? [];
      list.push(phase.ms);
      byKey.set(phase.key, list);
    }
  }
  const totalMean = mean(samples.map((s) => s.total));
  const rows: PhaseRow[] = [];
  for (const [key, values] of byKey) {
    const summary = summarize(values);
    if (summary === undefined) continue;
    rows.push({
      key,
      what: phaseName(key),
      p50: round1(summary.p50),
      p99: round1(summary.p99),
      mean: round1(summary.mean),
      share: totalMean > 0 ? Math.round((summary.mean / totalMean) * 1000) / 10 : 0,
    });
  }
  return rows;
}

/** The JSON result: everything but the per-sample data. */
export function result(inputs: Inputs) {
  const { wharf, floor } = inputs;
  const total = summarize(wharf.map((s) => s.total));
  const runc = summarize(floor.map((s) => s.total));
  const ratio = total !== undefined && runc !== undefined ? total.p50 / runc.p50 : undefined;
  const quiet = wharf.filter((s) => s.background < inputs.quietCores);
  const cpu = (pick: (s: WharfSample) => number) => round1(mean(wharf.map(pick)));
  const traced = wharf.filter((s) => s.trace !== undefined);
  const trace =
    traced.length === 0
      ? undefined
      : {
          polls: round1(mean(traced.map((s) => s.trace?.polls ?? 0))),
          reports: round1(mean(traced.map((s) => s.trace?.reports ?? 0))),
          registryRequests: round1(mean(traced.map((s) => s.trace?.registry ?? 0))),
          registryMs: round1(mean(traced.map((s) => s.trace?.registryMs ?? 0))),
        };
  return {
    ...inputs.context,
    wharf: {
      runTaskToRunning: roundSummary(total),
      runTaskToRunningQuietOnly: roundSummary(summarize(quiet.map((s) => s.total))),
      runTaskCall: roundSummary(summarize(wharf.map((s) => s.runTask))),
      describeTasksPerStart: round1(mean(wharf.map((s) => s.describes))),
      describeTasksLatencyMs: round1(mean(wharf.map((s) => s.describeMs))),
      stopTaskToStopped: roundSummary(summarize(wharf.map((s) => s.stop))),
      noisySamples: wharf.length - quiet.length,
    },
    runc: {
      runDetachedToRunning: roundSummary(runc),
      runDetached: roundSummary(summarize(floor.map((s) => s.run))),
      state: roundSummary(summarize(floor.map((s) => s.state))),
      overlayMountOutsideTiming: roundSummary(summarize(floor.map((s) => s.mount))),
    },
    ratioP50: ratio === undefined ? undefined : Math.round(ratio * 100) / 100,
    targets: {
      p50UnderMs: TARGET_P50_MS,
      p50Met: total !== undefined && total.p50 < TARGET_P50_MS,
      ratioAtMost: TARGET_RATIO,
      ratioMet: ratio !== undefined && ratio <= TARGET_RATIO,
    },
    phases: phaseRows(wharf),
    cpuMsPerTaskStart: {
      agent: cpu((s) => s.cpu.agent),
      agentReapedChildren: cpu((s) => s.cpu.agentChildren),
      server: cpu((s) => s.cpu.server),
      benchClient: cpu((s) => s.cpu.bench),
      wholeMachine: cpu((s) => s.cpu.machine),
    },
    ...(trace === undefined ? {} : { agentProtocolPerTaskStart: trace }),
    primitives: inputs.primitives.map((p) => ({ name: p.name, what: p.what, ...roundSummary(p.summary) })),
    api: { describeTasks: roundSummary(inputs.api.read), tagResource: roundSummary(inputs.api.write) },
    profiles: Object.fromEntries(
      Object.entries(inputs.profiles).map(([name, p]) => [
        name,
        {
          busyMsPerTaskStart: round1(p.busyMs / Math.max(wharf.length, 1)),
          windowMsPerTaskStart: round1(p.windowMs / Math.max(wharf.length, 1)),
          areas: p.areas
            .slice(0, 12)
            .map((a) => ({ area: a.area, msPerTaskStart: round1(a.ms / wharf.length) })),
          functions: p.functions.map((f) => ({
            name: f.name,
            area: f.area,
            msPerTaskStart: round1(f.ms / wharf.length),
          })),
        },
      ]),
    ),
  };
}

export type Result = ReturnType<typeof result>;

function summaryRow(name: string, s: Summary | undefined): string[] {
  return [name, ms(s?.p50), ms(s?.p99), ms(s?.mean), ms(s?.min), ms(s?.max), String(s?.n ?? 0)];
}

/** The human-readable report. */
export function text(inputs: Inputs, res: Result): string {
  const { settings } = inputs.context;
  const out: string[] = [];
  out.push(
    `Task start: RunTask → RUNNING, ${inputs.wharf.length} tasks one at a time, ` +
      `${settings.networkMode} network, DescribeTasks every ${settings.pollMs} ms` +
      `${settings.trace === true ? ", agent protocol traced" : ""}`,
  );
  out.push("");
  out.push(
    table(
      ["ms", "p50", "p99", "mean", "min", "max", "n"],
      [
        summaryRow("Wharf RunTask → RUNNING", summarize(inputs.wharf.map((s) => s.total))),
        summaryRow("runc run -d → state running", summarize(inputs.floor.map((s) => s.total))),
        summaryRow("  runc run -d", summarize(inputs.floor.map((s) => s.run))),
        summaryRow("  runc state", summarize(inputs.floor.map((s) => s.state))),
        summaryRow("Wharf RunTask call alone", summarize(inputs.wharf.map((s) => s.runTask))),
      ],
    ),
  );
  out.push("");
  const ratio = res.ratioP50 === undefined ? "–" : `${res.ratioP50.toFixed(2)}×`;
  out.push(
    `Wharf p50 ÷ runc p50 = ${ratio} (target ≤ ${TARGET_RATIO}×: ${res.targets.ratioMet ? "met" : "NOT met"}); ` +
      `Wharf p50 ${ms(res.wharf.runTaskToRunning?.p50)} ms (target < ${TARGET_P50_MS} ms: ${res.targets.p50Met ? "met" : "NOT met"})`,
  );
  out.push(
    `${res.wharf.noisySamples} of ${inputs.wharf.length} Wharf samples began with other work above ` +
      `${inputs.quietCores} cores; quiet-only p50 ${ms(res.wharf.runTaskToRunningQuietOnly?.p50)} ms`,
  );
  out.push("");
  out.push(
    `Where Wharf's time goes (most new files are stamped from a ${inputs.context.fileTimeGranularityMs} ms kernel tick; ` +
      "half a tick is added to those, so a phase between two file-time marks is ± one tick):",
  );
  out.push(
    table(
      ["phase", "p50", "p99", "mean", "% of mean", "what happens"],
      res.phases.map((p) => [p.key, ms(p.p50), ms(p.p99), ms(p.mean), p.share.toFixed(1), p.what]),
    ),
  );
  out.push("");
  const cpu = res.cpuMsPerTaskStart;
  out.push(
    `CPU per task start (ms, mean): agent ${ms(cpu.agent)}, agent's reaped children ${ms(cpu.agentReapedChildren)}, ` +
      `server ${ms(cpu.server)}, benchmark client ${ms(cpu.benchClient)}, whole machine ${ms(cpu.wholeMachine)}`,
  );
  out.push(
    `Resident memory after the run (MiB): ${Object.entries(inputs.context.memoryMiB)
      .map(([name, m]) => `${name} ${m.rssMiB} (peak ${m.peakMiB})`)
      .join(", ")}; every fork() the agent makes copies its page tables`,
  );
  const trace = res.agentProtocolPerTaskStart;
  if (trace !== undefined) {
    out.push(
      `Agent protocol per task start (mean): ${trace.polls} polls, ${trace.reports} reports, ` +
        `${trace.registryRequests} registry requests taking ${trace.registryMs} ms in all`,
    );
  }
  out.push(
    `API through the SDK: DescribeTasks p50 ${ms(res.api.describeTasks?.p50)} ms, ` +
      `TagResource (a write transaction) p50 ${ms(res.api.tagResource?.p50)} ms`,
  );
  out.push("");
  out.push("Building blocks on this machine (ms):");
  out.push(
    table(
      ["primitive", "p50", "p99", "mean", "what"],
      inputs.primitives.map((p) => [
        p.name,
        ms(p.summary?.p50),
        ms(p.summary?.p99),
        ms(p.summary?.mean),
        p.what,
      ]),
    ),
  );
  for (const [name, profile] of Object.entries(res.profiles)) {
    out.push("");
    out.push(
      `CPU profile of the ${name} inside the measured windows: ${profile.busyMsPerTaskStart} ms busy ` +
        `of ${profile.windowMsPerTaskStart} ms per task start`,
    );
    out.push(
      table(
        ["area", "ms/start"],
        profile.areas.map((a) => [a.area, ms(a.msPerTaskStart)]),
      ),
    );
    out.push(
      table(
        ["function (self time)", "ms/start"],
        profile.functions.map((f) => [f.name, ms(f.msPerTaskStart)]),
      ),
    );
  }
  return out.join("\n");
}
