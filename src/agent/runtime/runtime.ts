/**
 * The container runtime seam the agent's task engine drives. RuncRuntime
 * (runc.ts) is the implementation; a fake for engine tests implements the
 * same interface.
 */

import type { TaskLimits } from "../stats/cgroups.ts";
import type { OciSpec } from "./oci.ts";

export interface ContainerHandle {
  id: string;
  bundle: string;
  pid?: number;
}

export interface ExitStatus {
  /** The process's exit code; 128+n when signal n killed it (137 for SIGKILL), as Docker reports. -1 when lost. */
  exitCode: number;
  /** "SIGKILL", … when a signal ended the process. */
  signal?: string;
  /** The OOM killer killed a process of the container. */
  oomKilled: boolean;
  finishedAt: Date;
  /** Set when the exit code could not be known (the supervisor died before recording it). */
  lost?: string;
}

export type ContainerStatus = "created" | "running" | "stopped" | "unknown";

export interface ContainerState {
  status: ContainerStatus;
  pid?: number;
  exit?: ExitStatus;
}

export interface StartOptions {
  signal?: AbortSignal;
  /** How long the container may take to be running (60 s unless told). */
  timeoutMs?: number;
}

export interface ExecOptions {
  timeoutMs: number;
  env?: string[];
  signal?: AbortSignal;
}

export interface Runtime {
  /**
   * Writes the bundle (config.json), starts the container detached from this
   * process so it survives an agent restart, with stdout/stderr appended to
   * the given files. Resolves when the container's process is running (its
   * pid known). The container id is the spec's CONTAINER_ID_ANNOTATION.
   */
  start(
    spec: OciSpec,
    bundleDir: string,
    io: { stdout: string; stderr: string },
    opts?: StartOptions,
  ): Promise<ContainerHandle>;
  /** Resolves when the container exits (also for containers started by an earlier agent process). */
  wait(id: string, bundleDir: string, signal?: AbortSignal): Promise<ExitStatus>;
  /** Current state, from runc state and the exit record. */
  state(id: string, bundleDir: string): Promise<ContainerState>;
  kill(id: string, signal: string): Promise<void>;
  /** The stop signal (argument, else the image's, else SIGTERM), then SIGKILL after timeoutMs if still running. */
  stop(id: string, bundleDir: string, timeoutMs: number, stopSignal?: string): Promise<ExitStatus>;
  /** Runs a command in the running container (health checks). Rejects with `timeout` when it overruns. */
  exec(id: string, args: string[], opts: ExecOptions): Promise<{ exitCode: number; output: string }>;
  /** Deletes the container (killing it if running) and the files the runtime wrote in the bundle. */
  remove(id: string, bundleDir: string): Promise<void>;
  /** Container ids this runtime knows. */
  list(): Promise<string[]>;
  /**
   * Makes a task's cgroup, the parent of its containers' `cgroupsPath`, with the task-level
   * limits; resolves to the limits left out because this host lacks their controller.
   */
  limitTask(cgroupsPath: string, limits: TaskLimits): Promise<string[]>;
  /** Removes a task's cgroup once its containers are removed. */
  removeTask(cgroupsPath: string): Promise<void>;
}
