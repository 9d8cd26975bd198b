import { ClientException } from "./errors.ts";
import {
  checkContainerGraph,
  NAME,
  normaliseContainer,
  type TaskContext,
} from "./task-definition-containers.ts";
import type { CompatibilityT, RegisterTaskDefinitionInputT, VolumeInput } from "./task-definition-shapes.ts";
import type {
  ContainerDefinition,
  TaskDefinition,
  TaskDefinitionDraft,
  TaskVolume,
} from "./task-definitions.ts";

/**
 * RegisterTaskDefinition's checks and defaults, as ECS applies them: pure
 * functions from the validated request to the draft ECS would store, or a
 * ClientException with ECS's message. No I/O, no clock.
 */

const ECR_IMAGE = /^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?\//;
const MAX_CONTAINERS = 10;
const EC2_CPU = { min: 128, max: 196_608 };
const FARGATE_LOG_DRIVERS = new Set(["awslogs", "splunk", "awsfirelens"]);

/** Fargate's task sizes: for each CPU value, the memory range (MiB) and its step. */
const FARGATE_SIZES: ReadonlyMap<number, { min: number; max: number; step: number }> = new Map([
  [256, { min: 512, max: 2048, step: 512 }],
  [512, { min: 1024, max: 4096, step: 1024 }],
  [1024, { min: 2048, max: 8192, step: 1024 }],
  [2048, { min: 4096, max: 16384, step: 1024 }],
  [4096, { min: 8192, max: 30720, step: 1024 }],
  [8192, { min: 16384, max: 61440, step: 4096 }],
  [16384, { min: 32768, max: 122880, step: 8192 }],
]);

/** Whether Fargate offers a task of this CPU and memory. */
export function fargateSizeValid(cpu: number, memory: number): boolean {
  const size = FARGATE_SIZES.get(cpu);
  if (size === undefined || memory < size.min || memory > size.max) return false;
  // 256 CPU units come with 512 MiB, 1 GB or 2 GB only: 1536 is not offered.
  if (cpu === 256) return memory === 512 || memory === 1024 || memory === 2048;
  return (memory - size.min) % size.step === 0;
}

function scaled(text: string, unit: RegExp, factor: number): number | undefined {
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const match = new RegExp(`^(\\d+(?:\\.\\d+)?|\\.\\d+)\\s*(?:${unit.source})$`, "i").exec(trimmed);
  if (match?.[1] === undefined) return undefined;
  const value = Number(match[1]) * factor;
  return Number.isInteger(value) ? value : undefined;
}

/** Task CPU as ECS normalises it: "1024", "1 vCPU", "0.25 vcpu" → CPU units; undefined if unreadable. */
export function parseTaskCpu(text: string): number | undefined {
  return scaled(text, /vcpus?/, 1024);
}

/** Task memory as ECS normalises it: "512", "1 GB", "2GiB" → MiB; undefined if unreadable. */
export function parseTaskMemory(text: string): number | undefined {
  const mib = scaled(text, /mib|mb/, 1);
  return mib ?? scaled(text, /gib|gb/, 1024);
}

function checkFamily(family: string | undefined): string {
  if (family === undefined || family === "") throw ClientException("Family can not be blank.");
  if (!NAME.test(family)) throw ClientException("Family contains invalid characters.");
  return family;
}

function checkVolumes(volumes: VolumeInput[]): void {
  const names = new Set<string>();
  for (const volume of volumes) {
    if (volume.name === undefined || volume.name === "") {
      throw ClientException("Volume.name should not be null or empty.");
    }
    if (!NAME.test(volume.name)) throw ClientException("Volume.name contains invalid characters.");
    if (names.has(volume.name))
      throw ClientException("Volume names must be unique within a Task Definition.");
    names.add(volume.name);
  }
}

