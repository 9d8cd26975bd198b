// Child processes that host Wharf for the benchmark, and CPU accounting from /proc.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const NODE_SCRIPT = join(import.meta.dirname, "node.ts");

export interface Child<T> {
  pid: number;
  ready: T;
  /** Asks the child to stop (a line on stdin), then kills it after `graceMs`. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts `node --import tsx bench/task-start/node.ts ROLE` (optionally under --cpu-prof) with
 * `config` in its environment, and resolves with the JSON line it prints once it is ready.
 */
export function startChild<T>(
  role: "server" | "agent" | "trace",
  config: unknown,
  options: {
    profileDir?: string | undefined;
    timeoutMs: number;
    /** Lines the child prints after its ready line. */
    onLine?: (line: string) => void;
  },
): Promise<Child<T>> {
  // One directory per role: every thread (tsx's loader runs in its own) writes its own profile.
  const profile =
    options.profileDir === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", join(options.profileDir, role)];
  const child = spawn(process.execPath, [...profile, "--import", "tsx", NODE_SCRIPT, role], {
    stdio: ["pipe", "pipe", "inherit"],
    env: { ...process.env, WHARF_BENCH_NODE: JSON.stringify(config) },
  });
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
  let stopping: Promise<void> | undefined;
  const stop = (graceMs = 30_000): Promise<void> => {
    stopping ??= (async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.stdin?.end("stop\n");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    })();
    return stopping;
  };
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout as NonNullable<ChildProcess["stdout"]> });
    const timer = setTimeout(() => {
      void stop(5000);
      reject(new Error(`the ${role} did not become ready within ${options.timeoutMs} ms`));
    }, options.timeoutMs);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the ${role} exited before it was ready (${signal ?? code})`));
    });
    lines.once("line", (line) => {
      clearTimeout(timer);
      const onLine = options.onLine;
      if (onLine !== undefined) lines.on("line", onLine);
      try {
        resolve({ pid: child.pid ?? 0, ready: JSON.parse(line) as T, stop });
      } catch (error) {
        void stop(5000);
        reject(new Error(`the ${role} printed ${JSON.stringify(line)}: ${String(error)}`));
      }
    });
  });
}

let clockTicks: number | undefined;

/** Clock ticks per second, as /proc counts CPU time. */
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

export interface ProcessCpu {
  /** User + system time of the process itself, ms. */
  self: number;
  /** User + system time of its children that it has reaped, ms. */
  children: number;
}

/** CPU a process has used so far; zeros once it is gone. */
export function processCpu(pid: number): ProcessCpu {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14-17 of proc(5): utime stime cutime cstime; this slice starts at field 3.
    const at = (field: number) => Number(fields[field - 3] ?? 0);
    const tick = 1000 / ticksPerSecond();
    return { self: (at(14) + at(15)) * tick, children: (at(16) + at(17)) * tick };
  } catch {
    return { self: 0, children: 0 };
  }
}

/** Busy and total CPU time of the whole machine so far, in ms summed over all cores. */
export function machineCpu(): { busy: number; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  const total = values.reduce((sum, v) => sum + v, 0);
  const idle = (values[3] ?? 0) + (values[4] ?? 0);
  const tick = 1000 / ticksPerSecond();
  return { busy: (total - idle) * tick, total: total * tick };
}

/**
 * Waits until the machine is quiet: the busy cores over `sampleMs` fall below `maxCores`.
 * Returns the last reading; gives up (and returns it anyway) after `timeoutMs`.
 */
export async function waitForQuiet(maxCores: number, sampleMs: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const before = machineCpu();
    await new Promise((resolve) => setTimeout(resolve, sampleMs));
    const after = machineCpu();
    const cores = ((after.busy - before.busy) / Math.max(after.total - before.total, 1e-9)) * cpus().length;
    if (cores < maxCores || Date.now() >= deadline) return cores;
  }
}

/** Resident and peak resident memory of a process, MiB (zeros once it is gone). */
export function processMemory(pid: number): { rssMiB: number; peakMiB: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0);
    return { rssMiB: Math.round(kib("VmRSS") / 1024), peakMiB: Math.round(kib("VmHWM") / 1024) };
  } catch {
    return { rssMiB: 0, peakMiB: 0 };
  }
}
