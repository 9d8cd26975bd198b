// node --import tsx bench/scheduler/pairs.ts A_DIR B_DIR [--pairs N] [-- main.ts options…]
//
// Two checkouts of Wharf measured against each other fairly on a machine whose speed varies in
// spells of minutes (this one does, by up to 1.4×): bench/scheduler is run for each side in turn
// (its RunTask phase unless told otherwise), N pairs, the side that goes first alternating, so
// both sides meet the same spells. Prints each run's placements/s and server CPU per placement
// for each phase that ran (RunTask, the service's scale-up), then each phase's sums. Each
// directory must be a complete checkout with its own node_modules (a link will do) whose
// bench/scheduler has this file's method (26ab355 or later: copy it into an older one).
import { execFile } from "node:child_process";
import { basename, resolve } from "node:path";
import { parseArgs } from "node:util";
import { table } from "../task-start/stats.ts";

const USAGE = `usage: node --import tsx bench/scheduler/pairs.ts A_DIR B_DIR [--pairs N] [-- bench options]
  --pairs N   pairs of runs (default 3); the bench options default to
              --instances 5000 --tasks 100000 --skip-service --budget 600`;

/** One phase of one run: how fast, and the server's CPU for it. */
interface Phase {
  /** Placements per second (RunTask), or until every task of the service was placed. */
  placementsPerS: number;
  serverCpuS: number;
  placed: number;
  /** The service phase: seconds until every task was placed, and until every one ran. */
  placedS?: number;
  runningS?: number;
}

interface Run {
  side: "A" | "B";
  load: number;
  runTask?: Phase;
  service?: Phase;
}

type PhaseName = "runTask" | "service";
const PHASES: readonly PhaseName[] = ["runTask", "service"];

/** One run of a checkout's benchmark; resolves with what its JSON says of each phase that ran. */
function runOnce(dir: string, side: "A" | "B", options: string[]): Promise<Run> {
  return new Promise((done, fail) => {
    execFile(
      process.execPath,
      ["--import", "tsx", "bench/scheduler/main.ts", ...options],
      { cwd: dir, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout) => {
        if (error !== null) return fail(error);
        const json = JSON.parse(stdout.slice(stdout.indexOf("{\n"))) as {
          machine: { load: number[] };
          runTask?: { placementsPerS: number; serverCpuSeconds: number; placed: number };
          service?: {
            desired: number;
            allPlacedSeconds?: number;
            allRunningSeconds?: number;
            placementsPerS?: number;
            serverCpuSeconds: number;
          };
        };
        const run: Run = { side, load: json.machine.load[0] ?? 0 };
        if (json.runTask !== undefined) {
          run.runTask = {
            placementsPerS: json.runTask.placementsPerS,
            serverCpuS: json.runTask.serverCpuSeconds,
            placed: json.runTask.placed,
          };
        }
        if (json.service?.allPlacedSeconds !== undefined) {
          run.service = {
            placementsPerS: json.service.placementsPerS ?? 0,
            serverCpuS: json.service.serverCpuSeconds,
            placed: json.service.desired,
            placedS: json.service.allPlacedSeconds,
            ...(json.service.allRunningSeconds === undefined
              ? {}
              : { runningS: json.service.allRunningSeconds }),
          };
        }
        if (run.runTask === undefined && run.service === undefined) {
          return fail(new Error(`${dir}: neither phase finished in its result`));
        }
        done(run);
      },
    );
  });
}

const msPer = (phase: Phase) => (phase.serverCpuS * 1000) / phase.placed;

function describeRun(run: Run): string {
  const parts: string[] = [];
  if (run.runTask !== undefined) {
    parts.push(
      `RunTask ${run.runTask.placementsPerS.toFixed(0)}/s, ${msPer(run.runTask).toFixed(3)} ms of server CPU per placement`,
    );
  }
  if (run.service !== undefined) {
    parts.push(
      `service placed in ${run.service.placedS} s, running in ${run.service.runningS ?? "–"} s, ${run.service.serverCpuS} s of server CPU (${msPer(run.service).toFixed(3)} ms per task)`,
    );
  }
  return `${parts.join("; ")} (load ${run.load.toFixed(1)})`;
}

