import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ContainerFixture, prerequisites } from "../runtime/test-fixture.ts";
import {
  type CgroupLayout,
  type CgroupSample,
  cgroupDirs,
  cpuQuotaUs,
  cpuUtilization,
  detectCgroupLayout,
  limitCgroup,
  parseKeyValues,
  parseMountinfo,
  readOomKills,
  removeCgroup,
  sampleCgroup,
} from "./cgroups.ts";

const HYBRID = `
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`;
const COMBINED = `
25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
26 24 0:23 / /sys/fs/cgroup/memory rw,nosuid shared:10 - cgroup cgroup rw,memory
`;
const UNIFIED = `
22 27 0:21 / /proc rw,relatime - proc proc rw
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`;

const AT = new Date("2026-01-01T00:00:00Z");

describe("parseMountinfo", () => {
  it("prefers the v1 memory hierarchy on hybrid hosts", () => {
    assert.deepEqual(parseMountinfo(HYBRID), {
      version: 1,
      controllers: {
        cpu: "/sys/fs/cgroup/cpu",
        cpuacct: "/sys/fs/cgroup/cpuacct",
        memory: "/sys/fs/cgroup/memory",
        "name=systemd": "/sys/fs/cgroup/systemd",
      },
    });
  });
  it("maps co-mounted controllers to one hierarchy", () => {
    const layout = parseMountinfo(COMBINED);
    assert.ok(layout?.version === 1);
    assert.equal(layout.controllers.cpuacct, "/sys/fs/cgroup/cpu,cpuacct");
    assert.deepEqual(cgroupDirs(layout, "/wharf/t/c"), [
      "/sys/fs/cgroup/cpu,cpuacct/wharf/t/c",
      "/sys/fs/cgroup/memory/wharf/t/c",
    ]);
  });
  it("finds the unified hierarchy, and nothing where there is none", () => {
    assert.deepEqual(parseMountinfo(UNIFIED), { version: 2, root: "/sys/fs/cgroup" });
    assert.equal(parseMountinfo("22 27 0:21 / /proc rw - proc proc rw\n"), undefined);
    assert.deepEqual(parseMountinfo("9 1 0:1 / /mnt/my\\040cg rw - cgroup2 cgroup2 rw\n"), {
      version: 2,
      root: "/mnt/my cg",
    });
  });
});

describe("parseKeyValues and cpuUtilization", () => {
  it("reads key-value files, skipping what is not a number", () => {
    const values = parseKeyValues("oom_kill_disable 0\nunder_oom 0\noom_kill 3\nbogus\nname x\n");
    assert.equal(values.get("oom_kill"), 3);
    assert.equal(values.has("name"), false);
  });
  it("gives CPU use as a percentage of the container's units", () => {
    const sample = (cpuNanos: bigint, ms: number): CgroupSample => ({
      cpuNanos,
      memoryBytes: 0,
      at: new Date(AT.getTime() + ms),
    });
    // Half a CPU for one second.
    const a = sample(1_000_000_000n, 0);
    const b = sample(1_500_000_000n, 1000);
    assert.equal(cpuUtilization(a, b, 512), 100);
    assert.equal(cpuUtilization(a, b, 1024), 50);
    assert.equal(cpuUtilization(a, b), 50);
    assert.equal(cpuUtilization(a, b, 0), 50);
    assert.equal(cpuUtilization(a, a, 512), 0);
    assert.equal(cpuUtilization(b, a, 512), 0);
  });
});