/** Volumes as ECS returns them: a volume with no other configuration is a host volume (`host: {}`). */
function normaliseVolumes(volumes: VolumeInput[]): TaskVolume[] {
  return volumes.map(({ name = "", ...volume }) =>
    volume.host === undefined &&
    volume.dockerVolumeConfiguration === undefined &&
    volume.efsVolumeConfiguration === undefined &&
    volume.configuredAtLaunch !== true
      ? { name, ...volume, host: {} }
      : { name, ...volume },
  );
}

/** The first reason Fargate would not run tasks of this definition, or undefined. */
export function fargateProblem(draft: TaskDefinitionDraft): string | undefined {
  if (draft.networkMode !== "awsvpc") return "Fargate only supports network mode \u2018awsvpc\u2019.";
  if (draft.cpu === undefined) return "Fargate requires that 'cpu' be defined at the task level.";
  if (draft.memory === undefined) return "Fargate requires that 'memory' be defined at the task level.";
  if (!fargateSizeValid(Number(draft.cpu), Number(draft.memory))) {
    return `No Fargate configuration exists for given values: ${draft.cpu} CPU, ${draft.memory} memory. See the Amazon ECS documentation for the valid values.`;
  }
  if (draft.pidMode === "host") {
    return "Tasks using the Fargate launch type do not support pidMode 'host'. The supported value for pidMode is 'task'.";
  }
  if (draft.ipcMode !== undefined) return "Tasks using the Fargate launch type do not support 'ipcMode'.";
  if (draft.placementConstraints.length > 0) {
    return "Tasks using the Fargate launch type do not support placement constraints.";
  }
  for (const volume of draft.volumes) {
    if (volume.host?.sourcePath !== undefined || volume.dockerVolumeConfiguration !== undefined) {
      return `Tasks using the Fargate launch type do not support the host or Docker volume '${volume.name}'.`;
    }
  }
  for (const container of draft.containerDefinitions) {
    const driver = container.logConfiguration?.logDriver;
    if (driver !== undefined && !FARGATE_LOG_DRIVERS.has(driver)) {
      return `${driver} is not a valid log driver for Fargate. Must be one of [awslogs,splunk,awsfirelens]`;
    }
    if (driver === "awslogs" && draft.executionRoleArn === undefined) {
      return "Fargate requires task definition to have execution role ARN to support log driver awslogs.";
    }
    if (ECR_IMAGE.test(container.image) && draft.executionRoleArn === undefined) {
      return "Fargate requires task definition to have execution role ARN to support ECR images.";
    }
    if (container.privileged === true) {
      return `Tasks using the Fargate launch type do not support privileged containers: '${container.name}'.`;
    }
    if (container.linuxParameters?.devices !== undefined) {
      return `Tasks using the Fargate launch type do not support devices: '${container.name}'.`;
    }
  }
  return undefined;
}

/** The first reason an external instance (ECS Anywhere) would not run this definition, or undefined. */
export function externalProblem(draft: TaskDefinitionDraft): string | undefined {
  if (draft.networkMode === "awsvpc") {
    return "Tasks using the EXTERNAL launch type do not support network mode \u2018awsvpc\u2019.";
  }
  return undefined;
}

/** The launch types the definition validated against, in ECS's order. */
export function compatibilitiesOf(draft: TaskDefinitionDraft): CompatibilityT[] {
  const out: CompatibilityT[] = [];
  if (externalProblem(draft) === undefined) out.push("EXTERNAL");
  out.push("EC2");
  if (fargateProblem(draft) === undefined) out.push("FARGATE");
  return out;
}

