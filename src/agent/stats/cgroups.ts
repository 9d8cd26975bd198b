/**
 * CPU and memory of a container, read from its cgroup. Both layouts are
 * handled: cgroup v1 (one hierarchy per controller, as on hosts in hybrid
 * mode, where the v2 tree carries no controllers) and the unified v2 tree.
 * Which one applies is read from /proc/self/mountinfo at run time.
 */

import { mkdir, readFile, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseMountEntries } from "../mountinfo.ts";

export type CgroupLayout =
  /** controller name ("cpuacct", "memory", "name=systemd", …) → mount point */
  { version: 1; controllers: Record<string, string> } | { version: 2; root: string };

export interface CgroupSample {
  /** CPU time used by the cgroup since it was made, in nanoseconds. */
  cpuNanos: bigint;
  /** The working set: usage less the inactive file cache (what Docker and the ECS agent report). */
  memoryBytes: number;
  /** The hard limit; absent when unlimited. */
  memoryLimitBytes?: number;
  at: Date;
}

/** A v1 limit at or above this is the kernel's "unlimited" (PAGE_COUNTER_MAX pages). */
const V1_UNLIMITED = 2 ** 60;

/**
 * Finds the cgroup layout in mountinfo text. A v1 memory hierarchy wins over
 * a v2 mount (hybrid hosts); undefined when neither is mounted.
 */
export function parseMountinfo(text: string): CgroupLayout | undefined {
  const controllers: Record<string, string> = {};
  let v2Root: string | undefined;
  for (const { mountPoint: path, fstype, superOptions } of parseMountEntries(text)) {
    if (fstype === "cgroup2") {
      // Prefer the conventional place when several are mounted.
      if (v2Root === undefined || path === "/sys/fs/cgroup") v2Root = path;
    } else if (fstype === "cgroup") {
      for (const option of superOptions.split(",")) {
        if (option === "rw" || option === "ro" || option === "") continue;
        controllers[option] ??= path;
      }
    }
  }
  if (controllers.memory !== undefined) return { version: 1, controllers };
  if (v2Root !== undefined) return { version: 2, root: v2Root };
  return undefined;
}

/** Reads the layout of this host. */
export async function detectCgroupLayout(mountinfoPath = "/proc/self/mountinfo"): Promise<CgroupLayout> {
  const layout = parseMountinfo(await readFile(mountinfoPath, "utf8"));
  if (layout === undefined) {
    throw new Error(
      "no cgroup v1 memory hierarchy and no cgroup2 mount in this mount namespace, so runc cannot limit " +
        "tasks. An agent started with `ip netns exec` sees /sys remounted without /sys/fs/cgroup: start it " +
        "with `nsenter --net=/run/netns/NAME` instead.",
    );
  }
  return layout;
}

function v1Dir(
  layout: { controllers: Record<string, string> },
  controller: string,
  cgroupsPath: string,
): string {
  const mount = layout.controllers[controller];
  if (mount === undefined) throw new Error(`the cgroup v1 controller ${controller} is not mounted`);
  return join(mount, cgroupsPath);
}

/** The directories that make up one cgroup: one per v1 hierarchy, or the single v2 one. */
export function cgroupDirs(layout: CgroupLayout, cgroupsPath: string): string[] {
  if (layout.version === 2) return [join(layout.root, cgroupsPath)];
  return [...new Set(Object.values(layout.controllers))].map((mount) => join(mount, cgroupsPath));
}

async function readText(path: string): Promise<string> {
  return (await readFile(path, "utf8")).trim();
}

async function readNumber(path: string): Promise<number> {
  const value = Number(await readText(path));
  if (!Number.isFinite(value)) throw new Error(`${path} does not hold a number`);
  return value;
}

