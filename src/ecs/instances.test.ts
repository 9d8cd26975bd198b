import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SqliteStore } from "../store/sqlite.ts";
import { instanceUsage } from "./instances.ts";
import { insertTask, requestStop, saveTask, type TaskWrites } from "./tasks.ts";
import { TEST_NOW, testTask } from "./testing.ts";

const noWrites: TaskWrites = { taskSaved: () => {} };
const INSTANCE = "arn:aws:ecs:us-east-1:000000000000:container-instance/default/i";

describe("instanceUsage", () => {
  it("counts as ECS does: running = desired RUNNING, pending = not yet RUNNING", async () => {
    const store = await SqliteStore.open({ path: ":memory:" });
    try {
      await store.transaction(async (tx) => {
        const pending = testTask();
        const running = testTask();
        running.wire.lastStatus = "RUNNING";
        const stopping = testTask();
        stopping.wire.lastStatus = "DEACTIVATING";
        requestStop(stopping, "Task stopped by user", "UserInitiated", TEST_NOW);
        for (const task of [pending, running, stopping]) await insertTask(tx, task, TEST_NOW, noWrites);
        const usage = await instanceUsage(tx, INSTANCE);
        // ECS: runningTasksCount is "the number of tasks on the container instance that have a
        // desired status (desiredStatus) of RUNNING"; pendingTasksCount those "in the PENDING status".
        assert.equal(usage.running, 2, "the PENDING task and the RUNNING one, not the one stopping");
        assert.equal(usage.pending, 1, "the PENDING one alone");
        stopping.wire.lastStatus = "STOPPED";
        await saveTask(tx, stopping, TEST_NOW, noWrites);
        assert.deepEqual([(await instanceUsage(tx, INSTANCE)).running, usage.pending], [2, 1]);
      });
    } finally {
      await store.close();
    }
  });
});
