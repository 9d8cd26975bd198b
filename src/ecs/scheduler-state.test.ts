import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { prng } from "../../test/support/prng.ts";
import { jsonText } from "../aws/json-text.ts";
import { PlacementSnapshot } from "../scheduler/placement-snapshot.ts";
import { SqliteStore } from "../store/sqlite.ts";
import type { Store, Tx } from "../store/store.ts";
import { saveCluster } from "./clusters.ts";
import { registerInstance } from "./instance-api.ts";
import { findInstance, hashToken, instanceUsage, saveInstance } from "./instances.ts";
import { InstanceNotifier } from "./notifier.ts";
import { SchedulerState } from "./scheduler-state.ts";
import { newTask, type RunnableDefinition, taskOperations } from "./task-api.ts";
import { taskDefinitionOperations } from "./task-definition-api.ts";
import { applyReport, findTask, requestStop, saveTask, type TaskRecord } from "./tasks.ts";
import { TEST_NOW, TEST_SCOPE, testCluster, testContext, testInstance, testRegistry } from "./testing.ts";

const scope = TEST_SCOPE;
const NOW = TEST_NOW;
const ctx = testContext;
const registry = testRegistry;
const cluster = testCluster;

function definition(n: number): RunnableDefinition {
  const port = [undefined, 80, 8080][n % 3];
  return {
    taskDefinitionArn: `arn:aws:ecs:us-east-1:000000000000:task-definition/app:${n}`,
    family: "app",
    revision: n,
    status: "ACTIVE",
    containerDefinitions: [
      {
        name: "app",
        image: "busybox",
        cpu: 32 * (n % 4),
        memory: 64 + n,
        ...(port === undefined ? {} : { portMappings: [{ containerPort: 80, hostPort: port }] }),
      },
    ],
  };
}

/** The state's totals of an instance against the sum of its tasks in the store. */
async function assertMatchesStore(store: Store, state: SchedulerState, instances: string[]): Promise<void> {
  for (const arn of instances) {
    const usage = await store.read((tx) => instanceUsage(tx, arn));
    const totals = state.totals(arn);
    const ports = (counts: ReadonlyMap<number, number> | undefined) =>
      [...(counts ?? [])].flatMap(([port, n]) => Array.from({ length: n }, () => port)).sort();
    assert.deepEqual(
      {
        cpu: totals?.cpu ?? 0,
        memory: totals?.memory ?? 0,
        tcp: ports(totals?.tcp),
        udp: ports(totals?.udp),
        groups: Object.fromEntries(totals?.groups ?? []),
      },
      {
        cpu: usage.cpu,
        memory: usage.memory,
        tcp: [...usage.tcp].sort(),
        udp: [...usage.udp].sort(),
        groups: Object.fromEntries(usage.groups),
      },
      `totals of ${arn}`,
    );
  }
}

