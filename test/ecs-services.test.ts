import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  ClientException,
  CreateServiceCommand,
  DeleteServiceCommand,
  DescribeTasksCommand,
  type ECSClient,
  InvalidParameterException,
  ListServicesCommand,
  ListTasksCommand,
  ServiceNotFoundException,
  UpdateServiceCommand,
  type UpdateServiceCommandInput,
} from "@aws-sdk/client-ecs";
import { cleanupAgent, eventually, pushBusybox, startTestAgent, type TestAgent } from "./agent-harness.ts";
import {
  aws,
  awsEcs,
  ecsClient,
  registerTaskDefinitionCli,
  startTestServer,
  type TestServer,
} from "./helpers.ts";

let server: TestServer;
let agents: TestAgent[] = [];
let image: string;
let ecs: ECSClient;

before(async () => {
  server = await startTestServer();
  ecs = ecsClient(server);
  image = await pushBusybox(server, "busybox");
  agents = [
    await startTestAgent(server, { zone: "us-east-1a" }),
    await startTestAgent(server, { zone: "us-east-1b" }),
  ];
});

after(async () => {
  for (const agent of agents) await agent.stop();
  for (const agent of agents) await cleanupAgent(agent);
  await server?.stop();
});

interface Task {
  taskArn: string;
  lastStatus: string;
  desiredStatus: string;
  startedBy?: string;
  group?: string;
  taskDefinitionArn: string;
  containerInstanceArn?: string;
  healthStatus?: string;
  stopCode?: string;
  stoppedReason?: string;
  tags?: Array<{ key: string; value: string }>;
  containers: Array<{ runtimeId?: string }>;
}

interface Deployment {
  id: string;
  status: string;
  taskDefinition: string;
  desiredCount: number;
  runningCount: number;
  pendingCount: number;
  failedTasks: number;
  rolloutState: string;
  rolloutStateReason: string;
}

interface Service {
  serviceArn: string;
  serviceName: string;
  status: string;
  desiredCount: number;
  runningCount: number;
  pendingCount: number;
  taskDefinition: string;
  schedulingStrategy: string;
  launchType: string;
  deploymentConfiguration: Record<string, unknown>;
  deployments: Deployment[];
  events: Array<{ id: string; createdAt: number; message: string }>;
  tags?: Array<{ key: string; value: string }>;
  loadBalancers: Array<Record<string, unknown>>;
  healthCheckGracePeriodSeconds?: number;
  placementConstraints: Array<{ type: string; expression?: string }>;
  placementStrategy: Array<{ type: string; field?: string }>;
  createdBy?: string;
}

/** The container's process sleeps until asked to stop, then exits at once. */
const SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"];

const cli = (args: string[]): Promise<unknown> => awsEcs(server, args);
const registerTaskDefinition = (definition: Record<string, unknown>) =>
  registerTaskDefinitionCli(server, definition);

async function describeService(name: string): Promise<Service> {
  const body = (await cli(["describe-services", "--services", name, "--include", "TAGS"])) as {
    services: Service[];
  };
  const service = body.services[0];
  assert.ok(service !== undefined);
  return service;
}

/** The service's tasks that are wanted RUNNING, described. */
async function serviceTasks(name: string): Promise<Task[]> {
  const listed = (await cli(["list-tasks", "--service-name", name])) as { taskArns: string[] };
  if (listed.taskArns.length === 0) return [];
  const body = (await cli(["describe-tasks", "--tasks", ...listed.taskArns, "--include", "TAGS"])) as {
    tasks: Task[];
  };
  return body.tasks;
}

function untilService(name: string, what: string, check: (service: Service) => boolean, timeoutMs = 90_000) {
  return eventually(
    what,
    async () => {
      const service = await describeService(name);
      return check(service) ? service : undefined;
    },
    timeoutMs,
  );
}

function untilTasks(name: string, what: string, check: (tasks: Task[]) => boolean, timeoutMs = 90_000) {
  return eventually(
    what,
    async () => {
      const tasks = await serviceTasks(name);
      return check(tasks) ? tasks : undefined;
    },
    timeoutMs,
  );
}

