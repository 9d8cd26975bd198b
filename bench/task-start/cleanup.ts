// Removing what the benchmark's agent left on the machine, whether or not the agent is still
// alive: containers under its runc root, mounts under its data directory, its task namespaces,
// its bridge and iptables rules, the cgroups of its tasks, and its files.
import { execFile } from "node:child_process";
import { readdir, readFile, rm, rmdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { NodeNetwork } from "../../src/agent/network/node-network.ts";

const exec = promisify(execFile);

export interface NodeFootprint {
  dataDir: string;
  bridge: string;
  subnet: string;
}

/** Lazily unmounts every mount point under `dir`, deepest first. */
export async function unmountUnder(dir: string): Promise<void> {
  const mounts = await readFile("/proc/self/mounts", "utf8");
  const points = mounts
    .split("\n")
    .map((line) => line.split(" ")[1] ?? "")
    .filter((point) => point === dir || point.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const point of points) {
    await exec("umount", ["-l", point], { timeout: 10_000 }).catch(() => undefined);
  }
}

/** Tears down the node; `taskIds` are the tasks it ran (their namespaces and cgroups). Never throws. */
export async function cleanupNode(node: NodeFootprint, taskIds: readonly string[]): Promise<string[]> {
  const problems: string[] = [];
  const attempt = async (what: string, work: () => Promise<unknown>) => {
    try {
      await work();
    } catch (error) {
      problems.push(`${what}: ${error instanceof Error ? error.message : String(error)}`);
    }
  };
  const runcRoot = join(node.dataDir, "runc");
  await attempt("runc containers", async () => {
    const { stdout } = await exec("runc", ["--root", runcRoot, "list", "-q"], { timeout: 10_000 }).catch(
      () => ({ stdout: "" }),
    );
    for (const id of stdout.split("\n").filter(Boolean)) {
      await exec("runc", ["--root", runcRoot, "delete", "--force", id], { timeout: 15_000 });
    }
  });
  await attempt("mounts", () => unmountUnder(node.dataDir));
  await attempt("network", () =>
    new NodeNetwork({
      bridge: node.bridge,
      subnet: node.subnet,
      stateDir: join(node.dataDir, "network"),
    }).destroy(),
  );
  await attempt("task namespaces", async () => {
    const { stdout } = await exec("ip", ["netns", "list"], { timeout: 10_000 });
    const names = new Set(stdout.split("\n").map((line) => line.split(" ")[0]));
    for (const id of taskIds) {
      if (names.has(`wharf-${id}`)) await exec("ip", ["netns", "del", `wharf-${id}`], { timeout: 10_000 });
    }
  });
  // runc removes a container's own cgroup; the per-task parent the agent names stays behind.
  await attempt("cgroups", () => removeEmptyCgroups(taskIds.map((id) => `wharf/${id}`)));
  await attempt("files", () => rm(node.dataDir, { recursive: true, force: true }));
  return problems;
}

/** Removes the (empty) cgroup directories `relative` under every v1 controller and cgroup2. */
export async function removeEmptyCgroups(relative: readonly string[]): Promise<void> {
  const controllers = await readdir("/sys/fs/cgroup").catch(() => [] as string[]);
  const bases = ["/sys/fs/cgroup", ...controllers.map((c) => join("/sys/fs/cgroup", c))];
  for (const base of bases) {
    for (const path of relative) {
      // Children first: rmdir only removes empty cgroups, and never touches a busy one.
      const full = join(base, path);
      const children = await readdir(full, { withFileTypes: true }).catch(() => []);
      for (const child of children) {
        if (child.isDirectory()) await rmdir(join(full, child.name)).catch(() => undefined);
      }
      await rmdir(full).catch(() => undefined);
    }
  }
}
