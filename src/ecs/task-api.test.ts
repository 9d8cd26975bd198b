import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  checkInput,
  expandPortRanges,
  reusedCredentials,
  TaskMaker,
  type TaskRegistryAccess,
} from "./task-api.ts";
import { bodyOf, taskShape } from "./tasks.ts";
import {
  awsvpcDefinition,
  checkedDefinition,
  testCluster,
  testContext,
  testDefinition,
  testRegistry,
} from "./testing.ts";

/** Whether an error is ECS's InvalidParameterException with a message like `message`. */
const refused = (message: RegExp) => (error: unknown) =>
  error instanceof Error &&
  (error as { code?: string }).code === "InvalidParameterException" &&
  message.test(error.message);

describe("reusedCredentials", () => {
  it("gives the credentials issued to a key again for a minute after, then issues new ones", () => {
    let asked = 0;
    const registry: TaskRegistryAccess = {
      host: () => "registry.test",
      credentials: (accessKeyId, now) => {
        asked++;
        return { username: "AWS", password: `${accessKeyId}@${now.getTime()}#${asked}` };
      },
    };
    const reused = reusedCredentials(registry, 60_000);
    const at = (ms: number) => new Date(1_000 + ms);
    assert.equal(reused.host(), "registry.test");
    assert.deepEqual(reused.credentials("AKIA1", at(0)), { username: "AWS", password: "AKIA1@1000#1" });
    assert.deepEqual(reused.credentials("AKIA1", at(59_999)), { username: "AWS", password: "AKIA1@1000#1" });
    assert.equal(asked, 1);
    // A minute on, new ones; so for another key, and for a clock that went back.
    assert.deepEqual(reused.credentials("AKIA1", at(60_000)), { username: "AWS", password: "AKIA1@61000#2" });
    assert.deepEqual(reused.credentials("AKIA2", at(60_000)), { username: "AWS", password: "AKIA2@61000#3" });
    assert.deepEqual(reused.credentials("AKIA2", at(0)), { username: "AWS", password: "AKIA2@1000#4" });
  });
});

describe("checkInput: placement constraints", () => {
  const memberOf = (i: number) => ({ type: "memberOf" as const, expression: `attribute:n${i} exists` });

  it("counts the task definition's constraints toward the 10 a task may have", () => {
    const definition = {
      ...testDefinition(),
      placementConstraints: Array.from({ length: 6 }, (_, i) => memberOf(i)),
    };
    const four = { placementConstraints: Array.from({ length: 4 }, (_, i) => memberOf(10 + i)) };
    checkInput(four, definition);
    const five = { placementConstraints: Array.from({ length: 5 }, (_, i) => memberOf(10 + i)) };
    assert.throws(
      () => checkInput(five, definition),
      refused(/at most 10 placement constraints.*11 were given/),
    );
  });

  it("refuses an expression on distinctInstance, and takes it empty", () => {
    checkInput({ placementConstraints: [{ type: "distinctInstance", expression: "" }] }, testDefinition());
    assert.throws(
      () =>
        checkInput(
          { placementConstraints: [{ type: "distinctInstance", expression: "attribute:a == b" }] },
          testDefinition(),
        ),
      refused(/distinctInstance/),
    );
  });
});

describe("checkInput: awsvpc configuration", () => {
  const vpc = (subnets: number, securityGroups: number) => ({
    networkConfiguration: {
      awsvpcConfiguration: {
        subnets: Array.from({ length: subnets }, (_, i) => `subnet-${i}`),
        securityGroups: Array.from({ length: securityGroups }, (_, i) => `sg-${i}`),
      },
    },
  });

  it("takes 1 to 16 subnets and up to 5 security groups, as ECS does", () => {
    checkInput(vpc(1, 0), awsvpcDefinition());
    checkInput(vpc(16, 5), awsvpcDefinition());
    assert.throws(() => checkInput(vpc(0, 0), awsvpcDefinition()), refused(/^subnets can not be empty\.$/));
    assert.throws(() => checkInput(vpc(17, 0), awsvpcDefinition()), refused(/limit of 16 subnets/));
    assert.throws(() => checkInput(vpc(1, 6), awsvpcDefinition()), refused(/limit of 5 security groups/));
  });
});

