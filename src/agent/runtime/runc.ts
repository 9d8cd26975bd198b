/**
 * The Runtime seam implemented with runc. Each container runs under a
 * detached supervisor (supervisor.ts), so nothing ties it to this process:
 * a new RuncRuntime over the same --root adopts containers an earlier agent
 * started, reading their state from runc and their exit from the bundle.
 */

import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, rmdir, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import {
  type CgroupLayout,
  detectCgroupLayout,
  limitCgroup,
  readOomKills,
  removeCgroup,
  type TaskLimits,
} from "../stats/cgroups.ts";
import { type CommandResult, runCommand } from "./command.ts";
import { assertContainerId, RuntimeError } from "./errors.ts";
import { CONTAINER_ID_ANNOTATION, type OciSpec, STOP_SIGNAL_ANNOTATION } from "./oci.ts";
import type {
  ContainerHandle,
  ContainerState,
  ExecOptions,
  ExitStatus,
  Runtime,
  StartOptions,
} from "./runtime.ts";
import {
  bundleFiles,
  decodeStatus,
  lastRuncError,
  signalName,
  spawnSupervisor,
  TMP_FILE,
} from "./supervisor.ts";
import { waitUntil } from "./wait-until.ts";

export type {
  ContainerHandle,
  ContainerState,
  ExecOptions,
  ExitStatus,
  Runtime,
  StartOptions,
} from "./runtime.ts";

export interface RuncRuntimeOptions {
  runcPath?: string;
  /** runc's --root state directory. */
  root: string;
  /** Deadline of each short runc command (state, kill, delete, list); 15 s unless told. */
  commandTimeoutMs?: number;
}

/** How long a container may be gone without an exit record before it counts as lost. */
const LOST_GRACE_MS = 3000;
/** How long a SIGKILLed container may take to be reaped. */
const KILL_GRACE_MS = 30_000;
const EXEC_OUTPUT_BYTES = 64 * 1024;

interface RuncState {
  status: string;
  pid: number;
}

