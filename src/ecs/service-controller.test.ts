import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { RequestContext } from "../aws/service.ts";
import type { TaskReport } from "../shared/agent-protocol.ts";
import { SqliteStore } from "../store/sqlite.ts";
import { type ClusterRecord, clusterArn, saveCluster } from "./clusters.ts";
import { registerInstance } from "./instance-api.ts";
import { findInstance, saveInstance } from "./instances.ts";
import { InstanceNotifier } from "./notifier.ts";
import { SchedulerState } from "./scheduler-state.ts";
import { serviceOperations } from "./service-api.ts";
import { FULL_READ_MS, ServiceController, type ServiceControllerOptions } from "./service-controller.ts";
import { eventsSinceLastAction } from "./services.ts";
import { taskDefinitionOperations } from "./task-definition-api.ts";
import {
  applyReport,
  findTask,
  recordOf,
  requestStop,
  saveTask,
  TASK_COLUMNS,
  type TaskRecord,
  type TaskRow,
  type TaskWrites,
} from "./tasks.ts";
import { testInstance } from "./testing.ts";

/**
 * The controller against a real (in-memory) store, with no agents: instances
 * are registered directly and task states are reported as an agent would.
 */

const scope = { region: "us-east-1", accountId: "000000000000" };
let store: SqliteStore;
let state: SchedulerState;
let now = Date.UTC(2030, 0, 1);
const clock = () => new Date(now);
const ctx = (): RequestContext => ({
  requestId: "r",
  ...scope,
  identity: { accessKeyId: "AKIDTEST" },
  now: clock(),
});
const ops = () => serviceOperations(store, () => undefined);
/**
 * A controller over the test's store and clock. Its tasks count toward minimumHealthyPercent as
 * soon as they run (ECS's 40 s wait for tasks without a health check is reconcile.test.ts's).
 */
const controller = (
  options: Partial<
    Pick<ServiceControllerOptions, "agentTimeoutMs" | "startBatch" | "watchMs" | "resyncMs">
  > = {},
) =>
  new ServiceController({
    store,
    notifier: new InstanceNotifier(),
    registry: { host: () => "localhost:1", credentials: () => ({ username: "AWS", password: "token" }) },
    ...scope,
    clock,
    state,
    uncheckedHealthyAfterMs: 0,
    ...options,
  });
let cluster: ClusterRecord;
const instances: string[] = [];

async function tasksOf(service: string): Promise<TaskRecord[]> {
  const rows = await store.read((tx) =>
    tx.all<TaskRow>(
      `SELECT ${TASK_COLUMNS} FROM ecs_tasks WHERE service_name = ? ORDER BY created_at, arn`,
      service,
    ),
  );
  return rows.map(recordOf);
}

/** Reports tasks as their agent would: RUNNING, or STOPPED once asked to stop. */
async function agentsCatchUp(service: string): Promise<void> {
  const tasks = await tasksOf(service);
  await store.transaction(async (tx) => {
    for (const { wire } of tasks) {
      if (wire.lastStatus === "STOPPED") continue;
      const task = await findTask(tx, wire.taskArn);
      if (task === undefined) continue;
      const stopping = task.wire.desiredStatus === "STOPPED";
      const report: TaskReport = {
        taskArn: wire.taskArn,
        lastStatus: stopping ? "STOPPED" : "RUNNING",
        containers: task.wire.containers.map((c) => ({
          name: c.name,
          lastStatus: stopping ? "STOPPED" : "RUNNING",
        })),
        at: now,
      };
      if (applyReport(task, report)) await saveTask(tx, task, now, state);
    }
  });
}

async function describeService(name: string, cluster = "default"): Promise<Record<string, unknown>> {
  const out = (await ops().DescribeServices?.({ cluster, services: [name] }, ctx())) as {
    services: Array<Record<string, unknown>>;
  };
  return out.services[0] ?? {};
}

