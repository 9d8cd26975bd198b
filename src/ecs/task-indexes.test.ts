import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { ContainerReport } from "../shared/agent-protocol.ts";
import { migrations } from "../store/migrations.ts";
import { SqliteStore } from "../store/sqlite.ts";
import {
  applyReport,
  assignmentOf,
  assignmentOfJson,
  findTask,
  insertTask,
  saveTask,
  type TaskRecord,
  type TaskWrites,
  taskShape,
} from "./tasks.ts";
import { awsvpcDefinition, checkedDefinition, testTask } from "./testing.ts";

const noWrites: TaskWrites = { taskSaved: () => {} };

function task(startedBy?: string) {
  return testTask({ input: startedBy === undefined ? {} : { startedBy } });
}

/** A RUNNING report for the task, applied and saved in a transaction of its own, as an agent's is. */
async function reportRunning(
  store: SqliteStore,
  taskArn: string,
  containers: ContainerReport[],
): Promise<void> {
  await store.transaction(async (tx) => {
    const stored = await findTask(tx, taskArn);
    assert.ok(stored !== undefined);
    assert.equal(applyReport(stored, { taskArn, lastStatus: "RUNNING", at: 2, containers }), true);
    await saveTask(tx, stored, 2, noWrites);
  });
}

/** The index each task query is answered through (SQLite's plan), or "SCAN" when none. */
async function indexOf(store: SqliteStore, sql: string): Promise<string> {
  const params = Array.from(sql.match(/\?/g) ?? [], () => "x");
  const plan = await store.read((tx) => tx.all<{ detail: string }>(`EXPLAIN QUERY PLAN ${sql}`, ...params));
  const search = plan.map((row) => row.detail).find((detail) => detail.includes("ecs_tasks"));
  return /USING (?:COVERING )?INDEX (\w+)/.exec(search ?? "")?.[1] ?? "SCAN";
}

describe("the task table's indexes", () => {
  it("hold the tasks of services, deployments and STOPPED tasks only where only those are asked for", async () => {
    const store = await SqliteStore.open({ path: ":memory:" });
    try {
      const definitions = await store.read((tx) =>
        tx.all<{ name: string; sql: string }>(
          "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ecs_tasks' AND sql IS NOT NULL",
        ),
      );
      const where = Object.fromEntries(
        definitions.map((d) => [d.name, /WHERE (.*)$/.exec(d.sql)?.[1] ?? ""]),
      );
      assert.deepEqual(where, {
        ecs_tasks_cluster: "",
        ecs_tasks_instance: "",
        ecs_tasks_service: "service_name IS NOT NULL",
        ecs_tasks_started_by: "started_by IS NOT NULL",
        ecs_tasks_stopped: "last_status = 'STOPPED'",
      });
    } finally {
      await store.close();
    }
  });

  it("still answer each query of the scheduler, the purge, ListTasks and the counts through an index", async () => {
    const store = await SqliteStore.open({ path: ":memory:" });
    try {
      const expected: Array<[string, string]> = [
        // The purge (task-purge.ts).
        [
          `SELECT arn FROM ecs_tasks WHERE updated_at < ? AND last_status = 'STOPPED'
             AND (started_by IS NULL OR started_by NOT IN (SELECT value FROM json_each(?))) ORDER BY updated_at LIMIT ?`,
          "ecs_tasks_stopped",
        ],
        // The service controller (service-controller.ts) and DescribeServices' counts (services.ts).
        [
          "SELECT arn, version FROM ecs_tasks WHERE cluster_arn = ? AND service_name = ? AND last_status != 'STOPPED'",
          "ecs_tasks_service",
        ],
        [
          "SELECT arn, version FROM ecs_tasks WHERE started_by = ? AND last_status = 'STOPPED'",
          "ecs_tasks_started_by",
        ],
        [
          `SELECT started_by, last_status, COUNT(*) AS n FROM ecs_tasks WHERE cluster_arn = ? AND service_name = ?
             AND desired_status = 'RUNNING' AND last_status != 'STOPPED' GROUP BY started_by, last_status`,
          "ecs_tasks_service",
        ],
        // ListTasks (task-api.ts) with its filters.
        [
          "SELECT arn FROM ecs_tasks WHERE cluster_arn = ? AND arn > ? AND desired_status = 'RUNNING' ORDER BY arn LIMIT ?",
          "ecs_tasks_cluster",
        ],
        [
          "SELECT arn FROM ecs_tasks WHERE cluster_arn = ? AND arn > ? AND desired_status = 'RUNNING' AND service_name = ? ORDER BY arn LIMIT ?",
          "ecs_tasks_service",
        ],
        [
          "SELECT arn FROM ecs_tasks WHERE cluster_arn = ? AND arn > ? AND desired_status = 'RUNNING' AND started_by = ? ORDER BY arn LIMIT ?",
          "ecs_tasks_started_by",
        ],
        // A poll's read (assignment-cache.ts).
        [
          "SELECT arn, version FROM ecs_tasks WHERE container_instance_arn = ? AND last_status != 'STOPPED' ORDER BY created_at",
          "ecs_tasks_instance",
        ],
      ];
      for (const [sql, index] of expected) assert.equal(await indexOf(store, sql), index, sql);
    } finally {
      await store.close();
    }
  });

  it("count a service's tasks (DescribeServices) from the service index alone, reading no row", async () => {
    const store = await SqliteStore.open({ path: ":memory:" });
    try {
      const plan = await store.read((tx) =>
        tx.all<{ detail: string }>(
          `EXPLAIN QUERY PLAN SELECT started_by, last_status, COUNT(*) AS n FROM ecs_tasks
             WHERE cluster_arn = ? AND service_name = ? AND desired_status = 'RUNNING' AND last_status != 'STOPPED'
             GROUP BY started_by, last_status`,
          "c",
          "s",
        ),
      );
      assert.ok(
        plan.some((row) => row.detail.includes("USING COVERING INDEX ecs_tasks_service")),
        JSON.stringify(plan),
      );
    } finally {
      await store.close();
    }
  });
});

