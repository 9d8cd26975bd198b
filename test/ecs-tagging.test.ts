import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import {
  CreateClusterCommand,
  CreateServiceCommand,
  DescribeServicesCommand,
  DescribeTasksCommand,
  type ECSClient,
  ListTagsForResourceCommand,
  RegisterContainerInstanceCommand,
  RegisterTaskDefinitionCommand,
  RunTaskCommand,
  TagResourceCommand,
  UntagResourceCommand,
} from "@aws-sdk/client-ecs";
import { aws, ecsClient, startTestServer, type TestServer } from "./helpers.ts";

/**
 * TagResource, UntagResource and ListTagsForResource on the resources that
 * live inside a cluster: services, tasks and container instances. A
 * container instance registered through the API (no agent) gives RunTask a
 * place to put a task, so no container has to run.
 */

let server: TestServer;
let client: ECSClient;
const run = randomBytes(3).toString("hex");
const cluster = `tagging-${run}`;
let serviceArn: string;
let taskArn: string;
let instanceArn: string;

function sorted(tags: Array<{ key?: string | undefined; value?: string | undefined }> | undefined): string[] {
  return (tags ?? []).map((t) => `${t.key}=${t.value}`).sort();
}

async function tagsOf(resourceArn: string): Promise<string[]> {
  return sorted((await client.send(new ListTagsForResourceCommand({ resourceArn }))).tags);
}

async function errorOf(promise: Promise<unknown>): Promise<{ name: string; message: string }> {
  try {
    await promise;
  } catch (error) {
    const { name, message } = error as Error;
    return { name, message };
  }
  assert.fail("the call succeeded");
}

before(async () => {
  server = await startTestServer();
  client = ecsClient(server);
  await client.send(new CreateClusterCommand({ clusterName: cluster }));
  const instance = await client.send(
    new RegisterContainerInstanceCommand({
      cluster,
      totalResources: [
        { name: "CPU", type: "INTEGER", integerValue: 2048 },
        { name: "MEMORY", type: "INTEGER", integerValue: 4096 },
      ],
      tags: [{ key: "rack", value: "r1" }],
    }),
  );
  instanceArn = instance.containerInstance?.containerInstanceArn ?? "";
  await client.send(
    new RegisterTaskDefinitionCommand({
      family: `tagging-${run}`,
      containerDefinitions: [{ name: "app", image: "busybox", memory: 64, essential: true }],
    }),
  );
  const service = await client.send(
    new CreateServiceCommand({
      cluster,
      serviceName: "web",
      taskDefinition: `tagging-${run}`,
      desiredCount: 0,
      tags: [{ key: "team", value: "platform" }],
    }),
  );
  serviceArn = service.service?.serviceArn ?? "";
  const task = await client.send(new RunTaskCommand({ cluster, taskDefinition: `tagging-${run}` }));
  taskArn = task.tasks?.[0]?.taskArn ?? "";
  assert.match(taskArn, /:task\//);
});

after(async () => {
  await server?.stop();
});

describe("tags on a cluster's services, tasks and container instances", () => {
  it("adds, lists and removes a service's tags, and DescribeServices shows them", async () => {
    await client.send(
      new TagResourceCommand({
        resourceArn: serviceArn,
        tags: [
          { key: "env", value: "prod" },
          { key: "team", value: "edge" },
        ],
      }),
    );
    assert.deepEqual(await tagsOf(serviceArn), ["env=prod", "team=edge"]);
    const described = await client.send(
      new DescribeServicesCommand({ cluster, services: ["web"], include: ["TAGS"] }),
    );
    assert.deepEqual(sorted(described.services?.[0]?.tags), ["env=prod", "team=edge"]);
    await client.send(new UntagResourceCommand({ resourceArn: serviceArn, tagKeys: ["team"] }));
    assert.deepEqual(await tagsOf(serviceArn), ["env=prod"]);
  });

  it("tags a task, and DescribeTasks shows the tags", async () => {
    await client.send(new TagResourceCommand({ resourceArn: taskArn, tags: [{ key: "batch", value: "7" }] }));
    assert.deepEqual(await tagsOf(taskArn), ["batch=7"]);
    const described = await client.send(
      new DescribeTasksCommand({ cluster, tasks: [taskArn], include: ["TAGS"] }),
    );
    assert.deepEqual(sorted(described.tasks?.[0]?.tags), ["batch=7"]);
  });

  it("tags a container instance on top of the tags it was registered with (awscli)", async () => {
    const tagged = await aws(server, [
      "ecs",
      "tag-resource",
      "--resource-arn",
      instanceArn,
      "--tags",
      "key=zone-owner,value=ops",
    ]);
    assert.equal(tagged.code, 0, tagged.stderr);
    const listed = await aws(server, ["ecs", "list-tags-for-resource", "--resource-arn", instanceArn]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(
      sorted((JSON.parse(listed.stdout) as { tags: Array<{ key: string; value: string }> }).tags),
      ["rack=r1", "zone-owner=ops"],
    );
  });

  it("refuses resources that do not exist, short ARNs, aws: keys and other accounts", async () => {
    const missing = serviceArn.replace(/\/web$/, "/nope");
    assert.deepEqual(await errorOf(client.send(new ListTagsForResourceCommand({ resourceArn: missing }))), {
      name: "ResourceNotFoundException",
      message: "The specified resource wasn't found.",
    });
    const missingTask = taskArn.replace(/[0-9a-f]{32}$/, "0".repeat(32));
    const taskError = await errorOf(
      client.send(new TagResourceCommand({ resourceArn: missingTask, tags: [{ key: "a", value: "b" }] })),
    );
    assert.equal(taskError.name, "ResourceNotFoundException");
    const short = serviceArn.replace(`/${cluster}/`, "/");
    assert.deepEqual(
      await errorOf(
        client.send(new TagResourceCommand({ resourceArn: short, tags: [{ key: "a", value: "b" }] })),
      ),
      { name: "InvalidParameterException", message: "Long arn format must be used for tagging operations" },
    );
    const reserved = await errorOf(
      client.send(
        new TagResourceCommand({ resourceArn: serviceArn, tags: [{ key: "aws:owner", value: "x" }] }),
      ),
    );
    assert.equal(reserved.name, "InvalidParameterException");
    const elsewhere = serviceArn.replace(/:\d{12}:/, ":999999999999:");
    assert.equal(
      (await errorOf(client.send(new ListTagsForResourceCommand({ resourceArn: elsewhere })))).name,
      "ResourceNotFoundException",
    );
    assert.deepEqual(await tagsOf(serviceArn), ["env=prod"]);
  });
});