before(async () => {
  store = await SqliteStore.open({ path: ":memory:" });
  state = await SchedulerState.load(store);
  cluster = {
    arn: clusterArn(scope, "default"),
    name: "default",
    status: "ACTIVE",
    settings: [],
    capacityProviders: [],
    defaultCapacityProviderStrategy: [],
    createdAt: now,
    updatedAt: now,
  };
  await store.transaction(async (tx) => {
    await saveCluster(tx, cluster);
    for (const zone of ["us-east-1a", "us-east-1b"]) {
      const { record } = await registerInstance(
        tx,
        state,
        { ...scope, now },
        cluster,
        testInstance({ cpu: 2048, memory: 2048, zone }),
      );
      instances.push(record.arn);
    }
  });
  const register = taskDefinitionOperations(store).RegisterTaskDefinition;
  for (const command of [
    ["sleep", "1"],
    ["sleep", "2"],
  ]) {
    await register?.(
      { family: "app", containerDefinitions: [{ name: "app", image: "busybox", memory: 64, command }] },
      ctx(),
    );
  }
});

after(async () => {
  await store.close();
});

describe("the service controller", () => {
  it("starts a service's tasks as service tasks, and a second pass starts none", async () => {
    const created = (await ops().CreateService?.(
      { serviceName: "api", taskDefinition: "app:1", desiredCount: 3 },
      ctx(),
    )) as { service: { serviceArn: string; deployments: Array<{ id: string }> } };
    const arn = created.service.serviceArn;
    const deploymentId = created.service.deployments[0]?.id;
    const scheduler = controller();
    assert.equal(await scheduler.reconcile(arn), true);
    const tasks = await tasksOf("api");
    assert.equal(tasks.length, 3);
    for (const task of tasks) {
      assert.equal(task.wire.startedBy, deploymentId);
      assert.equal(task.wire.group, "service:api");
      assert.equal(task.serviceName, "api");
      assert.equal(task.wire.lastStatus, "PENDING");
    }
    assert.deepEqual(new Set(tasks.map((t) => t.wire.containerInstanceArn)), new Set(instances));
    // Each task is in its instance's zone (the first instance registered in us-east-1a).
    for (const task of tasks) {
      const zone = task.wire.containerInstanceArn === instances[0] ? "us-east-1a" : "us-east-1b";
      assert.equal(task.wire.availabilityZone, zone);
    }
    assert.equal(await scheduler.reconcile(arn), false, "nothing to do while the tasks start");
    assert.equal((await tasksOf("api")).length, 3);

    now += 1000;
    await agentsCatchUp("api");
    assert.equal(await scheduler.reconcile(arn), true);
    const service = await describeService("api");
    assert.equal(service.runningCount, 3);
    const events = service.events as Array<{ message: string }>;
    assert.deepEqual(
      events.slice(0, 2).map((e) => e.message),
      [
        "(service api) has reached a steady state.",
        `(service api) (deployment ${deploymentId}) deployment completed.`,
      ],
    );
    assert.equal(await scheduler.reconcile(arn), false);
    // What a pass judges repeats against: the events since the service last started tasks.
    const since = await store.read((tx) => eventsSinceLastAction(tx, arn, "api"));
    assert.deepEqual(
      since.map((e) => e.message),
      events.slice(0, 2).map((e) => e.message),
    );
  });

  it("resumes a deployment after a restart without starting any task twice", async () => {
    const updated = (await ops().UpdateService?.({ service: "api", taskDefinition: "app:2" }, ctx())) as {
      service: { serviceArn: string; deployments: Array<{ id: string; status: string }> };
    };
    const arn = updated.service.serviceArn;
    const next = updated.service.deployments[0]?.id;
    await controller().reconcile(arn);
    const started = (await tasksOf("api")).filter((t) => t.wire.startedBy === next);
    assert.equal(started.length, 3, "maximumPercent 200 starts all three at once");
    // The first controller is gone; a new one picks up from the store.
    const restarted = controller();
    assert.equal(await restarted.reconcile(arn), false);
    assert.equal((await tasksOf("api")).filter((t) => t.wire.startedBy === next).length, 3);
    for (let round = 0; round < 4; round++) {
      now += 1000;
      await agentsCatchUp("api");
      await restarted.reconcile(arn);
    }
    const service = await describeService("api");
    const deployments = service.deployments as Array<{ id: string; rolloutState: string }>;
    assert.deepEqual(
      deployments.map((d) => [d.id, d.rolloutState]),
      [[next, "COMPLETED"]],
    );
    const live = (await tasksOf("api")).filter((t) => t.wire.lastStatus !== "STOPPED");
    assert.equal(live.length, 3);
    assert.ok(live.every((t) => t.wire.startedBy === next));
  });

  it("replaces the tasks of an instance whose agent is lost, once the controller has waited the timeout", async () => {
    const [kept, lost] = instances as [string, string];
    now += 60_000;
    await store.transaction(async (tx) => {
      const record = await findInstance(tx, kept);
      if (record !== undefined) await saveInstance(tx, { ...record, lastHeartbeat: now }, state);
    });
    const arn = "arn:aws:ecs:us-east-1:000000000000:service/default/api";
    const onLost = (await tasksOf("api")).filter(
      (t) => t.wire.lastStatus !== "STOPPED" && t.wire.containerInstanceArn === lost,
    );
    assert.ok(onLost.length > 0);
    await controller({ agentTimeoutMs: 30_000 }).reconcile(arn);
    for (const { wire } of onLost) {
      const task = await store.read((tx) => findTask(tx, wire.taskArn));
      assert.equal(task?.wire.lastStatus, "STOPPED");
      assert.equal(task?.wire.stopCode, "ServiceSchedulerInitiated");
    }
    const live = (await tasksOf("api")).filter((t) => t.wire.lastStatus !== "STOPPED");
    assert.equal(live.length, 3);
    assert.ok(live.every((t) => t.wire.containerInstanceArn === kept));
  });

  it("follows its tasks through their writes from one pass to the next, and reads every row again in time", async () => {
    const heartbeat = async () => {
      for (const instance of instances) {
        await store.transaction(async (tx) => {
          const record = await findInstance(tx, instance);
          if (record !== undefined) await saveInstance(tx, { ...record, lastHeartbeat: now }, state);
        });
      }
    };
    await heartbeat();
    const created = (await ops().CreateService?.(
      { cluster: "default", serviceName: "follow", taskDefinition: "app:1", desiredCount: 2 },
      ctx(),
    )) as { service: { serviceArn: string } };
    const arn = created.service.serviceArn;
    const live = async () => (await tasksOf("follow")).filter((t) => t.wire.lastStatus !== "STOPPED");
    const stopOne = async (writes: TaskWrites) => {
      const [first] = await live();
      assert.ok(first !== undefined);
      await store.transaction(async (tx) => {
        const task = await findTask(tx, first.wire.taskArn);
        assert.ok(task !== undefined);
        requestStop(task, "Task stopped by user", "UserInitiated", now, true);
        await saveTask(tx, task, now, writes);
      });
      return first.wire.taskArn;
    };
    const service = controller();
    await service.reconcile(arn);
    await agentsCatchUp("follow");
    assert.equal((await live()).length, 2);
    // A task stopped as StopTask stops one, through the scheduler's state: the next pass, which
    // reads only what was written since the last, replaces it.
    now += 1000;
    const stopped = await stopOne(state);
    await service.reconcile(arn);
    assert.equal((await live()).length, 2);
    assert.ok((await live()).every((t) => t.wire.taskArn !== stopped));
    // A write the state does not see is found when every row is read again.
    await stopOne({ taskSaved: () => {} });
    now += FULL_READ_MS;
    await heartbeat();
    await service.reconcile(arn);
    assert.equal((await live()).length, 2);
  });
});

