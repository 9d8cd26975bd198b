import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SqliteStore } from "../store/sqlite.ts";
import { saveCluster } from "./clusters.ts";
import { instanceOperations, registerInstance } from "./instance-api.ts";
import { findInstance } from "./instances.ts";
import { InstanceNotifier } from "./notifier.ts";
import { SchedulerState } from "./scheduler-state.ts";
import { TEST_NOW, TEST_SCOPE, testCluster, testContext, testInstance } from "./testing.ts";

describe("DeregisterContainerInstance", () => {
  it("answers with the agent's latest heartbeat, which memory holds ahead of the row", async () => {
    const store = await SqliteStore.open({ path: ":memory:" });
    try {
      const state = await SchedulerState.load(store);
      // Registered a minute ago; its agent polled just now, which only memory knows yet.
      const { record } = await store.transaction(async (tx) => {
        await saveCluster(tx, testCluster);
        return registerInstance(
          tx,
          state,
          { ...TEST_SCOPE, now: TEST_NOW - 60_000 },
          testCluster,
          testInstance({ cpu: 1024, memory: 1024 }),
        );
      });
      state.heartbeat(record.arn, TEST_NOW);
      const deregister = instanceOperations(store, new InstanceNotifier(), state).DeregisterContainerInstance;
      const out = (await deregister?.(
        { cluster: testCluster.name, containerInstance: record.arn },
        testContext,
      )) as { containerInstance: { status: string; agentConnected: boolean } };
      assert.equal(out.containerInstance.status, "INACTIVE");
      assert.equal(out.containerInstance.agentConnected, true);
      // And the row keeps it.
      assert.equal((await store.read((tx) => findInstance(tx, record.arn)))?.lastHeartbeat, TEST_NOW);
    } finally {
      await store.close();
    }
  });
});
