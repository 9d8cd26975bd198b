import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Operation } from "../aws/service.ts";
import { SqliteStore } from "../store/sqlite.ts";
import { saveCluster } from "./clusters.ts";
import { instanceOperations } from "./instance-api.ts";
import { InstanceNotifier } from "./notifier.ts";
import { SchedulerState } from "./scheduler-state.ts";
import { serviceOperations } from "./service-api.ts";
import { taskOperations } from "./task-api.ts";
import { taskDefinitionOperations } from "./task-definition-api.ts";
import { testCluster, testContext, testRegistry } from "./testing.ts";

// Limits ECS's API reference documents on what a request may carry, each refused as
// InvalidParameterException before anything is read or written.

let store: SqliteStore;
let operations: Record<string, Operation>;

before(async () => {
  store = await SqliteStore.open({ path: ":memory:" });
  await store.transaction((tx) => saveCluster(tx, testCluster));
  const state = await SchedulerState.load(store);
  const notifier = new InstanceNotifier();
  operations = {
    ...taskDefinitionOperations(store),
    ...serviceOperations(store, () => undefined),
    ...taskOperations(store, notifier, testRegistry, state),
    ...instanceOperations(store, notifier, state),
  };
  await call("RegisterTaskDefinition", {
    family: "app",
    containerDefinitions: [{ name: "app", image: "busybox", memory: 64 }],
  });
});

after(async () => {
  await store.close();
});

function call(name: string, input: Record<string, unknown>): Promise<unknown> {
  const operation = operations[name];
  assert.ok(operation !== undefined, name);
  return operation(input, testContext);
}

describe("clientToken", () => {
  it("takes up to 64 characters for RunTask and 36 for CreateService, all in ASCII 33-126", async () => {
    await assert.rejects(
      call("RunTask", { taskDefinition: "app", clientToken: "t".repeat(65) }),
      /InvalidParameterException.*clientToken.*less than or equal to 64/,
    );
    await assert.rejects(
      call("RunTask", { taskDefinition: "app", clientToken: "with space" }),
      /InvalidParameterException.*clientToken.*regular expression/,
    );
    await assert.rejects(
      call("CreateService", { serviceName: "s", taskDefinition: "app", clientToken: "t".repeat(37) }),
      /InvalidParameterException.*clientToken.*less than or equal to 36/,
    );
    await assert.rejects(
      call("CreateService", { serviceName: "s", taskDefinition: "app", clientToken: "caf\u00e9" }),
      /InvalidParameterException.*clientToken.*regular expression/,
    );
    const created = (await call("CreateService", {
      serviceName: "s",
      taskDefinition: "app",
      desiredCount: 0,
      clientToken: `${"~".repeat(35)}!`,
    })) as { service: { serviceName: string } };
    assert.equal(created.service.serviceName, "s");
  });
});

describe("serviceRegistries", () => {
  it("takes one registry a service, on CreateService and UpdateService", async () => {
    const registry = (n: number) => ({
      registryArn: `arn:aws:servicediscovery:us-east-1:000000000000:service/srv-${n}`,
    });
    await assert.rejects(
      call("CreateService", {
        serviceName: "two",
        taskDefinition: "app",
        serviceRegistries: [registry(1), registry(2)],
      }),
      /InvalidParameterException.*serviceRegistries.*less than or equal to 1/,
    );
    await assert.rejects(
      call("UpdateService", { service: "s", serviceRegistries: [registry(1), registry(2)] }),
      /InvalidParameterException.*serviceRegistries.*less than or equal to 1/,
    );
  });
});

describe("ListAttributes", () => {
  it("takes an attributeValue only with an attributeName", async () => {
    await assert.rejects(
      call("ListAttributes", { targetType: "container-instance", attributeValue: "blue" }),
      /InvalidParameterException.*attributeName must be specified/,
    );
    assert.deepEqual(
      await call("ListAttributes", {
        targetType: "container-instance",
        attributeName: "color",
        attributeValue: "blue",
      }),
      { attributes: [] },
    );
  });
});
