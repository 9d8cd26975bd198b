import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { cpus } from "node:os";
import { after, before, describe, it } from "node:test";
import { DescribeTasksCommand, ListTasksCommand, RunTaskCommand } from "@aws-sdk/client-ecs";
import {
  cleanupAgent,
  eventually,
  pushBusybox,
  startTestAgent,
  type TestAgent,
  unusedStaticPort,
} from "./agent-harness.ts";
import {
  aws,
  awsEcs,
  awsEcsFails,
  ecsClient,
  registerTaskDefinitionCli,
  startTestServer,
  type TestServer,
} from "./helpers.ts";

/**
 * The task API as an ECS user checks it: ListTasks filters and paging,
 * StartTask, DescribeTasks failures, placement failures (resources, ports,
 * constraints), overrides and the timestamps of every transition.
 */

let server: TestServer;
const agents: TestAgent[] = [];
let image: string;
const run = randomBytes(3).toString("hex");
const cluster = `placement-${run}`;

interface Task {
  taskArn: string;
  lastStatus: string;
  desiredStatus: string;
  containerInstanceArn?: string;
  startedBy?: string;
  stoppedReason?: string;
  overrides?: { containerOverrides?: Array<{ name: string; command?: string[] }> };
  containers: Array<{ name: string; exitCode?: number }>;
}
interface Failure {
  arn: string;
  reason: string;
}

before(async () => {
  server = await startTestServer();
  image = await pushBusybox(server, `placement-${run}`);
  await ecs(["create-cluster", "--cluster-name", cluster]);
  agents.push(
    await startTestAgent(server, {
      cluster,
      zone: "us-east-1a",
      attributes: [{ name: "color", value: "blue" }],
    }),
  );
});

after(async () => {
  for (const agent of agents) {
    await agent.stop();
    await cleanupAgent(agent);
  }
  await server?.stop();
});

const ecs = <T = Record<string, unknown>>(args: string[]) => awsEcs<T>(server, args);
const ecsFails = (args: string[]) => awsEcsFails(server, args);

const registerTaskDefinition = (definition: Record<string, unknown>) =>
  registerTaskDefinitionCli(server, definition);

function sleeper(family: string, extra: Record<string, unknown> = {}): Promise<string> {
  return registerTaskDefinition({
    family,
    containerDefinitions: [
      { name: "app", image, memory: 32, command: ["sleep", "600"], stopTimeout: 2, ...extra },
    ],
  });
}

async function runTask(args: string[]): Promise<{ tasks: Task[]; failures: Failure[] }> {
  return ecs(["run-task", "--cluster", cluster, ...args]);
}

async function describeTask(taskArn: string): Promise<Task> {
  const out = await ecs<{ tasks: Task[] }>(["describe-tasks", "--cluster", cluster, "--tasks", taskArn]);
  const task = out.tasks[0];
  assert.ok(task !== undefined, `${taskArn} is described`);
  return task;
}

function untilStatus(taskArn: string, status: string): Promise<Task> {
  return eventually(`${taskArn} ${status}`, async () => {
    const task = await describeTask(taskArn);
    if (task.lastStatus === "STOPPED" && status !== "STOPPED")
      assert.fail(`${taskArn} stopped instead: ${task.stoppedReason} ${JSON.stringify(task.containers)}`);
    return task.lastStatus === status ? task : undefined;
  });
}

async function stopAll(tasks: Task[]): Promise<void> {
  for (const task of tasks) await ecs(["stop-task", "--cluster", cluster, "--task", task.taskArn]);
  await Promise.all(tasks.map((task) => untilStatus(task.taskArn, "STOPPED")));
}

async function listTasks(args: string[]): Promise<string[]> {
  const out = await ecs<{ taskArns: string[] }>(["list-tasks", "--cluster", cluster, ...args]);
  return [...out.taskArns].sort();
}

function arns(tasks: Task[]): string[] {
  return tasks.map((t) => t.taskArn).sort();
}

function firstAgentArn(): string {
  const arn = agents[0]?.agent.containerInstanceArn;
  assert.ok(arn !== undefined, "the first agent registered");
  return arn;
}

