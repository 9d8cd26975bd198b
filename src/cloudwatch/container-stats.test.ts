import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { StatsBatch } from "../shared/agent-protocol.ts";
import { ContainerStats, SAMPLE_RETENTION_MS } from "./container-stats.ts";

const INSTANCE = "arn:aws:ecs:us-east-1:000000000000:container-instance/default/i1";
const TASK = "arn:aws:ecs:us-east-1:000000000000:task/default/t1";
const OTHER = "arn:aws:ecs:us-east-1:000000000000:task/default/t2";

const sample = (taskArn: string, container: string, cpuUtilization: number, at: number) => ({
  taskArn,
  container,
  cpuUtilization,
  memoryBytes: 1_000 * cpuUtilization,
  at,
});

describe("ContainerStats", () => {
  it("keeps each container's latest sample, by task", () => {
    const stats = new ContainerStats(() => 0);
    stats.record(INSTANCE, { samples: [sample(TASK, "web", 10, 1), sample(TASK, "side", 1, 1)] });
    stats.record(INSTANCE, { samples: [sample(TASK, "web", 30, 2), sample(OTHER, "web", 5, 2)] });
    assert.deepEqual(stats.ofTask(TASK), [
      { instanceArn: INSTANCE, ...sample(TASK, "web", 30, 2) },
      { instanceArn: INSTANCE, ...sample(TASK, "side", 1, 1) },
    ]);
    assert.deepEqual(stats.ofTask("arn:aws:ecs:us-east-1:000000000000:task/default/none"), []);
  });

  it("ignores malformed samples", () => {
    const stats = new ContainerStats(() => 0);
    const batch = {
      samples: [
        { taskArn: TASK, container: "web", cpuUtilization: "high", memoryBytes: 1, at: 1 },
        { taskArn: TASK, container: "web", cpuUtilization: Number.NaN, memoryBytes: 1, at: 1 },
        { taskArn: 7, container: "web", cpuUtilization: 1, memoryBytes: 1, at: 1 },
        { taskArn: TASK, container: "web", cpuUtilization: 1, at: 1 },
      ],
    } as unknown as StatsBatch;
    stats.record(INSTANCE, batch);
    assert.deepEqual(stats.ofTask(TASK), []);
  });

  it("forgets containers that stopped reporting", () => {
    let now = 0;
    const stats = new ContainerStats(() => now);
    stats.record(INSTANCE, { samples: [sample(TASK, "web", 10, 0), sample(OTHER, "web", 10, 0)] });
    now = SAMPLE_RETENTION_MS / 2;
    stats.record(INSTANCE, { samples: [sample(OTHER, "web", 20, now)] });
    now = SAMPLE_RETENTION_MS + 1;
    assert.deepEqual(stats.ofTask(TASK), []);
    stats.record(INSTANCE, { samples: [sample(OTHER, "web", 30, now)] });
    assert.equal(stats.ofTask(OTHER)[0]?.cpuUtilization, 30);
    // TASK's sample is gone from memory, not only hidden
    assert.equal(stats.size, 1);
  });
});
