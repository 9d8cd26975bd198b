import { randomBytes } from "node:crypto";
import { z } from "zod";
import { JsonTemplate, RawJson } from "../aws/json-text.ts";
import { decodeToken, toPage } from "../aws/pagination.ts";
import type { Operation, RequestContext } from "../aws/service.ts";
import { putTags, removeAllTags, type Tag, tagProblem, tagsOf, toTags } from "../aws/tags.ts";
import { parseInput } from "../aws/validate.ts";
import { assignProviders } from "../scheduler/capacity.ts";
import { type Constraint, type PlacementFailure, place, type Strategy } from "../scheduler/placement.ts";
import { parseQuery, QueryError } from "../scheduler/query.ts";
import type { AssignedContainer, TaskAssignment } from "../shared/agent-protocol.ts";
import type { Store, Tx } from "../store/store.ts";
import { capacityOf } from "./capacity.ts";
import { activeCluster, type ClusterRecord, type Scope } from "./clusters.ts";
import { ClientException, Conflict, InvalidParameter, PlatformUnknown, ServiceNotFound } from "./errors.ts";
import {
  fargateCapacityArn,
  findInstance,
  instanceUsage,
  instanceView,
  resolveInstance,
} from "./instances.ts";
import type { InstanceNotifier } from "./notifier.ts";
import type { InstanceSnapshot, SchedulerState } from "./scheduler-state.ts";
import { findService } from "./services.ts";
import { CapacityProviderStrategyItem, ClientToken, Tags } from "./shapes.ts";
import { findTaskDefinition } from "./task-definitions.ts";
import {
  bodyOf,
  clusterNameOfArn,
  containerWire,
  findTask,
  insertTask,
  knowAssignmentJson,
  newContainerArn,
  newTaskArn,
  requestStop,
  STOPPED_RETENTION_MS,
  saveTask,
  type TaskRecord,
  type TaskWire,
  taskShape,
} from "./tasks.ts";

/** What RunTask needs of a task definition (the ECS wire shape). */
export interface RunnableDefinition {
  taskDefinitionArn: string;
  family: string;
  revision: number;
  status: string;
  networkMode?: string;
  cpu?: string;
  memory?: string;
  containerDefinitions: Array<Record<string, unknown> & { name: string; image: string }>;
  volumes?: Array<{ name: string; host?: { sourcePath?: string } }>;
  placementConstraints?: Array<{ type: string; expression?: string }>;
  requiresCompatibilities?: string[];
  compatibilities?: string[];
}

/** Credentials tasks get for Wharf's own registry. */
export interface TaskRegistryAccess {
  host(): string;
  credentials(accessKeyId: string, now: Date): { username: string; password: string };
}

const KeyValue = z.object({ name: z.string(), value: z.string().default("") });
const ContainerOverride = z.object({
  name: z.string(),
  command: z.array(z.string()).optional(),
  environment: z.array(KeyValue).optional(),
  cpu: z.number().int().min(0).optional(),
  memory: z.number().int().min(0).optional(),
  memoryReservation: z.number().int().min(0).optional(),
});
const Overrides = z.object({
  containerOverrides: z.array(ContainerOverride).optional(),
  cpu: z.string().optional(),
  memory: z.string().optional(),
  taskRoleArn: z.string().optional(),
  executionRoleArn: z.string().optional(),
});
export const PlacementConstraint = z.object({
  type: z.enum(["distinctInstance", "memberOf"]),
  expression: z.string().max(2000).optional(),
});
export const PlacementStrategy = z.object({
  type: z.enum(["random", "spread", "binpack"]),
  field: z.string().optional(),
});

/** Placement constraints a task may have, its task definition's and its caller's together. */
const MAX_CONSTRAINTS = 10;

export const RunTaskInput = z.object({
  cluster: z.string().optional(),
  taskDefinition: z.string(),
  count: z.number().int().optional(),
  launchType: z.enum(["EC2", "FARGATE", "EXTERNAL"]).optional(),
  capacityProviderStrategy: z.array(CapacityProviderStrategyItem).max(20).optional(),
  networkConfiguration: z
    .object({
      awsvpcConfiguration: z
        .object({
          subnets: z.array(z.string()),
          securityGroups: z.array(z.string()).optional(),
          assignPublicIp: z.enum(["ENABLED", "DISABLED"]).optional(),
        })
        .optional(),
    })
    .optional(),
  overrides: Overrides.optional(),
  placementConstraints: z.array(PlacementConstraint).max(MAX_CONSTRAINTS).optional(),
  placementStrategy: z.array(PlacementStrategy).max(5).optional(),
  startedBy: z.string().max(128).optional(),
  group: z.string().max(255).optional(),
  tags: Tags.optional(),
  enableECSManagedTags: z.boolean().optional(),
  propagateTags: z.enum(["TASK_DEFINITION", "SERVICE", "NONE"]).optional(),
  referenceId: z.string().optional(),
  platformVersion: z.string().optional(),
  enableExecuteCommand: z.boolean().optional(),
  clientToken: ClientToken(64).optional(),
});
const StartTaskInput = RunTaskInput.omit({
  count: true,
  launchType: true,
  placementConstraints: true,
  placementStrategy: true,
}).extend({
  containerInstances: z.array(z.string()).min(1).max(10),
});
const StopTaskInput = z.object({
  cluster: z.string().optional(),
  task: z.string(),
  reason: z.string().max(255).optional(),
});
const DescribeTasksInput = z.object({
  cluster: z.string().optional(),
  tasks: z.array(z.string()).max(100),
  include: z.array(z.enum(["TAGS"])).optional(),
});
const ListTasksInput = z.object({
  cluster: z.string().optional(),
  containerInstance: z.string().optional(),
  family: z.string().optional(),
  nextToken: z.string().optional(),
  maxResults: z.number().int().min(1).max(100).optional(),
  startedBy: z.string().optional(),
  serviceName: z.string().optional(),
  desiredStatus: z.enum(["RUNNING", "PENDING", "STOPPED"]).optional(),
  launchType: z.enum(["EC2", "FARGATE", "EXTERNAL"]).optional(),
});

