import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { prng } from "../../test/support/prng.ts";
import { SqliteStore } from "../store/sqlite.ts";
import { AssignmentCache } from "./assignment-cache.ts";
import { saveCluster } from "./clusters.ts";
import { registerInstance } from "./instance-api.ts";
import { SchedulerState } from "./scheduler-state.ts";
import { newTask, type RunnableDefinition } from "./task-api.ts";
import {
  applyReport,
  assignmentOf,
  findTask,
  requestStop,
  saveTask,
  type TaskRecord,
  tasksForInstance,
} from "./tasks.ts";
import { TEST_NOW, TEST_SCOPE, testCluster, testContext, testInstance, testRegistry } from "./testing.ts";

const scope = TEST_SCOPE;
const NOW = TEST_NOW;
const ctx = testContext;
const registry = testRegistry;
const cluster = testCluster;
const definition: RunnableDefinition = {
  taskDefinitionArn: "arn:aws:ecs:us-east-1:000000000000:task-definition/app:1",
  family: "app",
  revision: 1,
  status: "ACTIVE",
  containerDefinitions: [{ name: "app", image: "busybox", cpu: 32, memory: 64 }],
};

describe("AssignmentCache", () => {
  it("answers as reading and parsing every task would, from the store or from memory, through starts, reports, stops and rollbacks", async () => {
    const store = await SqliteStore.open({ path: ":memory:" });
    const state = await SchedulerState.load(store);
    const cache = new AssignmentCache();
    const instances: string[] = [];
    await store.transaction(async (tx) => {
      await saveCluster(tx, cluster);
      for (const name of ["a", "b", "c"]) {
        const { record } = await registerInstance(
          tx,
          state,
          { ...scope, now: NOW },
          cluster,
          testInstance({ cpu: 100_000, memory: 100_000, hostname: name }),
        );
        instances.push(record.arn);
      }
    });
    const random = prng(7);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
    const live: string[] = [];
    const started: TaskRecord[] = [];
    let answered = 0;
    for (let round = 0; round < 160; round++) {
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
            // As RunTask announces it once committed (sometimes never, as if the announcement were lost).
            if (random() < 0.8) started.push(task);
            return;
          }
          const task = await findTask(tx, target);
          if (task === undefined) return;
          if (action < 0.6) {
            const lastStatus = random() < 0.5 ? ("RUNNING" as const) : ("DEACTIVATING" as const);
            // Sometimes with a reason, so one may arrive after the task was already to stop.
            const reason = random() < 0.5 ? { stoppedReason: `exited ${round}` } : {};
            const report = { taskArn: target, lastStatus, containers: [], at: NOW + round, ...reason };
            // As the agent channel does with a report that the task stops.
            if (lastStatus === "DEACTIVATING") cache.drop(task.wire.containerInstanceArn ?? "", target);
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
      for (const task of started.splice(0)) cache.remember(task);
      for (const arn of instances) {
        const truth = await store.read(async (tx) => (await tasksForInstance(tx, arn)).map(assignmentOf));
        // From memory, when it answers at all, exactly what reading would give.
        const kept = cache.fromMemory(arn, state.assignedVersions(arn));
        if (kept !== undefined) {
          answered++;
          assert.deepEqual(
            kept.map((entry) => JSON.parse(entry.json)),
            truth,
            `round ${round}`,
          );
        }
        // Sometimes a poll reads, sometimes it is answered from memory only.
        if (random() < 0.5) continue;
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
    // Memory answered now and then (an instance with a task to stop is always read), and not only
    // for instances with nothing to run.
    assert.ok(answered > 30, String(answered));
    await store.close();
  });
});
