import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { prng } from "../../test/support/prng.ts";
import { type ContainerReport, TASK_STATUSES, type TaskReport } from "../shared/agent-protocol.ts";
import { SqliteStore } from "../store/sqlite.ts";
import type { RunnableDefinition } from "./task-api.ts";
import {
  applyReport,
  assignmentJson,
  assignmentOf,
  assignmentOfJson,
  findTask,
  insertTask,
  newTaskArn,
  requestStop,
  saveTask,
  type TaskRecord,
  type TaskWire,
  tasksForInstance,
} from "./tasks.ts";
import {
  awsvpcDefinition,
  checkedDefinition,
  TEST_NOW,
  TEST_SCOPE,
  testCluster,
  testDefinition,
  testTask,
} from "./testing.ts";

describe("newTaskArn", () => {
  it("names each task with 32 hex digits: the creation time, then 20 fresh random digits", () => {
    const ids = Array.from({ length: 1000 }, (_, i) => newTaskArn(TEST_SCOPE, testCluster.arn, TEST_NOW + i));
    for (const arn of ids) {
      assert.match(arn, new RegExp(`^arn:aws:ecs:us-east-1:\\d{12}:task/${testCluster.name}/[0-9a-f]{32}$`));
    }
    assert.equal(new Set(ids).size, ids.length);
    // The first 12 digits are the time in milliseconds, so a later task's ARN sorts after.
    assert.equal(Number.parseInt(ids[0]?.slice(-32, -20) ?? "", 16), TEST_NOW);
    assert.deepEqual([...ids].sort(), ids);
    // Every hex digit turns up in every random position, as it would from independent random bytes
    // (across refills of the entropy pool), even among tasks made in the same millisecond.
    const sameTime = Array.from({ length: 1000 }, () => newTaskArn(TEST_SCOPE, testCluster.arn, TEST_NOW));
    assert.equal(new Set(sameTime).size, sameTime.length);
    for (let position = 12; position < 32; position++) {
      const digits = new Set(sameTime.map((arn) => arn.slice(-32)[position]));
      assert.equal(digits.size, 16, `position ${position}`);
    }
  });
});

describe("newTask", () => {
  it("names each container as ECS does: container/<cluster>/<task id>/<uuid>", () => {
    const record = testTask({
      definition: testDefinition([
        { name: "web", image: "busybox", memory: 64, essential: true },
        { name: "side", image: "busybox", memory: 64, essential: false },
      ]),
    });
    const taskId = record.wire.taskArn.slice(record.wire.taskArn.lastIndexOf("/") + 1);
    const arns = record.wire.containers.map((c) => c.containerArn);
    for (const arn of arns) {
      assert.match(
        arn,
        new RegExp(
          `^arn:aws:ecs:us-east-1:000000000000:container/${testCluster.name}/${taskId}/[0-9a-f-]{36}$`,
        ),
      );
    }
    assert.notEqual(arns[0], arns[1]);
  });

  it("knows each assignment's JSON as serializing it would give, with what the agent is to do", () => {
    const definition = awsvpcDefinition();
    const records = [
      testTask({ definition }),
      testTask({ definition, input: { overrides: { cpu: "512", containerOverrides: [{ name: "web" }] } } }),
      testTask(),
    ];
    for (const record of records) {
      assert.equal(assignmentJson(record), JSON.stringify(record.assignment));
      assert.equal(assignmentOfJson(record), JSON.stringify(assignmentOf(record)));
    }
    const [stopping] = records;
    assert.ok(stopping !== undefined);
    requestStop(
      stopping,
      "Scaling activity initiated by (deployment ecs-svc/1)",
      "ServiceSchedulerInitiated",
      TEST_NOW,
    );
    assert.equal(assignmentOfJson(stopping), JSON.stringify(assignmentOf(stopping)));
    assert.equal(
      JSON.parse(assignmentOfJson(stopping)).stopReason,
      "Scaling activity initiated by (deployment ecs-svc/1)",
    );
  });
});