describe("tasks: the API in detail", () => {
  it("applies command and environment overrides in the running container", async () => {
    const definition = await registerTaskDefinition({
      family: `greeter-${run}`,
      containerDefinitions: [
        {
          name: "app",
          image,
          memory: 32,
          command: ["sh", "-c", "echo default"],
          environment: [{ name: "GREETING", value: "hello" }],
          logConfiguration: {
            logDriver: "awslogs",
            options: {
              "awslogs-group": `/ecs/greeter-${run}`,
              "awslogs-stream-prefix": "greet",
              "awslogs-create-group": "true",
              "awslogs-region": "us-east-1",
            },
          },
        },
      ],
    });
    const overrides = {
      containerOverrides: [
        {
          name: "app",
          command: ["sh", "-c", 'echo "said $GREETING to $WHO"'],
          environment: [
            { name: "GREETING", value: "bonjour" },
            { name: "WHO", value: "wharf" },
          ],
        },
      ],
    };
    const started = await runTask([
      "--task-definition",
      definition,
      "--overrides",
      JSON.stringify(overrides),
    ]);
    assert.deepEqual(started.failures, []);
    const task = started.tasks[0];
    assert.ok(task !== undefined, "the task started");
    assert.deepEqual(
      task.overrides?.containerOverrides?.[0]?.command,
      overrides.containerOverrides[0]?.command,
    );
    const stopped = await untilStatus(task.taskArn, "STOPPED");
    assert.equal(stopped.containers[0]?.exitCode, 0);

    const taskId = task.taskArn.slice(task.taskArn.lastIndexOf("/") + 1);
    const messages = await eventually("the container's output", async () => {
      const result = await aws(server, [
        "logs",
        "get-log-events",
        "--log-group-name",
        `/ecs/greeter-${run}`,
        "--log-stream-name",
        `greet/app/${taskId}`,
      ]);
      const events = (result.json as { events?: Array<{ message: string }> } | undefined)?.events ?? [];
      return events.length > 0 ? events.map((e) => e.message) : undefined;
    });
    assert.deepEqual(messages, ["said bonjour to wharf"]);
  });

  it("stamps every transition in order, and a stopped task stays describable", async () => {
    const started = await runTask([
      "--task-definition",
      await sleeper(`stamps-${run}`),
      "--tags",
      "key=stage,value=test",
    ]);
    const task = started.tasks[0];
    assert.ok(task !== undefined, "the task started");
    await untilStatus(task.taskArn, "RUNNING");
    await ecs(["stop-task", "--cluster", cluster, "--task", task.taskArn, "--reason", "enough"]);
    // ECS: "Stops a running task. Any tags associated with the task will be deleted."
    const tags = await ecs<{ tags: unknown[] }>(["list-tags-for-resource", "--resource-arn", task.taskArn]);
    assert.deepEqual(tags.tags, []);
    await untilStatus(task.taskArn, "STOPPED");

    const sdk = ecsClient(server);
    const described = await sdk.send(new DescribeTasksCommand({ cluster, tasks: [task.taskArn] }));
    const stopped = described.tasks?.[0];
    assert.ok(stopped !== undefined, "the stopped task is still described");
    assert.equal(stopped.lastStatus, "STOPPED");
    assert.equal(stopped.desiredStatus, "STOPPED");
    assert.equal(stopped.stoppedReason, "enough");
    const order = [
      "createdAt",
      "pullStartedAt",
      "pullStoppedAt",
      "startedAt",
      "stoppingAt",
      "executionStoppedAt",
      "stoppedAt",
    ] as const;
    const times = order.map((field) => {
      const value = stopped[field];
      assert.ok(value instanceof Date, `${field} is present`);
      return value.getTime();
    });
    for (let i = 1; i < times.length; i++) {
      assert.ok(
        (times[i - 1] ?? 0) <= (times[i] ?? 0),
        `${order[i - 1]} (${times[i - 1]}) <= ${order[i]} (${times[i]})`,
      );
    }
    // By its id too, and listed among stopped tasks.
    const byId = await describeTask(task.taskArn.slice(task.taskArn.lastIndexOf("/") + 1));
    assert.equal(byId.taskArn, task.taskArn);
    assert.ok((await listTasks(["--desired-status", "STOPPED"])).includes(task.taskArn), "listed as STOPPED");
  });

  it("filters ListTasks by family, started-by, container instance and desired status, and pages", async () => {
    const instance = firstAgentArn();
    const familyA = `list-a-${run}`;
    const familyB = `list-b-${run}`;
    // Through the SDK, which fills clientToken in and sends it again on a retry: the same token
    // asks again for what already happened, and gets the same tasks, not new ones.
    const sdk = ecsClient(server);
    const runA = {
      cluster,
      taskDefinition: await sleeper(familyA),
      count: 3,
      startedBy: "alice",
      clientToken: `list-a-${run}`,
    };
    const a = (await sdk.send(new RunTaskCommand(runA))) as { tasks: Task[]; failures: Failure[] };
    assert.deepEqual(a.failures, []);
    assert.equal(a.tasks.length, 3);
    const again = (await sdk.send(new RunTaskCommand(runA))) as { tasks: Task[] };
    assert.deepEqual(arns(again.tasks), arns(a.tasks));
    await assert.rejects(
      sdk.send(new RunTaskCommand({ ...runA, count: 1 })),
      (error: Error) =>
        error.name === "ConflictException" &&
        error.message === "The provided clientToken is already in use with a different RunTask request.",
    );
    const b = await ecs<{ tasks: Task[]; failures: Failure[] }>([
      "start-task",
      "--cluster",
      cluster,
      "--task-definition",
      await sleeper(familyB),
      "--container-instances",
      instance.slice(instance.lastIndexOf("/") + 1),
      "--started-by",
      "bob",
    ]);
    assert.deepEqual(b.failures, []);
    const bTask = b.tasks[0];
    assert.ok(bTask !== undefined, "start-task started a task");
    assert.equal(bTask.containerInstanceArn, instance, "StartTask puts the task on the named instance");
    assert.equal(bTask.startedBy, "bob");
    await Promise.all([...a.tasks, bTask].map((t) => untilStatus(t.taskArn, "RUNNING")));

    assert.deepEqual(await listTasks(["--family", familyA]), arns(a.tasks));
    assert.deepEqual(await listTasks(["--family", familyB]), [bTask.taskArn]);
    assert.deepEqual(await listTasks(["--started-by", "bob"]), [bTask.taskArn]);
    assert.deepEqual(await listTasks(["--started-by", "alice"]), arns(a.tasks));
    const onInstance = await listTasks(["--container-instance", instance]);
    for (const arn of [...arns(a.tasks), bTask.taskArn]) assert.ok(onInstance.includes(arn), `${arn} listed`);
    assert.deepEqual(await listTasks(["--family", `no-such-${run}`]), []);

    // Paging, as the SDK does it.
    const first = await sdk.send(new ListTasksCommand({ cluster, family: familyA, maxResults: 2 }));
    assert.equal(first.taskArns?.length, 2);
    assert.ok(first.nextToken !== undefined, "a token for the rest");
    const second = await sdk.send(
      new ListTasksCommand({ cluster, family: familyA, maxResults: 2, nextToken: first.nextToken }),
    );
    assert.equal(second.taskArns?.length, 1);
    assert.equal(second.nextToken, undefined);
    assert.deepEqual([...(first.taskArns ?? []), ...(second.taskArns ?? [])].sort(), arns(a.tasks));

    // A stopped task leaves the RUNNING listing and joins the STOPPED one.
    const [gone, ...rest] = a.tasks;
    assert.ok(gone !== undefined, "three tasks");
    await stopAll([gone]);
    assert.deepEqual(await listTasks(["--family", familyA]), arns(rest));
    assert.deepEqual(await listTasks(["--family", familyA, "--desired-status", "STOPPED"]), [gone.taskArn]);
    await stopAll([...rest, bTask]);
    assert.deepEqual(await listTasks(["--family", familyA]), []);
    assert.deepEqual(await listTasks(["--family", familyA, "--desired-status", "STOPPED"]), arns(a.tasks));
  });

  it("answers DescribeTasks for a task that does not exist with a MISSING failure", async () => {
    const [known] = await listTasks(["--desired-status", "STOPPED"]);
    assert.ok(known !== undefined, "an earlier task");
    const missing = `arn:aws:ecs:us-east-1:000000000000:task/${cluster}/${"0".repeat(32)}`;
    const out = await ecs<{ tasks: Task[]; failures: Failure[] }>([
      "describe-tasks",
      "--cluster",
      cluster,
      "--tasks",
      known,
      missing,
    ]);
    assert.deepEqual(
      out.tasks.map((t) => t.taskArn),
      [known],
    );
    assert.deepEqual(out.failures, [{ arn: missing, reason: "MISSING" }]);
    await assert.rejects(
      ecsClient(server).send(new DescribeTasksCommand({ cluster, tasks: [] })),
      (error: Error) =>
        error.name === "InvalidParameterException" && error.message === "Tasks cannot be empty.",
    );
    // A service that does not exist is an error for ListTasks, not an empty list.
    assert.match(
      await ecsFails(["list-tasks", "--cluster", cluster, "--service-name", `no-such-${run}`]),
      /ServiceNotFoundException.*Service not found\./,
    );
  });

  it("refuses a task larger than any node with RESOURCE:MEMORY or RESOURCE:CPU, and more than 10 at once", async () => {
    const instance = firstAgentArn();
    const hungry = await sleeper(`hungry-${run}`, { memory: 64 * 1024 * 1024 });
    const refused = await runTask(["--task-definition", hungry]);
    assert.deepEqual(refused.tasks, []);
    assert.deepEqual(refused.failures, [{ arn: instance, reason: "RESOURCE:MEMORY" }]);

    const busy = await sleeper(`busy-${run}`, { cpu: 1024 * (cpus().length + 4) });
    const noCpu = await runTask(["--task-definition", busy]);
    assert.deepEqual(noCpu.tasks, []);
    assert.deepEqual(noCpu.failures, [{ arn: instance, reason: "RESOURCE:CPU" }]);

    // StartTask names the instance, but the task still has to fit there.
    const started = await ecs<{ tasks: Task[]; failures: Failure[] }>([
      "start-task",
      "--cluster",
      cluster,
      "--task-definition",
      hungry,
      "--container-instances",
      instance,
    ]);
    assert.deepEqual(started.tasks, []);
    assert.deepEqual(started.failures, [{ arn: instance, reason: "RESOURCE:MEMORY" }]);

    const tooMany = await ecsFails([
      "run-task",
      "--cluster",
      cluster,
      "--task-definition",
      await sleeper(`many-${run}`),
      "--count",
      "11",
    ]);
    assert.equal(
      tooMany.trim(),
      // The CLI's own words around it: the tests run it with AWS_MAX_ATTEMPTS=1.
      "An error occurred (InvalidParameterException) when calling the RunTask operation (reached max retries: 0): " +
        "Count must be between 1 and 10.",
    );
    assert.deepEqual(await listTasks(["--family", `many-${run}`]), [], "nothing was started");
  });

  it("refuses a second task for a static host port already taken on the only instance: RESOURCE:PORTS", async () => {
    const instance = firstAgentArn();
    const hostPort = await unusedStaticPort();
    const definition = await sleeper(`port-${run}`, {
      portMappings: [{ containerPort: 8080, hostPort, protocol: "tcp" }],
    });
    const first = await runTask(["--task-definition", definition]);
    assert.deepEqual(first.failures, []);
    const holder = first.tasks[0];
    assert.ok(holder !== undefined, "the first task holds the port");
    await untilStatus(holder.taskArn, "RUNNING");
    const second = await runTask(["--task-definition", definition]);
    assert.deepEqual(second.tasks, []);
    assert.deepEqual(second.failures, [{ arn: instance, reason: "RESOURCE:PORTS" }]);
    // Another port is fine.
    const other = await runTask(["--task-definition", await sleeper(`port2-${run}`)]);
    assert.deepEqual(other.failures, []);
    await stopAll([holder, ...other.tasks]);
    const again = await runTask(["--task-definition", definition]);
    assert.deepEqual(again.failures, [], "the port is free once its task stopped");
    await stopAll(again.tasks);
  });

  it("honours memberOf and distinctInstance placement constraints", async () => {
    agents.push(
      await startTestAgent(server, {
        cluster,
        zone: "us-east-1b",
        attributes: [{ name: "color", value: "red" }],
      }),
    );
    const red = agents[1]?.agent.containerInstanceArn;
    const blue = firstAgentArn();
    assert.ok(red !== undefined, "the second agent registered");
    const definition = await sleeper(`constrained-${run}`);
    const constraint = (expression: string) => JSON.stringify([{ type: "memberOf", expression }]);

    const onRed = await runTask([
      "--task-definition",
      definition,
      "--count",
      "3",
      "--placement-constraints",
      constraint("attribute:color == red"),
    ]);
    assert.deepEqual(onRed.failures, []);
    assert.deepEqual(
      onRed.tasks.map((t) => t.containerInstanceArn),
      [red, red, red],
    );
    const onBlue = await runTask([
      "--task-definition",
      definition,
      "--count",
      "2",
      "--placement-constraints",
      constraint("attribute:ecs.availability-zone in [us-east-1a, us-east-1c] and attribute:color exists"),
    ]);
    assert.deepEqual(
      onBlue.tasks.map((t) => t.containerInstanceArn),
      [blue, blue],
    );
    await Promise.all([...onRed.tasks, ...onBlue.tasks].map((t) => untilStatus(t.taskArn, "RUNNING")));

    const nowhere = await runTask([
      "--task-definition",
      definition,
      "--placement-constraints",
      constraint("attribute:color == green"),
    ]);
    assert.deepEqual(nowhere.tasks, []);
    assert.deepEqual(
      nowhere.failures.map((f) => f.reason),
      ["ATTRIBUTE", "ATTRIBUTE"],
    );
    assert.deepEqual(new Set(nowhere.failures.map((f) => f.arn)), new Set([red, blue]));

    // task:group keeps a task beside the group's tasks.
    const beside = await runTask([
      "--task-definition",
      await sleeper(`beside-${run}`),
      "--count",
      "2",
      "--placement-constraints",
      constraint(`task:group == family:constrained-${run} and attribute:color == blue`),
    ]);
    assert.deepEqual(
      beside.tasks.map((t) => t.containerInstanceArn),
      [blue, blue],
    );

    const bad = await ecsFails([
      "run-task",
      "--cluster",
      cluster,
      "--task-definition",
      definition,
      "--placement-constraints",
      constraint("attribute:color =="),
    ]);
    assert.match(bad, /InvalidParameterException/);

    const distinct = await runTask([
      "--task-definition",
      await sleeper(`distinct-${run}`),
      "--count",
      "3",
      "--placement-constraints",
      JSON.stringify([{ type: "distinctInstance" }]),
    ]);
    assert.deepEqual(new Set(distinct.tasks.map((t) => t.containerInstanceArn)), new Set([red, blue]));
    assert.equal(distinct.tasks.length, 2, "one per instance");
    assert.deepEqual(
      distinct.failures.map((f) => f.reason),
      ["ATTRIBUTE", "ATTRIBUTE"],
    );
    await stopAll([...onRed.tasks, ...onBlue.tasks, ...beside.tasks, ...distinct.tasks]);
  });

  it("reserves a task's cpu and memory overrides, keeps its tags and group, and packs it with binpack", async () => {
    const red = agents[1]?.agent.containerInstanceArn;
    const blue = firstAgentArn();
    assert.ok(red !== undefined, "two instances");
    const remaining = async () => {
      const out = await ecs<{
        containerInstances: Array<{
          containerInstanceArn: string;
          remainingResources: Array<{ name: string; integerValue: number }>;
        }>;
      }>(["describe-container-instances", "--cluster", cluster, "--container-instances", red, blue]);
      return Object.fromEntries(
        out.containerInstances.map((i) => [
          i.containerInstanceArn === red ? "red" : "blue",
          Object.fromEntries(i.remainingResources.map((r) => [r.name, r.integerValue])),
        ]),
      ) as Record<"red" | "blue", Record<string, number>>;
    };
    const definition = await registerTaskDefinition({
      family: `sized-${run}`,
      containerDefinitions: [{ name: "app", image, memory: 32, command: ["sleep", "600"], stopTimeout: 2 }],
      tags: [{ key: "owner", value: "payments" }],
    });
    const before = await remaining();

    // A first task makes red the fuller instance.
    const first = await runTask([
      "--task-definition",
      definition,
      "--overrides",
      JSON.stringify({ cpu: "256", memory: "512" }),
      "--placement-constraints",
      JSON.stringify([{ type: "memberOf", expression: "attribute:color == red" }]),
    ]);
    assert.deepEqual(first.failures, []);
    const packed = await ecs<{ tasks: Array<Task & Record<string, unknown>>; failures: Failure[] }>([
      "run-task",
      "--cluster",
      cluster,
      "--task-definition",
      definition,
      "--count",
      "5",
      "--overrides",
      JSON.stringify({ cpu: "128", memory: "128" }),
      "--placement-strategy",
      "type=binpack,field=memory",
      "--group",
      `batch-${run}`,
      "--tags",
      "key=team,value=wharf",
      "--propagate-tags",
      "TASK_DEFINITION",
      "--enable-ecs-managed-tags",
    ]);
    assert.deepEqual(packed.failures, []);
    assert.deepEqual(
      packed.tasks.map((t) => t.containerInstanceArn),
      [red, red, red, red, red],
      "binpack fills the instance with the least memory left",
    );
    for (const task of packed.tasks) {
      assert.equal(task.cpu, "128");
      assert.equal(task.memory, "128");
      assert.equal(task.group, `batch-${run}`);
      const overrides = task.overrides as Record<string, unknown> | undefined;
      assert.deepEqual([overrides?.cpu, overrides?.memory], ["128", "128"], "the overrides as given");
    }
    const after = await remaining();
    assert.equal(
      (before.red.MEMORY ?? 0) - (after.red.MEMORY ?? 0),
      512 + 5 * 128,
      "the overrides are reserved",
    );
    assert.equal((before.red.CPU ?? 0) - (after.red.CPU ?? 0), 256 + 5 * 128);
    assert.deepEqual(after.blue, before.blue);

    const described = await ecs<{ tasks: Array<Record<string, unknown>> }>([
      "describe-tasks",
      "--cluster",
      cluster,
      "--tasks",
      ...packed.tasks.map((t) => t.taskArn),
      "--include",
      "TAGS",
    ]);
    // ECS's managed tag, the task definition's tags (propagated) and the caller's.
    const expectedTags = [
      { key: "aws:ecs:clusterName", value: cluster },
      { key: "owner", value: "payments" },
      { key: "team", value: "wharf" },
    ];
    for (const task of described.tasks) {
      assert.deepEqual(task.tags, expectedTags);
      assert.equal(task.group, `batch-${run}`);
    }
    const tags = await ecs<{ tags: unknown[] }>([
      "list-tags-for-resource",
      "--resource-arn",
      packed.tasks[0]?.taskArn ?? "",
    ]);
    assert.deepEqual(tags.tags, expectedTags);
    assert.match(
      await ecsFails([
        "run-task",
        "--cluster",
        cluster,
        "--task-definition",
        definition,
        "--propagate-tags",
        "SERVICE",
      ]),
      /InvalidParameterException.*propagateTags SERVICE/,
      "a task that no service started cannot take a service's tags",
    );
    await stopAll([...first.tasks, ...packed.tasks]);
    assert.deepEqual((await remaining()).red, before.red, "released once stopped");
  });
});