/** The container instance attributes ECS derives from a definition, in the order ECS lists them. */
export function requiredAttributes(draft: TaskDefinitionDraft): Array<{ name: string }> {
  const containers = draft.containerDefinitions;
  const any = (test: (c: ContainerDefinition) => boolean) => containers.some(test);
  const ecr = any((c) => ECR_IMAGE.test(c.image));
  const awslogs = any((c) => c.logConfiguration?.logDriver === "awslogs");
  const names: string[] = [];
  for (const c of containers) {
    const driver = c.logConfiguration?.logDriver;
    if (driver !== undefined) names.push(`com.amazonaws.ecs.capability.logging-driver.${driver}`);
  }
  const api = (version: string) => `com.amazonaws.ecs.capability.docker-remote-api.${version}`;
  const add = (when: boolean, name: string) => {
    if (when) names.push(name);
  };
  const healthChecked = any((c) => c.healthCheck !== undefined);
  const secrets = containers.flatMap((c) => c.secrets ?? []);
  add(healthChecked, api("1.24"));
  add(awslogs && draft.executionRoleArn !== undefined, "ecs.capability.execution-role-awslogs");
  add(ecr, "com.amazonaws.ecs.capability.ecr-auth");
  add(
    any((c) => c.logConfiguration !== undefined),
    api("1.19"),
  );
  add(
    any((c) => (c.environmentFiles ?? []).length > 0),
    "ecs.capability.env-files.s3",
  );
  add(
    secrets.some((s) => s.valueFrom.includes(":secretsmanager:")),
    "ecs.capability.secrets.asm.environment-variables",
  );
  add(
    secrets.some((s) => !s.valueFrom.includes(":secretsmanager:")),
    "ecs.capability.secrets.ssm.environment-variables",
  );
  add(
    any((c) => c.memoryReservation !== undefined),
    api("1.21"),
  );
  add(draft.taskRoleArn !== undefined, "com.amazonaws.ecs.capability.task-iam-role");
  add(healthChecked, "ecs.capability.container-health-check");
  add(ecr && draft.executionRoleArn !== undefined, "ecs.capability.execution-role-ecr-pull");
  add(
    any((c) => (c.dependsOn ?? []).length > 0 || c.startTimeout !== undefined || c.stopTimeout !== undefined),
    "ecs.capability.container-ordering",
  );
  add(draft.networkMode === "awsvpc", api("1.18"));
  add(draft.networkMode === "awsvpc", "ecs.capability.task-eni");
  return [...new Set(names)].map((name) => ({ name }));
}

function taskSize(input: RegisterTaskDefinitionInputT): { cpu?: number; memory?: number } {
  const size: { cpu?: number; memory?: number } = {};
  if (input.cpu !== undefined) {
    const cpu = parseTaskCpu(input.cpu);
    if (cpu === undefined || cpu < EC2_CPU.min || cpu > EC2_CPU.max) {
      throw ClientException("Invalid 'cpu' setting for task.");
    }
    size.cpu = cpu;
  }
  if (input.memory !== undefined) {
    const memory = parseTaskMemory(input.memory);
    if (memory === undefined || memory < 1) throw ClientException("Invalid 'memory' setting for task.");
    size.memory = memory;
  }
  return size;
}

function checkTaskTotals(containers: ContainerDefinition[], size: { cpu?: number; memory?: number }): void {
  const reserved = containers.reduce((sum, c) => sum + (c.memoryReservation ?? 0), 0);
  if (size.memory !== undefined && reserved > size.memory) {
    throw ClientException(
      "The sum of all container 'memoryReservation' values cannot be greater than the value of the task 'memory'.",
    );
  }
  const cpu = containers.reduce((sum, c) => sum + c.cpu, 0);
  if (size.cpu !== undefined && cpu > size.cpu) {
    throw ClientException(
      "The sum of all container 'cpu' values cannot be greater than the value of the task 'cpu'.",
    );
  }
}

function checkTaskSettings(input: RegisterTaskDefinitionInputT): void {
  const constraints = input.placementConstraints ?? [];
  if (constraints.length > 10) throw ClientException("Too many placement constraints.");
  for (const constraint of constraints) {
    if (
      constraint.type === undefined ||
      constraint.expression === undefined ||
      constraint.expression === ""
    ) {
      throw ClientException("A memberOf placement constraint requires a 'type' and an 'expression'.");
    }
  }
  const storage = input.ephemeralStorage;
  if (storage !== undefined && (storage.sizeInGiB < 21 || storage.sizeInGiB > 200)) {
    throw ClientException("The ephemeral storage size must be between 21 and 200 GiB.");
  }
}