export type RunInput = z.infer<typeof RunTaskInput>;

function scopeOf(ctx: RequestContext) {
  return { region: ctx.region, accountId: ctx.accountId };
}

/** ECS's task-size strings ("1 vCPU", "0.5 GB", "512") as CPU units / MiB. */
function sizeOf(value: string | undefined, unit: "cpu" | "memory"): number | undefined {
  if (value === undefined) return undefined;
  const match = /^\s*([\d.]+)\s*(vcpu|gb)?\s*$/i.exec(value);
  if (match === null) return undefined;
  const n = Number(match[1]);
  if (match[2] === undefined) return Math.round(n);
  return Math.round(unit === "cpu" ? n * 1024 : n * 1024);
}

function num(value: unknown): number | undefined {
  return typeof value === "number" ? value : undefined;
}

type PortMappingWithRange = Omit<AssignedContainer["portMappings"][number], "containerPort" | "protocol"> & {
  containerPort?: number;
  protocol?: "tcp" | "udp";
  containerPortRange?: string;
};

/**
 * A task definition's port mappings as the agent takes them. In bridge mode a
 * `containerPortRange` becomes one mapping per port, each with a dynamic host port; in awsvpc
 * mode a range needs no mapping (the task's namespace is its own) and is left out.
 */
export function expandPortRanges(
  mappings: PortMappingWithRange[],
  networkMode: string,
): AssignedContainer["portMappings"] {
  return mappings.flatMap(({ containerPortRange, ...p }): AssignedContainer["portMappings"] => {
    const protocol = p.protocol ?? "tcp";
    if (p.containerPort !== undefined) return [{ ...p, containerPort: p.containerPort, protocol }];
    if (networkMode !== "bridge") return [];
    const [first, last] = (containerPortRange ?? "").split("-").map(Number);
    // Registration refuses anything else; a range stored before it did is left out.
    if (first === undefined || last === undefined || !(first >= 1 && first <= last && last <= 65535))
      return [];
    return Array.from({ length: last - first + 1 }, (_, i) => ({
      containerPort: first + i,
      hostPort: 0,
      protocol,
    }));
  });
}

/** The container definitions with RunTask's overrides applied, as the agent takes them. */
export function assignedContainers(
  definition: RunnableDefinition,
  overrides: RunInput["overrides"],
): AssignedContainer[] {
  return definition.containerDefinitions.map((c) => {
    const override = overrides?.containerOverrides?.find((o) => o.name === c.name);
    const environment = new Map(
      ((c.environment as Array<{ name: string; value: string }> | undefined) ?? []).map((e) => [
        e.name,
        e.value,
      ]),
    );
    for (const e of override?.environment ?? []) environment.set(e.name, e.value);
    const container: AssignedContainer = {
      ...(c as unknown as AssignedContainer),
      name: c.name,
      image: c.image,
      essential: c.essential !== false,
      environment: [...environment].map(([name, value]) => ({ name, value })),
      portMappings: expandPortRanges(
        (c.portMappings as PortMappingWithRange[] | undefined) ?? [],
        definition.networkMode ?? "bridge",
      ),
      dependsOn: (c.dependsOn as AssignedContainer["dependsOn"] | undefined) ?? [],
      mountPoints: (c.mountPoints as AssignedContainer["mountPoints"] | undefined) ?? [],
    };
    if (override?.command !== undefined) container.command = override.command;
    if (override?.cpu !== undefined) container.cpu = override.cpu;
    if (override?.memory !== undefined) container.memory = override.memory;
    if (override?.memoryReservation !== undefined) container.memoryReservation = override.memoryReservation;
    return container;
  });
}

/** CPU, memory and static host ports one task reserves on an instance. */
export function reservationOf(
  definition: RunnableDefinition,
  containers: AssignedContainer[],
  overrides: RunInput["overrides"],
) {
  const taskCpu = sizeOf(overrides?.cpu ?? definition.cpu, "cpu");
  const taskMemory = sizeOf(overrides?.memory ?? definition.memory, "memory");
  const cpu = taskCpu ?? containers.reduce((sum, c) => sum + (num(c.cpu) ?? 0), 0);
  const memory =
    taskMemory ?? containers.reduce((sum, c) => sum + (num(c.memory) ?? num(c.memoryReservation) ?? 0), 0);
  const tcp: number[] = [];
  const udp: number[] = [];
  const mode = definition.networkMode ?? "bridge";
  if (mode === "bridge" || mode === "host") {
    for (const c of containers) {
      for (const p of c.portMappings) {
        const port = mode === "host" ? p.containerPort : (p.hostPort ?? 0);
        if (port > 0) (p.protocol === "udp" ? udp : tcp).push(port);
      }
    }
  }
  return { cpu, memory, tcp, udp };
}