describe("sampleCgroup on fixture directories", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "wharf-cgroups-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function files(base: string, contents: Record<string, string>): Promise<void> {
    await mkdir(base, { recursive: true });
    for (const [name, text] of Object.entries(contents)) await writeFile(join(base, name), text);
  }

  it("reads cgroup v2: usage_usec, memory.current less inactive_file, memory.max", async () => {
    const layout: CgroupLayout = { version: 2, root: join(dir, "v2") };
    await files(join(dir, "v2/wharf/t/c"), {
      "cpu.stat": "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n",
      "memory.current": "10485760\n",
      "memory.stat": "anon 8388608\nfile 2097152\ninactive_file 1048576\nactive_file 1048576\n",
      "memory.max": "67108864\n",
      "memory.events": "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
    });
    assert.deepEqual(await sampleCgroup(layout, "/wharf/t/c", () => AT), {
      cpuNanos: 1_234_567_000n,
      memoryBytes: 9437184,
      memoryLimitBytes: 67108864,
      at: AT,
    });
    assert.equal(await readOomKills(layout, "/wharf/t/c"), 1);
    await writeFile(join(dir, "v2/wharf/t/c/memory.max"), "max\n");
    assert.equal((await sampleCgroup(layout, "/wharf/t/c", () => AT)).memoryLimitBytes, undefined);
  });

  it("reads cgroup v1: cpuacct.usage, usage_in_bytes less total_inactive_file, an unlimited limit", async () => {
    const layout: CgroupLayout = {
      version: 1,
      controllers: { cpuacct: join(dir, "v1/cpuacct"), memory: join(dir, "v1/memory") },
    };
    await files(join(dir, "v1/cpuacct/wharf/t/c"), { "cpuacct.usage": "98765432109876543\n" });
    await files(join(dir, "v1/memory/wharf/t/c"), {
      "memory.usage_in_bytes": "5000000\n",
      "memory.stat": "cache 100\ninactive_file 50\ntotal_inactive_file 1000000\n",
      "memory.limit_in_bytes": "9223372036854771712\n",
      "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
    });
    const sample = await sampleCgroup(layout, "/wharf/t/c", () => AT);
    assert.deepEqual(sample, { cpuNanos: 98765432109876543n, memoryBytes: 4000000, at: AT });
    assert.equal(await readOomKills(layout, "/wharf/t/c"), 0);
    assert.equal(await readOomKills(layout, "/wharf/t/missing"), undefined);
    await assert.rejects(sampleCgroup(layout, "/wharf/t/missing"));
  });

  it("puts task-level limits on a v1 task cgroup: a CFS quota for the CPU units, a memory limit", async () => {
    const layout: CgroupLayout = {
      version: 1,
      controllers: {
        cpu: join(dir, "lim1/cpu"),
        cpuacct: join(dir, "lim1/cpu"),
        memory: join(dir, "lim1/mem"),
      },
    };
    await limitCgroup(layout, "/wharf/t", { cpuUnits: 256, memoryMiB: 512 });
    const read = (path: string) => readFile(join(dir, "lim1", path), "utf8");
    assert.equal(await read("cpu/wharf/t/cpu.cfs_period_us"), "100000");
    assert.equal(await read("cpu/wharf/t/cpu.cfs_quota_us"), "25000");
    assert.equal(await read("mem/wharf/t/memory.limit_in_bytes"), String(512 * 1024 * 1024));
    // Only what the task sets: memory alone leaves the CPU hierarchy alone.
    await limitCgroup(layout, "/wharf/u", { memoryMiB: 64 });
    assert.ok(!existsSync(join(dir, "lim1/cpu/wharf/u")));
    await assert.rejects(limitCgroup(layout, "/wharf/../x", { memoryMiB: 64 }));
    assert.equal(cpuQuotaUs(2048), 200_000);
    assert.equal(cpuQuotaUs(1), 1000, "never under the kernel's 1 ms floor");
  });

  it("puts task-level limits on a v2 task cgroup, enabling the controllers on the way down", async () => {
    const root = join(dir, "lim2");
    await mkdir(root, { recursive: true });
    await writeFile(join(root, "cgroup.controllers"), "cpuset cpu io memory pids\n");
    assert.deepEqual(
      await limitCgroup({ version: 2, root }, "/wharf/t", { cpuUnits: 1536, memoryMiB: 1024 }),
      [],
    );
    const read = (path: string) => readFile(join(root, path), "utf8");
    assert.equal(await read("cgroup.subtree_control"), "+cpu +memory");
    assert.equal(await read("wharf/cgroup.subtree_control"), "+cpu +memory");
    assert.equal(await read("wharf/t/cpu.max"), "150000 100000");
    assert.equal(await read("wharf/t/memory.max"), String(1024 * 1024 * 1024));
  });

  it("leaves out, and names, a limit whose controller the host lacks; the others still apply", async () => {
    const root = join(dir, "lim3");
    await mkdir(root, { recursive: true });
    await writeFile(join(root, "cgroup.controllers"), "memory pids\n");
    assert.deepEqual(await limitCgroup({ version: 2, root }, "/wharf/t", { cpuUnits: 512, memoryMiB: 64 }), [
      "cpu",
    ]);
    assert.equal(await readFile(join(root, "wharf/cgroup.subtree_control"), "utf8"), "+memory");
    assert.equal(await readFile(join(root, "wharf/t/memory.max"), "utf8"), String(64 * 1024 * 1024));
    assert.ok(!existsSync(join(root, "wharf/t/cpu.max")));
    const v1: CgroupLayout = { version: 1, controllers: { memory: join(dir, "lim3v1/mem") } };
    assert.deepEqual(await limitCgroup(v1, "/wharf/t", { cpuUnits: 512, memoryMiB: 64 }), ["cpu"]);
    assert.equal(
      await readFile(join(dir, "lim3v1/mem/wharf/t/memory.limit_in_bytes"), "utf8"),
      String(64 * 1024 * 1024),
    );
  });

  it("removes a cgroup from every hierarchy, tolerating missing ones, and refuses odd paths", async () => {
    const layout: CgroupLayout = { version: 1, controllers: { a: join(dir, "rm/a"), b: join(dir, "rm/b") } };
    await mkdir(join(dir, "rm/a/wharf/t"), { recursive: true });
    await removeCgroup(layout, "/wharf/t");
    assert.ok(!existsSync(join(dir, "rm/a/wharf/t")));
    await assert.rejects(removeCgroup(layout, "/"));
    await assert.rejects(removeCgroup(layout, "/wharf/../etc"));
    await assert.rejects(removeCgroup(layout, "wharf"));
  });
});

