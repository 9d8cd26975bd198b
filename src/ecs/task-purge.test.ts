import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";
import { putTags, tagsOf } from "../aws/tags.ts";
import { SqliteStore } from "../store/sqlite.ts";
import type { Store } from "../store/store.ts";
import { purgeAllStoppedTasks, purgeStoppedTasks } from "./task-purge.ts";

const HOUR = 60 * 60_000;
const now = Date.parse("2026-11-29T12:00:00Z");
const cluster = "arn:aws:ecs:us-east-1:000000000000:cluster/default";
let store: Store;

async function task(id: string, lastStatus: string, updatedAt: number, startedBy?: string): Promise<string> {
  const arn = `arn:aws:ecs:us-east-1:000000000000:task/default/${id}`;
  await store.transaction(async (tx) => {
    await tx.run(
      `INSERT INTO ecs_tasks (arn, cluster_arn, task_definition_arn, family, last_status, desired_status,
         started_by, created_at, updated_at, stopped_at, version, body)
       VALUES (?, ?, 'td', 'web', ?, 'STOPPED', ?, ?, ?, ?, 1, '{}')`,
      arn,
      cluster,
      lastStatus,
      startedBy ?? null,
      updatedAt - HOUR,
      updatedAt,
      lastStatus === "STOPPED" ? updatedAt : null,
    );
    await putTags(tx, arn, [{ key: "k", value: id }]);
  });
  return arn;
}

async function service(
  name: string,
  deployments: Array<{ id: string; rolloutState: string }>,
): Promise<void> {
  await store.transaction(async (tx) => {
    await tx.run(
      `INSERT INTO ecs_services (arn, cluster_arn, name, status, launch_type, scheduling_strategy, created_at, updated_at, body)
       VALUES (?, ?, ?, 'ACTIVE', 'EC2', 'REPLICA', 0, 0, ?)`,
      `arn:aws:ecs:us-east-1:000000000000:service/default/${name}`,
      cluster,
      name,
      JSON.stringify({ deployments }),
    );
  });
}

async function remaining(): Promise<string[]> {
  return store.read(async (tx) =>
    (await tx.all<{ arn: string }>("SELECT arn FROM ecs_tasks ORDER BY arn")).map(
      (r) => r.arn.split("/").pop() ?? "",
    ),
  );
}

beforeEach(async () => {
  await store?.close();
  store = await SqliteStore.open({ path: ":memory:" });
});

describe("purging stopped tasks", () => {
  it("removes tasks STOPPED for longer than the retention, with their tags, and nothing else", async () => {
    const old = await task("old", "STOPPED", now - 2 * HOUR);
    await task("recent", "STOPPED", now - 30 * 60_000);
    await task("running", "RUNNING", now - 5 * HOUR);
    assert.equal(await purgeStoppedTasks(store, now, HOUR), 1);
    assert.deepEqual(await remaining(), ["recent", "running"]);
    assert.deepEqual(await store.read((tx) => tagsOf(tx, old)), []);
    // A second pass changes nothing.
    assert.equal(await purgeStoppedTasks(store, now, HOUR), 0);
  });

  it("keeps the stopped tasks of a deployment still rolling out (the circuit breaker counts them)", async () => {
    await service("web", [
      { id: "ecs-svc/1", rolloutState: "IN_PROGRESS" },
      { id: "ecs-svc/0", rolloutState: "COMPLETED" },
    ]);
    await task("failed-new", "STOPPED", now - 3 * HOUR, "ecs-svc/1");
    await task("old-primary", "STOPPED", now - 3 * HOUR, "ecs-svc/0");
    assert.equal(await purgeStoppedTasks(store, now, HOUR), 1);
    assert.deepEqual(await remaining(), ["failed-new"]);
  });

  it("works through a backlog larger than one batch in one call", async () => {
    for (let i = 0; i < 1_203; i++) await task(`t${String(i).padStart(5, "0")}`, "STOPPED", now - 2 * HOUR);
    assert.equal(await purgeAllStoppedTasks(store, now), 1_203);
    assert.deepEqual(await remaining(), []);
  });
});
