import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { constants } from "node:os";

/** What a finished command left behind. `code` is 124 on timeout, 127 when it could not start. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** The whole environment of the child: nothing is inherited. */
  env: Record<string, string>;
  input?: string;
  /** Killed with SIGKILL after this long (default 120 s). */
  timeoutMs?: number;
  cwd?: string;
}

/** A minimal PATH that finds Debian's binaries before anything in /usr/local. */
export const SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin";

/** Runs `file` to completion with a hard timeout; never rejects. */
export function run(file: string, args: string[], options: RunOptions): Promise<RunResult> {
  const timeoutMs = options.timeoutMs ?? 120_000;
  return new Promise((resolve) => {
    const child = spawn(file, args, {
      env: options.env,
      cwd: options.cwd,
      stdio: ["pipe", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    let spawnError: Error | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
    child.stdin.on("error", () => {
      // the child may exit before reading its input; its exit code tells the story
    });
    child.on("error", (error) => {
      spawnError = error;
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      let stderr = Buffer.concat(err).toString("utf8");
      let status = code ?? (signal === null ? 1 : 128 + constants.signals[signal]);
      if (timedOut) {
        status = 124;
        stderr += `\n[${file} ${args.join(" ")}: killed after ${timeoutMs} ms]`;
      } else if (spawnError !== undefined) {
        status = 127;
        stderr += `\n[${file}: ${spawnError.message}]`;
      }
      resolve({ code: status, stdout: Buffer.concat(out).toString("utf8"), stderr });
    });
    child.stdin.end(options.input ?? "");
  });
}

/** Throws with the command's output unless it exited 0. */
export function check(what: string, result: RunResult): RunResult {
  if (result.code !== 0) {
    throw new Error(`${what} exited ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  }
  return result;
}

/** Whether a process with this id exists (zombies count as gone). */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // the state letter follows the parenthesised command name
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** Ids of live processes whose command line contains `marker` (the caller's own process excluded). */
export function findProcesses(marker: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
    } catch {
      continue;
    }
    if (cmdline.includes(marker) && isAlive(pid)) found.push(pid);
  }
  return found;
}

/** `roots` and every live process descended from them. */
export function withDescendants(roots: number[]): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue;
    }
    // fields after the parenthesised command name: state, ppid, ...
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
  }
  const found = new Set<number>();
  const queue = [...roots];
  for (let pid = queue.shift(); pid !== undefined; pid = queue.shift()) {
    if (found.has(pid)) continue;
    found.add(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return [...found].filter(isAlive);
}

/** Sends `signal` to each pid, ignoring those already gone. */
export function signalAll(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/** Resolves true once `done()` holds, false after `timeoutMs`. */
export async function waitFor(done: () => boolean, timeoutMs: number, intervalMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  return true;
}

const orphans = new Set<number>();
let exitHookInstalled = false;

/** SIGKILLs `pid` if this process exits before `release(pid)`: no daemon outlives a crashed test. */
export function killOnExit(pid: number): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", () => signalAll([...orphans], "SIGKILL"));
  }
  orphans.add(pid);
}

/** Forgets `pid` once it has exited or been stopped on purpose. */
export function release(pid: number): void {
  orphans.delete(pid);
}