const skip = await prerequisites();

describe("sampleCgroup on a real container", { skip, timeout: 120_000 }, () => {
  let f: ContainerFixture;
  before(async () => {
    f = await ContainerFixture.create();
  });
  after(async () => {
    await f?.cleanup();
  });

  it("limits a task's cgroup on this host and removes it", async () => {
    const layout = await detectCgroupLayout();
    const path = `/wharf-limit-${randomBytes(4).toString("hex")}`;
    try {
      await limitCgroup(layout, path, { cpuUnits: 512, memoryMiB: 96 });
      const [memory, quota] =
        layout.version === 1
          ? [
              await readFile(join(layout.controllers.memory ?? "", path, "memory.limit_in_bytes"), "utf8"),
              await readFile(join(layout.controllers.cpu ?? "", path, "cpu.cfs_quota_us"), "utf8"),
            ]
          : [
              await readFile(join(layout.root, path, "memory.max"), "utf8"),
              await readFile(join(layout.root, path, "cpu.max"), "utf8"),
            ];
      assert.equal(Number(memory), 96 * 1024 * 1024);
      assert.equal(quota.trim().split(" ")[0], "50000");
    } finally {
      await removeCgroup(layout, path);
    }
    for (const dir of cgroupDirs(layout, path)) assert.ok(!existsSync(dir), `${dir} removed`);
  });

  it("sees a busy container's CPU time grow and its memory under its limit", async () => {
    const layout = await detectCgroupLayout();
    assert.equal(layout.version, f.layout.version);
    const c = await f.start("busy", { cpu: 512, memory: 64, command: ["sh", "-c", "while :; do :; done"] });
    const first = await sampleCgroup(layout, c.cgroupsPath);
    await new Promise((resolve) => setTimeout(resolve, 600));
    const second = await sampleCgroup(layout, c.cgroupsPath);
    assert.ok(second.cpuNanos > first.cpuNanos);
    assert.equal(second.memoryLimitBytes, 64 * 1024 * 1024);
    assert.ok(second.memoryBytes > 0 && second.memoryBytes < 64 * 1024 * 1024);
    // A busy loop holds about one CPU: about 200 % of 512 units (less on a loaded machine).
    const percent = cpuUtilization(first, second, 512);
    assert.ok(percent > 40 && percent < 420, `utilisation ${percent}`);
    assert.equal(await readOomKills(layout, c.cgroupsPath), 0);
    await f.runtime.stop(c.id, c.bundle, 1000);
  });
});

describe("detectCgroupLayout in a network namespace", { skip, timeout: 60_000 }, () => {
  /** detectCgroupLayout in a child node started by `launcher`: "ok" or the error's message. */
  function detectUnder(launcher: string[]): string {
    const script =
      "import('./src/agent/stats/cgroups.ts').then((m) => m.detectCgroupLayout())" +
      ".then(() => console.log('ok'), (e) => console.log(e.message))";
    return execFileSync(
      launcher[0] ?? "",
      [...launcher.slice(1), process.execPath, "--import", "tsx", "-e", script],
      {
        encoding: "utf8",
        timeout: 30_000,
      },
    ).trim();
  }

  it("says how to start the agent when `ip netns exec` hid the cgroup mounts, and works under nsenter", () => {
    const name = `wcg${randomBytes(4).toString("hex")}`;
    execFileSync("ip", ["netns", "add", name]);
    try {
      assert.match(
        detectUnder(["ip", "netns", "exec", name]),
        /ip netns exec.*nsenter --net=\/run\/netns\/NAME/s,
      );
      assert.equal(detectUnder(["nsenter", `--net=/run/netns/${name}`]), "ok");
    } finally {
      execFileSync("ip", ["netns", "delete", name]);
    }
  });
});
