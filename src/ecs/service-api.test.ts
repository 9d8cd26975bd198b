import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { SqliteStore } from "../store/sqlite.ts";
import { saveCluster } from "./clusters.ts";
import { serviceOperations } from "./service-api.ts";
import { findServiceByArn, saveService } from "./services.ts";
import { taskDefinitionOperations } from "./task-definition-api.ts";
import { testCluster, testContext } from "./testing.ts";

let store: SqliteStore;
const ops = () => serviceOperations(store, () => undefined);
const memberOf = (n: number) =>
  Array.from({ length: n }, (_, i) => ({ type: "memberOf" as const, expression: `attribute:n${i} exists` }));

before(async () => {
  store = await SqliteStore.open({ path: ":memory:" });
  await store.transaction((tx) => saveCluster(tx, testCluster));
  await taskDefinitionOperations(store).RegisterTaskDefinition?.(
    { family: "app", containerDefinitions: [{ name: "app", image: "busybox", memory: 64 }] },
    testContext,
  );
});

after(async () => {
  await store.close();
});

describe("UpdateService and the limits on what a call gives", () => {
  it("refuses 11 placement constraints given, and keeps a service stored with them updatable", async () => {
    const created = (await ops().CreateService?.(
      { serviceName: "old", taskDefinition: "app", desiredCount: 0 },
      testContext,
    )) as { service: { serviceArn: string } };
    const arn = created.service.serviceArn;
    await assert.rejects(
      Promise.resolve(
        ops().UpdateService?.({ service: "old", placementConstraints: memberOf(11) }, testContext),
      ),
      /InvalidParameterException.*less than or equal to 10/,
    );
    // A service stored before the limit was checked (written here as an older Wharf could have).
    await store.transaction(async (tx) => {
      const record = await findServiceByArn(tx, arn);
      assert.ok(record !== undefined);
      await saveService(tx, { ...record, placementConstraints: memberOf(11) });
    });
    const updated = (await ops().UpdateService?.({ service: "old", desiredCount: 2 }, testContext)) as {
      service: { desiredCount: number };
    };
    assert.equal(updated.service.desiredCount, 2, "its stored constraints are not refused again");
  });
});

describe("CreateService", () => {
  it("records who created the service (createdBy), as STS GetCallerIdentity names the caller", async () => {
    await store.transaction((tx) =>
      tx.run(
        "INSERT INTO access_keys (access_key_id, secret_sealed, user_name, status, created_at) VALUES (?, ?, ?, 'Active', 0)",
        "AKIDCREATOR",
        "sealed",
        "deployer",
      ),
    );
    const created = (await ops().CreateService?.(
      { serviceName: "made", taskDefinition: "app", desiredCount: 0 },
      { ...testContext, identity: { accessKeyId: "AKIDCREATOR" } },
    )) as { service: { createdBy?: string } };
    const createdBy = `arn:aws:iam::${testContext.accountId}:user/deployer`;
    assert.equal(created.service.createdBy, createdBy);
    // An update by another key leaves it as it was.
    const updated = (await ops().UpdateService?.({ service: "made", desiredCount: 1 }, testContext)) as {
      service: { createdBy?: string };
    };
    assert.equal(updated.service.createdBy, createdBy);
  });
});
