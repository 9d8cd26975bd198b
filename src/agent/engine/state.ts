import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ContainerReport, TaskAssignment, TaskStatus } from "../../shared/agent-protocol.ts";

/** What the agent remembers of one container, so a restarted agent can adopt it. */
export interface ContainerState {
  name: string;
  /** runc container id. */
  id: string;
  bundle: string;
  rootfs: string;
  status: "PENDING" | "RUNNING" | "STOPPED";
  exitCode?: number;
  reason?: string;
  healthStatus?: "HEALTHY" | "UNHEALTHY" | "UNKNOWN";
  startedAt?: number;
  stdout: string;
  stderr: string;
  /** How far the log shipper has read each stream. */
  logOffsets: { stdout: number; stderr: number };
}

export interface TaskState {
  assignment: TaskAssignment;
  taskId: string;
  status: TaskStatus;
  containers: ContainerState[];
  network?: {
    netnsPath?: string;
    ipv4Address?: string;
    macAddress?: string;
    bindings: NonNullable<ContainerReport["networkBindings"]>;
    hostsFile: string;
    resolvConf: string;
    hostnameFile: string;
  };
  stopCode?: NonNullable<import("../../shared/agent-protocol.ts").TaskReport["stopCode"]>;
  stoppedReason?: string;
  pullStartedAt?: number;
  pullStoppedAt?: number;
  /** When the first essential container stopped. */
  executionStoppedAt?: number;
}

export function taskIdOf(taskArn: string): string {
  return taskArn.slice(taskArn.lastIndexOf("/") + 1);
}

/** A task's cgroup: its containers' are inside it (`<it>/<container name>`), its task-level limits on it. */
export function taskCgroup(taskId: string): string {
  return `/wharf/${taskId}`;
}

/** Task state files under `<dataDir>/tasks/<task id>/task.json`, written atomically. */
export class TaskStateStore {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, "tasks");
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  taskDir(taskId: string): string {
    return join(this.dir, taskId);
  }

  save(state: TaskState): void {
    const dir = this.taskDir(state.taskId);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const temporary = join(dir, `task.json.${process.pid}.tmp`);
    writeFileSync(temporary, JSON.stringify(state));
    renameSync(temporary, join(dir, "task.json"));
  }

  loadAll(): TaskState[] {
    const states: TaskState[] = [];
    for (const entry of readdirSync(this.dir)) {
      try {
        states.push(JSON.parse(readFileSync(join(this.dir, entry, "task.json"), "utf8")) as TaskState);
      } catch {
        // a task directory without a complete state file never started anything
      }
    }
    return states;
  }

  remove(taskId: string): void {
    rmSync(this.taskDir(taskId), { recursive: true, force: true });
  }
}
