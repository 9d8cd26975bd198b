import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { cleanupAgent, eventually, pushBusybox, startTestAgent, type TestAgent } from "./agent-harness.ts";
import { aws, awsEcs, registerTaskDefinitionCli, startTestServer, type TestServer } from "./helpers.ts";

/**
 * FARGATE tasks and services run on capacity Wharf manages (here a test
 * agent registered with capacity FARGATE) in a cluster with no container
 * instances of its own.
 */

let server: TestServer;
let capacity: TestAgent | undefined;
let fargateDefinition: string;
let ec2Definition: string;
const CLUSTER = "serverless";
const NETWORK = [
  "--network-configuration",
  "awsvpcConfiguration={subnets=[subnet-wharf],assignPublicIp=DISABLED}",
];

interface Task {
  taskArn: string;
  clusterArn: string;
  lastStatus: string;
  launchType: string;
  capacityProviderName?: string;
  platformVersion?: string;
  platformFamily?: string;
  containerInstanceArn?: string;
  cpu?: string;
  memory?: string;
  containers: Array<{ networkInterfaces?: Array<{ privateIpv4Address: string }> }>;
}

const ecs = (args: string[]): Promise<unknown> => awsEcs(server, args);
/** Associates FARGATE and FARGATE_SPOT with the cluster, with `defaultStrategy` as its default. */
const associateProviders = (defaultStrategy: string) =>
  ecs([
    "put-cluster-capacity-providers",
    "--cluster",
    CLUSTER,
    "--capacity-providers",
    "FARGATE",
    "FARGATE_SPOT",
    "--default-capacity-provider-strategy",
    defaultStrategy,
  ]);
/** `aws ecs create-service` of a Fargate service named "refused", with `extra` arguments: for refusals. */
const createRefused = (extra: string[]) =>
  aws(server, [
    "ecs",
    "create-service",
    "--cluster",
    CLUSTER,
    "--service-name",
    "refused",
    "--task-definition",
    fargateDefinition,
    ...NETWORK,
    ...extra,
  ]);
const registerTaskDefinition = (definition: Record<string, unknown>) =>
  registerTaskDefinitionCli(server, definition);

async function describeTask(taskArn: string): Promise<Task> {
  const body = (await ecs(["describe-tasks", "--cluster", CLUSTER, "--tasks", taskArn])) as { tasks: Task[] };
  return body.tasks[0] as Task;
}

function until(taskArn: string, status: string): Promise<Task> {
  return eventually(status, async () => {
    const task = await describeTask(taskArn);
    return task.lastStatus === status ? task : undefined;
  });
}

interface StrategyItem {
  capacityProvider: string;
  weight: number;
  base: number;
}

interface Service {
  launchType?: string;
  platformVersion?: string;
  capacityProviderStrategy?: StrategyItem[];
  deployments: Array<{ status: string; launchType?: string; capacityProviderStrategy?: StrategyItem[] }>;
}

/** The service's tasks wanted RUNNING, once there are `count` and every one passes `check`. */
function untilServiceTasks(service: string, count: number, check: (task: Task) => boolean): Promise<Task[]> {
  return eventually(
    `${count} tasks of ${service}`,
    async () => {
      const listed = (await ecs(["list-tasks", "--cluster", CLUSTER, "--service-name", service])) as {
        taskArns: string[];
      };
      if (listed.taskArns.length !== count) return undefined;
      if (count === 0) return [];
      const body = (await ecs(["describe-tasks", "--cluster", CLUSTER, "--tasks", ...listed.taskArns])) as {
        tasks: Task[];
      };
      return body.tasks.every(check) ? body.tasks : undefined;
    },
    90_000,
  );
}

