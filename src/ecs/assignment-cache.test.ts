import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { RequestContext } from "../aws/service.ts";
import { SqliteStore } from "../store/sqlite.ts";
import { AssignmentCache } from "./assignment-cache.ts";
import { type ClusterRecord, clusterArn, saveCluster } from "./clusters.ts";
import { registerInstance } from "./instance-api.ts";
import { SchedulerState } from "./scheduler-state.ts";
import { newTask, type RunnableDefinition } from "./task-api.ts";
import { applyReport, assignmentOf, findTask, requestStop, saveTask, tasksForInstance } from "./tasks.ts";

const scope = { region: "us-east-1", accountId: "000000000000" };
const NOW = Date.UTC(2030, 0, 1);
const ctx: RequestContext = {
  requestId: "r",
  ...scope,
  identity: { accessKeyId: "AKIDTEST" },
  now: new Date(NOW),
};
const registry = { host: () => "localhost:1", credentials: () => ({ username: "AWS", password: "t" }) };
const cluster: ClusterRecord = {
  arn: clusterArn(scope, "default"),
  name: "default",
  status: "ACTIVE",
  settings: [],
  capacityProviders: [],
  defaultCapacityProviderStrategy: [],
  createdAt: NOW,
  updatedAt: NOW,
};
const definition: RunnableDefinition = {
  taskDefinitionArn: "arn:aws:ecs:us-east-1:000000000000:task-definition/app:1",
  family: "app",
  revision: 1,
  status: "ACTIVE",
  containerDefinitions: [{ name: "app", image: "busybox", cpu: 32, memory: 64 }],
};

function seeded(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("AssignmentCache", () => {
  it("answers as reading and parsing every task would, through starts, reports, stops and rollbacks", async () => {
    const store = await SqliteStore.open({ path: ":memory:" });
    const state = await SchedulerState.load(store);
    const cache = new AssignmentCache();
    const instances: string[] = [];
    await store.transaction(async (tx) => {
      await saveCluster(tx, cluster);
      for (const name of ["a", "b", "c"]) {
        const { record } = await registerInstance(tx, state, { ...scope, now: NOW }, cluster, {
          cpu: 100_000,
          memory: 100_000,
          attributes: [],
          versionInfo: { agentVersion: "test" },
          hostname: name,
          address: "127.0.0.1",
          capacity: "EC2",
        });
        instances.push(record.arn);
      }
    });
    const random = seeded(7);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
    const live: string[] = [];
    for (let round = 0; round < 80; round++) {
      const action = random();
      const target = live.length === 0 ? undefined : pick(live);
      await store
        .transaction(async (tx) => {
          if (action < 0.4 || target === undefined) {
            const task = newTask(
              { ctx, cluster, definition, input: { taskDefinition: "app" }, registry },
              pick(instances),
              undefined,
            );
            await saveTask(tx, task, NOW + round, state);
            tx.afterCommit(() => live.push(task.wire.taskArn));
            return;
          }
          const task = await findTask(tx, target);
          if (task === undefined) return;
          if (action < 0.6) {
            const lastStatus = random() < 0.5 ? ("RUNNING" as const) : ("DEACTIVATING" as const);
            const report = { taskArn: target, lastStatus, containers: [], at: NOW };
            if (applyReport(task, report)) await saveTask(tx, task, NOW, state);
          } else if (action < 0.8) {
            if (requestStop(task, "test", "UserInitiated", NOW, random() < 0.5))
              await saveTask(tx, task, NOW, state);
          } else {
            requestStop(task, "test", "UserInitiated", NOW);
            await saveTask(tx, task, NOW, state);
            throw new Error("rolled back");
          }
        })
        .catch((error: unknown) => {
          if (!(error instanceof Error) || error.message !== "rolled back") throw error;
        });
      for (const arn of instances) {
        const cached = (await store.read((tx) => cache.read(tx, arn))).map((entry) => {
          const assignment = JSON.parse(entry.json) as { taskArn: string; version: number };
          assert.equal(entry.taskArn, assignment.taskArn);
          assert.equal(entry.version, assignment.version);
          return assignment;
        });
        const parsed = await store.read(async (tx) => (await tasksForInstance(tx, arn)).map(assignmentOf));
        assert.deepEqual(cached, parsed);
      }
    }
    await store.close();
  });
});