const steady = (service: Service) =>
  service.events[0]?.message === `(service ${service.serviceName}) has reached a steady state.`;
const allRunning = (count: number) => (tasks: Task[]) =>
  tasks.length === count && tasks.every((t) => t.lastStatus === "RUNNING");

/**
 * Samples a service's tasks through the SDK every 200 ms: how many exist
 * (anything not yet STOPPED) and how many are RUNNING and wanted.
 */
function sampler(serviceName: string) {
  const samples: Array<{ alive: number; running: number }> = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const arns = new Set<string>();
      for (const desiredStatus of ["STOPPED", "RUNNING"] as const) {
        const page = await ecs.send(new ListTasksCommand({ serviceName, desiredStatus }));
        for (const arn of page.taskArns ?? []) arns.add(arn);
      }
      const tasks: Array<{ lastStatus?: string | undefined; desiredStatus?: string | undefined }> = [];
      const all = [...arns];
      for (let i = 0; i < all.length; i += 100) {
        const described = await ecs.send(new DescribeTasksCommand({ tasks: all.slice(i, i + 100) }));
        tasks.push(...(described.tasks ?? []));
      }
      samples.push({
        alive: tasks.filter((t) => t.lastStatus !== "STOPPED").length,
        running: tasks.filter((t) => t.lastStatus === "RUNNING" && t.desiredStatus === "RUNNING").length,
      });
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  })();
  return {
    samples,
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

describe("ECS services on real containers", () => {
  let web1 = "";
  let web2 = "";

  it("runs desiredCount tasks spread over both nodes and reports a steady state", async () => {
    web1 = await registerTaskDefinition({
      family: "web",
      containerDefinitions: [{ name: "app", image, memory: 32, command: SLEEPER }],
    });
    const created = (await cli([
      "create-service",
      "--service-name",
      "web",
      "--task-definition",
      "web",
      "--desired-count",
      "3",
      "--tags",
      "key=team,value=platform",
      "--enable-ecs-managed-tags",
      "--propagate-tags",
      "SERVICE",
      "--health-check-grace-period-seconds",
      "30",
    ])) as { service: Service };
    const service = created.service;
    assert.equal(service.serviceArn, "arn:aws:ecs:us-east-1:000000000000:service/default/web");
    assert.equal(service.status, "ACTIVE");
    assert.equal(service.launchType, "EC2");
    assert.equal(service.schedulingStrategy, "REPLICA");
    assert.equal(service.taskDefinition, web1);
    assert.equal(service.createdBy, "arn:aws:iam::000000000000:user/admin");
    assert.deepEqual(service.deploymentConfiguration, {
      deploymentCircuitBreaker: { enable: false, rollback: false },
      maximumPercent: 200,
      minimumHealthyPercent: 100,
    });
    assert.equal(service.deployments.length, 1);
    assert.equal(service.deployments[0]?.status, "PRIMARY");
    assert.equal(service.deployments[0]?.rolloutState, "IN_PROGRESS");
    assert.match(service.deployments[0]?.id ?? "", /^ecs-svc\/\d{19}$/);

    const settled = await untilService("web", "a steady state", (s) => steady(s) && s.runningCount === 3);
    assert.equal(settled.deployments[0]?.rolloutState, "COMPLETED");
    assert.equal(
      settled.deployments[0]?.rolloutStateReason,
      `ECS deployment ${settled.deployments[0]?.id} completed.`,
    );
    const messages = settled.events.map((e) => e.message);
    assert.match(
      messages.at(-1) ?? "",
      /^\(service web\) has started 3 tasks: \(task [0-9a-f]{32}\) \(task [0-9a-f]{32}\) \(task [0-9a-f]{32}\)\.$/,
    );
    assert.deepEqual(settled.tags, [{ key: "team", value: "platform" }]);

    const tasks = await serviceTasks("web");
    assert.equal(tasks.length, 3);
    for (const task of tasks) {
      assert.equal(task.lastStatus, "RUNNING");
      assert.equal(task.startedBy, settled.deployments[0]?.id);
      assert.equal(task.group, "service:web");
      assert.deepEqual((task.tags ?? []).map((t) => `${t.key}=${t.value}`).sort(), [
        "aws:ecs:clusterName=default",
        "aws:ecs:serviceName=web",
        "team=platform",
      ]);
    }
    assert.equal(new Set(tasks.map((t) => t.containerInstanceArn)).size, 2, "spread over both nodes");

    const listed = (await cli(["list-services"])) as { serviceArns: string[] };
    assert.deepEqual(listed.serviceArns, [service.serviceArn]);
    const missing = (await cli(["describe-services", "--services", "web", "nope"])) as {
      failures: Array<{ arn: string; reason: string }>;
    };
    assert.deepEqual(missing.failures, [
      { arn: "arn:aws:ecs:us-east-1:000000000000:service/default/nope", reason: "MISSING" },
    ]);
    const clusters = (await cli(["describe-clusters"])) as {
      clusters: Array<{ activeServicesCount: number }>;
    };
    assert.equal(clusters.clusters[0]?.activeServicesCount, 1);
    const again = await aws(server, [
      "ecs",
      "create-service",
      "--service-name",
      "web",
      "--task-definition",
      "web",
      "--desired-count",
      "3",
    ]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /InvalidParameterException.*Creation of service was not idempotent\./);
  });

  it("replaces a task whose container is killed from the host", async () => {
    const [victim] = await serviceTasks("web");
    assert.ok(victim !== undefined);
    const agent = agents.find((a) => a.agent.containerInstanceArn === victim.containerInstanceArn);
    assert.ok(agent !== undefined);
    execFileSync(
      "runc",
      ["--root", join(agent.dataDir, "runc"), "kill", victim.containers[0]?.runtimeId ?? "", "KILL"],
      { timeout: 10_000 },
    );
    const tasks = await untilTasks(
      "web",
      "a replacement",
      (t) => allRunning(3)(t) && !t.some((task) => task.taskArn === victim.taskArn),
      60_000,
    );
    assert.equal(tasks.length, 3);
    const dead = (await cli(["describe-tasks", "--tasks", victim.taskArn])) as { tasks: Task[] };
    assert.equal(dead.tasks[0]?.lastStatus, "STOPPED");
    assert.equal(dead.tasks[0]?.stopCode, "EssentialContainerExited");
    await untilService("web", "a steady state again", (s) => steady(s) && s.runningCount === 3);
  });

  it("scales out to 5 and in to 1", async () => {
    await cli(["update-service", "--service", "web", "--desired-count", "5"]);
    await untilTasks("web", "5 running tasks", allRunning(5));
    const before = await serviceTasks("web");
    const updated = (await cli(["update-service", "--service", "web", "--desired-count", "1"])) as {
      service: Service;
    };
    assert.equal(updated.service.desiredCount, 1);
    assert.equal(updated.service.deployments.length, 1, "a new desired count is not a new deployment");
    await untilTasks("web", "1 running task", allRunning(1));
    const stopped = (await cli(["describe-tasks", "--tasks", ...before.map((t) => t.taskArn)])) as {
      tasks: Task[];
    };
    const scaledIn = stopped.tasks.filter((t) => t.desiredStatus === "STOPPED");
    assert.equal(scaledIn.length, 4);
    for (const task of scaledIn) {
      assert.equal(task.stopCode, "ServiceSchedulerInitiated");
      assert.match(
        task.stoppedReason ?? "",
        /^Scaling activity initiated by \(deployment ecs-svc\/\d{19}\)$/,
      );
    }
    const service = await untilService(
      "web",
      "a steady state at 1",
      (s) => steady(s) && s.runningCount === 1,
    );
    assert.ok(service.events.some((e) => /^\(service web\) has stopped 4 running tasks: /.test(e.message)));
  });

  it("rolls out a new task definition without crossing minimumHealthyPercent or maximumPercent", async () => {
    await cli([
      "update-service",
      "--service",
      "web",
      "--desired-count",
      "4",
      "--deployment-configuration",
      "minimumHealthyPercent=50,maximumPercent=150",
    ]);
    await untilService("web", "4 running", (s) => steady(s) && s.runningCount === 4);
    web2 = await registerTaskDefinition({
      family: "web",
      containerDefinitions: [
        {
          name: "app",
          image,
          memory: 32,
          command: SLEEPER,
          healthCheck: { command: ["CMD-SHELL", "true"], interval: 5, timeout: 2, retries: 2 },
        },
      ],
    });
    const watch = sampler("web");
    try {
      const updated = (await cli(["update-service", "--service", "web", "--task-definition", web2])) as {
        service: Service;
      };
      assert.deepEqual(
        updated.service.deployments.map((d) => [d.status, d.taskDefinition]),
        [
          ["PRIMARY", web2],
          ["ACTIVE", web1],
        ],
      );
      const done = await untilService(
        "web",
        "the deployment to complete",
        (s) => s.deployments.length === 1 && s.deployments[0]?.rolloutState === "COMPLETED" && steady(s),
        120_000,
      );
      assert.equal(done.taskDefinition, web2);
      assert.ok(
        done.events.some((e) =>
          e.message.endsWith(`(deployment ${done.deployments[0]?.id}) deployment completed.`),
        ),
      );
    } finally {
      await watch.stop();
    }
    const tasks = await serviceTasks("web");
    assert.equal(tasks.length, 4);
    for (const task of tasks) {
      assert.equal(task.taskDefinitionArn, web2);
      assert.equal(task.healthStatus, "HEALTHY");
    }
    assert.ok(watch.samples.length > 5, "the sampler saw the rollout");
    const most = Math.max(...watch.samples.map((s) => s.alive));
    const least = Math.min(...watch.samples.map((s) => s.running));
    assert.ok(most <= 6, `at most floor(4 × 150%) = 6 tasks at once, saw ${most}`);
    assert.ok(least >= 2, `at least ceil(4 × 50%) = 2 running, saw ${least}`);
    assert.ok(most > 4, "the rollout started tasks before stopping old ones");
  });

  it("trips the circuit breaker on a task definition whose container exits at once and rolls back", async () => {
    const crash = await registerTaskDefinition({
      family: "crash",
      containerDefinitions: [{ name: "app", image, memory: 32, command: ["sh", "-c", "exit 3"] }],
    });
    const updated = (await cli([
      "update-service",
      "--service",
      "web",
      "--task-definition",
      crash,
      "--deployment-configuration",
      "deploymentCircuitBreaker={enable=true,rollback=true}",
    ])) as { service: Service };
    const failedId = updated.service.deployments[0]?.id;
    const rolledBack = await untilService(
      "web",
      "the rollback",
      (s) => s.deployments.some((d) => d.id === failedId && d.rolloutState === "FAILED"),
      90_000,
    );
    const failed = rolledBack.deployments.find((d) => d.id === failedId);
    assert.ok((failed?.failedTasks ?? 0) >= 3);
    assert.equal(failed?.rolloutStateReason, "ECS deployment circuit breaker: tasks failed to start.");
    assert.equal(rolledBack.deployments[0]?.status, "PRIMARY");
    assert.equal(rolledBack.deployments[0]?.taskDefinition, web2);
    assert.match(
      rolledBack.deployments[0]?.rolloutStateReason ?? "",
      /^ECS deployment circuit breaker: rolling back to deploymentId ecs-svc\/\d{19}\.$/,
    );
    assert.ok(
      rolledBack.events.some(
        (e) =>
          e.message === `(service web) (deployment ${failedId}) deployment failed: tasks failed to start.`,
      ),
    );
    const done = await untilService(
      "web",
      "the rollback to complete",
      (s) => s.deployments.length === 1 && s.deployments[0]?.rolloutState === "COMPLETED" && steady(s),
      120_000,
    );
    assert.equal(done.taskDefinition, web2);
    assert.equal(done.runningCount, 4);
  });

  it("refuses to delete a service scaled above 0 and drains it to INACTIVE with --force", async () => {
    const refused = await aws(server, ["ecs", "delete-service", "--service", "web"]);
    assert.notEqual(refused.code, 0);
    assert.match(
      refused.stderr,
      /InvalidParameterException.*The service cannot be stopped while it is scaled above 0\./,
    );
    const deleted = (await cli(["delete-service", "--service", "web", "--force"])) as { service: Service };
    assert.equal(deleted.service.status, "DRAINING");
    assert.equal(deleted.service.desiredCount, 0);
    const draining = (await cli(["list-services"])) as { serviceArns: string[] };
    assert.deepEqual(draining.serviceArns, [], "a service being deleted is no longer listed");
    const inactive = await untilService("web", "INACTIVE", (s) => s.status === "INACTIVE");
    assert.equal(inactive.runningCount, 0);
    assert.deepEqual(await serviceTasks("web"), []);
    const listed = (await cli(["list-services"])) as { serviceArns: string[] };
    assert.deepEqual(listed.serviceArns, []);
    const update = await aws(server, ["ecs", "update-service", "--service", "web", "--desired-count", "1"]);
    assert.match(update.stderr, /ServiceNotActiveException.*Service was not ACTIVE\./);
  });

  it("lists services page by page and checks what CreateService is given (AWS SDK)", async () => {
    const names = Array.from({ length: 11 }, (_, i) => `idle-${String(i).padStart(2, "0")}`);
    for (const serviceName of names) {
      await ecs.send(new CreateServiceCommand({ serviceName, taskDefinition: web1, desiredCount: 0 }));
    }
    const first = await ecs.send(new ListServicesCommand({}));
    assert.equal(first.serviceArns?.length, 10, "ListServices returns 10 by default");
    assert.ok(first.nextToken !== undefined);
    const second = await ecs.send(new ListServicesCommand({ nextToken: first.nextToken }));
    assert.deepEqual(
      second.serviceArns?.map((arn) => arn.split("/").pop()),
      ["idle-10"],
    );
    assert.equal(second.nextToken, undefined);
    const daemons = await ecs.send(new ListServicesCommand({ schedulingStrategy: "DAEMON" }));
    assert.deepEqual(daemons.serviceArns, []);
    // What starts a deployment, as ECS's UpdateService reference says of each parameter.
    const deploymentsAfter = async (update: Omit<UpdateServiceCommandInput, "service">) =>
      (await ecs.send(new UpdateServiceCommand({ service: "idle-00", ...update }))).service?.deployments
        ?.length;
    assert.equal(
      await deploymentsAfter({ placementStrategy: [{ type: "binpack", field: "memory" }] }),
      1,
      "a placement strategy starts no deployment",
    );
    assert.equal(
      await deploymentsAfter({ placementConstraints: [{ type: "distinctInstance" }] }),
      1,
      "nor do placement constraints",
    );
    assert.equal(
      await deploymentsAfter({
        serviceRegistries: [
          { registryArn: "arn:aws:servicediscovery:us-east-1:000000000000:service/srv-wharf" },
        ],
      }),
      2,
      "service registries do",
    );

    await assert.rejects(
      ecs.send(
        new CreateServiceCommand({ serviceName: "bad", taskDefinition: "no-such-family", desiredCount: 1 }),
      ),
      (error: unknown) =>
        error instanceof ClientException && error.message === "Unable to find task definition.",
    );
    await assert.rejects(
      ecs.send(
        new CreateServiceCommand({
          serviceName: "bad",
          taskDefinition: web1,
          desiredCount: 1,
          schedulingStrategy: "DAEMON",
        }),
      ),
      (error: unknown) =>
        error instanceof InvalidParameterException &&
        error.message ===
          "The daemon scheduling strategy does not support a desired count for services. Remove the desired count value and try again",
    );
    await assert.rejects(
      ecs.send(
        new CreateServiceCommand({
          serviceName: "bad",
          taskDefinition: web1,
          desiredCount: 1,
          networkConfiguration: { awsvpcConfiguration: { subnets: ["subnet-wharf"] } },
        }),
      ),
      (error: unknown) =>
        error instanceof InvalidParameterException &&
        error.message ===
          "Network Configuration is not valid for the given networkMode of this task definition.",
    );
    // A service moved from an awsvpc definition to a bridge one leaves its network configuration behind.
    const vpc = await registerTaskDefinition({
      family: "moving",
      networkMode: "awsvpc",
      containerDefinitions: [{ name: "app", image, memory: 32, command: SLEEPER }],
    });
    await ecs.send(
      new CreateServiceCommand({
        serviceName: "moving",
        taskDefinition: vpc,
        desiredCount: 0,
        networkConfiguration: { awsvpcConfiguration: { subnets: ["subnet-wharf"] } },
      }),
    );
    const moved = await ecs.send(new UpdateServiceCommand({ service: "moving", taskDefinition: web1 }));
    assert.equal(moved.service?.taskDefinition, web1);
    assert.equal(moved.service?.networkConfiguration, undefined);
    await ecs.send(new DeleteServiceCommand({ service: "moving" }));
    await assert.rejects(
      ecs.send(new DeleteServiceCommand({ service: "never-created" })),
      (error: unknown) => error instanceof ServiceNotFoundException && error.message === "Service not found.",
    );
    for (const service of names) await ecs.send(new DeleteServiceCommand({ service }));
    await eventually("the idle services to go", async () => {
      const left = await ecs.send(new ListServicesCommand({}));
      return left.serviceArns?.length === 0 ? true : undefined;
    });
  });

  it("replaces every task on forceNewDeployment within its bounds, with the task definition's tags", async () => {
    const tagged = await registerTaskDefinition({
      family: "tagged",
      containerDefinitions: [
        { name: "app", image, memory: 32, command: SLEEPER, portMappings: [{ containerPort: 80 }] },
      ],
      tags: [{ key: "owner", value: "payments" }],
    });
    const targetGroup =
      "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/web/0123456789abcdef";
    const created = (await cli([
      "create-service",
      "--service-name",
      "forced",
      "--task-definition",
      tagged,
      "--desired-count",
      "2",
      "--propagate-tags",
      "TASK_DEFINITION",
      "--load-balancers",
      `targetGroupArn=${targetGroup},containerName=app,containerPort=80`,
      "--health-check-grace-period-seconds",
      "45",
    ])) as { service: Service };
    const balanced = [{ targetGroupArn: targetGroup, containerName: "app", containerPort: 80 }];
    assert.deepEqual(created.service.loadBalancers, balanced);
    assert.equal(created.service.healthCheckGracePeriodSeconds, 45);
    const first = await untilService("forced", "a steady state", (s) => steady(s) && s.runningCount === 2);
    assert.deepEqual(first.loadBalancers, balanced);
    assert.equal(first.healthCheckGracePeriodSeconds, 45);
    const before = await serviceTasks("forced");
    for (const task of before) assert.deepEqual(task.tags, [{ key: "owner", value: "payments" }]);

    const watch = sampler("forced");
    let forcedId = "";
    try {
      const updated = (await cli(["update-service", "--service", "forced", "--force-new-deployment"])) as {
        service: Service;
      };
      assert.deepEqual(
        updated.service.deployments.map((d) => [d.status, d.taskDefinition]),
        [
          ["PRIMARY", tagged],
          ["ACTIVE", tagged],
        ],
        "a new deployment of the same task definition",
      );
      forcedId = updated.service.deployments[0]?.id ?? "";
      assert.notEqual(forcedId, first.deployments[0]?.id);
      await untilService(
        "forced",
        "the forced deployment to complete",
        (s) => s.deployments.length === 1 && s.deployments[0]?.id === forcedId && steady(s),
        120_000,
      );
    } finally {
      await watch.stop();
    }
    const after = await serviceTasks("forced");
    assert.equal(after.length, 2);
    for (const task of after) {
      assert.equal(task.startedBy, forcedId);
      assert.equal(task.taskDefinitionArn, tagged);
      assert.deepEqual(task.tags, [{ key: "owner", value: "payments" }]);
      assert.ok(!before.some((old) => old.taskArn === task.taskArn), "every task replaced");
    }
    const most = Math.max(...watch.samples.map((s) => s.alive));
    const least = Math.min(...watch.samples.map((s) => s.running));
    assert.ok(most <= 4, `at most 2 × 200% = 4 tasks at once, saw ${most}`);
    assert.ok(least >= 2, `at least 2 × 100% = 2 running, saw ${least}`);

    // UpdateService changes what it is given and keeps the rest.
    const balancedAgain = [{ targetGroupArn: targetGroup, containerName: "app", containerPort: 8080 }];
    const changed = (await cli([
      "update-service",
      "--service",
      "forced",
      "--health-check-grace-period-seconds",
      "90",
      "--load-balancers",
      `targetGroupArn=${targetGroup},containerName=app,containerPort=8080`,
    ])) as { service: Service };
    assert.deepEqual(changed.service.loadBalancers, balancedAgain);
    assert.equal(changed.service.healthCheckGracePeriodSeconds, 90);
    const kept = (await cli(["update-service", "--service", "forced", "--desired-count", "1"])) as {
      service: Service;
    };
    assert.deepEqual(kept.service.loadBalancers, balancedAgain);
    assert.equal(kept.service.healthCheckGracePeriodSeconds, 90);
    const described = await describeService("forced");
    assert.deepEqual(described.loadBalancers, balancedAgain);
    assert.equal(described.healthCheckGracePeriodSeconds, 90);
    await cli(["delete-service", "--service", "forced", "--force"]);
    await untilService("forced", "INACTIVE", (s) => s.status === "INACTIVE");
  });

  it("places a service's tasks by the constraints and strategy CreateService gives it", async () => {
    const [, gold] = agents as [TestAgent, TestAgent];
    await cli([
      "put-attributes",
      "--attributes",
      `name=tier,value=gold,targetId=${gold.agent.containerInstanceArn}`,
    ]);
    const constraints = [{ type: "memberOf", expression: "attribute:tier == gold" }];
    const strategy = [{ type: "binpack", field: "memory" }];
    const created = (await cli([
      "create-service",
      "--service-name",
      "placed",
      "--task-definition",
      web1,
      "--desired-count",
      "3",
      "--placement-constraints",
      "type=memberOf,expression='attribute:tier == gold'",
      "--placement-strategy",
      "type=binpack,field=memory",
    ])) as { service: Service };
    assert.deepEqual(created.service.placementConstraints, constraints);
    assert.deepEqual(created.service.placementStrategy, strategy);
    const tasks = await untilTasks("placed", "3 running tasks", allRunning(3));
    assert.ok(
      tasks.every((t) => t.containerInstanceArn === gold.agent.containerInstanceArn),
      "only on the gold instance",
    );
    const described = await untilService(
      "placed",
      "a steady state",
      (s) => steady(s) && s.runningCount === 3,
    );
    assert.deepEqual(described.placementConstraints, constraints);
    assert.deepEqual(described.placementStrategy, strategy);

    // A deployment that can place nothing: the old one drains (minimumHealthyPercent 0) and is INACTIVE.
    // New constraints alone start no deployment (as in ECS): forceNewDeployment moves the tasks.
    const stuck = (await cli([
      "update-service",
      "--service",
      "placed",
      "--placement-constraints",
      "type=memberOf,expression='attribute:tier == platinum'",
      "--deployment-configuration",
      "minimumHealthyPercent=0,maximumPercent=100",
      "--force-new-deployment",
    ])) as { service: Service };
    const [stuckId, oldId] = stuck.service.deployments.map((d) => d.id);
    const drained = await untilService(
      "placed",
      "the old deployment INACTIVE",
      (s) => s.deployments[1]?.status === "INACTIVE",
    );
    assert.deepEqual(
      drained.deployments.map((d) => [d.id, d.status, d.desiredCount, d.runningCount, d.rolloutState]),
      [
        [stuckId, "PRIMARY", 3, 0, "IN_PROGRESS"],
        [oldId, "INACTIVE", 0, 0, "COMPLETED"],
      ],
    );
    assert.ok(
      drained.events.some((e) => /^\(service placed\) was unable to place a task/.test(e.message)),
      "the new deployment could not place its tasks",
    );
    // Constraints it can meet let the same deployment place its tasks and complete; the INACTIVE
    // one leaves the list.
    const freed = (await cli(["update-service", "--service", "placed", "--placement-constraints", "[]"])) as {
      service: Service;
    };
    assert.deepEqual(
      freed.service.deployments.map((d) => d.id),
      [stuckId, oldId],
      "new constraints start no deployment",
    );
    const done = await untilService(
      "placed",
      "a steady state",
      (s) => s.deployments.length === 1 && steady(s) && s.runningCount === 3,
      120_000,
    );
    assert.deepEqual(done.placementConstraints, []);
    assert.deepEqual(done.placementStrategy, strategy);
    await cli(["delete-service", "--service", "placed", "--force"]);
    await untilService("placed", "INACTIVE", (s) => s.status === "INACTIVE");
    await cli(["delete-attributes", "--attributes", `name=tier,targetId=${gold.agent.containerInstanceArn}`]);
  });

  it("runs a DAEMON service's task on every node", async () => {
    const created = (await cli([
      "create-service",
      "--service-name",
      "node-agent",
      "--task-definition",
      web1,
      "--scheduling-strategy",
      "DAEMON",
    ])) as { service: Service };
    assert.deepEqual(created.service.deploymentConfiguration, {
      deploymentCircuitBreaker: { enable: false, rollback: false },
      maximumPercent: 100,
      minimumHealthyPercent: 0,
    });
    const tasks = await untilTasks("node-agent", "a task per node", allRunning(2));
    assert.equal(new Set(tasks.map((t) => t.containerInstanceArn)).size, 2);
    const service = await untilService("node-agent", "a steady state", steady);
    assert.equal(service.desiredCount, 2);
    await cli(["delete-service", "--service", "node-agent"]);
    await untilService("node-agent", "INACTIVE", (s) => s.status === "INACTIVE");
  });

  it("replaces the tasks of a node whose agent goes silent once it is declared lost", async () => {
    await cli([
      "create-service",
      "--service-name",
      "resilient",
      "--task-definition",
      web1,
      "--desired-count",
      "2",
    ]);
    const spread = await untilTasks("resilient", "a task per node", allRunning(2));
    const [, silent] = agents as [TestAgent, TestAgent];
    const stranded = spread.filter((t) => t.containerInstanceArn === silent.agent.containerInstanceArn);
    assert.equal(stranded.length, 1);
    await silent.stop();
    // Lost once its last heartbeat is older than the agent timeout (30 s).
    const moved = await untilTasks(
      "resilient",
      "the stranded task replaced on the other node",
      (tasks) =>
        allRunning(2)(tasks) &&
        tasks.every((t) => t.containerInstanceArn !== silent.agent.containerInstanceArn),
      90_000,
    );
    assert.equal(moved.length, 2);
    const gone = (await cli(["describe-tasks", "--tasks", stranded[0]?.taskArn ?? ""])) as { tasks: Task[] };
    assert.equal(gone.tasks[0]?.lastStatus, "STOPPED");
    assert.equal(gone.tasks[0]?.stopCode, "ServiceSchedulerInitiated");
    // The agent comes back and stops the container the server gave up on.
    const runtimeId = stranded[0]?.containers[0]?.runtimeId ?? "";
    agents[1] = await silent.restart();
    await eventually("the stale container to stop", async () => {
      const state = execFileSync(
        "runc",
        ["--root", join(silent.dataDir, "runc"), "list", "--format", "json"],
        {
          encoding: "utf8",
          timeout: 10_000,
        },
      );
      const containers = JSON.parse(state === "" ? "[]" : state) as Array<{
        id: string;
        status: string;
      }> | null;
      return (containers ?? []).some((c) => c.id === runtimeId && c.status === "running") ? undefined : true;
    });
    await cli(["delete-service", "--service", "resilient", "--force"]);
    await untilService("resilient", "INACTIVE", (s) => s.status === "INACTIVE");
  });
});
