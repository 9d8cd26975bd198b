// node --import tsx bench/scheduler/pairs.ts A_DIR B_DIR [--pairs N] [-- main.ts options…]
//
// Two checkouts of Wharf measured against each other fairly on a machine whose speed varies in
// spells of minutes (this one does, by up to 1.4×): bench/scheduler is run for each side in turn
// (its RunTask phase unless told otherwise), N pairs, the side that goes first alternating, so
// both sides meet the same spells. Prints each run's placements/s and server CPU per placement,
// and the service phase's time and CPU where it ran, then the sums. Each
// directory must be a complete checkout with its own node_modules (a link will do) whose
// bench/scheduler has this file's method (26ab355 or later: copy it into an older one).
import { execFile } from "node:child_process";
import { basename, resolve } from "node:path";
import { parseArgs } from "node:util";
import { table } from "../task-start/stats.ts";

const USAGE = `usage: node --import tsx bench/scheduler/pairs.ts A_DIR B_DIR [--pairs N] [-- bench options]
  --pairs N   pairs of runs (default 3); the bench options default to
              --instances 5000 --tasks 100000 --skip-service --budget 600`;

interface Run {
  side: "A" | "B";
  placementsPerS: number;
  serverCpuS: number;
  placed: number;
  load: number;
  /** The service phase, where it ran: seconds until every task was placed, and the server's CPU. */
  service?: { placedS: number; serverCpuS: number };
}

/** One run of a checkout's RunTask benchmark; resolves with what its JSON says. */
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
          service?: { allPlacedSeconds: number; serverCpuSeconds: number };
        };
        if (json.runTask === undefined) return fail(new Error(`${dir}: no RunTask phase in its result`));
        const run: Run = {
          side,
          placementsPerS: json.runTask.placementsPerS,
          serverCpuS: json.runTask.serverCpuSeconds,
          placed: json.runTask.placed,
          load: json.machine.load[0] ?? 0,
        };
        if (json.service !== undefined)
          run.service = { placedS: json.service.allPlacedSeconds, serverCpuS: json.service.serverCpuSeconds };
        done(run);
      },
    );
  });
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
      const ms = (run.serverCpuS * 1000) / run.placed;
      const service =
        run.service === undefined
          ? ""
          : `; service placed in ${run.service.placedS} s, ${run.service.serverCpuS} s of server CPU`;
      process.stderr.write(
        `pair ${pair + 1}: ${side} ${basename(dirs[side])} ${run.placementsPerS.toFixed(0)}/s, ${ms.toFixed(3)} ms of server CPU per placement${service} (load ${run.load.toFixed(1)})\n`,
      );
    }
  }
  const sum = (side: "A" | "B") => {
    const mine = runs.filter((run) => run.side === side);
    const cpu = mine.reduce((total, run) => total + run.serverCpuS, 0);
    const placed = mine.reduce((total, run) => total + run.placed, 0);
    const rate = mine.reduce((total, run) => total + run.placementsPerS, 0) / mine.length;
    const services = mine.flatMap((run) => (run.service === undefined ? [] : [run.service]));
    const service =
      services.length === 0
        ? undefined
        : {
            serverCpuS: services.reduce((total, s) => total + s.serverCpuS, 0),
            meanPlacedS: services.reduce((total, s) => total + s.placedS, 0) / services.length,
          };
    return { cpu, msPerPlacement: (cpu * 1000) / placed, rate, service };
  };
  const sums = { A: sum("A"), B: sum("B") };
  let bAhead = 0;
  for (let i = 0; i < runs.length; i += 2) {
    const [first, second] = [runs[i], runs[i + 1]];
    const bRun = first?.side === "B" ? first : second;
    const aRun = first?.side === "A" ? first : second;
    if (
      aRun !== undefined &&
      bRun !== undefined &&
      bRun.serverCpuS / bRun.placed < aRun.serverCpuS / aRun.placed
    )
      bAhead++;
  }
  const change = ((sums.B.cpu - sums.A.cpu) / sums.A.cpu) * 100;
  const rows = (["A", "B"] as const).map((side) => [
    side,
    dirs[side],
    sums[side].cpu.toFixed(1),
    sums[side].msPerPlacement.toFixed(3),
    sums[side].rate.toFixed(0),
    sums[side].service?.serverCpuS.toFixed(1) ?? "–",
    sums[side].service?.meanPlacedS.toFixed(1) ?? "–",
  ]);
  const headings = ["side", "checkout", "server CPU s", "ms per placement", "mean placements/s"];
  process.stderr.write(
    `\n${table([...headings, "service: server CPU s", "mean placed s"], rows)}\n` +
      `B used ${Math.abs(change).toFixed(1)}% ${change <= 0 ? "less" : "more"} server CPU than A over ${pairs} pairs; ` +
      `B was the cheaper per placement in ${bAhead} of them\n`,
  );
  process.stdout.write(`${JSON.stringify({ dirs, options, runs, sums }, null, 2)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