describe("a large scale-up", () => {
  const bulk = clusterArn(scope, "bulk");
  /** Counts the store's write transactions from here on. */
  const countTransactions = (): { count: number; restore(): void } => {
    const original = store.transaction;
    const counter = {
      count: 0,
      restore: () => {
        store.transaction = original;
      },
    };
    store.transaction = ((fn) => {
      counter.count++;
      return original.call(store, fn);
    }) as typeof store.transaction;
    return counter;
  };
  const live = async (service: string) =>
    (await tasksOf(service)).filter((t) => t.wire.lastStatus !== "STOPPED");
  const create = async (name: string, desiredCount: number, extra: object = {}) => {
    const out = (await ops().CreateService?.(
      { cluster: "bulk", serviceName: name, taskDefinition: "app:1", desiredCount, ...extra },
      ctx(),
    )) as { service: { serviceArn: string } };
    return out.service.serviceArn;
  };

  before(async () => {
    await store.transaction(async (tx) => {
      await saveCluster(tx, { ...cluster, arn: bulk, name: "bulk" });
      for (const zone of ["us-east-1a", "us-east-1b", "us-east-1c"]) {
        await registerInstance(
          tx,
          state,
          { ...scope, now },
          { ...cluster, arn: bulk, name: "bulk" },
          testInstance({ cpu: 4096, memory: 8192, zone, hostname: `bulk-${zone}` }),
        );
      }
    });
  });

  it("is written in several transactions, one event per batch, and ends at exactly the desired count", async () => {
    const arn = await create("wide", 100);
    const transactions = countTransactions();
    try {
      assert.equal(await controller({ startBatch: 30 }).reconcile(arn), true);
    } finally {
      transactions.restore();
    }
    assert.equal(transactions.count, 4, "30 + 30 + 30 + 10");
    const tasks = await tasksOf("wide");
    assert.equal(tasks.length, 100);
    assert.equal(new Set(tasks.map((t) => t.wire.taskArn)).size, 100);
    const events = ((await describeService("wide", "bulk")).events as Array<{ message: string }>).map(
      (e) => e.message,
    );
    const started = events.filter((m) => m.startsWith("(service wide) has started "));
    assert.deepEqual(
      started.map((m) => Number(m.split(" ")[4])),
      [10, 30, 30, 30],
    );
    assert.equal(await controller({ startBatch: 30 }).reconcile(arn), false, "nothing left to start");
    assert.equal((await tasksOf("wide")).length, 100);
  });

  /** A cluster of its own, and a way to register an instance of it in a zone. */
  const zonedCluster = async (name: string) => {
    const record = { ...cluster, arn: clusterArn(scope, name), name };
    await store.transaction((tx) => saveCluster(tx, record));
    return (zone: string, n: number) =>
      store.transaction(async (tx) => {
        const instance = testInstance({ cpu: 4096, memory: 8192, zone, hostname: `${name}-${zone}-${n}` });
        return (await registerInstance(tx, state, { ...scope, now }, record, instance)).record.arn;
      });
  };

  /** Its service of 16 tasks, and how many of them an instance runs. */
  const sixteen = async (name: string) => {
    const out = (await ops().CreateService?.(
      { cluster: name, serviceName: name, taskDefinition: "app:1", desiredCount: 16 },
      ctx(),
    )) as { service: { serviceArn: string } };
    const count = async (instance: string) =>
      (await tasksOf(name)).filter((t) => t.wire.containerInstanceArn === instance).length;
    return { arn: out.service.serviceArn, count };
  };

  const TWO_ZONES = ["us-east-1a", "us-east-1a", "us-east-1b", "us-east-1b"];

  it("gives an instance two tasks in one pass, and plans again over an instance that joins", async () => {
    const register = await zonedCluster("late");
    const first: string[] = [];
    for (const [n, zone] of TWO_ZONES.entries()) first.push(await register(zone, n));
    const { arn, count } = await sixteen("late");
    const scheduler = controller({ startBatch: 4 });
    // The first pass plans two rounds over the four instances and starts two instances' two, one per zone.
    assert.deepEqual(await scheduler.pass(arn), { changed: true, more: true });
    assert.deepEqual((await Promise.all(first.map(count))).sort(), [0, 0, 2, 2]);
    // An instance in a third zone registers: the next pass plans again, and starts on it (its zone
    // alone has none).
    const joined = await register("us-east-1c", 4);
    assert.deepEqual(await scheduler.pass(arn), { changed: true, more: true });
    assert.equal(await count(joined), 2);
    await scheduler.reconcile(arn);
    const counts = await Promise.all([...first, joined].map(count));
    assert.equal(
      counts.reduce((a, b) => a + b),
      16,
    );
    assert.ok((await count(joined)) >= 5, `the joined instance runs ${await count(joined)} of 16`);
  });

  it("plans again over an instance whose agent comes back mid-way", async () => {
    const register = await zonedCluster("back");
    const arns: string[] = [];
    for (const [n, zone] of TWO_ZONES.entries()) arns.push(await register(zone, n));
    // The last instance's agent has been silent past the timeout; the others' have just polled.
    now += 60_000;
    const [quiet, ...polling] = [...arns].reverse() as [string, ...string[]];
    for (const arn of polling) state.heartbeat(arn, now);
    const { arn, count } = await sixteen("back");
    const scheduler = controller({ startBatch: 4 });
    try {
      // Planned over the three connected instances.
      assert.deepEqual(await scheduler.pass(arn), { changed: true, more: true });
      assert.equal(await count(quiet), 0);
      // Its agent polls again: the next pass plans again, and the instance, the one with none,
      // gets both its tasks of the round.
      state.heartbeat(quiet, now);
      assert.deepEqual(await scheduler.pass(arn), { changed: true, more: true });
      assert.equal(await count(quiet), 2);
      await scheduler.reconcile(arn);
      const counts = await Promise.all(arns.map(count));
      assert.deepEqual(counts, [4, 4, 4, 4]);
    } finally {
      // Every other instance's agent polls at the new time too, for the tests after this one.
      const all = await store.read((tx) =>
        tx.all<{ arn: string }>("SELECT arn FROM ecs_container_instances"),
      );
      for (const row of all) state.heartbeat(row.arn, now);
    }
  });

  it("stopped mid-way, is finished by the next controller at exactly the desired count", async () => {
    const arn = await create("resumed", 100);
    const first = controller({ startBatch: 30 });
    assert.deepEqual(await first.pass(arn), { changed: true, more: true });
    assert.deepEqual(await first.pass(arn), { changed: true, more: true });
    assert.equal((await tasksOf("resumed")).length, 60);
    // The first controller is gone; the next one starts from the rows.
    assert.equal(await controller({ startBatch: 30 }).reconcile(arn), true);
    const tasks = await tasksOf("resumed");
    assert.equal(tasks.length, 100);
    assert.equal(new Set(tasks.map((t) => t.wire.taskArn)).size, 100);
  });

  it("running, replaces a task that stops as soon as its write is seen, with no resync due", async () => {
    const arn = await create("watched", 1);
    const scheduler = controller({ watchMs: 10, resyncMs: 3_600_000 });
    await scheduler.reconcile(arn);
    await agentsCatchUp("watched");
    await scheduler.reconcile(arn);
    const [first] = await live("watched");
    assert.equal(first?.wire.lastStatus, "RUNNING");
    scheduler.start();
    try {
      // The resync that starts the controller finds nothing to do.
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.deepEqual(
        (await live("watched")).map((t) => t.wire.taskArn),
        [first?.wire.taskArn],
      );
      // Its container exits, as its agent reports it.
      await store.transaction(async (tx) => {
        const task = await findTask(tx, first?.wire.taskArn ?? "");
        assert.ok(task !== undefined);
        const report: TaskReport = {
          taskArn: task.wire.taskArn,
          lastStatus: "STOPPED",
          containers: task.wire.containers.map((c) => ({ name: c.name, lastStatus: "STOPPED", exitCode: 1 })),
          at: now,
        };
        if (applyReport(task, report)) await saveTask(tx, task, now, state);
      });
      const deadline = Date.now() + 10_000;
      let replaced: TaskRecord[] = [];
      while (Date.now() < deadline) {
        replaced = (await live("watched")).filter((t) => t.wire.taskArn !== first?.wire.taskArn);
        if (replaced.length > 0) break;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.equal(replaced.length, 1, "a replacement was started");
    } finally {
      await scheduler.close();
    }
  });

  it("rolls a deployment out in batches without crossing its minimum or maximum", async () => {
    const arn = await create("rolling", 90, {
      deploymentConfiguration: { minimumHealthyPercent: 50, maximumPercent: 150 },
    });
    const scheduler = controller({ startBatch: 20 });
    await scheduler.reconcile(arn);
    now += 1000;
    await agentsCatchUp("rolling");
    await scheduler.reconcile(arn);
    assert.equal((await live("rolling")).length, 90);
    await ops().UpdateService?.({ cluster: "bulk", service: "rolling", taskDefinition: "app:2" }, ctx());
    for (let round = 0; round < 40; round++) {
      await scheduler.pass(arn);
      const tasks = await live("rolling");
      assert.ok(tasks.length <= 135, `${tasks.length} tasks live, more than maximumPercent allows`);
      const healthy = tasks.filter(
        (t) => t.wire.lastStatus === "RUNNING" && t.wire.desiredStatus === "RUNNING",
      );
      assert.ok(
        healthy.length >= 45,
        `${healthy.length} tasks running, fewer than minimumHealthyPercent allows`,
      );
      if (round % 2 === 1) {
        now += 1000;
        await agentsCatchUp("rolling");
      }
    }
    const tasks = await live("rolling");
    assert.equal(tasks.length, 90);
    const service = await describeService("rolling", "bulk");
    const deployments = service.deployments as Array<{ rolloutState: string; taskDefinition: string }>;
    assert.deepEqual(
      deployments.map((d) => [d.taskDefinition.endsWith(":2"), d.rolloutState]),
      [[true, "COMPLETED"]],
    );
  });
});