/** "key value" lines (memory.stat, cpu.stat, memory.events, memory.oom_control) as a map. */
export function parseKeyValues(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    const [key, value] = line.trim().split(/\s+/);
    if (key === undefined || key === "" || value === undefined) continue;
    const n = Number(value);
    if (Number.isFinite(n)) values.set(key, n);
  }
  return values;
}

async function readKeyValues(path: string): Promise<Map<string, number>> {
  return parseKeyValues(await readFile(path, "utf8"));
}

/** Samples one container's cgroup (`cgroupsPath` as in the OCI spec, e.g. "/wharf/t/c"). */
export async function sampleCgroup(
  layout: CgroupLayout,
  cgroupsPath: string,
  now: () => Date = () => new Date(),
): Promise<CgroupSample> {
  if (layout.version === 1) {
    const memory = v1Dir(layout, "memory", cgroupsPath);
    const [cpu, usage, stat, limit] = await Promise.all([
      readText(join(v1Dir(layout, "cpuacct", cgroupsPath), "cpuacct.usage")),
      readNumber(join(memory, "memory.usage_in_bytes")),
      readKeyValues(join(memory, "memory.stat")),
      readNumber(join(memory, "memory.limit_in_bytes")),
    ]);
    const inactive = stat.get("total_inactive_file") ?? stat.get("inactive_file") ?? 0;
    const sample: CgroupSample = {
      cpuNanos: BigInt(cpu),
      memoryBytes: Math.max(0, usage - inactive),
      at: now(),
    };
    if (limit < V1_UNLIMITED) sample.memoryLimitBytes = limit;
    return sample;
  }
  const dir = join(layout.root, cgroupsPath);
  const [cpuStat, usage, stat, max] = await Promise.all([
    readText(join(dir, "cpu.stat")),
    readNumber(join(dir, "memory.current")),
    readKeyValues(join(dir, "memory.stat")),
    readText(join(dir, "memory.max")),
  ]);
  const usec = /^usage_usec\s+(\d+)$/m.exec(cpuStat)?.[1];
  if (usec === undefined) throw new Error(`${dir}/cpu.stat has no usage_usec`);
  const sample: CgroupSample = {
    cpuNanos: BigInt(usec) * 1000n,
    memoryBytes: Math.max(0, usage - (stat.get("inactive_file") ?? 0)),
    at: now(),
  };
  if (max !== "max") sample.memoryLimitBytes = Number(max);
  return sample;
}

/**
 * CPU use between two samples as a percentage of the container's CPU units
 * (1024 units = one CPU), as ECS reports CPUUtilization; without units (or
 * 0), as a percentage of one CPU. 0 when no time passed.
 */
export function cpuUtilization(previous: CgroupSample, current: CgroupSample, cpuUnits?: number): number {
  const wallNanos = (current.at.getTime() - previous.at.getTime()) * 1e6;
  if (wallNanos <= 0) return 0;
  const used = current.cpuNanos - previous.cpuNanos;
  if (used <= 0n) return 0;
  const units = cpuUnits !== undefined && cpuUnits > 0 ? cpuUnits : 1024;
  return ((Number(used) / wallNanos) * 1024 * 100) / units;
}

/** How many processes the OOM killer has killed in the cgroup; undefined when it cannot be read. */
export async function readOomKills(layout: CgroupLayout, cgroupsPath: string): Promise<number | undefined> {
  try {
    const file =
      layout.version === 1
        ? join(v1Dir(layout, "memory", cgroupsPath), "memory.oom_control")
        : join(layout.root, cgroupsPath, "memory.events");
    return (await readKeyValues(file)).get("oom_kill");
  } catch {
    return undefined;
  }
}

function checkPath(cgroupsPath: string, action: string): void {
  if (!cgroupsPath.startsWith("/") || cgroupsPath === "/" || cgroupsPath.split("/").includes("..")) {
    throw new Error(`refusing to ${action} cgroup ${JSON.stringify(cgroupsPath)}`);
  }
}

