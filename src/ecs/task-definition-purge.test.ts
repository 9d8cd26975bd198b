import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";
import type { Operation } from "../aws/service.ts";
import { tagsOf } from "../aws/tags.ts";
import { SqliteStore } from "../store/sqlite.ts";
import type { Store } from "../store/store.ts";
import { taskDefinitionOperations } from "./task-definition-api.ts";
import { purgeAllDeletedTaskDefinitions, purgeDeletedTaskDefinitions } from "./task-definition-purge.ts";
import { testContext } from "./testing.ts";

const cluster = "arn:aws:ecs:us-east-1:000000000000:cluster/default";
const arnOf = (family: string, revision: number) =>
  `arn:aws:ecs:us-east-1:000000000000:task-definition/${family}:${revision}`;

let store: Store;
let ops: Record<string, Operation>;

function call<T>(name: string, input: Record<string, unknown>): Promise<T> {
  const operation = ops[name];
  if (operation === undefined) throw new Error(`no ${name}`);
  return operation(input, testContext) as Promise<T>;
}

/** Registers a revision of `family`, deregisters and deletes it: DELETE_IN_PROGRESS. */
async function doomed(family: string): Promise<string> {
  const { taskDefinition } = await call<{ taskDefinition: { taskDefinitionArn: string } }>(
    "RegisterTaskDefinition",
    {
      family,
      containerDefinitions: [{ name: "app", image: "busybox", memory: 32 }],
      tags: [{ key: "team", value: "web" }],
    },
  );
  const arn = taskDefinition.taskDefinitionArn;
  await call("DeregisterTaskDefinition", { taskDefinition: arn });
  const deleted = await call<{ taskDefinitions: Array<{ status: string }> }>("DeleteTaskDefinitions", {
    taskDefinitions: [arn],
  });
  assert.equal(deleted.taskDefinitions[0]?.status, "DELETE_IN_PROGRESS");
  return arn;
}

async function task(id: string, definition: string, lastStatus: string): Promise<void> {
  await store.transaction((tx) =>
    tx.run(
      `INSERT INTO ecs_tasks (arn, cluster_arn, task_definition_arn, family, last_status, desired_status,
         created_at, updated_at, version, body)
       VALUES (?, ?, ?, 'web', ?, 'RUNNING', 0, 0, 1, '{}')`,
      `arn:aws:ecs:us-east-1:000000000000:task/default/${id}`,
      cluster,
      definition,
      lastStatus,
    ),
  );
}

async function service(name: string, status: string, body: Record<string, unknown>): Promise<void> {
  await store.transaction((tx) =>
    tx.run(
      `INSERT INTO ecs_services (arn, cluster_arn, name, status, launch_type, scheduling_strategy, created_at, updated_at, body)
       VALUES (?, ?, ?, ?, 'EC2', 'REPLICA', 0, 0, ?)`,
      `arn:aws:ecs:us-east-1:000000000000:service/default/${name}`,
      cluster,
      name,
      status,
      JSON.stringify(body),
    ),
  );
}

async function describeError(taskDefinition: string): Promise<string> {
  try {
    await call("DescribeTaskDefinition", { taskDefinition });
  } catch (error) {
    return `${(error as { code?: string }).code}: ${(error as Error).message}`;
  }
  return "described";
}

async function listed(status: string, family?: string): Promise<string[]> {
  const out = await call<{ taskDefinitionArns: string[] }>("ListTaskDefinitions", {
    status,
    ...(family === undefined ? {} : { familyPrefix: family }),
  });
  return out.taskDefinitionArns;
}

beforeEach(async () => {
  await store?.close();
  store = await SqliteStore.open({ path: ":memory:" });
  ops = taskDefinitionOperations(store);
});

