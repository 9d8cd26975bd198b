/**
 * What the node network persists per task, so that addresses and host ports
 * stay reserved across agent restarts. Layout under the state directory:
 *
 *     tasks/<taskId>.json      the task's record (written atomically)
 *     files/<taskId>/hosts     the files the caller bind-mounts into containers
 *     files/<taskId>/resolv.conf
 *     files/<taskId>/hostname
 *
 * A record is written before any kernel state is made and removed only after
 * all of it is gone, so a crash in between leaves a record that teardown() or
 * recover() finishes.
 */

import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Protocol } from "./ports.ts";

export type NetworkMode = "awsvpc" | "bridge" | "host" | "none";

export interface BindingRecord {
  bindIP: string;
  containerPort: number;
  hostPort: number;
  protocol: Protocol;
}

export interface TaskRecord {
  version: 1;
  taskId: string;
  mode: NetworkMode;
  bridge: string;
  /** The task's address on the bridge (awsvpc, bridge). */
  ipv4Address?: string;
  prefix?: number;
  gateway?: string;
  bindings: BindingRecord[];
  hostname: string;
}

const TASK_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;

/** Task ids name files, a network namespace and iptables comments: keep them plain. */
export function validTaskId(taskId: string): boolean {
  return TASK_ID.test(taskId) && !taskId.includes("..");
}

export class StateStore {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  private recordPath(taskId: string): string {
    return join(this.dir, "tasks", `${taskId}.json`);
  }

  filesDir(taskId: string): string {
    return join(this.dir, "files", taskId);
  }

  async list(): Promise<TaskRecord[]> {
    let names: string[];
    try {
      names = await readdir(join(this.dir, "tasks"));
    } catch (error) {
      if (isNotFound(error)) return [];
      throw error;
    }
    const records: TaskRecord[] = [];
    for (const name of names.sort()) {
      if (!name.endsWith(".json")) continue;
      const record = await this.get(name.slice(0, -".json".length));
      if (record) records.push(record);
    }
    return records;
  }

  async get(taskId: string): Promise<TaskRecord | undefined> {
    let text: string;
    try {
      text = await readFile(this.recordPath(taskId), "utf8");
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
    const parsed: unknown = JSON.parse(text);
    return isTaskRecord(parsed) ? parsed : undefined;
  }

  async put(record: TaskRecord): Promise<void> {
    await writeAtomically(this.recordPath(record.taskId), `${JSON.stringify(record, null, 2)}\n`);
  }

  async delete(taskId: string): Promise<void> {
    await rm(this.filesDir(taskId), { recursive: true, force: true });
    await rm(this.recordPath(taskId), { force: true });
  }
}

/** Writes to a temporary file beside the target, then renames it into place. */
export async function writeAtomically(path: string, content: string): Promise<void> {
  const dir = join(path, "..");
  await mkdir(dir, { recursive: true });
  const temporary = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await writeFile(temporary, content, { mode: 0o644 });
  await rename(temporary, path);
}

function isNotFound(error: unknown): boolean {
  return error instanceof Error && "code" in error && error.code === "ENOENT";
}

function isTaskRecord(value: unknown): value is TaskRecord {
  if (typeof value !== "object" || value === null) return false;
  const record = value as Partial<TaskRecord>;
  return (
    record.version === 1 &&
    typeof record.taskId === "string" &&
    validTaskId(record.taskId) &&
    (record.mode === "awsvpc" ||
      record.mode === "bridge" ||
      record.mode === "host" ||
      record.mode === "none") &&
    typeof record.bridge === "string" &&
    typeof record.hostname === "string" &&
    Array.isArray(record.bindings)
  );
}