/** A task's own limits, from its definition's task-level cpu (units) and memory (MiB). */
export interface TaskLimits {
  cpuUnits?: number;
  memoryMiB?: number;
}

/** The CFS period the task-level CPU quota is given over, in microseconds (the kernel's default). */
export const CFS_PERIOD_US = 100_000;

/** A CPU quota per CFS period for `cpuUnits` (1024 units are one CPU); the kernel's floor is 1 ms. */
export function cpuQuotaUs(cpuUnits: number): number {
  return Math.max(1000, Math.round((cpuUnits / 1024) * CFS_PERIOD_US));
}

/**
 * Makes a task's cgroup, the parent of its containers' (which runc makes), with the task-level
 * limits as hard limits for all its containers together, as the ECS agent does on Linux: a CFS
 * quota for the CPU units and a memory limit. On v2 the controllers are enabled in every
 * ancestor's subtree on the way down. A limit whose controller this host lacks is left out:
 * what was left out is returned, for the caller to log.
 */
export async function limitCgroup(
  layout: CgroupLayout,
  cgroupsPath: string,
  limits: TaskLimits,
): Promise<string[]> {
  checkPath(cgroupsPath, "limit");
  const { cpuUnits, memoryMiB } = limits;
  const memoryBytes = memoryMiB === undefined ? undefined : String(memoryMiB * 1024 * 1024);
  const skipped: string[] = [];
  if (layout.version === 1) {
    if (cpuUnits !== undefined && layout.controllers.cpu === undefined) skipped.push("cpu");
    else if (cpuUnits !== undefined) {
      const dir = v1Dir(layout, "cpu", cgroupsPath);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, "cpu.cfs_period_us"), String(CFS_PERIOD_US));
      await writeFile(join(dir, "cpu.cfs_quota_us"), String(cpuQuotaUs(cpuUnits)));
    }
    if (memoryBytes !== undefined) {
      const dir = v1Dir(layout, "memory", cgroupsPath);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, "memory.limit_in_bytes"), memoryBytes);
    }
    return skipped;
  }
  const available = new Set(
    (await readFile(join(layout.root, "cgroup.controllers"), "utf8").catch(() => "")).trim().split(/\s+/),
  );
  const wanted: string[] = [];
  for (const [controller, wants] of [
    ["cpu", cpuUnits !== undefined],
    ["memory", memoryBytes !== undefined],
  ] as const) {
    if (!wants) continue;
    if (available.has(controller)) wanted.push(controller);
    else skipped.push(controller);
  }
  if (wanted.length === 0) return skipped;
  const enable = wanted.map((c) => `+${c}`).join(" ");
  let dir = layout.root;
  for (const part of cgroupsPath.split("/").filter(Boolean)) {
    await writeFile(join(dir, "cgroup.subtree_control"), enable);
    dir = join(dir, part);
    await mkdir(dir, { recursive: true });
  }
  if (wanted.includes("cpu"))
    await writeFile(join(dir, "cpu.max"), `${cpuQuotaUs(cpuUnits ?? 0)} ${CFS_PERIOD_US}`);
  if (wanted.includes("memory") && memoryBytes !== undefined)
    await writeFile(join(dir, "memory.max"), memoryBytes);
  return skipped;
}

/**
 * Removes an (empty) cgroup from every hierarchy, for the task-level parent
 * that runc creates but never deletes. Missing directories are fine; a
 * cgroup that still has processes or children fails with EBUSY.
 */
export async function removeCgroup(layout: CgroupLayout, cgroupsPath: string): Promise<void> {
  checkPath(cgroupsPath, "remove");
  const results = await Promise.allSettled(cgroupDirs(layout, cgroupsPath).map((dir) => rmdir(dir)));
  for (const result of results) {
    if (result.status === "rejected") {
      const code = (result.reason as NodeJS.ErrnoException).code;
      if (code !== "ENOENT") throw result.reason;
    }
  }
}
