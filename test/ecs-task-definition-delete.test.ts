// DeleteTaskDefinitions end to end: a DELETE_IN_PROGRESS revision is deleted for good by the
// server's housekeeping once no task still runs it, as ECS deletes it.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  CreateClusterCommand,
  DeleteTaskDefinitionsCommand,
  DeregisterTaskDefinitionCommand,
  DescribeTaskDefinitionCommand,
  type ECSClient,
  ListTaskDefinitionFamiliesCommand,
  ListTaskDefinitionsCommand,
  RegisterTaskDefinitionCommand,
  RunTaskCommand,
} from "@aws-sdk/client-ecs";
import { ServerClient } from "../src/agent/client.ts";
import { eventually } from "./agent-harness.ts";
import { ecsClient, startTestServer, type TestServer } from "./helpers.ts";

let server: TestServer;
let ecs: ECSClient;
before(async () => {
  server = await startTestServer({ purgeIntervalMs: 200 });
  ecs = ecsClient(server);
});
after(async () => {
  ecs?.destroy();
  await server?.stop();
});

async function register(family: string): Promise<string> {
  const out = await ecs.send(
    new RegisterTaskDefinitionCommand({
      family,
      containerDefinitions: [{ name: "app", image: "busybox", memory: 32, essential: true }],
    }),
  );
  return out.taskDefinition?.taskDefinitionArn ?? "";
}

/** The error DescribeTaskDefinition answers with, or "described" and the status. */
async function describeOutcome(taskDefinition: string): Promise<string> {
  try {
    const out = await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition }));
    return `described ${out.taskDefinition?.status}`;
  } catch (error) {
    return `${(error as Error).name}: ${(error as Error).message}`;
  }
}

describe("deleted task definitions", () => {
  it("are deleted for good once no task runs them; the family keeps counting revisions", async () => {
    await ecs.send(new CreateClusterCommand({ clusterName: "tddel" }));
    const agent = new ServerClient(server.endpoint, server.credentials, "us-east-1");
    await agent.register({
      cluster: "tddel",
      hostname: "node",
      address: "127.0.0.1",
      totalResources: { cpu: 1024, memory: 1024 },
      attributes: [],
      versionInfo: { agentVersion: "test" },
      capacity: "EC2",
    });
    const unused = await register("doomed");
    const used = await register("doomed");
    const run = await ecs.send(new RunTaskCommand({ cluster: "tddel", taskDefinition: used }));
    const taskArn = run.tasks?.[0]?.taskArn ?? "";
    assert.notEqual(taskArn, "");

    for (const arn of [unused, used]) {
      await ecs.send(new DeregisterTaskDefinitionCommand({ taskDefinition: arn }));
    }
    const deleted = await ecs.send(new DeleteTaskDefinitionsCommand({ taskDefinitions: [unused, used] }));
    assert.deepEqual(
      deleted.taskDefinitions?.map((d) => d.status),
      ["DELETE_IN_PROGRESS", "DELETE_IN_PROGRESS"],
    );

    // The unused revision goes on a housekeeping pass; the one its task still runs stays.
    await eventually("doomed:1 deleted", async () =>
      (await describeOutcome(unused)).startsWith("ClientException") ? true : undefined,
    );
    assert.equal(await describeOutcome(unused), "ClientException: Unable to describe task definition.");
    assert.equal(await describeOutcome(used), "described DELETE_IN_PROGRESS");
    const inProgress = await ecs.send(new ListTaskDefinitionsCommand({ status: "DELETE_IN_PROGRESS" }));
    assert.deepEqual(inProgress.taskDefinitionArns, [used]);

    // The task stops (its agent says so): nothing uses the revision any more.
    await agent.report({ taskArn, lastStatus: "STOPPED", containers: [], at: Date.now() });
    await eventually("doomed:2 deleted", async () =>
      (await describeOutcome(used)).startsWith("ClientException") ? true : undefined,
    );
    const families = await ecs.send(new ListTaskDefinitionFamiliesCommand({ familyPrefix: "doomed" }));
    assert.deepEqual(families.families, [], "a family with no revision left is not listed");
    const again = await register("doomed");
    assert.ok(again.endsWith(":3"), again);
    const listed = await ecs.send(new ListTaskDefinitionsCommand({ familyPrefix: "doomed" }));
    assert.deepEqual(listed.taskDefinitionArns, [again]);
  });
});
