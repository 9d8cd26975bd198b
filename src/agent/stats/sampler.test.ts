import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { StatsBatch, TaskAssignment } from "../../shared/agent-protocol.ts";
import type { ContainerState, TaskState } from "../engine/state.ts";
import type { CgroupLayout } from "./cgroups.ts";
import { StatsSampler } from "./sampler.ts";

const TASK_ARN = "arn:aws:ecs:us-east-1:000000000000:task/default/t1";
const START = Date.parse("2026-01-01T00:00:00Z");

function container(name: string, status: ContainerState["status"]): ContainerState {
  return {
    name,
    id: `t1-${name}`,
    bundle: `/b/${name}`,
    rootfs: `/b/${name}/rootfs`,
    status,
    stdout: "",
    stderr: "",
    logOffsets: { stdout: 0, stderr: 0 },
  };
}

function taskState(containers: ContainerState[]): TaskState {
  return {
    taskId: "t1",
    status: "RUNNING",
    containers,
    assignment: {
      taskArn: TASK_ARN,
      containers: [
        { name: "web", image: "busybox", cpu: 512, essential: true },
        { name: "side", image: "busybox", essential: false },
        { name: "done", image: "busybox", essential: false },
      ],
    } as unknown as TaskAssignment,
  };
}

/** What a v1 host's memory and cpuacct hierarchies hold for one container. */
async function writeV1(root: string, name: string, cpuNanos: bigint, usage: number, inactive: number) {
  const cpu = join(root, "cpuacct/wharf/t1", name);
  const memory = join(root, "memory/wharf/t1", name);
  await mkdir(cpu, { recursive: true });
  await mkdir(memory, { recursive: true });
  await writeFile(join(cpu, "cpuacct.usage"), `${cpuNanos}\n`);
  await writeFile(join(memory, "memory.usage_in_bytes"), `${usage}\n`);
  await writeFile(join(memory, "memory.stat"), `cache 100\ntotal_inactive_file ${inactive}\n`);
  await writeFile(join(memory, "memory.limit_in_bytes"), "67108864\n");
}

/** The same for a unified (v2) host. */
async function writeV2(root: string, name: string, cpuNanos: bigint, usage: number, inactive: number) {
  const dir = join(root, "wharf/t1", name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "cpu.stat"), `usage_usec ${cpuNanos / 1000n}\nuser_usec 1\nsystem_usec 1\n`);
  await writeFile(join(dir, "memory.current"), `${usage}\n`);
  await writeFile(join(dir, "memory.stat"), `anon 1\ninactive_file ${inactive}\n`);
  await writeFile(join(dir, "memory.max"), "max\n");
}

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "wharf-sampler-"));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const layouts: Array<{
  version: string;
  layout: (root: string) => CgroupLayout;
  write: typeof writeV1;
}> = [
  {
    version: "v1",
    layout: (root) => ({
      version: 1,
      controllers: {
        cpuacct: join(root, "cpuacct"),
        cpu: join(root, "cpuacct"),
        memory: join(root, "memory"),
      },
    }),
    write: writeV1,
  },
  { version: "v2", layout: (root) => ({ version: 2, root }), write: writeV2 },
];

for (const { version, layout, write } of layouts) {
  describe(`StatsSampler over a cgroup ${version} tree`, () => {
    it("sends each running container's CPU (against its units) and working-set memory from the second sample on", async () => {
      const root = await mkdtemp(join(work, `${version}-`));
      let now = START;
      const tasks = [taskState([container("web", "RUNNING"), container("side", "RUNNING")])];
      const sent: StatsBatch[] = [];
      const sampler = new StatsSampler(
        () => tasks,
        async (batch) => {
          sent.push(batch);
        },
        { detectLayout: async () => layout(root), now: () => new Date(now) },
      );
      await write(root, "web", 1_000_000_000n, 10_000_000, 2_000_000);
      await write(root, "side", 0n, 4_000_000, 0);
      // The first sample is only a baseline: nothing to send.
      assert.deepEqual((await sampler.sample()).samples, []);
      assert.equal(sent.length, 0);

      // One second later: web used half a CPU (512 units: 100% of its share), side a quarter.
      now += 1_000;
      await write(root, "web", 1_500_000_000n, 12_000_000, 3_000_000);
      await write(root, "side", 250_000_000n, 5_000_000, 1_000_000);
      const batch = await sampler.sample();
      assert.deepEqual(sent, [batch]);
      assert.deepEqual(batch.samples, [
        { taskArn: TASK_ARN, container: "web", cpuUtilization: 100, memoryBytes: 9_000_000, at: now },
        { taskArn: TASK_ARN, container: "side", cpuUtilization: 25, memoryBytes: 4_000_000, at: now },
      ]);
    });

    it("skips containers that are not RUNNING or whose cgroup is gone, and starts over when one comes back", async () => {
      const root = await mkdtemp(join(work, `${version}-`));
      let now = START;
      const web = container("web", "RUNNING");
      const tasks = [taskState([web, container("side", "RUNNING"), container("done", "STOPPED")])];
      const sampler = new StatsSampler(
        () => tasks,
        async () => undefined,
        { detectLayout: async () => layout(root), now: () => new Date(now) },
      );
      await write(root, "web", 0n, 1_000, 0);
      await write(root, "done", 0n, 1_000, 0);
      // "side" has no cgroup at all
      await sampler.sample();
      now += 1_000;
      await write(root, "done", 999_000_000n, 1_000, 0);
      assert.deepEqual(
        (await sampler.sample()).samples.map((s) => s.container),
        ["web"],
      );

      web.status = "STOPPED";
      now += 1_000;
      assert.deepEqual((await sampler.sample()).samples, []);
      // Running again (a restarted container): its first sample is a new baseline.
      web.status = "RUNNING";
      now += 1_000;
      assert.deepEqual((await sampler.sample()).samples, []);
      now += 1_000;
      assert.deepEqual(
        (await sampler.sample()).samples.map((s) => s.container),
        ["web"],
      );
    });
  });
}