export interface TaskFactory {
  ctx: RequestContext;
  cluster: ClusterRecord;
  definition: RunnableDefinition;
  input: Omit<RunInput, "count" | "launchType" | "placementConstraints" | "placementStrategy"> & {
    launchType?: string;
    /** The capacity provider of a strategy the tasks run on. */
    capacityProviderName?: string;
  };
  registry: TaskRegistryAccess;
  /** The service whose task this is, for a service's tasks. */
  serviceName?: string;
}

/** A new task record, PROVISIONING (awsvpc) or PENDING, assigned to an instance. */
export function newTask(factory: TaskFactory, instanceArn: string, zone: string | undefined): TaskRecord {
  return new TaskMaker(factory).make(instanceArn, zone).record;
}

/**
 * Makes the tasks of one request (RunTask's `count`, a service's pass): what they share (their
 * containers as the agent takes them, their reservation, the registry's credentials) is worked
 * out once, and every task's assignment holds the same containers. Nothing changes an
 * assignment once made (`TaskRecord`), so sharing them is safe.
 */
export class TaskMaker {
  readonly reservation: TaskRecord["reservation"];
  /** Every task's assignment but its `taskArn`, and that as JSON without its braces. */
  private readonly shared: Omit<TaskRecord["assignment"], "taskArn">;
  private readonly sharedFields: string;
  /** By whether the task has a zone: its body's template, and its RunTask shape's once asked for. */
  private readonly templates: Array<{ body: JsonTemplate; shape: () => JsonTemplate } | undefined> = [];

  constructor(private readonly factory: TaskFactory) {
    const { ctx, cluster, definition, input } = factory;
    const containers = assignedContainers(definition, input.overrides);
    this.reservation = reservationOf(definition, containers, input.overrides);
    const access = factory.registry.credentials(ctx.identity.accessKeyId, ctx.now);
    this.shared = {
      clusterArn: cluster.arn,
      family: definition.family,
      revision: definition.revision,
      networkMode: (definition.networkMode ?? "bridge") as TaskAssignment["networkMode"],
      containers,
      volumes: definition.volumes ?? [],
      wharfRegistry: { host: factory.registry.host(), ...access },
      region: ctx.region,
    };
    if (definition.cpu !== undefined || input.overrides?.cpu !== undefined)
      this.shared.cpu = this.reservation.cpu;
    if (definition.memory !== undefined || input.overrides?.memory !== undefined)
      this.shared.memory = this.reservation.memory;
    this.sharedFields = JSON.stringify(this.shared).slice(1, -1);
  }

  make(instanceArn: string, zone: string | undefined): MadeTask {
    const taskArn = newTaskArn(scopeOf(this.factory.ctx), this.factory.cluster.arn, this.now);
    const strings: TaskStrings = {
      taskArn,
      instanceArn,
      zone,
      attachmentId: this.shared.networkMode === "awsvpc" ? randomBytes(16).toString("hex") : "",
      containerArns: this.shared.containers.map(() => newContainerArn(taskArn)),
    };
    const record = this.build(strings);
    knowAssignmentJson(record, `{"taskArn":${JSON.stringify(taskArn)},${this.sharedFields}`);
    const template = this.template(zone !== undefined);
    const texts = [taskArn, instanceArn, zone ?? "", strings.attachmentId, ...strings.containerArns].map(
      (value) => JSON.stringify(value),
    );
    return new MadeTask(record, template.body.fill(texts), texts, template.shape);
  }

  private get now(): number {
    return this.factory.ctx.now.getTime();
  }

  /**
   * The body and RunTask shape JSON of this maker's tasks (with a zone or without), serialized
   * once from a task whose own strings are markers: its tasks differ in nothing else.
   */
  private template(zoned: boolean): { body: JsonTemplate; shape: () => JsonTemplate } {
    let template = this.templates[Number(zoned)];
    if (template === undefined) {
      const markers = Array.from({ length: 4 + this.shared.containers.length }, (_, i) =>
        JsonTemplate.marker(i),
      );
      const [taskArn, instanceArn, zone, attachmentId, ...containerArns] = markers as [
        string,
        string,
        string,
        string,
        ...string[],
      ];
      const prototype = this.build({
        taskArn,
        instanceArn,
        zone: zoned ? zone : undefined,
        attachmentId,
        containerArns,
      });
      let shape: JsonTemplate | undefined;
      template = {
        body: JsonTemplate.of(bodyOf(prototype)),
        // A service's pass answers no one with its tasks: its makers never serialize a shape.
        shape: () => {
          shape ??= JsonTemplate.of(JSON.stringify(taskShape(prototype, true)));
          return shape;
        },
      };
      this.templates[Number(zoned)] = template;
    }
    return template;
  }