/**
 * Validates a RegisterTaskDefinition request and fills in what ECS fills in.
 * Throws ClientException with ECS's message on the first problem found.
 */
export function draftTaskDefinition(input: RegisterTaskDefinitionInputT): TaskDefinitionDraft {
  const family = checkFamily(input.family);
  const inputs = input.containerDefinitions ?? [];
  if (inputs.length === 0) throw ClientException("Container list cannot be empty.");
  if (inputs.length > MAX_CONTAINERS) throw ClientException("Too many containers.");
  const size = taskSize(input);
  const required = new Set(input.requiresCompatibilities ?? []);
  if (required.has("FARGATE")) {
    if (input.networkMode !== "awsvpc")
      throw ClientException("Fargate only supports network mode \u2018awsvpc\u2019.");
    if (size.cpu === undefined)
      throw ClientException("Fargate requires that 'cpu' be defined at the task level.");
    if (size.memory === undefined) {
      throw ClientException("Fargate requires that 'memory' be defined at the task level.");
    }
  }
  const volumes = input.volumes ?? [];
  checkVolumes(volumes);
  checkTaskSettings(input);
  const task: TaskContext = {
    mode: input.networkMode,
    taskMemory: size.memory,
    volumes: new Set(volumes.map((volume) => volume.name ?? "")),
  };
  const names = new Set<string>();
  const containers = inputs.map((container) => {
    const normalised = normaliseContainer(container, task);
    if (names.has(normalised.name)) {
      throw ClientException("Container names must be unique within a Task Definition.");
    }
    names.add(normalised.name);
    return normalised;
  });
  if (!containers.some((container) => container.essential)) {
    throw ClientException("Task definition doesn't have any essential container.");
  }
  checkContainerGraph(containers);
  checkTaskTotals(containers, size);

  const draft: TaskDefinitionDraft = {
    containerDefinitions: containers,
    family,
    volumes: normaliseVolumes(volumes),
    placementConstraints: input.placementConstraints ?? [],
    compatibilities: [],
  };
  if (input.taskRoleArn !== undefined) draft.taskRoleArn = input.taskRoleArn;
  if (input.executionRoleArn !== undefined) draft.executionRoleArn = input.executionRoleArn;
  if (input.networkMode !== undefined) draft.networkMode = input.networkMode;
  if (input.runtimePlatform !== undefined) draft.runtimePlatform = input.runtimePlatform;
  if (input.requiresCompatibilities !== undefined)
    draft.requiresCompatibilities = input.requiresCompatibilities;
  if (size.cpu !== undefined) draft.cpu = String(size.cpu);
  if (size.memory !== undefined) draft.memory = String(size.memory);
  if (input.inferenceAccelerators !== undefined) draft.inferenceAccelerators = input.inferenceAccelerators;
  if (input.pidMode !== undefined) draft.pidMode = input.pidMode;
  if (input.ipcMode !== undefined) draft.ipcMode = input.ipcMode;
  if (input.proxyConfiguration !== undefined) draft.proxyConfiguration = input.proxyConfiguration;
  if (input.ephemeralStorage !== undefined) draft.ephemeralStorage = input.ephemeralStorage;
  if (input.enableFaultInjection !== undefined) draft.enableFaultInjection = input.enableFaultInjection;

  for (const launchType of required) {
    const problem =
      launchType === "FARGATE"
        ? fargateProblem(draft)
        : launchType === "EXTERNAL"
          ? externalProblem(draft)
          : undefined;
    if (problem !== undefined) throw ClientException(problem);
  }
  draft.compatibilities = compatibilitiesOf(draft);
  const attributes = requiredAttributes(draft);
  if (attributes.length > 0) draft.requiresAttributes = attributes;
  return draft;
}

/** Whether tasks of this definition may be started with a launch type (its `compatibilities`). */
export function supportsLaunchType(definition: TaskDefinition, launchType: CompatibilityT): boolean {
  return definition.compatibilities.includes(launchType);
}