describe("a task read from its row", () => {
  it("parses its assignment when first asked, through one accessor every read record shares, and carries nothing a copy or JSON sees", async () => {
    // A file, so that reads go through the reader connection, as DescribeTasks's do: the writer
    // hands back the records it has just inserted (below).
    const dir = mkdtempSync(join(tmpdir(), "wharf-task-read-"));
    const store = await SqliteStore.open({ path: join(dir, "wharf.db") });
    try {
      const made = [testTask(), testTask({ definition: checkedDefinition() })];
      await store.transaction(async (tx) => {
        for (const task of made) await insertTask(tx, task, TEST_NOW, { taskSaved: () => {} });
      });
      const [a, b] = (await store.read((tx) =>
        Promise.all(made.map((task) => findTask(tx, task.wire.taskArn))),
      )) as [TaskRecord, TaskRecord];
      const getter = (record: TaskRecord) => Object.getOwnPropertyDescriptor(record, "assignment")?.get;
      assert.equal(typeof getter(a), "function");
      // A getter of each record's own gave each a hidden class of its own, which kept every record
      // read alive through the young generation's collections.
      assert.equal(getter(a), getter(b), "one accessor for every record read");
      assert.deepEqual(a.assignment, made[0]?.assignment);
      assert.deepEqual(b.assignment, made[1]?.assignment);
      assert.equal(a.assignment, a.assignment, "parsed once");
      assert.equal(assignmentJson(b), JSON.stringify(made[1]?.assignment));
      // What a record carries besides its fields (its row's columns, its assignment's JSON) stays
      // out of copies, keys and JSON.
      const copy = { ...a };
      assert.deepEqual(Object.getOwnPropertySymbols(copy), []);
      assert.deepEqual(Object.keys(a), Object.keys(copy));
      assert.equal(JSON.stringify(a), JSON.stringify(copy));
      assert.deepEqual(copy.assignment, a.assignment);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a task just inserted", () => {
  const noWrites = { taskSaved: () => {} };
  const fields = (record: TaskRecord | undefined) => JSON.parse(JSON.stringify(record ?? null));

  it("is read back once, by its connection's next transaction, as the record it was made as; after that from its row", async () => {
    const store = await SqliteStore.open({ path: ":memory:" });
    try {
      const made = testTask();
      const arn = made.wire.taskArn;
      await store.transaction((tx) => insertTask(tx, made, TEST_NOW, noWrites));
      const [first, second] = await store.transaction(async (tx) => [
        await findTask(tx, arn),
        await findTask(tx, arn),
      ]);
      assert.equal(first, made, "the record made, not its row parsed again");
      assert.notEqual(second, made, "taken once: its reader may change it");
      assert.deepEqual(fields(second), fields(made));
    } finally {
      await store.close();
    }
  });

  it("is not handed back once its insert is undone, nor once its task was saved from another read of its row", async () => {
    const store = await SqliteStore.open({ path: ":memory:" });
    try {
      const undone = testTask();
      await assert.rejects(
        store.transaction(async (tx) => {
          await insertTask(tx, undone, TEST_NOW, noWrites);
          throw new Error("changed its mind");
        }),
        /changed its mind/,
      );
      assert.equal(await store.transaction((tx) => findTask(tx, undone.wire.taskArn)), undefined);

      const made = testTask();
      const arn = made.wire.taskArn;
      await store.transaction((tx) => insertTask(tx, made, TEST_NOW, noWrites));
      // Stopped through a record read by another query (not findTask, which would take the kept one).
      await store.transaction(async (tx) => {
        const [listed] = await tasksForInstance(tx, made.wire.containerInstanceArn ?? "");
        assert.equal(listed?.wire.taskArn, arn);
        assert.notEqual(listed, made);
        requestStop(listed as TaskRecord, "Task stopped by user", "UserInitiated", TEST_NOW + 1);
        await saveTask(tx, listed as TaskRecord, TEST_NOW + 1, noWrites);
      });
      const read = await store.transaction((tx) => findTask(tx, arn));
      assert.notEqual(read, made);
      assert.equal(read?.wire.desiredStatus, "STOPPED");
      assert.equal(read?.wire.stoppedReason, "Task stopped by user");
      assert.equal(made.wire.desiredStatus, "RUNNING", "the record kept was left as it was");
    } finally {
      await store.close();
    }
  });

  it("is kept among the last 4,096 a connection inserted, no more", async () => {
    const store = await SqliteStore.open({ path: ":memory:" });
    try {
      const made = Array.from({ length: 4097 }, () => testTask());
      await store.transaction(async (tx) => {
        for (const task of made) await insertTask(tx, task, TEST_NOW, noWrites);
      });
      const [oldest, second, newest] = await store.transaction(async (tx) => [
        await findTask(tx, made[0]?.wire.taskArn ?? ""),
        await findTask(tx, made[1]?.wire.taskArn ?? ""),
        await findTask(tx, made[4096]?.wire.taskArn ?? ""),
      ]);
      assert.notEqual(oldest, made[0], "the oldest went when the 4,097th came");
      assert.deepEqual(fields(oldest), fields(made[0]));
      assert.equal(second, made[1]);
      assert.equal(newest, made[4096]);
    } finally {
      await store.close();
    }
  });
});

describe("a task's overrides", () => {
  it("show the task-level cpu and memory given, as ECS's DescribeTasks does", () => {
    const record = testTask({ input: { overrides: { cpu: "256", memory: "512" } } });
    assert.equal(record.wire.overrides.cpu, "256");
    assert.equal(record.wire.overrides.memory, "512");
    assert.equal(record.wire.cpu, "256");
    assert.equal(record.wire.memory, "512");
    assert.equal(testTask().wire.overrides.cpu, undefined);
  });
});

describe("applyReport", () => {
  const definition = (awsvpc: boolean): RunnableDefinition => ({
    ...checkedDefinition(),
    ...(awsvpc ? { networkMode: "awsvpc" } : {}),
  });

  it("says a task changed exactly when its wire form did, and only then moves its version", () => {
    const random = prng(7);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
    const maybe = <T>(value: T): T | undefined => (random() < 0.3 ? value : undefined);
    let changes = 0;
    for (let task = 0; task < 200; task++) {
      const record = testTask({ definition: definition(random() < 0.3) });
      for (let step = 0; step < 12; step++) {
        const names = ["web", "side", "gone"].filter(() => random() < 0.6);
        const report: TaskReport = {
          taskArn: record.wire.taskArn,
          lastStatus: pick(TASK_STATUSES),
          containers: names.map((name) => {
            const container: ContainerReport = {
              name,
              lastStatus: pick(["PENDING", "RUNNING", "STOPPED"] as const),
            };
            const exitCode = maybe(pick([0, 1, 137]));
            if (exitCode !== undefined) container.exitCode = exitCode;
            const reason = maybe(pick(["OOM", "exited"]));
            if (reason !== undefined) container.reason = reason;
            const health = maybe(pick(["HEALTHY", "UNHEALTHY", "UNKNOWN"] as const));
            if (health !== undefined) container.healthStatus = health;
            const runtimeId = maybe(pick(["a", "b"]));
            if (runtimeId !== undefined) container.runtimeId = runtimeId;
            const port = maybe(pick([80, 8080]));
            if (port !== undefined)
              container.networkBindings = [
                { bindIP: "0.0.0.0", containerPort: 80, hostPort: port, protocol: "tcp" },
              ];
            return container;
          }),
          at: TEST_NOW + step * 1000,
        };
        const address = maybe(pick(["10.0.0.1", "10.0.0.2"]));
        if (address !== undefined) report.privateIpv4Address = address;
        const mac = maybe(pick(["aa", "bb"]));
        if (mac !== undefined) report.macAddress = mac;
        const pulled = maybe(TEST_NOW + step);
        if (pulled !== undefined) report.pullStartedAt = pulled;
        if (random() < 0.2) report.pullStoppedAt = TEST_NOW + step;
        if (random() < 0.2) report.stopCode = "EssentialContainerExited";
        if (random() < 0.2) report.stoppedReason = "Essential container in task exited";
        const before = JSON.stringify(record.wire);
        const version = record.wire.version;
        const changed = applyReport(record, report);
        const { version: after, ...rest } = record.wire;
        const { version: _, ...previous } = JSON.parse(before) as TaskWire;
        assert.equal(
          changed,
          JSON.stringify(rest) !== JSON.stringify(previous),
          `step ${step} of task ${task}`,
        );
        assert.equal(after, changed ? version + 1 : version);
        if (changed) changes++;
      }
    }
    assert.ok(changes > 200, "the reports changed tasks often enough to say something");
  });
});

describe("applyReport's executionStoppedAt", () => {
  it("is when the agent says the task's containers stopped, not when its STOPPED report came", () => {
    const record = testTask();
    const report = (lastStatus: TaskReport["lastStatus"], at: number, stoppedAt?: number): TaskReport => ({
      taskArn: record.wire.taskArn,
      lastStatus,
      containers: [],
      at,
      ...(stoppedAt === undefined ? {} : { executionStoppedAt: stoppedAt }),
    });
    applyReport(record, report("RUNNING", TEST_NOW));
    applyReport(record, report("STOPPING", TEST_NOW + 1000));
    assert.equal(record.wire.executionStoppedAt, undefined, "the containers are still stopping");
    applyReport(record, report("STOPPING", TEST_NOW + 31_000, TEST_NOW + 30_000));
    applyReport(record, report("STOPPED", TEST_NOW + 45_000, TEST_NOW + 30_000));
    assert.equal(record.wire.executionStoppedAt, TEST_NOW + 30_000);
    assert.equal(record.wire.stoppedAt, TEST_NOW + 45_000);

    // An agent that does not say keeps ECS's fallback: the STOPPED report's time.
    const older = testTask();
    applyReport(older, {
      taskArn: older.wire.taskArn,
      lastStatus: "STOPPED",
      containers: [],
      at: TEST_NOW + 5,
    });
    assert.equal(older.wire.executionStoppedAt, TEST_NOW + 5);
  });
});

describe("requestStop", () => {
  const task = () => testTask();

  it("keeps the first reason, and moves the version with each change, stopping at once included", () => {
    const record = task();
    const start = record.wire.version;
    assert.equal(requestStop(record, "Task stopped by user", "UserInitiated", TEST_NOW), true);
    assert.equal(record.wire.desiredStatus, "STOPPED");
    assert.equal(record.wire.version, start + 1);
    const asked = record.desiredVersion;
    // Its instance is then deregistered: the task, already asked to stop, stops at once.
    assert.equal(requestStop(record, "other", "ServiceSchedulerInitiated", TEST_NOW + 1, true), true);
    assert.equal(record.wire.lastStatus, "STOPPED");
    assert.equal(record.wire.stoppedReason, "Task stopped by user");
    assert.equal(record.wire.version, start + 2, "watchers that go by version see the stop");
    assert.equal(record.desiredVersion, asked, "the agent has nothing new to do");
    assert.equal(requestStop(record, "again", "UserInitiated", TEST_NOW + 2, true), false);
    assert.equal(record.wire.version, start + 2);

    const direct = task();
    requestStop(direct, "gone", "ServiceSchedulerInitiated", TEST_NOW, true);
    assert.equal(direct.wire.version, start + 1, "one change, one step");
  });
});