describe("insertTask", () => {
  it("writes a new task with one INSERT, never over a row that exists, and saveTask updates it after", async () => {
    const store = await SqliteStore.open({ path: ":memory:" });
    try {
      const record = task("deployment-1");
      await store.transaction((tx) => insertTask(tx, record, 1, noWrites));
      await assert.rejects(store.transaction((tx) => insertTask(tx, record, 2, noWrites)));
      record.wire.lastStatus = "RUNNING";
      record.wire.version++;
      await store.transaction((tx) => saveTask(tx, record, 3, noWrites));
      const row = await store.read((tx) =>
        tx.get<{ last_status: string; started_by: string; updated_at: number; n: number }>(
          "SELECT last_status, started_by, updated_at, (SELECT COUNT(*) FROM ecs_tasks) AS n FROM ecs_tasks",
        ),
      );
      assert.deepEqual(row, { last_status: "RUNNING", started_by: "deployment-1", updated_at: 3, n: 1 });
      assert.equal((await store.read((tx) => findTask(tx, record.wire.taskArn)))?.wire.version, 2);
    } finally {
      await store.close();
    }
  });

  it("inserts again after its transaction rolled back", async () => {
    const store = await SqliteStore.open({ path: ":memory:" });
    try {
      const record = task();
      await assert.rejects(
        store.transaction(async (tx) => {
          await insertTask(tx, record, 1, noWrites);
          throw new Error("undone");
        }),
      );
      assert.equal(await store.read((tx) => findTask(tx, record.wire.taskArn)), undefined);
      await store.transaction((tx) => insertTask(tx, record, 2, noWrites));
      assert.equal(
        (await store.read((tx) => findTask(tx, record.wire.taskArn)))?.wire.taskArn,
        record.wire.taskArn,
      );
    } finally {
      await store.close();
    }
  });
});