  private build(strings: TaskStrings): TaskRecord {
    const { cluster, definition, input, serviceName } = this.factory;
    const { containers, networkMode, cpu, memory } = this.shared;
    const { taskArn, instanceArn, zone } = strings;
    const wire: TaskWire = {
      taskArn,
      clusterArn: cluster.arn,
      taskDefinitionArn: definition.taskDefinitionArn,
      containerInstanceArn: instanceArn,
      overrides: {
        containerOverrides:
          input.overrides?.containerOverrides ??
          definition.containerDefinitions.map((c) => ({ name: c.name })),
        ...(input.overrides?.cpu === undefined ? {} : { cpu: input.overrides.cpu }),
        ...(input.overrides?.memory === undefined ? {} : { memory: input.overrides.memory }),
        inferenceAcceleratorOverrides: [],
      },
      lastStatus: networkMode === "awsvpc" ? "PROVISIONING" : "PENDING",
      desiredStatus: "RUNNING",
      containers: containers.map((c, i) => containerWire(taskArn, c, strings.containerArns[i])),
      version: 1,
      createdAt: this.now,
      group: input.group ?? `family:${definition.family}`,
      launchType: input.launchType ?? "EC2",
      attachments: [],
      healthStatus: "UNKNOWN",
      enableExecuteCommand: input.enableExecuteCommand ?? false,
      tags: input.tags ?? [],
    };
    if (input.startedBy !== undefined) wire.startedBy = input.startedBy;
    if (input.capacityProviderName !== undefined) wire.capacityProviderName = input.capacityProviderName;
    if (zone !== undefined) wire.availabilityZone = zone;
    if (cpu !== undefined) wire.cpu = String(cpu);
    if (memory !== undefined) wire.memory = String(memory);
    if (wire.launchType === "FARGATE") {
      wire.platformVersion = platformVersionOf(input.platformVersion);
      wire.platformFamily = "Linux";
    }
    if (networkMode === "awsvpc") {
      wire.attachments.push({
        id: strings.attachmentId,
        type: "ElasticNetworkInterface",
        status: "PRECREATED",
        details: [],
      });
    }
    const record: TaskRecord = {
      wire,
      assignment: { taskArn, ...this.shared },
      reservation: this.reservation,
      desiredVersion: 1,
    };
    if (serviceName !== undefined) record.serviceName = serviceName;
    return record;
  }
}

/**
 * A task just made, and what it serializes to, worked out with the other tasks of its request:
 * its row's body (`bodyOf`) and its shape in RunTask's answer (`taskShape` with tags). Both hold
 * for the record as made; whoever changes the record before writing it serializes it again.
 */
export class MadeTask {
  constructor(
    readonly record: TaskRecord,
    readonly body: string,
    /** The task's own strings (`TaskStrings`) as JSON, in the templates' hole order. */
    private readonly texts: readonly string[],
    private readonly shapes: () => JsonTemplate,
  ) {}

  shape(): string {
    return this.shapes().fill(this.texts);
  }
}

/** The strings in which the tasks of one `TaskMaker` differ. */
interface TaskStrings {
  taskArn: string;
  instanceArn: string;
  zone: string | undefined;
  /** The network interface attachment's ID (awsvpc tasks). */
  attachmentId: string;
  containerArns: string[];
}

/**
 * The tags of a task RunTask or StartTask starts: ECS's managed tag when asked for, the task
 * definition's when propagated, then the caller's (a key given twice keeps its last value).
 */
async function standaloneTags(
  tx: Tx,
  input: Pick<RunInput, "tags" | "propagateTags" | "enableECSManagedTags">,
  cluster: ClusterRecord,
  definition: RunnableDefinition,
): Promise<Tag[]> {
  // ECS: "An error will be received if you specify the SERVICE option when running a task."
  if (input.propagateTags === "SERVICE") {
    throw InvalidParameter(
      "propagateTags SERVICE is only for the tasks of a service: use TASK_DEFINITION or NONE.",
    );
  }
  const tags: Tag[] = [];
  if (input.enableECSManagedTags === true) tags.push({ key: "aws:ecs:clusterName", value: cluster.name });
  if (input.propagateTags === "TASK_DEFINITION")
    tags.push(...(await tagsOf(tx, definition.taskDefinitionArn)));
  tags.push(...toTags(input.tags ?? []));
  return [...new Map(tags.map((tag) => [tag.key, tag])).values()];
}

/** The DescribeTasks shape of a task with its tags as the store holds them now. */
async function taggedShape(tx: Tx, record: TaskRecord): Promise<Record<string, unknown>> {
  const shape = taskShape(record, false);
  shape.tags = (await tagsOf(tx, record.wire.taskArn)).map((t) => ({ key: t.key, value: t.value }));
  return shape;
}

/** How long RunTask remembers a clientToken: as long as ECS keeps a STOPPED task describable. */
const RUN_TASK_TOKEN_RETENTION_MS = 60 * 60_000;

/** What a RunTask call asks for, but its token: the same token must come with the same request. */
function runRequest(input: RunInput): string {
  const { clientToken: _token, ...request } = input;
  return JSON.stringify(request);
}

/**
 * The answer to a RunTask call whose clientToken an earlier call in the cluster used: that call's
 * tasks as they are now and its failures, or ECS's ConflictException for a different request.
 */
async function earlierRun(tx: Tx, clusterArn: string, input: RunInput): Promise<RawJson | undefined> {
  if (input.clientToken === undefined) return undefined;
  const row = await tx.get<{ request: string; task_arns: string; failures: string }>(
    "SELECT request, task_arns, failures FROM ecs_run_task_tokens WHERE cluster_arn = ? AND token = ?",
    clusterArn,
    input.clientToken,
  );
  if (row === undefined) return undefined;
  if (row.request !== runRequest(input)) {
    throw Conflict("The provided clientToken is already in use with a different RunTask request.");
  }
  const shapes: string[] = [];
  for (const arn of JSON.parse(row.task_arns) as string[]) {
    const record = await findTask(tx, arn);
    if (record === undefined) continue;
    // Its tags as they are now, as DescribeTasks gives them (StopTask or TagResource change them).
    shapes.push(JSON.stringify(await taggedShape(tx, record)));
  }
  return new RawJson(`{"tasks":[${shapes.join(",")}],"failures":${row.failures}}`);
}

