// CPU and memory of running containers: sampled by the agent from their cgroups and sent over the
// agent channel (/agent/v1/stats) to the server, which keeps each container's latest sample.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { cleanupAgent, eventually, pushBusybox, startTestAgent, type TestAgent } from "./agent-harness.ts";
import { aws, registerTaskDefinitionCli, startTestServer, type TestServer } from "./helpers.ts";

let server: TestServer;
let agent: TestAgent;
let image: string;

before(async () => {
  server = await startTestServer();
  image = await pushBusybox(server, "busybox-stats");
  agent = await startTestAgent(server, { config: { statsIntervalMs: 500 } });
});

after(async () => {
  await agent?.stop();
  if (agent !== undefined) await cleanupAgent(agent);
  await server?.stop();
});

describe("container stats", () => {
  it("reach the server from a running task's containers", async () => {
    const arn = await registerTaskDefinitionCli(server, {
      family: "stats",
      containerDefinitions: [
        // a busy loop, and 16 MiB held in a shell variable
        {
          name: "busy",
          image,
          cpu: 256,
          memory: 128,
          command: ["sh", "-c", 'x=$(head -c 16777216 /dev/zero | tr "\\000" a); while :; do :; done'],
          stopTimeout: 2,
        },
        { name: "idle", image, memory: 64, command: ["sleep", "300"], essential: false, stopTimeout: 2 },
      ],
    });
    const run = await aws(server, ["ecs", "run-task", "--task-definition", arn]);
    assert.equal(run.code, 0, run.stderr);
    const taskArn = (run.json as { tasks: Array<{ taskArn: string }> }).tasks[0]?.taskArn ?? "";

    const samples = await eventually(
      "a sample of each container, the busy one's past its memory",
      async () => {
        const latest = server.stats.ofTask(taskArn);
        const busy = latest.find((s) => s.container === "busy");
        return busy !== undefined && busy.memoryBytes >= 16 * 1024 * 1024 && latest.length === 2
          ? latest
          : undefined;
      },
    );
    const by = new Map(samples.map((s) => [s.container, s]));
    const busy = by.get("busy");
    const idle = by.get("idle");
    assert.equal(busy?.instanceArn, agent.agent.containerInstanceArn);
    assert.ok((busy?.cpuUtilization ?? 0) > 0, `busy loop CPU ${busy?.cpuUtilization}`);
    assert.ok((idle?.memoryBytes ?? 0) > 0, "the idle container has a working set");
    assert.ok((busy?.memoryBytes ?? 0) > (idle?.memoryBytes ?? 0), "the busy container holds more memory");

    const stop = await aws(server, ["ecs", "stop-task", "--task", taskArn]);
    assert.equal(stop.code, 0, stop.stderr);
    await eventually("STOPPED", async () => {
      const result = await aws(server, ["ecs", "describe-tasks", "--tasks", taskArn]);
      const task = (result.json as { tasks: Array<{ lastStatus: string }> }).tasks[0];
      return task?.lastStatus === "STOPPED" ? true : undefined;
    });
  });
});