/** How many tasks run on each capacity provider. */
function providers(tasks: Task[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const task of tasks) {
    const name = task.capacityProviderName ?? "none";
    counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}

before(async () => {
  server = await startTestServer();
  const image = await pushBusybox(server, "busybox");
  await ecs(["create-cluster", "--cluster-name", CLUSTER]);
  fargateDefinition = await registerTaskDefinition({
    family: "serverless-app",
    requiresCompatibilities: ["FARGATE"],
    networkMode: "awsvpc",
    cpu: "256",
    memory: "512",
    containerDefinitions: [{ name: "app", image, command: ["sleep", "300"], stopTimeout: 2 }],
  });
  ec2Definition = await registerTaskDefinition({
    family: "on-instances",
    containerDefinitions: [{ name: "app", image, memory: 32, command: ["sleep", "300"] }],
  });
});

after(async () => {
  await capacity?.stop();
  if (capacity !== undefined) await cleanupAgent(capacity);
  await server?.stop();
});

describe("Fargate", () => {
  it("reports a lack of capacity when Wharf has no Fargate capacity", async () => {
    const body = (await ecs([
      "run-task",
      "--cluster",
      CLUSTER,
      "--launch-type",
      "FARGATE",
      "--task-definition",
      fargateDefinition,
      ...NETWORK,
    ])) as { tasks: Task[]; failures: Array<{ arn?: string; reason: string }> };
    assert.deepEqual(body.tasks, []);
    assert.deepEqual(body.failures, [
      {
        reason:
          "Capacity is unavailable at this time. Please try again later or in a different availability zone",
      },
    ]);
  });

  it("refuses what ECS refuses for FARGATE", async () => {
    const noNetwork = await aws(server, [
      "ecs",
      "run-task",
      "--cluster",
      CLUSTER,
      "--launch-type",
      "FARGATE",
      "--task-definition",
      fargateDefinition,
    ]);
    assert.notEqual(noNetwork.code, 0);
    assert.match(
      noNetwork.stderr,
      /Network Configuration must be provided when networkMode 'awsvpc' is specified/,
    );
    const ec2Only = await aws(server, [
      "ecs",
      "run-task",
      "--cluster",
      CLUSTER,
      "--launch-type",
      "FARGATE",
      "--task-definition",
      ec2Definition,
      ...NETWORK,
    ]);
    assert.notEqual(ec2Only.code, 0);
    assert.match(ec2Only.stderr, /Task definition does not support launch_type FARGATE/);
    // FARGATE and FARGATE_SPOT are every account's, but a cluster uses only those associated with it.
    const unassociated = await aws(server, [
      "ecs",
      "run-task",
      "--cluster",
      CLUSTER,
      "--capacity-provider-strategy",
      "capacityProvider=FARGATE_SPOT,weight=1",
      "--task-definition",
      fargateDefinition,
      ...NETWORK,
    ]);
    assert.notEqual(unassociated.code, 0);
    assert.match(
      unassociated.stderr,
      /InvalidParameterException.*The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster\. Associate the capacity provider with the cluster or specify a valid capacity provider and try again\./,
    );
    const both = await createRefused([
      "--desired-count",
      "1",
      "--launch-type",
      "FARGATE",
      "--capacity-provider-strategy",
      "capacityProvider=FARGATE,weight=1",
    ]);
    assert.match(
      both.stderr,
      /InvalidParameterException.*Specifying both a launch type and capacity provider strategy is not supported\. Remove one and try again\./,
    );
    const daemon = await createRefused(["--scheduling-strategy", "DAEMON", "--launch-type", "FARGATE"]);
    assert.match(
      daemon.stderr,
      /InvalidParameterException.*The daemon scheduling strategy does not support the FARGATE launch type\./,
    );
  });

  describe("with Wharf's Fargate capacity", () => {
    before(async () => {
      // The cluster the agent names does not matter: Fargate capacity serves every cluster.
      capacity = await startTestAgent(server, { capacity: "FARGATE" });
    });

    it("runs a FARGATE task in a cluster with no container instances", async () => {
      const body = (await ecs([
        "run-task",
        "--cluster",
        CLUSTER,
        "--launch-type",
        "FARGATE",
        "--task-definition",
        fargateDefinition,
        ...NETWORK,
      ])) as { tasks: Task[]; failures: unknown[] };
      assert.deepEqual(body.failures, []);
      const started = body.tasks[0] as Task;
      assert.equal(started.lastStatus, "PROVISIONING");
      const running = await until(started.taskArn, "RUNNING");
      assert.equal(running.launchType, "FARGATE");
      assert.equal(running.platformVersion, "1.4.0");
      assert.equal(running.platformFamily, "Linux");
      assert.equal(running.containerInstanceArn, undefined);
      assert.match(running.clusterArn, new RegExp(`cluster/${CLUSTER}$`));
      assert.equal(running.cpu, "256");
      assert.equal(running.memory, "512");
      const address = running.containers[0]?.networkInterfaces?.[0]?.privateIpv4Address ?? "";
      assert.ok(address.length > 0, "the task has a private address");

      // The capacity is Wharf's: the user's cluster lists no container instances.
      const listed = (await ecs(["list-container-instances", "--cluster", CLUSTER])) as {
        containerInstanceArns: string[];
      };
      assert.deepEqual(listed.containerInstanceArns, []);
      const clusters = (await ecs(["list-clusters"])) as { clusterArns: string[] };
      assert.ok(
        clusters.clusterArns.every((arn) => !arn.includes("fargate")),
        "Wharf's capacity is in no cluster the user sees",
      );
      const described = (await ecs([
        "describe-clusters",
        "--clusters",
        CLUSTER,
        "--include",
        "STATISTICS",
      ])) as {
        clusters: Array<{
          registeredContainerInstancesCount: number;
          runningTasksCount: number;
          statistics: Array<{ name: string; value: string }>;
        }>;
      };
      const cluster = described.clusters[0];
      assert.equal(cluster?.registeredContainerInstancesCount, 0);
      assert.equal(cluster?.runningTasksCount, 1);
      const statistic = (name: string) => cluster?.statistics.find((s) => s.name === name)?.value;
      assert.equal(statistic("runningFargateTasksCount"), "1");
      assert.equal(statistic("runningEC2TasksCount"), "0");
      // EC2 tasks still need the user's own instances.
      const ec2 = await aws(server, [
        "ecs",
        "run-task",
        "--cluster",
        CLUSTER,
        "--launch-type",
        "EC2",
        "--task-definition",
        ec2Definition,
      ]);
      assert.notEqual(ec2.code, 0);
      assert.match(ec2.stderr, /No Container Instances were found in your cluster\./);
      // Platform versions: only for Fargate, and only ones that exist.
      const runRefused = async (extra: string[]) =>
        (await aws(server, ["ecs", "run-task", "--cluster", CLUSTER, ...extra])).stderr;
      assert.match(
        await runRefused([
          "--launch-type",
          "EC2",
          "--task-definition",
          ec2Definition,
          "--platform-version",
          "LATEST",
        ]),
        /InvalidParameterException.*The platform version must be null when specifying an EC2 launch type\./,
      );
      assert.match(
        await runRefused([
          "--launch-type",
          "FARGATE",
          "--task-definition",
          fargateDefinition,
          ...NETWORK,
          "--platform-version",
          "9.9.9",
        ]),
        /PlatformUnknownException/,
      );

      const listedTasks = (await ecs(["list-tasks", "--cluster", CLUSTER])) as { taskArns: string[] };
      assert.deepEqual(listedTasks.taskArns, [started.taskArn]);
      const tasksListed = async (...filter: string[]) =>
        ((await ecs(["list-tasks", "--cluster", CLUSTER, ...filter])) as { taskArns: string[] }).taskArns;
      assert.deepEqual(await tasksListed("--launch-type", "FARGATE"), [started.taskArn]);
      assert.deepEqual(await tasksListed("--launch-type", "EC2"), [], "ListTasks filters by launch type");
      // ECS never sets a desired status of PENDING: filtering on it "doesn't return any results".
      assert.deepEqual(await tasksListed("--desired-status", "PENDING"), []);
      await ecs(["stop-task", "--cluster", CLUSTER, "--task", started.taskArn]);
      await until(started.taskArn, "STOPPED");
    });

    it("runs a FARGATE service, and tasks asked for with a FARGATE capacity provider strategy", async () => {
      const created = (await ecs([
        "create-service",
        "--cluster",
        CLUSTER,
        "--service-name",
        "api",
        "--task-definition",
        fargateDefinition,
        "--desired-count",
        "2",
        "--launch-type",
        "FARGATE",
        ...NETWORK,
        "--platform-version",
        "1.3.0",
      ])) as { service: { launchType: string; platformVersion?: string } };
      assert.equal(created.service.launchType, "FARGATE");
      assert.equal(created.service.platformVersion, "1.3.0", "the platform version given");
      const same = (await ecs([
        "update-service",
        "--cluster",
        CLUSTER,
        "--service",
        "api",
        "--platform-version",
        "1.3.0",
      ])) as { service: { deployments: unknown[] } };
      assert.equal(same.service.deployments.length, 1, "the same platform version is no new deployment");
      const service = await eventually(
        "2 RUNNING",
        async () => {
          const body = (await ecs(["describe-services", "--cluster", CLUSTER, "--services", "api"])) as {
            services: Array<{ runningCount: number; events: Array<{ message: string }> }>;
          };
          const found = body.services[0];
          return found !== undefined && found.runningCount === 2 ? found : undefined;
        },
        90_000,
      );
      assert.equal(service.runningCount, 2);
      const tasks = (await ecs(["list-tasks", "--cluster", CLUSTER, "--service-name", "api"])) as {
        taskArns: string[];
      };
      assert.equal(tasks.taskArns.length, 2);
      for (const arn of tasks.taskArns) {
        const task = await describeTask(arn);
        assert.equal(task.launchType, "FARGATE");
        assert.equal(task.containerInstanceArn, undefined);
        assert.equal(task.platformVersion, "1.3.0", "the service's tasks run on its platform version");
      }
      await ecs(["delete-service", "--cluster", CLUSTER, "--service", "api", "--force"]);
      await eventually("the service's tasks stopped", async () => {
        const left = (await ecs(["list-tasks", "--cluster", CLUSTER])) as { taskArns: string[] };
        return left.taskArns.length === 0 ? true : undefined;
      });

      await associateProviders("[]");
      const run = (await ecs([
        "run-task",
        "--cluster",
        CLUSTER,
        "--capacity-provider-strategy",
        "capacityProvider=FARGATE,weight=1",
        "--task-definition",
        fargateDefinition,
        ...NETWORK,
      ])) as { tasks: Task[]; failures: unknown[] };
      assert.deepEqual(run.failures, []);
      const task = run.tasks[0] as Task;
      assert.equal(task.launchType, "FARGATE");
      assert.equal(task.capacityProviderName, "FARGATE");
      const running = await until(task.taskArn, "RUNNING");
      assert.equal(running.capacityProviderName, "FARGATE");
      await ecs(["stop-task", "--cluster", CLUSTER, "--task", task.taskArn]);
      await until(task.taskArn, "STOPPED");
    });

    it("shares a service's tasks between FARGATE and FARGATE_SPOT by its capacity provider strategy", async () => {
      const split = [
        { capacityProvider: "FARGATE", weight: 1, base: 1 },
        { capacityProvider: "FARGATE_SPOT", weight: 1, base: 0 },
      ];
      const created = (await ecs([
        "create-service",
        "--cluster",
        CLUSTER,
        "--service-name",
        "split",
        "--task-definition",
        fargateDefinition,
        "--desired-count",
        "3",
        "--capacity-provider-strategy",
        "capacityProvider=FARGATE,weight=1,base=1",
        "capacityProvider=FARGATE_SPOT,weight=1",
        ...NETWORK,
      ])) as { service: Service };
      assert.deepEqual(created.service.capacityProviderStrategy, split);
      assert.equal(created.service.launchType, undefined, "a strategy, not a launch type");
      assert.equal(created.service.platformVersion, "LATEST");
      assert.deepEqual(created.service.deployments[0]?.capacityProviderStrategy, split);
      assert.equal(created.service.deployments[0]?.launchType, undefined);
      const tasks = await untilServiceTasks("split", 3, (t) => t.lastStatus === "RUNNING");
      assert.ok(tasks.every((t) => t.launchType === "FARGATE" && t.containerInstanceArn === undefined));
      // The base first, then one each by weight.
      assert.deepEqual(providers(tasks), { FARGATE: 2, FARGATE_SPOT: 1 });

      // Scaling in keeps the base.
      await ecs(["update-service", "--cluster", CLUSTER, "--service", "split", "--desired-count", "1"]);
      const base = await untilServiceTasks("split", 1, (t) => t.lastStatus === "RUNNING");
      assert.deepEqual(providers(base), { FARGATE: 1 });

      // A new strategy is a new deployment, whose tasks replace the old ones; ECS asks for it.
      const change = [
        "update-service",
        "--cluster",
        CLUSTER,
        "--service",
        "split",
        "--desired-count",
        "3",
        "--capacity-provider-strategy",
        "capacityProvider=FARGATE_SPOT,weight=1",
      ];
      const unforced = await aws(server, ["ecs", ...change]);
      assert.match(
        unforced.stderr,
        /InvalidParameterException.*making a change to a capacity provider strategy on a service that is already using one, you must force a new deployment\./,
      );
      const updated = (await ecs([...change, "--force-new-deployment"])) as { service: Service };
      const spot = [{ capacityProvider: "FARGATE_SPOT", weight: 1, base: 0 }];
      assert.deepEqual(updated.service.capacityProviderStrategy, spot);
      assert.deepEqual(
        updated.service.deployments.map((d) => [d.status, d.capacityProviderStrategy]),
        [
          ["PRIMARY", spot],
          ["ACTIVE", split],
        ],
      );
      const moved = await untilServiceTasks(
        "split",
        3,
        (t) => t.lastStatus === "RUNNING" && t.capacityProviderName === "FARGATE_SPOT",
      );
      assert.deepEqual(providers(moved), { FARGATE_SPOT: 3 });
      // The old deployment stays ACTIVE until its last task has stopped, as in ECS; wait for that
      // so the next update starts from one deployment.
      await eventually(
        "the spread deployment retired",
        async () => {
          const body = (await ecs(["describe-services", "--cluster", CLUSTER, "--services", "split"])) as {
            services: Service[];
          };
          return body.services[0]?.deployments.length === 1 ? true : undefined;
        },
        90_000,
      );

      // An empty strategy takes the service back to its launch type (ECS since June 2025), again
      // in a new deployment, whose tasks run on Fargate with no capacity provider.
      const back = [
        "update-service",
        "--cluster",
        CLUSTER,
        "--service",
        "split",
        "--capacity-provider-strategy",
        "[]",
      ];
      const backUnforced = await aws(server, ["ecs", ...back]);
      assert.match(backUnforced.stderr, /InvalidParameterException.*you must force a new deployment\./);
      const reverted = (await ecs([...back, "--force-new-deployment"])) as {
        service: Service & { launchType?: string };
      };
      assert.equal(reverted.service.launchType, "FARGATE");
      assert.equal(reverted.service.capacityProviderStrategy, undefined);
      assert.deepEqual(
        reverted.service.deployments.map((d) => [d.status, d.launchType, d.capacityProviderStrategy]),
        [
          ["PRIMARY", "FARGATE", undefined],
          ["ACTIVE", undefined, spot],
        ],
      );
      const launched = await untilServiceTasks(
        "split",
        3,
        (t) => t.lastStatus === "RUNNING" && t.capacityProviderName === undefined,
      );
      assert.ok(launched.every((t) => t.launchType === "FARGATE"));
      await ecs(["delete-service", "--cluster", CLUSTER, "--service", "split", "--force"]);
      await untilServiceTasks("split", 0, () => true);
    });

    it("takes the cluster's default strategy when given neither, and checks strategies as ECS does", async () => {
      const refused = async (strategy: string[], message: RegExp) => {
        const result = await createRefused([
          "--desired-count",
          "1",
          "--capacity-provider-strategy",
          ...strategy,
        ]);
        assert.notEqual(result.code, 0);
        assert.match(result.stderr, message);
      };
      await refused(
        ["capacityProvider=FARGATE,weight=1,base=1", "capacityProvider=FARGATE_SPOT,weight=1,base=2"],
        /The specified capacity provider strategy can have a base defined for only one capacity provider\./,
      );
      await refused(
        ["capacityProvider=FARGATE,weight=0", "capacityProvider=FARGATE_SPOT,weight=0"],
        /The specified capacity provider strategy must have at least one capacity provider with a weight greater than zero\./,
      );
      await refused(["capacityProvider=FARGATE,weight=1001"], /InvalidParameterException/);
      await refused(["capacityProvider=FARGATE,base=100001"], /InvalidParameterException/);
      await refused(["capacityProvider=my-asg,weight=1"], /not associated with the cluster/);

      await associateProviders("capacityProvider=FARGATE_SPOT,weight=2");
      try {
        const created = (await ecs([
          "create-service",
          "--cluster",
          CLUSTER,
          "--service-name",
          "defaulted",
          "--task-definition",
          fargateDefinition,
          "--desired-count",
          "0",
          ...NETWORK,
        ])) as { service: Service };
        const cluster = [{ capacityProvider: "FARGATE_SPOT", weight: 2, base: 0 }];
        assert.deepEqual(created.service.capacityProviderStrategy, cluster);
        assert.equal(created.service.launchType, undefined);
        const described = (await ecs([
          "describe-services",
          "--cluster",
          CLUSTER,
          "--services",
          "defaulted",
        ])) as {
          services: Service[];
        };
        assert.deepEqual(described.services[0]?.capacityProviderStrategy, cluster);
        // A DAEMON service takes no strategy, not even the cluster's default.
        const daemon = await aws(server, [
          "ecs",
          "create-service",
          "--cluster",
          CLUSTER,
          "--service-name",
          "daemon",
          "--task-definition",
          ec2Definition,
          "--scheduling-strategy",
          "DAEMON",
        ]);
        assert.match(
          daemon.stderr,
          /InvalidParameterException.*Specifying a capacity provider strategy is not supported when you create a service using the DAEMON scheduling strategy\./,
        );
        // A provider a service's strategy names stays associated until the service is gone.
        const removal = [
          "ecs",
          "put-cluster-capacity-providers",
          "--cluster",
          CLUSTER,
          "--capacity-providers",
          "FARGATE",
          "--default-capacity-provider-strategy",
          "[]",
        ];
        const inUse = await aws(server, removal);
        assert.match(
          inUse.stderr,
          /ResourceInUseException.*The specified capacity provider is in use and cannot be removed\./,
        );
        await ecs(["delete-service", "--cluster", CLUSTER, "--service", "defaulted"]);
        // The deleted service is DRAINING for a moment (as in ECS), then INACTIVE: then it goes.
        await eventually("the provider to be removable", async () =>
          (await aws(server, removal)).code === 0 ? true : undefined,
        );
      } finally {
        await associateProviders("[]");
      }
    });
  });
});