/** A side's sums over its runs of one phase. */
function sumOf(runs: readonly Run[], side: "A" | "B", phase: PhaseName) {
  const mine = runs.flatMap((run) => (run.side === side && run[phase] !== undefined ? [run[phase]] : []));
  if (mine.length === 0) return undefined;
  const cpu = mine.reduce((total, p) => total + p.serverCpuS, 0);
  const placed = mine.reduce((total, p) => total + p.placed, 0);
  return {
    runs: mine.length,
    cpu,
    msPerPlacement: (cpu * 1000) / placed,
    rate: mine.reduce((total, p) => total + p.placementsPerS, 0) / mine.length,
  };
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    options: { pairs: { type: "string", default: "3" }, help: { type: "boolean", default: false } },
    allowPositionals: true,
  });
  const [a, b, ...rest] = positionals;
  const pairs = Number(values.pairs);
  if (values.help || a === undefined || b === undefined || !Number.isInteger(pairs) || pairs < 1) {
    process.stderr.write(`${USAGE}\n`);
    process.exitCode = values.help ? 0 : 2;
    return;
  }
  const options =
    rest.length > 0
      ? rest
      : ["--instances", "5000", "--tasks", "100000", "--skip-service", "--budget", "600"];
  const dirs = { A: resolve(a), B: resolve(b) };
  const runs: Run[] = [];
  for (let pair = 0; pair < pairs; pair++) {
    const order: Array<"A" | "B"> = pair % 2 === 0 ? ["A", "B"] : ["B", "A"];
    for (const side of order) {
      const run = await runOnce(dirs[side], side, options);
      runs.push(run);
      process.stderr.write(`pair ${pair + 1}: ${side} ${basename(dirs[side])} ${describeRun(run)}\n`);
    }
  }
  const sums = {
    A: { runTask: sumOf(runs, "A", "runTask"), service: sumOf(runs, "A", "service") },
    B: { runTask: sumOf(runs, "B", "runTask"), service: sumOf(runs, "B", "service") },
  };
  const rows: string[][] = [];
  const verdicts: string[] = [];
  for (const phase of PHASES) {
    const [sa, sb] = [sums.A[phase], sums.B[phase]];
    if (sa === undefined || sb === undefined) continue;
    for (const side of ["A", "B"] as const) {
      const sum = sums[side][phase];
      if (sum === undefined) continue;
      rows.push([
        phase,
        side,
        dirs[side],
        sum.cpu.toFixed(1),
        sum.msPerPlacement.toFixed(3),
        sum.rate.toFixed(0),
      ]);
    }
    // Pair by pair: runs i and i+1 are one pair, in either order.
    let bAhead = 0;
    for (let i = 0; i + 1 < runs.length; i += 2) {
      const pair = [runs[i], runs[i + 1]];
      const pa = pair.find((run) => run?.side === "A")?.[phase];
      const pb = pair.find((run) => run?.side === "B")?.[phase];
      if (pa !== undefined && pb !== undefined && msPer(pb) < msPer(pa)) bAhead++;
    }
    const change = ((sb.msPerPlacement - sa.msPerPlacement) / sa.msPerPlacement) * 100;
    verdicts.push(
      `${phase}: B used ${Math.abs(change).toFixed(1)}% ${change <= 0 ? "less" : "more"} server CPU per placement than A; ` +
        `B was the cheaper in ${bAhead} of ${pairs} pairs`,
    );
  }
  process.stderr.write(
    `\n${table(["phase", "side", "checkout", "server CPU s", "ms per placement", "mean placements/s"], rows)}\n` +
      `${verdicts.join("\n")}\n`,
  );
  process.stdout.write(`${JSON.stringify({ dirs, options, runs, sums }, null, 2)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
