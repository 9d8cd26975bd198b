import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { draftTaskDefinition } from "./task-definition-rules.ts";
import {
  assembleTaskDefinition,
  networkModeOf,
  parseTaskDefinitionReference,
  taskDefinitionArn,
} from "./task-definitions.ts";

const scope = { region: "us-east-1", accountId: "000000000000" };

describe("parseTaskDefinitionReference", () => {
  it("reads a family, a family:revision and an ARN", () => {
    assert.deepEqual(parseTaskDefinitionReference(scope, "web"), { family: "web" });
    assert.deepEqual(parseTaskDefinitionReference(scope, "web:3"), { family: "web", revision: 3 });
    assert.deepEqual(
      parseTaskDefinitionReference(scope, "arn:aws:ecs:us-east-1:000000000000:task-definition/web_1:12"),
      { family: "web_1", revision: 12 },
    );
  });

  it("names nothing for malformed references or another region's ARN", () => {
    for (const reference of [
      "",
      "web:",
      "web:0",
      "web:x",
      "a b",
      "web:1:2",
      "arn:aws:ecs:eu-west-1:000000000000:task-definition/web:1",
      "arn:aws:ecs:us-east-1:111111111111:task-definition/web:1",
      "arn:aws:ecs:us-east-1:000000000000:cluster/web",
    ]) {
      assert.equal(parseTaskDefinitionReference(scope, reference), undefined, reference);
    }
  });
});

describe("assembleTaskDefinition", () => {
  it("writes the identity ECS assigns and the members in ECS's order", () => {
    const draft = draftTaskDefinition({
      family: "web",
      networkMode: "bridge",
      containerDefinitions: [{ name: "web", image: "busybox", memory: 32 }],
    });
    const td = assembleTaskDefinition(draft, {
      taskDefinitionArn: taskDefinitionArn(scope, "web", 4),
      revision: 4,
      status: "ACTIVE",
      registeredAt: 1700000000.5,
      registeredBy: "arn:aws:iam::000000000000:user/admin",
    });
    assert.equal(td.taskDefinitionArn, "arn:aws:ecs:us-east-1:000000000000:task-definition/web:4");
    assert.deepEqual(Object.keys(td), [
      "taskDefinitionArn",
      "containerDefinitions",
      "family",
      "networkMode",
      "revision",
      "volumes",
      "status",
      "placementConstraints",
      "compatibilities",
      "registeredAt",
      "registeredBy",
    ]);
    assert.equal(networkModeOf(td), "bridge");
    assert.equal(networkModeOf({}), "bridge");
  });
});