interface ExitRecordJson {
  exitCode: number;
  signal?: string;
  oomKilled: boolean;
  finishedAt: string;
  lost?: string;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

async function readPid(path: string): Promise<number | undefined> {
  const text = (await readOptional(path))?.trim();
  if (text === undefined || !/^[0-9]+$/.test(text)) return undefined;
  const pid = Number(text);
  return pid > 0 ? pid : undefined;
}

/** Whether the process exists and is not a zombie (an orphan's zombie lingers until init reaps it). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** Writes through a unique temporary file, so concurrent writers of the same record cannot collide. */
async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${randomBytes(4).toString("hex")}`;
  await writeFile(tmp, text, { mode: 0o600 });
  await rename(tmp, path);
}

function toExitStatus(json: ExitRecordJson): ExitStatus {
  const status: ExitStatus = {
    exitCode: json.exitCode,
    oomKilled: json.oomKilled,
    finishedAt: new Date(json.finishedAt),
  };
  if (json.signal !== undefined) status.signal = json.signal;
  if (json.lost !== undefined) status.lost = json.lost;
  return status;
}

function isNotFound(result: CommandResult): boolean {
  return /does not exist|not found/i.test(result.stderr);
}

export class RuncRuntime implements Runtime {
  private readonly runc: string;
  private readonly root: string;
  private readonly commandTimeoutMs: number;
  private layout: Promise<CgroupLayout | undefined> | undefined;

  constructor(options: RuncRuntimeOptions) {
    this.runc = options.runcPath ?? "runc";
    this.root = options.root;
    this.commandTimeoutMs = options.commandTimeoutMs ?? 15_000;
  }

  private command(args: string[], signal?: AbortSignal): Promise<CommandResult> {
    return runCommand(this.runc, ["--root", this.root, ...args], {
      timeoutMs: this.commandTimeoutMs,
      signal,
    });
  }

  async limitTask(cgroupsPath: string, limits: TaskLimits): Promise<string[]> {
    if (limits.cpuUnits === undefined && limits.memoryMiB === undefined) return [];
    const layout = await this.cgroups();
    if (layout === undefined) return ["cpu", "memory"];
    return limitCgroup(layout, cgroupsPath, limits);
  }

  async removeTask(cgroupsPath: string): Promise<void> {
    const layout = await this.cgroups();
    if (layout !== undefined) await removeCgroup(layout, cgroupsPath);
  }

  private cgroups(): Promise<CgroupLayout | undefined> {
    this.layout ??= detectCgroupLayout().catch(() => undefined);
    return this.layout;
  }

  private async oomKills(cgroupsPath: string | undefined): Promise<number> {
    const layout = await this.cgroups();
    if (layout === undefined || cgroupsPath === undefined) return 0;
    return (await readOomKills(layout, cgroupsPath)) ?? 0;
  }

  private async runcState(id: string): Promise<RuncState | undefined> {
    const result = await this.command(["state", id]);
    if (result.code !== 0) {
      if (isNotFound(result)) return undefined;
      throw new RuntimeError("runc_failed", `runc state ${id}: ${result.stderr.trim()}`);
    }
    return JSON.parse(result.stdout) as RuncState;
  }

  async start(
    spec: OciSpec,
    bundleDir: string,
    io: { stdout: string; stderr: string },
    opts: StartOptions = {},
  ): Promise<ContainerHandle> {
    const id = spec.annotations[CONTAINER_ID_ANNOTATION];
    if (id === undefined) {
      throw new RuntimeError("invalid_spec", `the spec has no ${CONTAINER_ID_ANNOTATION} annotation`);
    }
    assertContainerId(id);
    const files = bundleFiles(bundleDir);
    await Promise.all([
      mkdir(bundleDir, { recursive: true, mode: 0o700 }),
      mkdir(this.root, { recursive: true, mode: 0o700 }),
      mkdir(dirname(io.stdout), { recursive: true }),
      mkdir(dirname(io.stderr), { recursive: true }),
    ]);
    // Leftovers of an earlier run in the same bundle would be taken for this one's.
    if (await exists(join(this.root, id))) {
      // runc keeps a container's state in <root>/<id>: never disturb a container that exists.
      throw new RuntimeError("start_failed", `container ${id}: a container with this id already exists`);
    }
    const { config, ...stale } = files;
    await Promise.all(Object.values(stale).map((path) => rm(path, { force: true })));
    const oomBase = await this.oomKills(spec.linux.cgroupsPath);
    if (oomBase > 0) await writeFile(files.oomBase, String(oomBase));
    await writeAtomic(config, JSON.stringify(spec));

    const child = spawnSupervisor({ runcPath: this.runc, root: this.root, bundleDir, id, ...io });
    let spawnError: Error | undefined;
    child.once("error", (error) => {
      spawnError = error;
    });
    const failure = async (): Promise<never> => {
      const log = (await readOptional(files.runcLog)) ?? "";
      const reason = lastRuncError(log) ?? "runc exited before the container was running";
      throw new RuntimeError("start_failed", `container ${id}: ${reason}`);
    };
    try {
      const pid = await waitUntil(
        async () => {
          if (spawnError !== undefined) {
            throw new RuntimeError("start_failed", `container ${id}: supervisor: ${spawnError.message}`);
          }
          const pid = await readPid(files.pid);
          if (pid !== undefined) return pid;
          if (!(await exists(files.exit))) return undefined;
          // The pid file precedes the exit record: look again before calling it a failure.
          return (await readPid(files.pid)) ?? failure();
        },
        {
          watchDir: bundleDir,
          pollMs: 20,
          timeoutMs: opts.timeoutMs ?? 60_000,
          signal: opts.signal,
          what: `starting ${id}`,
        },
      );
      return { id, bundle: bundleDir, pid };
    } catch (error) {
      if (error instanceof RuntimeError && (error.code === "timeout" || error.code === "aborted")) {
        // Leave nothing half-started behind.
        await this.command(["delete", "--force", id]).catch(() => undefined);
      }
      throw error;
    }
  }

  /** The exit record, decoded and with the OOM verdict, once the supervisor wrote the exit status. */
  private async readExit(bundleDir: string): Promise<ExitStatus | undefined> {
    const files = bundleFiles(bundleDir);
    const record = await readOptional(files.exitRecord);
    if (record !== undefined) return toExitStatus(JSON.parse(record) as ExitRecordJson);
    const raw = (await readOptional(files.exit))?.trim();
    if (raw === undefined || !/^[0-9]+$/.test(raw)) return undefined;
    // When `runc run` itself is killed, the supervisor records its death while the container
    // lives on, orphaned: mark the record stale, and the container's end as lost.
    const pid = await readPid(files.pid);
    if (pid !== undefined && alive(pid)) {
      await writeFile(files.stale, "");
      return undefined;
    }
    if (await exists(files.stale)) {
      const lost = "runc was killed while the container ran: its exit status is unknown";
      return this.recordExit(bundleDir, { exitCode: -1, finishedAt: new Date(), lost });
    }
    const finishedAt = (await stat(files.exit)).mtime;
    return this.recordExit(bundleDir, { ...decodeStatus(Number(raw)), finishedAt });
  }

  private async recordExit(
    bundleDir: string,
    exit: { exitCode: number; signal?: string; finishedAt: Date; lost?: string },
  ): Promise<ExitStatus> {
    const files = bundleFiles(bundleDir);
    const config = await readOptional(files.config);
    const cgroupsPath = config === undefined ? undefined : (JSON.parse(config) as OciSpec).linux?.cgroupsPath;
    const base = Number((await readOptional(files.oomBase)) ?? "0") || 0;
    const status: ExitStatus = { ...exit, oomKilled: (await this.oomKills(cgroupsPath)) > base };
    const json: ExitRecordJson = { ...status, finishedAt: status.finishedAt.toISOString() };
    await writeAtomic(files.exitRecord, JSON.stringify(json));
    return status;
  }

  wait(id: string, bundleDir: string, signal?: AbortSignal): Promise<ExitStatus> {
    return this.waitExit(id, bundleDir, signal, undefined);
  }

  private waitExit(
    id: string,
    bundleDir: string,
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
  ): Promise<ExitStatus> {
    assertContainerId(id);
    const pidFile = bundleFiles(bundleDir).pid;
    let lastCheck = 0;
    let goneSince: number | undefined;
    return waitUntil(
      async () => {
        const exit = await this.readExit(bundleDir);
        if (exit !== undefined) return exit;
        // Without a record: is the container gone for good (supervisor killed, host rebooted)?
        const now = Date.now();
        if (now - lastCheck < 1000) return undefined;
        lastCheck = now;
        const pid = await readPid(pidFile);
        if (pid !== undefined && alive(pid)) {
          goneSince = undefined;
          return undefined;
        }
        goneSince ??= now;
        if (now - goneSince < LOST_GRACE_MS) return undefined;
        const state = await this.runcState(id);
        if (state !== undefined && state.status !== "stopped") {
          goneSince = undefined;
          return undefined;
        }
        if (state === undefined && !(await exists(bundleFiles(bundleDir).config))) {
          throw new RuntimeError("not_found", `container ${id} does not exist`);
        }
        const lost = "the container's supervisor ended without recording its exit status";
        return this.recordExit(bundleDir, { exitCode: -1, finishedAt: new Date(now), lost });
      },
      { watchDir: bundleDir, pollMs: 250, signal, timeoutMs, what: `waiting for ${id}` },
    );
  }

  async state(id: string, bundleDir: string): Promise<ContainerState> {
    assertContainerId(id);
    const state = await this.runcState(id);
    if (state === undefined || state.status === "stopped") {
      const exit = await this.readExit(bundleDir);
      if (exit !== undefined) return { status: "stopped", exit };
      return { status: state === undefined ? "unknown" : "stopped" };
    }
    const status = state.status === "created" ? "created" : "running";
    return state.pid > 0 ? { status, pid: state.pid } : { status };
  }

  async kill(id: string, signal: string): Promise<void> {
    assertContainerId(id);
    const name = signalName(signal);
    if (name === undefined) {
      throw new RuntimeError("invalid_spec", `unknown signal ${JSON.stringify(signal)}`);
    }
    const result = await this.command(["kill", id, name]);
    if (result.code === 0) return;
    const code = isNotFound(result) ? "not_found" : "runc_failed";
    throw new RuntimeError(code, `runc kill ${id} ${name}: ${result.stderr.trim()}`);
  }

  async stop(id: string, bundleDir: string, timeoutMs: number, stopSignal?: string): Promise<ExitStatus> {
    const current = await this.state(id, bundleDir);
    if (current.exit !== undefined) return current.exit;
    if (current.status === "unknown") throw new RuntimeError("not_found", `container ${id} does not exist`);
    const signal = stopSignal ?? (await this.imageStopSignal(bundleDir)) ?? "SIGTERM";
    // The container may exit on its own meanwhile: a failed kill is judged by the wait that follows.
    await this.kill(id, signal).catch(() => undefined);
    try {
      return await this.waitExit(id, bundleDir, undefined, timeoutMs);
    } catch (error) {
      if (!(error instanceof RuntimeError && error.code === "timeout")) throw error;
    }
    await this.kill(id, "SIGKILL").catch(() => undefined);
    return this.waitExit(id, bundleDir, undefined, KILL_GRACE_MS);
  }

  private async imageStopSignal(bundleDir: string): Promise<string | undefined> {
    const config = await readOptional(bundleFiles(bundleDir).config);
    if (config === undefined) return undefined;
    const signal = (JSON.parse(config) as OciSpec).annotations?.[STOP_SIGNAL_ANNOTATION];
    return signal !== undefined && signalName(signal) !== undefined ? signal : undefined;
  }

  async exec(id: string, args: string[], opts: ExecOptions): Promise<{ exitCode: number; output: string }> {
    assertContainerId(id);
    if (args.length === 0) throw new RuntimeError("invalid_spec", "exec needs a command");
    const dir = await mkdtemp(join(tmpdir(), "wharf-exec-"));
    const pidFile = join(dir, "pid");
    const env = (opts.env ?? []).flatMap((e) => ["--env", e]);
    try {
      const result = await runCommand(
        this.runc,
        ["--root", this.root, "exec", "--pid-file", pidFile, ...env, id, ...args],
        {
          timeoutMs: opts.timeoutMs,
          signal: opts.signal,
          maxOutputBytes: EXEC_OUTPUT_BYTES,
        },
      );
      const exitCode = result.code ?? 128 + 9;
      return { exitCode, output: result.combined };
    } catch (error) {
      // Killing `runc exec` leaves its process in the container running: kill that too.
      const pid = await readPid(pidFile);
      if (pid !== undefined && alive(pid)) process.kill(pid, "SIGKILL");
      throw error;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async remove(id: string, bundleDir: string): Promise<void> {
    assertContainerId(id);
    const files = bundleFiles(bundleDir);
    const pid = await readPid(files.pid);
    const wasAlive = pid !== undefined && alive(pid) && !(await exists(files.exit));
    const result = await this.command(["delete", "--force", id]);
    if (result.code !== 0 && !isNotFound(result)) {
      throw new RuntimeError("runc_failed", `runc delete ${id}: ${result.stderr.trim()}`);
    }
    if (wasAlive) {
      // Let the supervisor write its record before the bundle goes, so it leaves nothing behind.
      await waitUntil(async () => ((await exists(files.exit)) ? true : undefined), {
        watchDir: bundleDir,
        pollMs: 50,
        timeoutMs: 5000,
        what: `removing ${id}`,
      }).catch(() => undefined);
    }
    const strays = (await readdir(bundleDir).catch(() => [])).filter((name) => TMP_FILE.test(name));
    const ours = [...Object.values(files), ...strays.map((name) => join(bundleDir, name))];
    await Promise.all(ours.map((path) => rm(path, { force: true })));
    await rmdir(bundleDir).catch((error: NodeJS.ErrnoException) => {
      // The caller's files (rootfs, logs) may still be there: theirs to remove.
      if (error.code !== "ENOENT" && error.code !== "ENOTEMPTY") throw error;
    });
  }

  async list(): Promise<string[]> {
    if (!(await exists(this.root))) return [];
    const result = await this.command(["list", "--format", "json"]);
    if (result.code !== 0) throw new RuntimeError("runc_failed", `runc list: ${result.stderr.trim()}`);
    const entries = JSON.parse(result.stdout || "null") as { id: string }[] | null;
    return (entries ?? []).map((e) => e.id).sort();
  }
}