async function rememberRun(
  tx: Tx,
  clusterArn: string,
  input: RunInput,
  tasks: readonly MadeTask[],
  failures: ReadonlyArray<{ arn?: string; reason: string }>,
  now: number,
): Promise<void> {
  await tx.run(
    "INSERT INTO ecs_run_task_tokens (cluster_arn, token, request, task_arns, failures, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    clusterArn,
    input.clientToken ?? "",
    runRequest(input),
    JSON.stringify(tasks.map((made) => made.record.wire.taskArn)),
    JSON.stringify(failures),
    now,
  );
}

/** Forgets RunTask client tokens older than the retention. */
export async function purgeRunTaskTokens(store: Store, now: number): Promise<void> {
  await store.transaction((tx) =>
    tx.run("DELETE FROM ecs_run_task_tokens WHERE created_at < ?", now - RUN_TASK_TOKEN_RETENTION_MS),
  );
}

/** RunTask's and StartTask's answer, its tasks serialized as they were made. */
function startedTasks(tasks: readonly MadeTask[], failures: ReadonlyArray<{ arn?: string; reason: string }>) {
  const shapes = tasks.map((made) => made.shape()).join(",");
  return new RawJson(`{"tasks":[${shapes}],"failures":${JSON.stringify(failures)}}`);
}

/** How long credentials issued for tasks are given again to tasks started by the same key. */
export const REGISTRY_CREDENTIALS_REUSE_MS = 60_000;

/**
 * Registry access whose credentials are issued at most once a minute per access key: a password
 * issued at `t` is valid until `t` plus 12 hours, so a task started up to a minute later is given
 * the same one (valid a minute less), and starting tasks is spared signing a new one each time.
 */
export function reusedCredentials(
  registry: TaskRegistryAccess,
  reuseMs = REGISTRY_CREDENTIALS_REUSE_MS,
): TaskRegistryAccess {
  let issued:
    | { accessKeyId: string; at: number; credentials: { username: string; password: string } }
    | undefined;
  return {
    host: () => registry.host(),
    credentials(accessKeyId, now) {
      const age = now.getTime() - (issued?.at ?? Number.NaN);
      if (issued?.accessKeyId !== accessKeyId || !(age >= 0 && age < reuseMs)) {
        issued = { accessKeyId, at: now.getTime(), credentials: registry.credentials(accessKeyId, now) };
      }
      return issued.credentials;
    },
  };
}

/** RunTask's failure reason when no Fargate capacity can take a task (ECS's words). */
export const FARGATE_CAPACITY_UNAVAILABLE =
  "Capacity is unavailable at this time. Please try again later or in a different availability zone";
/** Where Fargate tasks go: spread over zones, then over capacity instances (ECS spreads Fargate over zones). */
export const FARGATE_STRATEGIES: Strategy[] = [
  { type: "spread", field: "attribute:ecs.availability-zone" },
  { type: "spread", field: "instanceId" },
];

function failureReasonText(failure: PlacementFailure): string {
  return failure.reason === "DRAINING" || failure.reason === "INACTIVE" ? "ATTRIBUTE" : failure.reason;
}

/** The ACTIVE task definition a `taskDefinition` parameter names, or ECS's ClientException. */
export async function definitionFor(
  tx: Tx,
  ctx: RequestContext,
  reference: string,
): Promise<RunnableDefinition> {
  const definition = (await findTaskDefinition(tx, scopeOf(ctx), reference)) as
    | RunnableDefinition
    | undefined;
  if (definition === undefined) throw ClientException("Unable to find task definition.");
  if (definition.status !== "ACTIVE") throw ClientException("TaskDefinition is inactive");
  return definition;
}

/** Fargate platform versions (Linux) a task or service may ask for; LATEST is 1.4.0. */
const PLATFORM_VERSIONS = new Set(["LATEST", "1.4.0", "1.3.0"]);

/** The platform version a Fargate task runs on: the one asked for, LATEST as what it is now. */
function platformVersionOf(asked: string | undefined): string {
  return asked === undefined || asked === "LATEST" ? "1.4.0" : asked;
}

/** What a call itself gives of a task's network, placement and platform. */
export type GivenSettings = Pick<
  RunInput,
  "networkConfiguration" | "placementConstraints" | "platformVersion"
>;

/**
 * Checks what RunTask (and CreateService, UpdateService) ask for against the task definition.
 * ECS's limits on the network configuration, the placement constraints and the platform version
 * apply to what the call itself gives (`given`, all of `input` unless told): a service's stored
 * settings, which an UpdateService passes in `input`, are not refused again for a later rule.
 */