describe("expandPortRanges", () => {
  it("gives each port of a bridge task's containerPortRange a mapping with a dynamic host port", () => {
    const mappings = [
      { containerPort: 80, hostPort: 8080 },
      { containerPortRange: "9000-9002", protocol: "udp" as const },
    ];
    assert.deepEqual(expandPortRanges(mappings, "bridge"), [
      { containerPort: 80, hostPort: 8080, protocol: "tcp" },
      { containerPort: 9000, hostPort: 0, protocol: "udp" },
      { containerPort: 9001, hostPort: 0, protocol: "udp" },
      { containerPort: 9002, hostPort: 0, protocol: "udp" },
    ]);
    assert.deepEqual(expandPortRanges([{ containerPortRange: "9000-9001" }], "awsvpc"), [], "nothing to map");
    assert.deepEqual(
      expandPortRanges([{ containerPortRange: "1-4294967295" }], "bridge"),
      [],
      "never stored now",
    );
  });
});

describe("TaskMaker", () => {
  const awsvpc = awsvpcDefinition();
  const cases: Array<{ name: string; maker: TaskMaker }> = [
    { name: "one container, bridge", definition: testDefinition(), input: {} },
    {
      name: "health check, startedBy, group",
      definition: checkedDefinition(),
      input: { startedBy: "me", group: "g" },
    },
    {
      name: "awsvpc, overrides, tags",
      definition: awsvpc,
      input: {
        overrides: { cpu: "512", containerOverrides: [{ name: "web", command: ["x"] }] },
        tags: [{ key: "k", value: "v" }],
      },
    },
    { name: "Fargate", definition: awsvpc, input: { launchType: "FARGATE" } },
    {
      name: "a service's",
      definition: testDefinition(),
      input: { startedBy: "ecs-svc/1" },
      serviceName: "web",
    },
  ].map(({ name, definition, input, serviceName }) => ({
    name,
    maker: new TaskMaker({
      ctx: testContext,
      cluster: testCluster,
      definition,
      input: { taskDefinition: definition.taskDefinitionArn, ...input },
      registry: testRegistry,
      ...(serviceName === undefined ? {} : { serviceName }),
    }),
  }));

  it("gives each task's body and RunTask shape exactly as serializing the task would", () => {
    for (const { name, maker } of cases) {
      const made = [
        maker.make(`${testCluster.arn.replace(":cluster/", ":container-instance/")}/a`, "us-east-1a"),
        maker.make(`${testCluster.arn.replace(":cluster/", ":container-instance/")}/b`, undefined),
        maker.make(`${testCluster.arn.replace(":cluster/", ":container-instance/")}/c`, "us-east-1c"),
      ];
      for (const task of made) {
        assert.equal(task.body, bodyOf(task.record), name);
        assert.equal(task.shape(), JSON.stringify(taskShape(task.record, true)), name);
      }
      // Each task's own strings: no two tasks share an ARN, and the zone is the instance's.
      assert.equal(new Set(made.map((m) => m.record.wire.taskArn)).size, 3, name);
      assert.equal(
        new Set(made.flatMap((m) => m.record.wire.containers.map((c) => c.containerArn))).size,
        3 * (made[0]?.record.wire.containers.length ?? 0),
        name,
      );
      assert.deepEqual(
        made.map((m) => JSON.parse(m.body).wire.availabilityZone),
        ["us-east-1a", undefined, "us-east-1c"],
        name,
      );
    }
  });

  it("names a service's task for its service, and leaves a Fargate task's instance out of its shape", () => {
    const [, , , fargate, service] = cases;
    const task = service?.maker.make("arn:aws:ecs:us-east-1:000000000000:container-instance/default/i", "z");
    assert.equal(task?.record.serviceName, "web");
    // The row's service_name column holds it (`bodyOf`).
    assert.equal("serviceName" in JSON.parse(task?.body ?? "{}"), false);
    const shape = JSON.parse(fargate?.maker.make("arn:i", "z").shape() ?? "{}");
    assert.equal(shape.launchType, "FARGATE");
    assert.equal(shape.containerInstanceArn, undefined);
    assert.equal(shape.attachments[0].type, "ElasticNetworkInterface");
  });
});
