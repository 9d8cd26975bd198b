import { ClientException } from "./errors.ts";
import type {
  ContainerDefinitionInput,
  HealthCheckInput,
  NetworkModeT,
  PortMappingInput,
} from "./task-definition-shapes.ts";
import type { ContainerDefinition, HealthCheck, PortMappingOut } from "./task-definitions.ts";

/**
 * The container half of RegisterTaskDefinition's checks: each container
 * definition on its own (names, image, memory, ports, health check, mounts,
 * logging) and the containers together (dependencies, links, volumesFrom).
 * Pure; problems are ClientExceptions with ECS's messages.
 */

/** Family, container and volume names: up to 255 letters, digits, hyphens and underscores. */
export const NAME = /^[a-zA-Z0-9_-]{1,255}$/;
/** Docker image references: registry/repository[:tag][@digest]. */
const IMAGE = /^[a-zA-Z0-9_:./#@-]+$/;
/** The smallest container memory limit Docker 20.10 accepts, in MiB. */
const MIN_CONTAINER_MEMORY = 6;

/** Linux capabilities ECS accepts in `linuxParameters.capabilities`. */
export const CAPABILITIES: ReadonlySet<string> = new Set([
  "ALL",
  "AUDIT_CONTROL",
  "AUDIT_WRITE",
  "BLOCK_SUSPEND",
  "CHOWN",
  "DAC_OVERRIDE",
  "DAC_READ_SEARCH",
  "FOWNER",
  "FSETID",
  "IPC_LOCK",
  "IPC_OWNER",
  "KILL",
  "LEASE",
  "LINUX_IMMUTABLE",
  "MAC_ADMIN",
  "MAC_OVERRIDE",
  "MKNOD",
  "NET_ADMIN",
  "NET_BIND_SERVICE",
  "NET_BROADCAST",
  "NET_RAW",
  "SETFCAP",
  "SETGID",
  "SETPCAP",
  "SETUID",
  "SYS_ADMIN",
  "SYS_BOOT",
  "SYS_CHROOT",
  "SYS_MODULE",
  "SYS_NICE",
  "SYS_PACCT",
  "SYS_PTRACE",
  "SYS_RAWIO",
  "SYS_RESOURCE",
  "SYS_TIME",
  "SYS_TTY_CONFIG",
  "SYSLOG",
  "WAKE_ALARM",
]);

function containerProblem(name: string, detail: string): never {
  throw ClientException(`Invalid setting for container '${name}'. ${detail}`);
}

/**
 * A `containerPortRange` as ECS takes it: "first-last" within 1–65535, first below last, in bridge
 * or awsvpc mode only, never with a containerPort or hostPort (the host ports are chosen).
 */
function portRangeProblems(
  name: string,
  range: string,
  containerPort: number | undefined,
  hostPort: number | undefined,
  mode: NetworkModeT | undefined,
): void {
  const match = /^(\d+)-(\d+)$/.exec(range);
  const first = Number(match?.[1]);
  const last = Number(match?.[2]);
  if (match === null || first < 1 || last > 65535 || first >= last) {
    containerProblem(
      name,
      `'containerPortRange' must be two ports between 1 and 65535, the first below the last, as in "8000-8010".`,
    );
  }
  if (containerPort !== undefined || hostPort !== undefined) {
    containerProblem(
      name,
      "A port mapping with a 'containerPortRange' takes no 'containerPort' or 'hostPort'.",
    );
  }
  if (mode !== undefined && mode !== "bridge" && mode !== "awsvpc") {
    containerProblem(name, `'containerPortRange' is supported only with networkMode bridge or awsvpc.`);
  }
}

/** ECS's bound on a container's port ranges. */
const MAX_PORT_RANGES = 100;
/** The ports of 49153–65535, the agents' default dynamic host port range (as the ECS agent's). */
const MAX_BRIDGE_RANGE_PORTS = 16_383;

/** No container port of a range may be in another mapping of the container for the same protocol. */
function overlapProblems(name: string, mappings: PortMappingInput[]): void {
  const spans = mappings
    .map((m) => {
      const [first, last] =
        m.containerPortRange === undefined
          ? [m.containerPort, m.containerPort]
          : m.containerPortRange.split("-").map(Number);
      return {
        protocol: m.protocol ?? "tcp",
        first: first ?? 0,
        last: last ?? 0,
        range: m.containerPortRange,
      };
    })
    .sort((a, b) => a.protocol.localeCompare(b.protocol) || a.first - b.first);
  for (let i = 1; i < spans.length; i++) {
    const before = spans[i - 1];
    const after = spans[i];
    if (before === undefined || after === undefined) continue;
    const ranged = before.range !== undefined || after.range !== undefined;
    if (ranged && before.protocol === after.protocol && after.first <= before.last) {
      containerProblem(name, `Container port ${after.first} is in more than one port mapping.`);
    }
  }
}

function normalisePorts(
  name: string,
  mappings: PortMappingInput[],
  mode: NetworkModeT | undefined,
): PortMappingOut[] {
  const bound = mode === "awsvpc" || mode === "host";
  const ranges = mappings.filter((m) => m.containerPortRange !== undefined).length;
  if (ranges > MAX_PORT_RANGES) {
    containerProblem(
      name,
      `A container can have at most ${MAX_PORT_RANGES} 'containerPortRange' port mappings.`,
    );
  }
  // In bridge mode each port of a range takes a host port of the agents' dynamic range.
  const rangePorts = mappings.reduce((sum, m) => {
    const [first, last] = (m.containerPortRange ?? "").split("-").map(Number);
    return sum + (first !== undefined && last !== undefined && last >= first ? last - first + 1 : 0);
  }, 0);
  if ((mode ?? "bridge") === "bridge" && rangePorts > MAX_BRIDGE_RANGE_PORTS) {
    containerProblem(
      name,
      `In bridge mode a container's port ranges can hold at most ${MAX_BRIDGE_RANGE_PORTS} ports, the size of the agents' default dynamic host port range.`,
    );
  }
  const normalised = mappings.map((mapping) => {
    const { containerPort, hostPort, protocol, name: portName, appProtocol, containerPortRange } = mapping;
    if (containerPort === undefined && containerPortRange === undefined) {
      containerProblem(name, "Port mappings must specify a 'containerPort' or a 'containerPortRange'.");
    }
    if (containerPortRange !== undefined)
      portRangeProblems(name, containerPortRange, containerPort, hostPort, mode);
    if (containerPort !== undefined && (containerPort < 1 || containerPort > 65535)) {
      containerProblem(name, "'containerPort' must be between 1 and 65535.");
    }
    if (hostPort !== undefined && (hostPort < 0 || hostPort > 65535)) {
      containerProblem(name, "'hostPort' must be between 0 and 65535.");
    }
    if (bound && containerPort !== undefined && hostPort !== undefined && hostPort !== containerPort) {
      throw ClientException(
        `When networkMode=${mode}, the host ports and container ports in port mappings must match.`,
      );
    }
    // ECS writes name, containerPort, hostPort, protocol, appProtocol in this order.
    const out: Partial<PortMappingOut> = {};
    if (portName !== undefined) out.name = portName;
    if (containerPort !== undefined) {
      out.containerPort = containerPort;
      out.hostPort = hostPort ?? (bound ? containerPort : 0);
    } else if (hostPort !== undefined) {
      out.hostPort = hostPort;
    }
    out.protocol = protocol ?? "tcp";
    if (appProtocol !== undefined) out.appProtocol = appProtocol;
    if (containerPortRange !== undefined) out.containerPortRange = containerPortRange;
    return out as PortMappingOut;
  });
  overlapProblems(name, mappings);
  return normalised;
}

function within(value: number | undefined, min: number, max: number): boolean {
  return value === undefined || (value >= min && value <= max);
}

function normaliseHealthCheck(name: string, check: HealthCheckInput): HealthCheck {
  const [first] = check.command;
  if (check.command.length < 2 || (first !== "CMD" && first !== "CMD-SHELL")) {
    containerProblem(
      name,
      "The health check command must start with 'CMD' or 'CMD-SHELL' and name a command.",
    );
  }
  if (!within(check.interval, 5, 300)) containerProblem(name, "Health check interval must be 5-300 seconds.");
  if (!within(check.timeout, 2, 60)) containerProblem(name, "Health check timeout must be 2-60 seconds.");
  if (!within(check.retries, 1, 10)) containerProblem(name, "Health check retries must be 1-10.");
  if (!within(check.startPeriod, 0, 300)) {
    containerProblem(name, "Health check startPeriod must be 0-300 seconds.");
  }
  const out: HealthCheck = {
    command: check.command,
    interval: check.interval ?? 30,
    timeout: check.timeout ?? 5,
    retries: check.retries ?? 3,
  };
  if (check.startPeriod !== undefined) out.startPeriod = check.startPeriod;
  return out;
}

/** What a container's checks need to know of its task. */
export interface TaskContext {
  mode: NetworkModeT | undefined;
  taskMemory: number | undefined;
  volumes: ReadonlySet<string>;
}

function checkContainerSettings(name: string, input: ContainerDefinitionInput, task: TaskContext): void {
  const { memory, memoryReservation, cpu } = input;
  if (cpu !== undefined && cpu < 0) containerProblem(name, "'cpu' must be 0 or greater.");
  if (memory === undefined && memoryReservation === undefined && task.taskMemory === undefined) {
    containerProblem(name, "At least one of 'memory' or 'memoryReservation' must be specified.");
  }
  if (memory !== undefined && memory < MIN_CONTAINER_MEMORY) {
    containerProblem(name, `The 'memory' setting must be at least ${MIN_CONTAINER_MEMORY} MiB.`);
  }
  if (memoryReservation !== undefined && memoryReservation < MIN_CONTAINER_MEMORY) {
    containerProblem(name, `The 'memoryReservation' setting must be at least ${MIN_CONTAINER_MEMORY} MiB.`);
  }
  if (memory !== undefined && memoryReservation !== undefined && memory < memoryReservation) {
    containerProblem(name, "'memory' must be greater than or equal to 'memoryReservation'.");
  }
  if (task.taskMemory !== undefined && memory !== undefined && memory > task.taskMemory) {
    throw ClientException(`The 'memory' setting for container '${name}' is greater than for the task.`);
  }
  if (input.stopTimeout !== undefined && !within(input.stopTimeout, 2, 120)) {
    containerProblem(name, "'stopTimeout' must be between 2 and 120 seconds.");
  }
  if (input.startTimeout !== undefined && input.startTimeout < 2) {
    containerProblem(name, "'startTimeout' must be at least 2 seconds.");
  }
  if (input.hostname !== undefined && task.mode === "awsvpc") {
    throw ClientException("The 'hostname' parameter is not supported when networkMode=awsvpc.");
  }
  // A task with its own interface has one /etc/hosts and resolver for all its containers.
  if ((input.dnsServers ?? []).length > 0 && task.mode === "awsvpc") {
    throw ClientException("DNS servers are not supported on container when networkMode=awsvpc.");
  }
  if ((input.extraHosts ?? []).length > 0 && task.mode === "awsvpc") {
    throw ClientException("Extra hosts are not supported on container when networkMode=awsvpc.");
  }
  if (
    input.links !== undefined &&
    input.links.length > 0 &&
    task.mode !== undefined &&
    task.mode !== "bridge"
  ) {
    throw ClientException(`Links are not supported when networkMode=${task.mode}.`);
  }
  for (const ulimit of input.ulimits ?? []) {
    if (ulimit.softLimit > ulimit.hardLimit) {
      containerProblem(name, `The soft limit of ulimit '${ulimit.name}' is greater than its hard limit.`);
    }
  }
  const capabilities = input.linuxParameters?.capabilities;
  for (const capability of [...(capabilities?.add ?? []), ...(capabilities?.drop ?? [])]) {
    if (!CAPABILITIES.has(capability)) {
      containerProblem(name, `'${capability}' is not a valid Linux capability.`);
    }
  }
  for (const mount of input.mountPoints ?? []) {
    if (mount.sourceVolume === undefined || mount.sourceVolume === "") {
      containerProblem(name, "Mount points must specify a 'sourceVolume'.");
    }
    if (!task.volumes.has(mount.sourceVolume)) {
      containerProblem(
        name,
        `The mount point source volume '${mount.sourceVolume}' is not a volume of the task.`,
      );
    }
    if (mount.containerPath === undefined || mount.containerPath === "") {
      containerProblem(name, "Mount points must specify a 'containerPath'.");
    }
  }
  const log = input.logConfiguration;
  if (log?.logDriver === "awslogs") {
    const options = log.options ?? {};
    if (options["awslogs-region"] === undefined || options["awslogs-group"] === undefined) {
      throw ClientException("Log driver awslogs requires options: awslogs-region, awslogs-group");
    }
  }
}

/** Checks one container definition and fills in ECS's defaults. */
export function normaliseContainer(input: ContainerDefinitionInput, task: TaskContext): ContainerDefinition {
  if (input.name === undefined || input.name === "") {
    throw ClientException("Container.name should not be null or empty.");
  }
  if (!NAME.test(input.name)) throw ClientException("Container.name contains invalid characters.");
  if (input.image === undefined || input.image === "") {
    throw ClientException("Container.image should not be null or empty.");
  }
  if (input.image.length > 255 || !IMAGE.test(input.image)) {
    throw ClientException("Container.image contains invalid characters.");
  }
  const name = input.name;
  checkContainerSettings(name, input, task);
  const { healthCheck, portMappings, ...rest } = input;
  const out: ContainerDefinition = {
    ...rest,
    name,
    image: input.image,
    cpu: input.cpu ?? 0,
    portMappings: normalisePorts(name, portMappings ?? [], task.mode),
    essential: input.essential ?? true,
    environment: input.environment ?? [],
    mountPoints: input.mountPoints ?? [],
    volumesFrom: input.volumesFrom ?? [],
    systemControls: input.systemControls ?? [],
  };
  if (healthCheck !== undefined) out.healthCheck = normaliseHealthCheck(name, healthCheck);
  return orderContainer(out);
}

/** ECS's member order for a container definition. */
const CONTAINER_ORDER = [
  "name",
  "image",
  "repositoryCredentials",
  "cpu",
  "memory",
  "memoryReservation",
  "links",
  "portMappings",
  "essential",
  "restartPolicy",
  "entryPoint",
  "command",
  "environment",
  "environmentFiles",
  "mountPoints",
  "volumesFrom",
  "linuxParameters",
  "secrets",
  "dependsOn",
  "startTimeout",
  "stopTimeout",
  "versionConsistency",
  "hostname",
  "user",
  "workingDirectory",
  "disableNetworking",
  "privileged",
  "readonlyRootFilesystem",
  "dnsServers",
  "dnsSearchDomains",
  "extraHosts",
  "dockerSecurityOptions",
  "interactive",
  "pseudoTerminal",
  "dockerLabels",
  "ulimits",
  "logConfiguration",
  "healthCheck",
  "systemControls",
  "resourceRequirements",
  "firelensConfiguration",
  "credentialSpecs",
] as const;

function orderContainer(container: ContainerDefinition): ContainerDefinition {
  const source = container as Record<string, unknown>;
  const ordered: Record<string, unknown> = {};
  for (const key of CONTAINER_ORDER) if (source[key] !== undefined) ordered[key] = source[key];
  return ordered as unknown as ContainerDefinition;
}

/** Throws when the containers' dependencies, links or volumesFrom point nowhere or go round in a circle. */
export function checkContainerGraph(containers: ContainerDefinition[]): void {
  const byName = new Map(containers.map((container) => [container.name, container]));
  for (const container of containers) {
    for (const dependency of container.dependsOn ?? []) {
      const target = byName.get(dependency.containerName);
      if (target === undefined) {
        throw ClientException(
          `Cannot depend on container + '${dependency.containerName}' because it does not exist`,
        );
      }
      if ((dependency.condition === "SUCCESS" || dependency.condition === "COMPLETE") && target.essential) {
        throw ClientException(
          "A dependency container with SUCCESS or COMPLETE condition cannot be an essential container",
        );
      }
      if (dependency.condition === "HEALTHY" && target.healthCheck === undefined) {
        throw ClientException(
          `A dependency container with HEALTHY condition must have a health check: container '${target.name}' has none.`,
        );
      }
    }
    for (const link of container.links ?? []) {
      const [target] = link.split(":");
      if (target === undefined || !byName.has(target) || target === container.name) {
        containerProblem(container.name, `The link '${link}' does not name another container of the task.`);
      }
    }
    for (const from of container.volumesFrom) {
      if (from.sourceContainer === undefined || !byName.has(from.sourceContainer)) {
        containerProblem(
          container.name,
          `The volumesFrom source container '${from.sourceContainer ?? ""}' is not a container of the task.`,
        );
      }
    }
  }
  const dependencies = (container: ContainerDefinition) =>
    (container.dependsOn ?? []).map((dependency) => dependency.containerName);
  const links = (container: ContainerDefinition) =>
    (container.links ?? []).map((link) => link.split(":")[0] ?? "");
  if (hasCycle(containers, dependencies)) {
    throw ClientException("Container dependencies should not have a cycle");
  }
  if (hasCycle(containers, links)) throw ClientException("Container links should not have a cycle");
}

function hasCycle(containers: ContainerDefinition[], edges: (c: ContainerDefinition) => string[]): boolean {
  const byName = new Map(containers.map((container) => [container.name, container]));
  const state = new Map<string, "visiting" | "done">();
  const visit = (name: string): boolean => {
    const seen = state.get(name);
    if (seen === "visiting") return true;
    if (seen === "done") return false;
    state.set(name, "visiting");
    const container = byName.get(name);
    const cyclic = container !== undefined && edges(container).some(visit);
    state.set(name, "done");
    return cyclic;
  };
  return containers.some((container) => visit(container.name));
}