export function checkInput(
  input: Pick<
    RunInput,
    | "networkConfiguration"
    | "overrides"
    | "tags"
    | "placementConstraints"
    | "placementStrategy"
    | "platformVersion"
  >,
  definition: RunnableDefinition,
  launchType: "EC2" | "FARGATE" | "EXTERNAL" = "EC2",
  given: GivenSettings = input,
): void {
  if (launchType === "FARGATE") {
    if (!(definition.compatibilities ?? []).includes("FARGATE")) {
      throw InvalidParameter("Task definition does not support launch_type FARGATE.");
    }
    if ((input.placementConstraints?.length ?? 0) > 0 || (input.placementStrategy?.length ?? 0) > 0) {
      throw InvalidParameter(
        "Task placement constraints and strategies are not supported with launch type FARGATE.",
      );
    }
  }
  if (
    (definition.networkMode ?? "bridge") === "awsvpc" &&
    input.networkConfiguration?.awsvpcConfiguration === undefined
  ) {
    throw InvalidParameter("Network Configuration must be provided when networkMode 'awsvpc' is specified.");
  }
  if (
    (definition.networkMode ?? "bridge") !== "awsvpc" &&
    input.networkConfiguration?.awsvpcConfiguration !== undefined
  ) {
    throw InvalidParameter(
      "Network Configuration is not valid for the given networkMode of this task definition.",
    );
  }
  for (const override of input.overrides?.containerOverrides ?? []) {
    if (!definition.containerDefinitions.some((c) => c.name === override.name)) {
      throw InvalidParameter(
        `Override for container named ${override.name} is not a container in the TaskDefinition.`,
      );
    }
  }
  const problem = tagProblem(toTags(input.tags ?? []));
  if (problem !== undefined) throw InvalidParameter(problem);
  checkGiven(given, definition, launchType);
}

/** ECS's limits on a call's network configuration, placement constraints and platform version. */
function checkGiven(given: GivenSettings, definition: RunnableDefinition, launchType: string): void {
  if (given.platformVersion !== undefined && launchType !== "FARGATE") {
    throw InvalidParameter(`The platform version must be null when specifying an ${launchType} launch type.`);
  }
  if (given.platformVersion !== undefined && !PLATFORM_VERSIONS.has(given.platformVersion)) {
    throw PlatformUnknown("The specified platform version doesn't exist.");
  }
  // ECS: "There's a limit of 16 subnets that can be specified", and 5 security groups.
  const vpc = given.networkConfiguration?.awsvpcConfiguration;
  if (vpc !== undefined && vpc.subnets.length === 0) throw InvalidParameter("subnets can not be empty.");
  if (vpc !== undefined && vpc.subnets.length > 16) {
    throw InvalidParameter("There's a limit of 16 subnets that can be specified.");
  }
  if (vpc !== undefined && (vpc.securityGroups?.length ?? 0) > 5) {
    throw InvalidParameter("There's a limit of 5 security groups that can be specified.");
  }
  // ECS: "You can specify a maximum of 10 constraints for each task. This limit includes
  // constraints in the task definition and those specified at runtime."
  const constraints =
    (definition.placementConstraints?.length ?? 0) + (given.placementConstraints?.length ?? 0);
  if (given.placementConstraints !== undefined && constraints > MAX_CONSTRAINTS) {
    throw InvalidParameter(
      `A task can have at most ${MAX_CONSTRAINTS} placement constraints, counting those of its task definition; ${constraints} were given.`,
    );
  }
  // ECS: "You can't specify an expression if the constraint type is distinctInstance."
  if (given.placementConstraints?.some((c) => c.type === "distinctInstance" && (c.expression ?? "") !== "")) {
    throw InvalidParameter("An expression cannot be given for a distinctInstance placement constraint.");
  }
}

/** The task definition's placement constraints and the caller's, parsed. */
export function constraintsOf(
  input: Pick<RunInput, "placementConstraints">,
  definition: Pick<RunnableDefinition, "placementConstraints">,
): Constraint[] {
  return [...(definition.placementConstraints ?? []), ...(input.placementConstraints ?? [])].map((c) => {
    if (c.type === "distinctInstance") return { type: "distinctInstance" };
    try {
      return { type: "memberOf", expression: parseQuery(c.expression ?? "") };
    } catch (error) {
      throw InvalidParameter(
        `Invalid placement constraint expression: ${error instanceof QueryError ? error.message : "syntax error"}`,
      );
    }
  });
}

/** The caller's placement strategies, checked; `fallback` when it gave none. */
export function strategiesOf(
  input: Pick<RunInput, "placementStrategy">,
  fallback: Strategy[] = [{ type: "spread", field: "attribute:ecs.availability-zone" }],
): Strategy[] {
  if (input.placementStrategy === undefined) return fallback;
  return input.placementStrategy.map((s) => {
    if (s.type === "binpack" && s.field !== "cpu" && s.field !== "memory") {
      throw InvalidParameter("Invalid placement strategy field: binpack takes cpu or memory.");
    }
    if (s.type === "spread" && s.field === undefined)
      throw InvalidParameter("spread placement strategy requires a field.");
    return s.field === undefined ? { type: s.type } : { type: s.type, field: s.field };
  });
}

export type { InstanceSnapshot };

/** The placement snapshot of a cluster's EC2 instances. */
export function snapshot(
  state: SchedulerState,
  cluster: ClusterRecord,
  now: number,
): readonly InstanceSnapshot[] {
  return state.snapshot(cluster.arn, "EC2", now);
}

/** The placement snapshot of Wharf's Fargate capacity, which serves every cluster. */
export function fargateSnapshot(
  state: SchedulerState,
  scope: Scope,
  now: number,
): readonly InstanceSnapshot[] {
  return state.snapshot(fargateCapacityArn(scope), "FARGATE", now);
}

