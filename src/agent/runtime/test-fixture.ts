/**
 * For tests that run real containers: checks the prerequisites (root, runc,
 * a static busybox), builds a tiny busybox root filesystem, and starts
 * containers under unique ids and cgroups that `cleanup()` removes again.
 * Not part of the agent.
 */

import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CgroupLayout, detectCgroupLayout, removeCgroup } from "../stats/cgroups.ts";
import { runCommand, SYSTEM_ENV } from "./command.ts";
import { RuncRuntime } from "./runc.ts";
import type { ContainerHandle } from "./runtime.ts";
import { buildSpec, type ContainerDefinition, type ContainerSpecInput } from "./spec.ts";

export const BUSYBOX = "/bin/busybox";
const APPLETS = [
  "sh",
  "sleep",
  "echo",
  "cat",
  "true",
  "false",
  "head",
  "tr",
  "touch",
  "chown",
  "id",
  "ls",
  "ps",
  "wc",
];
/** All test cgroups live under this parent, one child per run. */
const CGROUP_PARENT = "/wharf-test";

export const PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234:App:/home/app:/bin/sh\n";
export const GROUP = "root:x:0:\napp:x:1234:\nextra:x:555:app\n";

async function findRunc(): Promise<string | undefined> {
  for (const path of ["/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc", "/usr/local/bin/runc"]) {
    if (existsSync(path)) return path;
  }
  return undefined;
}

/** Installs runc and busybox-static when missing; returns why the tests must be skipped, if they must. */
export async function prerequisites(): Promise<string | undefined> {
  if (process.platform !== "linux") return "containers need Linux";
  if (process.getuid?.() !== 0) return "containers need root";
  if ((await findRunc()) === undefined || !existsSync(BUSYBOX)) {
    const install = ["install", "-y", "-qq", "--no-install-recommends", "runc", "busybox-static"];
    const env = { ...SYSTEM_ENV, DEBIAN_FRONTEND: "noninteractive" };
    const first = await runCommand("apt-get", install, { timeoutMs: 300_000, env }).catch(() => undefined);
    if (first?.code !== 0) {
      await runCommand("apt-get", ["update", "-qq"], { timeoutMs: 300_000, env }).catch(() => undefined);
      await runCommand("apt-get", install, { timeoutMs: 300_000, env }).catch(() => undefined);
    }
  }
  if ((await findRunc()) === undefined) return "runc is not installed and could not be";
  if (!existsSync(BUSYBOX)) return "busybox-static is not installed and could not be";
  return undefined;
}

export interface Started extends ContainerHandle {
  stdout: string;
  stderr: string;
  cgroupsPath: string;
  startMs: number;
}

export class ContainerFixture {
  readonly runtime: RuncRuntime;
  readonly rootfs: string;
  readonly runcRoot: string;
  private readonly started: Started[] = [];
  private counter = 0;

  private constructor(
    readonly dir: string,
    readonly runcPath: string,
    readonly layout: CgroupLayout,
    readonly prefix: string,
  ) {
    this.rootfs = join(dir, "rootfs");
    this.runcRoot = join(dir, "runc-root");
    this.runtime = new RuncRuntime({ runcPath, root: this.runcRoot });
  }

  static async create(): Promise<ContainerFixture> {
    const runcPath = await findRunc();
    if (runcPath === undefined) throw new Error("no runc");
    const layout = await detectCgroupLayout();
    await removeStaleCgroups(layout);
    const dir = await mkdtemp(join(tmpdir(), "wharf-runc-"));
    const prefix = `t${process.pid}-${Date.now().toString(36)}`;
    const fixture = new ContainerFixture(dir, runcPath, layout, prefix);
    await fixture.buildRootfs();
    return fixture;
  }