describe("SchedulerState", () => {
  it("equals the store's sums after random starts, reports, stops and rollbacks, and after a reload", async () => {
    const store = await SqliteStore.open({ path: ":memory:" });
    const state = await SchedulerState.load(store);
    const instances: string[] = [];
    await store.transaction(async (tx) => {
      await saveCluster(tx, cluster);
      for (const zone of ["a", "b", "c"]) {
        const { record } = await registerInstance(
          tx,
          state,
          { ...scope, now: NOW },
          cluster,
          testInstance({ cpu: 100_000, memory: 100_000, zone }),
        );
        instances.push(record.arn);
      }
    });
    const random = prng(11);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
    const live: string[] = [];
    // The placement views kept between calls, and the spread loads asked of them, follow every change.
    const spreads = ["attribute:ecs.availability-zone", "instanceId"].flatMap((field) =>
      ["service:web", "family:app"].map((group) => ({ field, group })),
    );
    const assertPlacementFresh = () => {
      const kept = state.placement(cluster.arn, "EC2", NOW);
      const fresh = new PlacementSnapshot(state.snapshot(cluster.arn, "EC2", NOW).map((s) => s.view));
      assert.deepEqual(kept.views, fresh.views);
      for (const { field, group } of spreads) {
        const loads = (s: { ids: Int32Array; load: Float64Array }) => [...s.ids].map((id) => s.load[id]);
        assert.deepEqual(
          loads(kept.spread(field, group)),
          loads(fresh.spread(field, group)),
          `${field} ${group}`,
        );
      }
    };
    assertPlacementFresh();
    for (let round = 0; round < 60; round++) {
      // Several transactions at once, so some share a commit.
      const work = Array.from({ length: 6 }, async () => {
        const action = random();
        const target = live.length === 0 ? undefined : pick(live);
        await store
          .transaction(async (tx) => {
            if (action < 0.45 || target === undefined) {
              const group = random() < 0.5 ? { group: "service:web" } : {};
              const task = newTask(
                {
                  ctx,
                  cluster,
                  definition: definition(Math.floor(random() * 9)),
                  input: { taskDefinition: "x", ...group },
                  registry,
                },
                pick(instances),
                undefined,
              );
              await saveTask(tx, task, NOW, state);
              tx.afterCommit(() => live.push(task.wire.taskArn));
            } else {
              const task = await findTask(tx, target);
              if (task === undefined) return;
              if (action < 0.65) {
                // Reports as agents send them, some repeated, some stopping the task; a few read twice.
                const lastStatus = pick(["RUNNING", "RUNNING", "DEACTIVATING", "STOPPED"] as const);
                const report = { taskArn: target, lastStatus, containers: [], at: NOW + round };
                if (applyReport(task, report)) await saveTask(tx, task, NOW + round, state);
                if (random() < 0.3) {
                  const again = await findTask(tx, target);
                  if (again !== undefined && requestStop(again, "test", "UserInitiated", NOW + round))
                    await saveTask(tx, again, NOW + round, state);
                }
              } else if (action < 0.85) {
                if (requestStop(task, "test", "UserInitiated", NOW, true))
                  await saveTask(tx, task, NOW, state);
              } else {
                requestStop(task, "test", "UserInitiated", NOW, true);
                await saveTask(tx, task, NOW, state);
                throw new Error("rolled back");
              }
            }
          })
          .catch(() => undefined);
      });
      await Promise.all(work);
      assertPlacementFresh();
    }
    await assertMatchesStore(store, state, instances);
    await assertMatchesStore(store, await SchedulerState.load(store), instances);
    // Saves that set only the columns that changed leave every row's columns as its body says.
    const rows = await store.read((tx) =>
      tx.all<{
        last_status: string;
        desired_status: string;
        stopped_at: number | null;
        version: number;
        body: string;
      }>("SELECT last_status, desired_status, stopped_at, version, body FROM ecs_tasks"),
    );
    assert.ok(
      rows.some((row) => row.last_status === "STOPPED") && rows.some((row) => row.last_status === "RUNNING"),
    );
    for (const row of rows) {
      const { wire } = JSON.parse(row.body) as TaskRecord;
      assert.deepEqual(
        [row.last_status, row.desired_status, row.stopped_at, row.version],
        [wire.lastStatus, wire.desiredStatus, wire.stoppedAt ?? null, wire.version],
      );
    }
    // The snapshot's views say what is left.
    const snapshot = state.snapshot(cluster.arn, "EC2", NOW);
    assert.deepEqual(
      snapshot.map((s) => s.view.arn),
      [...instances].sort(),
    );
    for (const { view } of snapshot) {
      assert.equal(view.remaining.cpu, 100_000 - (state.totals(view.arn)?.cpu ?? 0));
      assert.equal(view.connected, true);
    }
    await store.close();
  });

  it("keeps heartbeats in memory, writes them out on flush, and drops an instance that goes INACTIVE", async () => {
    const store = await SqliteStore.open({ path: ":memory:" });
    const state = await SchedulerState.load(store);
    const { record } = await store.transaction(async (tx) => {
      await saveCluster(tx, cluster);
      return registerInstance(
        tx,
        state,
        { ...scope, now: NOW },
        cluster,
        testInstance({ cpu: 1024, memory: 1024 }),
      );
    });
    const later = NOW + 100_000;
    assert.equal(state.snapshot(cluster.arn, "EC2", later)[0]?.view.connected, false);
    state.heartbeat(record.arn, later);
    assert.equal(state.snapshot(cluster.arn, "EC2", later)[0]?.view.connected, true);
    assert.equal((await store.read((tx) => findInstance(tx, record.arn)))?.lastHeartbeat, NOW);
    await state.flush(store);
    assert.equal((await store.read((tx) => findInstance(tx, record.arn)))?.lastHeartbeat, later);
    // A restarted server knows the flushed heartbeat.
    const reloaded = await SchedulerState.load(store);
    assert.equal(reloaded.snapshot(cluster.arn, "EC2", later)[0]?.lastHeartbeat, later);
    await store.transaction((tx) => saveInstance(tx, { ...record, status: "INACTIVE" }, state));
    assert.deepEqual(state.snapshot(cluster.arn, "EC2", later), []);
    await store.close();
  });

  it("writes heartbeats out a share at a time, each instance in turn, and every one on close", async () => {
    const store = await SqliteStore.open({ path: ":memory:" });
    const state = await SchedulerState.load(store);
    const arns = await store.transaction(async (tx) => {
      await saveCluster(tx, cluster);
      const registered: string[] = [];
      for (let i = 0; i < 25; i++) {
        const { record } = await registerInstance(
          tx,
          state,
          { ...scope, now: NOW },
          cluster,
          testInstance({ cpu: 1024, memory: 1024 }),
        );
        registered.push(record.arn);
      }
      return registered;
    });
    const stored = async (at: number) =>
      (
        await store.read((tx) =>
          tx.get<{ n: number }>(
            "SELECT COUNT(*) AS n FROM ecs_container_instances WHERE last_heartbeat = ?",
            at,
          ),
        )
      )?.n;
    const later = NOW + 5_000;
    for (const arn of arns) state.heartbeat(arn, later);
    const written: Array<number | undefined> = [];
    for (let i = 0; i < 4; i++) {
      await state.flush(store, 10);
      written.push(await stored(later));
    }
    // Ten looked at a flush: the third goes round to the first ten again, which have nothing new.
    assert.deepEqual(written, [10, 20, 25, 25]);
    // Heard from again: the next flushes take up where the last stopped.
    const again = NOW + 15_000;
    for (const arn of arns) state.heartbeat(arn, again);
    await state.flush(store, 10);
    assert.equal(await stored(again), 10);
    // Closing writes whatever is left.
    await state.close(store);
    assert.equal(await stored(again), 25);
    // Started, it writes every instance's within a round of ticks (here 20 ms each).
    const last = NOW + 25_000;
    for (const arn of arns) state.heartbeat(arn, last);
    state.start(store, 200);
    try {
      const deadline = Date.now() + 10_000;
      while ((await stored(last)) !== 25 && Date.now() < deadline) await delay(20);
      assert.equal(await stored(last), 25);
    } finally {
      await state.close(store);
    }
    await store.close();
  });

  it("knows the agent token of every instance not INACTIVE as the rows do, through re-registrations, deregistrations and rollbacks", async () => {
    const store = await SqliteStore.open({ path: ":memory:" });
    const state = await SchedulerState.load(store);
    await store.transaction((tx) => saveCluster(tx, cluster));
    const random = prng(5);
    const arns: string[] = [];
    const given: string[] = [];
    const register = (tx: Tx, arn?: string) =>
      registerInstance(
        tx,
        state,
        { ...scope, now: NOW },
        cluster,
        testInstance({ cpu: 1024, memory: 1024, ...(arn === undefined ? {} : { arn }) }),
      );
    for (let step = 0; step < 80; step++) {
      const action = random();
      const target = arns.length === 0 ? undefined : arns[Math.floor(random() * arns.length)];
      await store
        .transaction(async (tx) => {
          if (action < 0.35 || target === undefined) {
            const { record, token } = await register(tx);
            tx.afterCommit(() => arns.push(record.arn));
            given.push(hashToken(token));
          } else if (action < 0.65) {
            given.push(hashToken((await register(tx, target)).token));
          } else if (action < 0.8) {
            const record = await findInstance(tx, target);
            if (record !== undefined) await saveInstance(tx, { ...record, status: "INACTIVE" }, state);
          } else {
            given.push(hashToken((await register(tx, target)).token));
            throw new Error("rolled back");
          }
        })
        .catch(() => undefined);
      for (const candidate of [state, await SchedulerState.load(store)]) {
        const rows = await store.read((tx) =>
          tx.all<{ arn: string; status: string; token_hash: string }>(
            "SELECT arn, status, token_hash FROM ecs_container_instances",
          ),
        );
        const live = new Map(rows.filter((r) => r.status !== "INACTIVE").map((r) => [r.token_hash, r.arn]));
        for (const hash of given)
          assert.equal(candidate.instanceByToken(hash), live.get(hash), `step ${step}`);
      }
    }
    await store.close();
  });

  it("never lets RunTasks that share a commit book the same capacity twice", async () => {
    const store = await SqliteStore.open({ path: ":memory:" });
    const state = await SchedulerState.load(store);
    await store.transaction(async (tx) => {
      await saveCluster(tx, cluster);
      // Room for exactly five tasks of 128 MiB.
      await registerInstance(
        tx,
        state,
        { ...scope, now: NOW },
        cluster,
        testInstance({ cpu: 4096, memory: 5 * 128 }),
      );
    });
    await taskDefinitionOperations(store).RegisterTaskDefinition?.(
      { family: "web", containerDefinitions: [{ name: "web", image: "busybox", memory: 128 }] },
      ctx,
    );
    const run = taskOperations(store, new InstanceNotifier(), registry, state).RunTask;
    const answers = (
      await Promise.all(Array.from({ length: 4 }, () => run?.({ taskDefinition: "web", count: 3 }, ctx)))
    ).map((answer) => JSON.parse(jsonText(answer))) as Array<{
      tasks: unknown[];
      failures: Array<{ reason: string }>;
    }>;
    assert.equal(
      answers.reduce((n, a) => n + a.tasks.length, 0),
      5,
    );
    assert.ok(answers.some((a) => a.failures.some((f) => f.reason === "RESOURCE:MEMORY")));
    const arn = state.snapshot(cluster.arn, "EC2", NOW)[0]?.view.arn ?? "";
    assert.equal(state.totals(arn)?.memory, 5 * 128);
    assert.equal((await store.read((tx) => instanceUsage(tx, arn))).memory, 5 * 128);
    await store.close();
  });
});