/** ECS task operations: RunTask, StartTask, StopTask, DescribeTasks, ListTasks. */
export function taskOperations(
  store: Store,
  notifier: InstanceNotifier,
  registry: TaskRegistryAccess,
  state: SchedulerState,
  random: () => number = Math.random,
): Record<string, Operation> {
  return {
    async RunTask(raw, ctx) {
      const input = parseInput(RunTaskInput, raw, InvalidParameter);
      const count = input.count ?? 1;
      if (count < 1 || count > 10) throw InvalidParameter("Count must be between 1 and 10.");
      const now = ctx.now.getTime();
      const result = await store.transaction(async (tx) => {
        const cluster = await activeCluster(tx, scopeOf(ctx), input.cluster);
        const earlier = await earlierRun(tx, cluster.arn, input);
        if (earlier !== undefined) return earlier;
        const definition = await definitionFor(tx, ctx, input.taskDefinition);
        const capacity = capacityOf(input, cluster);
        const launchType = capacity.launchType;
        checkInput(input, definition, launchType);
        const tags = await standaloneTags(tx, input, cluster, definition);
        const fargate = launchType === "FARGATE";
        const instances = state.placement(
          fargate ? fargateCapacityArn(scopeOf(ctx)) : cluster.arn,
          fargate ? "FARGATE" : "EC2",
          now,
        );
        if (instances.views.length === 0 && !fargate)
          throw InvalidParameter("No Container Instances were found in your cluster.");
        // One maker per capacity provider the tasks go to (none with a launch type).
        const makers = new Map<string | undefined, TaskMaker>();
        const makerFor = (capacityProviderName: string | undefined) => {
          let made = makers.get(capacityProviderName);
          if (made === undefined) {
            const named = capacityProviderName === undefined ? {} : { capacityProviderName };
            made = new TaskMaker({
              ctx,
              cluster,
              definition,
              input: { ...input, launchType, tags, ...named },
              registry,
            });
            makers.set(capacityProviderName, made);
          }
          return made;
        };
        const reservation = makerFor(undefined).reservation;
        const plan = place(
          instances,
          count,
          {
            cpu: reservation.cpu,
            memory: reservation.memory,
            ports: reservation,
            group: input.group ?? `family:${definition.family}`,
          },
          fargate ? [] : constraintsOf(input, definition),
          fargate ? FARGATE_STRATEGIES : strategiesOf(input),
          random,
        );
        const tasks: MadeTask[] = [];
        const providers =
          capacity.strategy === undefined ? [] : assignProviders(capacity.strategy, new Map(), count);
        for (const [i, instanceArn] of plan.placements.entries()) {
          const made = makerFor(providers[i]).make(instanceArn, state.zone(instanceArn));
          await insertTask(tx, made.record, now, state, made.body);
          await putTags(tx, made.record.wire.taskArn, tags);
          tasks.push(made);
        }
        // Fargate capacity is Wharf's, not the user's: a task it cannot take fails for capacity, naming no instance.
        const failures: Array<{ arn?: string; reason: string }> = fargate
          ? Array.from({ length: count - plan.placements.length }, () => ({
              reason: FARGATE_CAPACITY_UNAVAILABLE,
            }))
          : plan.failures.map((f) => ({ arn: f.arn, reason: failureReasonText(f) }));
        if (input.clientToken !== undefined) await rememberRun(tx, cluster.arn, input, tasks, failures, now);
        return { tasks, failures };
      });
      if (result instanceof RawJson) return result;
      notifier.started(result.tasks.map((made) => made.record));
      return startedTasks(result.tasks, result.failures);
    },

    async StartTask(raw, ctx) {
      const input = parseInput(StartTaskInput, raw, InvalidParameter);
      const now = ctx.now.getTime();
      const result = await store.transaction(async (tx) => {
        const cluster = await activeCluster(tx, scopeOf(ctx), input.cluster);
        const definition = await definitionFor(tx, ctx, input.taskDefinition);
        checkInput(input, definition);
        const tags = await standaloneTags(tx, input, cluster, definition);
        const maker = new TaskMaker({ ctx, cluster, definition, input: { ...input, tags }, registry });
        const reservation = maker.reservation;
        const needs = { cpu: reservation.cpu, memory: reservation.memory, ports: reservation, group: "" };
        const tasks: MadeTask[] = [];
        const failures: Array<{ arn: string; reason: string }> = [];
        for (const reference of input.containerInstances) {
          const record = await resolveInstance(tx, scopeOf(ctx), cluster.arn, reference);
          if (record === undefined) {
            failures.push({ arn: reference, reason: "MISSING" });
            continue;
          }
          // ECS: "The container instance that you attempted to launch a task onto was previously
          // deregistered with Amazon ECS and cannot be used."
          if (record.status === "INACTIVE") {
            failures.push({ arn: record.arn, reason: "INACTIVE" });
            continue;
          }
          // The caller chose the instance, not its status; the task must still fit there and reach an agent.
          const heard = { ...record, lastHeartbeat: state.lastHeartbeat(record) };
          const view = instanceView(heard, await instanceUsage(tx, record.arn), now);
          const [refused] = place([{ ...view, status: "ACTIVE" }], 1, needs, [], [], random).failures;
          if (refused !== undefined) {
            failures.push({ arn: record.arn, reason: failureReasonText(refused) });
            continue;
          }
          const zone = record.attributes.find((a) => a.name === "ecs.availability-zone")?.value;
          const made = maker.make(record.arn, zone);
          await insertTask(tx, made.record, now, state, made.body);
          await putTags(tx, made.record.wire.taskArn, tags);
          tasks.push(made);
        }
        return { tasks, failures };
      });
      notifier.started(result.tasks.map((made) => made.record));
      return startedTasks(result.tasks, result.failures);
    },

    async StopTask(raw, ctx) {
      const input = parseInput(StopTaskInput, raw, InvalidParameter);
      const now = ctx.now.getTime();
      const task = await store.transaction(async (tx) => {
        const cluster = await activeCluster(tx, scopeOf(ctx), input.cluster);
        const record = await taskByReference(tx, ctx, cluster, input.task);
        if (record === undefined) throw InvalidParameter("The referenced task was not found.");
        // By ARN, not within the cluster: a FARGATE task runs on Wharf's capacity, outside it.
        const instance =
          record.wire.containerInstanceArn === undefined
            ? undefined
            : await findInstance(tx, record.wire.containerInstanceArn);
        // With no agent left to stop it, the task stops at once.
        const orphaned = instance === undefined || instance.status === "INACTIVE";
        if (requestStop(record, input.reason ?? "Task stopped by user", "UserInitiated", now, orphaned)) {
          await saveTask(tx, record, now, state);
        }
        // ECS: "Stops a running task. Any tags associated with the task will be deleted."
        await removeAllTags(tx, record.wire.taskArn);
        return record;
      });
      notifier.notify(task.wire.containerInstanceArn ?? "");
      return { task: taskShape(task, false) };
    },

    async DescribeTasks(raw, ctx) {
      const input = parseInput(DescribeTasksInput, raw, InvalidParameter);
      if (input.tasks.length === 0) throw InvalidParameter("Tasks cannot be empty.");
      return store.read(async (tx) => {
        const cluster = await activeCluster(tx, scopeOf(ctx), input.cluster);
        const tasks: Record<string, unknown>[] = [];
        const failures: Array<{ arn: string; reason: string }> = [];
        for (const reference of input.tasks) {
          const record = await taskByReference(tx, ctx, cluster, reference);
          if (record === undefined) {
            failures.push({ arn: reference, reason: "MISSING" });
            continue;
          }
          tasks.push(
            input.include?.includes("TAGS") ? await taggedShape(tx, record) : taskShape(record, false),
          );
        }
        return { tasks, failures };
      });
    },

    async ListTasks(raw, ctx) {
      const input = parseInput(ListTasksInput, raw, InvalidParameter);
      if (input.family !== undefined && input.serviceName !== undefined) {
        throw InvalidParameter("family and serviceName cannot both be specified.");
      }
      const limit = input.maxResults ?? 100;
      const after = decodeToken(input.nextToken, () => InvalidParameter("Invalid NextToken"));
      const now = ctx.now.getTime();
      const arns = await store.read(async (tx) => {
        const cluster = await activeCluster(tx, scopeOf(ctx), input.cluster);
        // ECS never sets a task's desired status to PENDING: filtering on it "doesn't return any results".
        if (input.desiredStatus === "PENDING") return [];
        const clauses = ["cluster_arn = ?", "arn > ?"];
        const params: Array<string | number> = [cluster.arn, after ?? ""];
        if ((input.desiredStatus ?? "RUNNING") === "STOPPED") {
          clauses.push("desired_status = 'STOPPED'", "(stopped_at IS NULL OR stopped_at > ?)");
          params.push(now - STOPPED_RETENTION_MS);
        } else {
          clauses.push("desired_status = 'RUNNING'");
        }
        if (input.launchType !== undefined) {
          clauses.push("json_extract(body, '$.wire.launchType') = ?");
          params.push(input.launchType);
        }
        if (input.family !== undefined) clauses.push("family = ?") && params.push(input.family);
        if (input.startedBy !== undefined) clauses.push("started_by = ?") && params.push(input.startedBy);
        if (input.serviceName !== undefined) {
          const service = await findService(tx, scopeOf(ctx), cluster.arn, input.serviceName);
          if (service === undefined) throw ServiceNotFound("Service not found.");
          clauses.push("service_name = ?");
          params.push(service.name);
        }
        if (input.containerInstance !== undefined) {
          const instance = await resolveInstance(tx, scopeOf(ctx), cluster.arn, input.containerInstance);
          clauses.push("container_instance_arn = ?");
          params.push(instance?.arn ?? input.containerInstance);
        }
        const rows = await tx.all<{ arn: string }>(
          `SELECT arn FROM ecs_tasks WHERE ${clauses.join(" AND ")} ORDER BY arn LIMIT ?`,
          ...params,
          limit + 1,
        );
        return rows.map((r) => r.arn);
      });
      const page = toPage(arns, limit, (arn) => arn);
      return page.nextToken === undefined
        ? { taskArns: page.items }
        : { taskArns: page.items, nextToken: page.nextToken };
    },
  };
}

/** A task named by ARN or by its id within the cluster. */
async function taskByReference(tx: Tx, ctx: RequestContext, cluster: ClusterRecord, reference: string) {
  const arn = reference.startsWith("arn:")
    ? reference
    : `arn:aws:ecs:${ctx.region}:${ctx.accountId}:task/${clusterNameOfArn(cluster.arn)}/${reference}`;
  const record = await findTask(tx, arn);
  return record !== undefined && record.wire.clusterArn === cluster.arn ? record : undefined;
}
