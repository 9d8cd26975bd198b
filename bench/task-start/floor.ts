// The floor: plain `runc run -d` of a bundle equivalent to the one Wharf's agent ran. The spec is
// the agent's own config.json for the warm-up task (same process, namespaces, cgroup limits,
// mounts), with a fresh network namespace instead of the task's, the task's /etc files copied,
// and the same busybox rootfs as the lower layer of an overlay, mounted before the clock starts.
import { execFile, spawn } from "node:child_process";
import { cp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type { OciSpec } from "../../src/agent/runtime/oci.ts";
import { removeEmptyCgroups } from "./cleanup.ts";

const exec = promisify(execFile);
const CGROUP_PARENT = "wharf-bench-floor";

export interface FloorSample {
  /** `runc run -d`: spawn to exit. */
  run: number;
  /** `runc state` afterwards (it said "running"). */
  state: number;
  /** run + state: spawn to `runc state` = running. */
  total: number;
  /** The overlay mount (a `mount` exec), outside the measured time. */
  mount: number;
}

/** The mount point of `target` in /proc/self/mounts, with its options. */
async function mountOptions(target: string): Promise<string[] | undefined> {
  const mounts = await readFile("/proc/self/mounts", "utf8");
  for (const line of mounts.split("\n")) {
    const [, point, , options] = line.split(" ");
    if (point === target) return options?.split(",");
  }
  return undefined;
}

function elapsed(since: number): number {
  return performance.now() - since;
}

export class RuncFloor {
  private readonly dir: string;
  private readonly root: string;
  private readonly spec: OciSpec;
  private readonly lower: string;
  /** Containers made and not yet removed, with their bundles. */
  private readonly live = new Map<string, string>();

  private constructor(dir: string, spec: OciSpec, lower: string) {
    this.dir = dir;
    this.root = join(dir, "runc-root");
    this.spec = spec;
    this.lower = lower;
  }

  /**
   * Copies what the floor needs from a task the agent is running: its spec, its image's rootfs
   * (the overlay's lower directory) and the /etc files the spec bind-mounts.
   */
  static async snapshot(dir: string, bundle: string): Promise<RuncFloor> {
    const spec = JSON.parse(await readFile(join(bundle, "config.json"), "utf8")) as OciSpec;
    const options = await mountOptions(join(bundle, "rootfs"));
    const lowerdir = options?.find((o) => o.startsWith("lowerdir="))?.slice("lowerdir=".length);
    if (lowerdir === undefined) throw new Error(`no overlay mounted at ${join(bundle, "rootfs")}`);
    await mkdir(join(dir, "files"), { recursive: true });
    const lower = join(dir, "lower");
    await cp(lowerdir, lower, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
    for (const mount of spec.mounts) {
      if (!mount.destination.startsWith("/etc/")) continue;
      const copy = join(dir, "files", mount.destination.slice("/etc/".length));
      await cp(mount.source, copy);
      mount.source = copy;
    }
    spec.linux.namespaces = spec.linux.namespaces.map((ns) =>
      ns.type === "network" ? { type: ns.type } : ns,
    );
    return new RuncFloor(dir, spec, lower);
  }

  /** Mounts a fresh overlay, then times `runc run -d` and `runc state` of it, then removes it. */
  async runOnce(index: number): Promise<FloorSample> {
    const id = `wharf-bench-floor-${process.pid}-${index}`;
    const bundle = join(this.dir, "bundles", String(index));
    const rootfs = join(bundle, "rootfs");
    for (const sub of ["upper", "work", "rootfs"]) await mkdir(join(bundle, sub), { recursive: true });
    const mountStart = performance.now();
    await exec(
      "mount",
      [
        "-t",
        "overlay",
        "overlay",
        "-o",
        `lowerdir=${this.lower},upperdir=${join(bundle, "upper")},workdir=${join(bundle, "work")}`,
        rootfs,
      ],
      { timeout: 10_000 },
    );
    const mount = elapsed(mountStart);
    const spec: OciSpec = {
      ...this.spec,
      root: { ...this.spec.root, path: rootfs },
      linux: { ...this.spec.linux, cgroupsPath: `/${CGROUP_PARENT}/${id}` },
    };
    await writeFile(join(bundle, "config.json"), JSON.stringify(spec));
    this.live.set(id, bundle);
    try {
      const started = performance.now();
      await new Promise<void>((resolve, reject) => {
        const child = spawn(
          "runc",
          ["--root", this.root, "run", "-d", "--bundle", bundle, "--pid-file", join(bundle, "pid"), id],
          { stdio: ["ignore", "ignore", "pipe"] },
        );
        let stderr = "";
        child.stderr.on("data", (chunk: Buffer) => {
          stderr += chunk.toString("utf8");
        });
        child.once("error", reject);
        child.once("exit", (code) =>
          code === 0 ? resolve() : reject(new Error(`runc run -d ${id}: exit ${code}: ${stderr.trim()}`)),
        );
      });
      const run = elapsed(started);
      const stateStarted = performance.now();
      const { stdout } = await exec("runc", ["--root", this.root, "state", id], { timeout: 10_000 });
      const state = elapsed(stateStarted);
      const status = (JSON.parse(stdout) as { status?: string }).status;
      if (status !== "running") throw new Error(`runc state ${id}: ${status ?? "no status"}`);
      return { run, state, total: elapsed(started), mount };
    } finally {
      await this.remove(id, bundle);
    }
  }

  private async remove(id: string, bundle: string): Promise<void> {
    await exec("runc", ["--root", this.root, "delete", "--force", id], { timeout: 15_000 }).catch(
      () => undefined,
    );
    this.live.delete(id);
    await exec("umount", ["-l", join(bundle, "rootfs")], { timeout: 10_000 }).catch(() => undefined);
    await rm(bundle, { recursive: true, force: true });
  }

  /** Removes every container, mount and cgroup the floor made, and its directory. */
  async cleanup(): Promise<void> {
    for (const [id, bundle] of [...this.live]) await this.remove(id, bundle);
    await removeEmptyCgroups([CGROUP_PARENT]);
    await rm(this.dir, { recursive: true, force: true });
  }
}