describe("the task row", () => {
  it("keeps the assignment in a column of its own, written once: a report rewrites only the body", async () => {
    const store = await SqliteStore.open({ path: ":memory:" });
    try {
      const record = testTask({ definition: checkedDefinition() });
      const assignment = JSON.stringify(record.assignment);
      await store.transaction((tx) => insertTask(tx, record, 1, noWrites));
      for (const healthStatus of ["HEALTHY", "UNHEALTHY"] as const) {
        await reportRunning(store, record.wire.taskArn, [
          { name: "web", lastStatus: "RUNNING", healthStatus },
        ]);
      }
      const row = await store.read((tx) =>
        tx.get<{ body: string; assignment: string }>("SELECT body, assignment FROM ecs_tasks"),
      );
      assert.equal(row?.assignment, assignment);
      assert.doesNotMatch(row?.body ?? "", /wharfRegistry/);
      const read = await store.read((tx) => findTask(tx, record.wire.taskArn));
      assert.ok(read !== undefined);
      assert.equal(assignmentOfJson(read), JSON.stringify(assignmentOf(read)));
      assert.deepEqual(read.assignment, record.assignment);
      // The task's health was read from its assignment (which container is essential and checked).
      assert.equal(read?.wire.healthStatus, "UNHEALTHY");
      assert.equal(read?.wire.lastStatus, "RUNNING");
    } finally {
      await store.close();
    }
  });

  it("leaves to its columns what they hold, and reads back the task as it was written", async () => {
    const store = await SqliteStore.open({ path: ":memory:" });
    try {
      const service = testTask({ input: { startedBy: "ecs-svc/1" } });
      service.serviceName = "web";
      const kinds = {
        service,
        standalone: testTask(),
        fargate: testTask({ definition: awsvpcDefinition(), input: { launchType: "FARGATE" } }),
      };
      for (const [kind, record] of Object.entries(kinds)) {
        await store.transaction((tx) => insertTask(tx, record, 1, noWrites));
        const row = await store.read((tx) =>
          tx.get<{ body: string }>("SELECT body FROM ecs_tasks WHERE arn = ?", record.wire.taskArn),
        );
        const body = JSON.parse(row?.body ?? "{}");
        for (const field of ["taskArn", "clusterArn", "taskDefinitionArn", "containerInstanceArn"]) {
          assert.equal(field in body.wire, false, `${kind}: ${field}`);
        }
        assert.equal("serviceName" in body, false, kind);
        assert.ok(body.wire.containers.length > 0, kind);
        for (const container of body.wire.containers) assert.equal("taskArn" in container, false, kind);

        const read = await store.read((tx) => findTask(tx, record.wire.taskArn));
        assert.ok(read !== undefined, kind);
        // Exactly the record written: no field missing, none added (not even one left undefined).
        assert.deepEqual({ ...read, assignment: read.assignment }, record, kind);
        // DescribeTasks lists a task's fields, and each container's, in the order the task was made with.
        const shape = (task: TaskRecord) => taskShape(task, true);
        const containerKeys = (task: TaskRecord) =>
          (shape(task).containers as Array<Record<string, unknown>>).map((c) => Object.keys(c));
        assert.deepEqual(Object.keys(shape(read)), Object.keys(shape(record)), kind);
        assert.deepEqual(containerKeys(read), containerKeys(record), kind);

        // A report's save writes the body the same way.
        await reportRunning(store, record.wire.taskArn, []);
        const after = await store.read((tx) => findTask(tx, record.wire.taskArn));
        assert.equal(after?.wire.lastStatus, "RUNNING", kind);
        assert.equal(after?.wire.startedBy, record.wire.startedBy, kind);
        assert.equal(after?.serviceName, record.serviceName, kind);
        assert.equal(after?.wire.containerInstanceArn, record.wire.containerInstanceArn, kind);
      }
    } finally {
      await store.close();
    }
  });

  it("is split into body and assignment when a store written before the split opens", async () => {
    const dir = mkdtempSync(join(tmpdir(), "wharf-task-row-"));
    const path = join(dir, "wharf.db");
    try {
      const record = testTask({ input: { startedBy: "me" } });
      const before = await SqliteStore.open({ path, migrations: migrations.filter((m) => m.version <= 9) });
      await before.transaction((tx) =>
        tx.run(
          `INSERT INTO ecs_tasks (arn, cluster_arn, container_instance_arn, task_definition_arn, family, last_status,
             desired_status, started_by, created_at, updated_at, version, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          record.wire.taskArn,
          record.wire.clusterArn,
          record.wire.containerInstanceArn ?? null,
          record.wire.taskDefinitionArn,
          "app",
          record.wire.lastStatus,
          record.wire.desiredStatus,
          "me",
          1,
          1,
          1,
          JSON.stringify(record),
        ),
      );
      await before.close();
      const after = await SqliteStore.open({ path });
      try {
        const read = await after.read((tx) => findTask(tx, record.wire.taskArn));
        assert.deepEqual(JSON.parse(JSON.stringify(read)), JSON.parse(JSON.stringify(record)));
        const row = await after.read((tx) =>
          tx.get<{ body: string; assignment: string }>("SELECT body, assignment FROM ecs_tasks"),
        );
        assert.deepEqual(JSON.parse(row?.assignment ?? ""), JSON.parse(JSON.stringify(record.assignment)));
        assert.equal("assignment" in JSON.parse(row?.body ?? "{}"), false);
      } finally {
        await after.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