describe("purging deleted task definitions", () => {
  it("removes a DELETE_IN_PROGRESS revision nothing uses, as ECS does, and keeps counting revisions", async () => {
    const one = await doomed("web");
    const { taskDefinition: two } = await call<{ taskDefinition: { taskDefinitionArn: string } }>(
      "RegisterTaskDefinition",
      { family: "web", containerDefinitions: [{ name: "app", image: "busybox", memory: 32 }] },
    );
    await task("stopped", one, "STOPPED");
    assert.equal(await purgeDeletedTaskDefinitions(store), 1);

    assert.equal(await describeError(one), "ClientException: Unable to describe task definition.");
    assert.deepEqual(await listed("DELETE_IN_PROGRESS"), []);
    assert.deepEqual(await listed("ACTIVE", "web"), [two.taskDefinitionArn]);
    assert.deepEqual(await store.read((tx) => tagsOf(tx, one)), []);
    const again = await call<{ failures: Array<{ reason: string }> }>("DeleteTaskDefinitions", {
      taskDefinitions: [one],
    });
    assert.match(again.failures[0]?.reason ?? "", /does not exist/);
    // A second pass changes nothing.
    assert.equal(await purgeDeletedTaskDefinitions(store), 0);
  });

  it("keeps revisions a task not yet STOPPED or a live service uses, until they no longer do", async () => {
    const running = await doomed("a");
    const primary = await doomed("b");
    const rolling = await doomed("c");
    const rollback = await doomed("d");
    const ofInactiveService = await doomed("e");
    await task("t1", running, "RUNNING");
    await service("s1", "ACTIVE", { taskDefinition: primary, deployments: [{ taskDefinition: primary }] });
    await service("s2", "DRAINING", {
      taskDefinition: arnOf("x", 1),
      deployments: [{ taskDefinition: arnOf("x", 1) }, { taskDefinition: rolling }],
      lastCompleted: { taskDefinition: rollback },
    });
    await service("s3", "INACTIVE", {
      taskDefinition: ofInactiveService,
      deployments: [{ taskDefinition: ofInactiveService }],
    });
    assert.equal(await purgeDeletedTaskDefinitions(store), 1);
    assert.deepEqual(await listed("DELETE_IN_PROGRESS"), [running, primary, rolling, rollback]);

    await store.transaction(async (tx) => {
      await tx.run("UPDATE ecs_tasks SET last_status = 'STOPPED'");
      await tx.run("DELETE FROM ecs_services");
    });
    assert.equal(await purgeAllDeletedTaskDefinitions(store), 4);
    assert.deepEqual(await listed("DELETE_IN_PROGRESS"), []);
    for (const arn of [running, primary, rolling, rollback, ofInactiveService]) {
      assert.equal(await describeError(arn), "ClientException: Unable to describe task definition.", arn);
    }
  });

  it("forgets a family whose revisions are all gone, but registers it again at the next revision", async () => {
    await doomed("gone");
    await doomed("gone");
    const families = async () =>
      (await call<{ families: string[] }>("ListTaskDefinitionFamilies", { status: "ALL" })).families;
    assert.deepEqual(await families(), ["gone"], "a DELETE_IN_PROGRESS family is still listed");
    assert.equal(await purgeAllDeletedTaskDefinitions(store), 2);
    assert.deepEqual(await families(), []);
    assert.equal(await describeError("gone:2"), "ClientException: Unable to describe task definition.");

    const { taskDefinition } = await call<{ taskDefinition: { revision: number } }>(
      "RegisterTaskDefinition",
      { family: "gone", containerDefinitions: [{ name: "app", image: "busybox", memory: 32 }] },
    );
    assert.equal(taskDefinition.revision, 3);
    assert.deepEqual(await families(), ["gone"]);
    // Deleting the new latest revision too still keeps the count.
    await call("DeregisterTaskDefinition", { taskDefinition: "gone:3" });
    await call("DeleteTaskDefinitions", { taskDefinitions: ["gone:3"] });
    assert.equal(await purgeAllDeletedTaskDefinitions(store), 1);
    const next = await call<{ taskDefinition: { revision: number } }>("RegisterTaskDefinition", {
      family: "gone",
      containerDefinitions: [{ name: "app", image: "busybox", memory: 32 }],
    });
    assert.equal(next.taskDefinition.revision, 4);
    const rows = await store.read((tx) =>
      tx.all<{ revision: number }>("SELECT revision FROM ecs_task_definitions WHERE family = 'gone'"),
    );
    assert.deepEqual(
      rows.map((r) => r.revision),
      [3, 4],
      "one row keeps the count",
    );
  });
});
