/** Fixtures the ECS unit tests share: one account, a fixed clock, the default cluster. */
import type { RequestContext } from "../aws/service.ts";
import { type ClusterRecord, clusterArn } from "./clusters.ts";
import type { registerInstance } from "./instance-api.ts";
import { newTask, type RunnableDefinition, type TaskFactory } from "./task-api.ts";
import type { TaskRecord } from "./tasks.ts";

export const TEST_SCOPE = { region: "us-east-1", accountId: "000000000000" };
export const TEST_NOW = Date.UTC(2030, 0, 1);

export const testContext: RequestContext = {
  requestId: "r",
  ...TEST_SCOPE,
  identity: { accessKeyId: "AKIDTEST" },
  now: new Date(TEST_NOW),
};

/** Registry credentials for task assignments; nothing pulls with them in unit tests. */
export const testRegistry = {
  host: () => "localhost:1",
  credentials: () => ({ username: "AWS", password: "t" }),
};

export const testCluster: ClusterRecord = {
  arn: clusterArn(TEST_SCOPE, "default"),
  name: "default",
  status: "ACTIVE",
  settings: [],
  capacityProviders: [],
  defaultCapacityProviderStrategy: [],
  createdAt: TEST_NOW,
  updatedAt: TEST_NOW,
};

/**
 * What `registerInstance` is given for an EC2 instance of `cpu` units and `memory` MiB, in
 * `zone` when named (as its `ecs.availability-zone` attribute and its hostname).
 */
export function testInstance(options: {
  cpu: number;
  memory: number;
  zone?: string;
  hostname?: string;
  arn?: string;
}): Parameters<typeof registerInstance>[4] {
  const { cpu, memory, zone, arn } = options;
  return {
    ...(arn === undefined ? {} : { arn }),
    cpu,
    memory,
    attributes: zone === undefined ? [] : [{ name: "ecs.availability-zone", value: zone }],
    versionInfo: { agentVersion: "test" },
    hostname: options.hostname ?? zone ?? "h",
    address: "127.0.0.1",
    capacity: "EC2",
  };
}

/** `app:1`: one essential `web` container, unless `containers` are given. */
export function testDefinition(
  containers: RunnableDefinition["containerDefinitions"] = [
    { name: "web", image: "busybox", memory: 64, essential: true },
  ],
): RunnableDefinition {
  return {
    taskDefinitionArn: "arn:aws:ecs:us-east-1:000000000000:task-definition/app:1",
    family: "app",
    revision: 1,
    status: "ACTIVE",
    containerDefinitions: containers,
  };
}

/**
 * `app:1` in awsvpc mode with task-level cpu and memory (so also for Fargate): an essential `web`
 * whose environment needs escaping in JSON, and a non-essential `side` with a command.
 */
export function awsvpcDefinition(): RunnableDefinition {
  return {
    ...testDefinition([
      {
        name: "web",
        image: "busybox",
        memory: 64,
        essential: true,
        environment: [{ name: "Q", value: '"\\' }],
      },
      { name: "side", image: "busybox", essential: false, command: ["sleep", "1"] },
    ]),
    cpu: "256",
    memory: "512",
    networkMode: "awsvpc",
    requiresCompatibilities: ["EC2", "FARGATE"],
  };
}

/** `app:1` with an essential `web` container that has a health check, and a non-essential `side`. */
export function checkedDefinition(): RunnableDefinition {
  return testDefinition([
    { name: "web", image: "busybox", memory: 64, essential: true, healthCheck: { command: ["CMD", "true"] } },
    { name: "side", image: "busybox", memory: 64, essential: false },
  ]);
}

/** A new task of `definition` (default `testDefinition()`) on instance `i` of the default cluster, in us-east-1a. */
export function testTask(
  options: { definition?: RunnableDefinition; input?: Partial<TaskFactory["input"]> } = {},
): TaskRecord {
  return newTask(
    {
      ctx: testContext,
      cluster: testCluster,
      definition: options.definition ?? testDefinition(),
      input: { taskDefinition: "app:1", ...options.input },
      registry: testRegistry,
    },
    "arn:aws:ecs:us-east-1:000000000000:container-instance/default/i",
    "us-east-1a",
  );
}