  private async buildRootfs(): Promise<void> {
    const bin = join(this.rootfs, "bin");
    await mkdir(bin, { recursive: true });
    await mkdir(join(this.rootfs, "etc"), { recursive: true });
    await mkdir(join(this.rootfs, "tmp"), { recursive: true, mode: 0o1777 });
    await copyFile(BUSYBOX, join(bin, "busybox"));
    await Promise.all(APPLETS.map((name) => symlink("busybox", join(bin, name))));
    await writeFile(join(this.rootfs, "etc/passwd"), PASSWD);
    await writeFile(join(this.rootfs, "etc/group"), GROUP);
  }

  /** A fresh runtime over the same state directory, as after an agent restart. */
  restartedRuntime(): RuncRuntime {
    return new RuncRuntime({ runcPath: this.runcPath, root: this.runcRoot });
  }

  /** Builds the spec (busybox image, isolated loopback-only network) and starts it. */
  async start(
    name: string,
    container: ContainerDefinition,
    more: Partial<ContainerSpecInput> = {},
    runtime: RuncRuntime = this.runtime,
  ): Promise<Started> {
    this.counter += 1;
    const id = `${this.prefix}-${this.counter}-${name}`;
    const cgroupsPath = `${CGROUP_PARENT}/${this.prefix}/${this.counter}-${name}`;
    const spec = buildSpec({
      id,
      rootfs: this.rootfs,
      image: { Cmd: ["sh"] },
      container,
      passwd: PASSWD,
      group: GROUP,
      hostname: name,
      newNetns: true,
      cgroupsPath,
      ...more,
    });
    const bundle = join(this.dir, "bundles", id);
    const stdout = join(this.dir, "logs", `${id}.out`);
    const stderr = join(this.dir, "logs", `${id}.err`);
    const record: Started = { id, bundle, stdout, stderr, cgroupsPath, startMs: 0 };
    this.started.push(record);
    const began = performance.now();
    const handle = await runtime.start(spec, bundle, { stdout, stderr }, { timeoutMs: 30_000 });
    record.startMs = performance.now() - began;
    if (handle.pid !== undefined) record.pid = handle.pid;
    return record;
  }

  async output(started: Started): Promise<{ stdout: string; stderr: string }> {
    const [stdout, stderr] = await Promise.all([
      readFile(started.stdout, "utf8"),
      readFile(started.stderr, "utf8"),
    ]);
    return { stdout, stderr };
  }

  /** Removes every container, its cgroups and the temporary directory; never throws. */
  async cleanup(): Promise<void> {
    for (const c of this.started) {
      await this.runtime.remove(c.id, c.bundle).catch(() => undefined);
      await removeCgroup(this.layout, c.cgroupsPath).catch(() => undefined);
    }
    await removeCgroup(this.layout, `${CGROUP_PARENT}/${this.prefix}`).catch(() => undefined);
    await removeCgroup(this.layout, CGROUP_PARENT).catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** Runs that died may have left cgroups behind: remove those of dead runs that are empty. */
async function removeStaleCgroups(layout: CgroupLayout): Promise<void> {
  const base = layout.version === 1 ? layout.controllers.memory : layout.root;
  if (base === undefined) return;
  const runs = await readdir(join(base, CGROUP_PARENT), { withFileTypes: true }).catch(() => []);
  for (const run of runs.filter((e) => e.isDirectory())) {
    // A run whose test process still lives is not stale (test files run side by side).
    const owner = /^t([0-9]+)-/.exec(run.name)?.[1];
    if (owner !== undefined && existsSync(`/proc/${owner}`)) continue;
    const children = await readdir(join(base, CGROUP_PARENT, run.name), { withFileTypes: true }).catch(
      () => [],
    );
    for (const child of children.filter((e) => e.isDirectory())) {
      await removeCgroup(layout, `${CGROUP_PARENT}/${run.name}/${child.name}`).catch(() => undefined);
    }
    await removeCgroup(layout, `${CGROUP_PARENT}/${run.name}`).catch(() => undefined);
  }
}
