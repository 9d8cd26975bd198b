/**
 * The per-container supervisor: a tiny /bin/sh process, detached into its
 * own session, that runs `runc run` in the foreground (so runc reaps the
 * container and learns its exit status) and then records that status in the
 * bundle. The agent does not hold the container as a child, so containers
 * outlive an agent restart and a new agent reads the record.
 *
 * Files in the bundle (all drawn here):
 *   config.json   the OCI spec, written by the agent (a unique `<name>.tmp-*` file, then rename)
 *   pid           the container's pid, written by `runc run --pid-file` (atomic)
 *   exit          the shell's `$?` of `runc run`, written by the supervisor (tmp + mv)
 *   exit.json     the decoded ExitStatus with the OOM verdict, written by the agent (like config.json)
 *   runc.log      runc's own log (JSON lines), where a start failure is explained
 *   oom.base      OOM kills a reused cgroup had before this container (only when non-zero)
 *   exit.stale    marks an `exit` written while the container still ran (runc itself was killed)
 */

import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { constants } from "node:os";
import { join } from "node:path";
import { SYSTEM_ENV } from "./command.ts";

export interface BundleFiles {
  config: string;
  pid: string;
  exit: string;
  exitTmp: string;
  exitRecord: string;
  runcLog: string;
  oomBase: string;
  stale: string;
}

/** Temporary files of atomic writes: `config.json.tmp-1a2b3c4d`. */
export const TMP_FILE = /^(config|exit)\.json\.tmp-[0-9a-f]+$/;

export function bundleFiles(bundleDir: string): BundleFiles {
  return {
    config: join(bundleDir, "config.json"),
    pid: join(bundleDir, "pid"),
    exit: join(bundleDir, "exit"),
    exitTmp: join(bundleDir, "exit.tmp"),
    exitRecord: join(bundleDir, "exit.json"),
    runcLog: join(bundleDir, "runc.log"),
    oomBase: join(bundleDir, "oom.base"),
    stale: join(bundleDir, "exit.stale"),
  };
}

/**
 * The whole supervisor. Everything variable comes in as positional
 * parameters, never spliced into the text, so no id or path can inject
 * shell syntax. `--keep` leaves the stopped container (and so its cgroup,
 * with the OOM counters) in place until the agent deletes it.
 */
export const SUPERVISOR_SCRIPT = [
  'runc="$1" root="$2" bundle="$3" id="$4"',
  '"$runc" --root "$root" --log "$bundle/runc.log" --log-format json run --keep --bundle "$bundle" --pid-file "$bundle/pid" "$id"',
  'echo "$?" > "$bundle/exit.tmp" && mv -f "$bundle/exit.tmp" "$bundle/exit"',
].join("\n");

export interface SupervisorOptions {
  runcPath: string;
  root: string;
  bundleDir: string;
  id: string;
  stdout: string;
  stderr: string;
}

/**
 * Starts the supervisor detached (setsid), stdin from /dev/null and the
 * container's stdout/stderr appended to the given files, and lets it go:
 * the returned child is unref'd.
 */
export function spawnSupervisor(options: SupervisorOptions): ChildProcess {
  const out = openSync(options.stdout, "a", 0o640);
  let err: number | undefined;
  try {
    err = options.stdout === options.stderr ? out : openSync(options.stderr, "a", 0o640);
    const child = spawn(
      "/bin/sh",
      [
        "-c",
        SUPERVISOR_SCRIPT,
        "wharf-supervisor",
        options.runcPath,
        options.root,
        options.bundleDir,
        options.id,
      ],
      { detached: true, stdio: ["ignore", out, err], env: SYSTEM_ENV, cwd: options.bundleDir },
    );
    child.unref();
    return child;
  } finally {
    closeSync(out);
    if (err !== undefined && err !== out) closeSync(err);
  }
}

/** Signal number → name; the first name wins where two share a number (SIGABRT before SIGIOT). */
const SIGNAL_NAMES = new Map<number, string>();
for (const [name, number] of Object.entries(constants.signals)) {
  if (!SIGNAL_NAMES.has(number)) SIGNAL_NAMES.set(number, name);
}

/** The shell's status of `runc run`: 128+n means the container's process died of signal n. */
export function decodeStatus(status: number): { exitCode: number; signal?: string } {
  if (status > 128 && status < 128 + 65) {
    const signal = SIGNAL_NAMES.get(status - 128);
    if (signal !== undefined) return { exitCode: status, signal };
  }
  return { exitCode: status };
}

/** Normalises "TERM", "sigterm", "SIGTERM" or "15" to "SIGTERM"; undefined when unknown. */
export function signalName(signal: string): string | undefined {
  const trimmed = signal.trim().toUpperCase();
  if (/^[0-9]+$/.test(trimmed)) return SIGNAL_NAMES.get(Number(trimmed));
  const name = trimmed.startsWith("SIG") ? trimmed : `SIG${trimmed}`;
  return name in constants.signals ? name : undefined;
}

/** The last error runc logged (its JSON log lines carry `level` and `msg`). */
export function lastRuncError(log: string): string | undefined {
  let message: string | undefined;
  for (const line of log.split("\n")) {
    if (line.trim() === "") continue;
    try {
      const entry = JSON.parse(line) as { level?: unknown; msg?: unknown };
      const isError = entry.level === "error" || entry.level === "fatal";
      if (isError && typeof entry.msg === "string") message = entry.msg;
    } catch {
      message = line.trim();
    }
  }
  return message;
}
