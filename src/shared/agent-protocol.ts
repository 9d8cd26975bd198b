/**
 * The agent protocol: what `wharf agent` and the server say to each other.
 * Types only, no I/O; both processes import this and nothing else of each
 * other.
 *
 *   POST /agent/v1/register   SigV4-signed (the agent's access key), once:
 *                             → container instance ARN and a node token
 *   POST /agent/v1/poll       Bearer <node token>; long poll: the tasks this
 *                             instance should run, whenever they change (on
 *                             the channel, each change as it comes: `follow`)
 *   POST /agent/v1/reports    Bearer; the state of one or more tasks and their
 *                             containers, each applied on its own (an agent
 *                             sends at once every report waiting to go)
 *   POST /agent/v1/report     Bearer; one task's state (the single form)
 *   POST /agent/v1/logs       Bearer; container output for the awslogs driver
 *   POST /agent/v1/stats      Bearer; CPU and memory samples per container
 *   GET  /agent/v1/channel    Bearer; upgraded to the agent's channel, on
 *                             which the agent sends the requests above but
 *                             registration as frames (src/shared/agent-frames.ts)
 *
 * Polling is the heartbeat: an instance whose agent has not polled within
 * the server's timeout is reported `agentConnected: false`.
 */

export const AGENT_PROTOCOL_VERSION = 1;

/**
 * The error code a poll gets once its container instance is deregistered:
 * the agent stops instead of registering again (a restarted agent registers
 * a new instance). Any other 401 means "register again".
 */
export const INSTANCE_DEREGISTERED = "ContainerInstanceDeregistered";

/** Task statuses in ECS's order; a task only ever moves forward through them. */
export const TASK_STATUSES = [
  "PROVISIONING",
  "PENDING",
  "ACTIVATING",
  "RUNNING",
  "DEACTIVATING",
  "STOPPING",
  "DEPROVISIONING",
  "STOPPED",
] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

export function statusRank(status: TaskStatus): number {
  return TASK_STATUSES.indexOf(status);
}

export type ContainerStatus = "PENDING" | "RUNNING" | "STOPPED";
export type HealthStatus = "HEALTHY" | "UNHEALTHY" | "UNKNOWN";

export interface RegisterNodeRequest {
  cluster: string;
  /** Set when the agent restarts with state from an earlier registration. */
  containerInstanceArn?: string;
  hostname: string;
  /** The node's address other nodes and clients reach it at. */
  address: string;
  totalResources: { cpu: number; memory: number };
  attributes: Array<{ name: string; value?: string }>;
  versionInfo: { agentVersion: string; agentHash?: string; dockerVersion?: string };
  /** Launch types this node's capacity serves ("EC2", and "FARGATE" for Wharf-managed capacity). */
  capacity: "EC2" | "FARGATE";
}

export interface RegisterNodeResponse {
  containerInstanceArn: string;
  clusterArn: string;
  nodeToken: string;
  /** How often to poll at least, so the server keeps the instance connected. */
  pollTimeoutMs: number;
}

/** One task the server wants on this node; `version` grows with every change the agent must act on. */
export interface TaskAssignment {
  taskArn: string;
  version: number;
  desiredStatus: "RUNNING" | "STOPPED";
  clusterArn: string;
  family: string;
  revision: number;
  networkMode: "awsvpc" | "bridge" | "host" | "none";
  /** The task definition's container definitions with overrides applied. */
  containers: AssignedContainer[];
  /** Task-level limits (MiB / CPU units) when the definition sets them. */
  cpu?: number;
  memory?: number;
  volumes: Array<{ name: string; host?: { sourcePath?: string } }>;
  /**
   * Wharf's own registry: images whose host is `host` are pulled from the
   * agent's server endpoint with these credentials (the ECR token).
   */
  wharfRegistry: { host: string; username: string; password: string };
  /** Why the server wants it stopped (StopTask's reason), if it does. */
  stopReason?: string;
  region: string;
}

/** A container definition as the agent needs it (ECS field names). */
export interface AssignedContainer {
  name: string;
  image: string;
  /** A Secrets Manager secret with the registry's credentials (the agent cannot resolve one: see the agent's pull). */
  repositoryCredentials?: { credentialsParameter: string };
  cpu?: number;
  memory?: number;
  memoryReservation?: number;
  essential: boolean;
  command?: string[];
  entryPoint?: string[];
  environment: Array<{ name: string; value: string }>;
  workingDirectory?: string;
  user?: string;
  portMappings: Array<{ containerPort: number; hostPort?: number; protocol: "tcp" | "udp"; name?: string }>;
  healthCheck?: {
    command: string[];
    interval: number;
    timeout: number;
    retries: number;
    /** Absent when the definition sets none (no start period). */
    startPeriod?: number;
  };
  dependsOn: Array<{ containerName: string; condition: "START" | "COMPLETE" | "SUCCESS" | "HEALTHY" }>;
  stopTimeout?: number;
  /** Seconds this container may take to meet a COMPLETE, SUCCESS or HEALTHY condition of a container that depends on it. */
  startTimeout?: number;
  /** Name servers in place of the node's in the container's /etc/resolv.conf. */
  dnsServers?: string[];
  /** Lines appended to the container's /etc/hosts. */
  extraHosts?: Array<{ hostname: string; ipAddress: string }>;
  /** Other containers whose mount points this container mounts too. */
  volumesFrom?: Array<{ sourceContainer?: string; readOnly?: boolean }>;
  ulimits?: Array<{ name: string; softLimit: number; hardLimit: number }>;
  readonlyRootFilesystem?: boolean;
  linuxParameters?: {
    capabilities?: { add?: string[]; drop?: string[] };
    initProcessEnabled?: boolean;
    sharedMemorySize?: number;
    tmpfs?: Array<{ containerPath: string; size: number; mountOptions?: string[] }>;
  };
  mountPoints: Array<{ sourceVolume: string; containerPath: string; readOnly?: boolean }>;
  logConfiguration?: { logDriver: string; options?: Record<string, string> };
  dockerLabels?: Record<string, string>;
  privileged?: boolean;
  hostname?: string;
}

export interface PollRequest {
  /** Versions of the assignments the agent already has; the server answers when anything differs. */
  known: Record<string, number>;
  /** Host ports bound by tasks on this node (for placement). */
  usedPorts?: { tcp: number[]; udp: number[] };
  /**
   * The agent understands `unchanged`: a poll whose wait ends with nothing different may be
   * answered without the tasks (an agent that does not say so always gets them all).
   */
  acceptUnchanged?: boolean;
  /**
   * On the agent channel: while the server holds the poll, it sends each change as it happens, in
   * an interim answer (src/shared/agent-frames.ts) holding a whole `PollResponse`, instead of
   * ending the poll with it. The agent's tasks are then those of the last answer it had; the
   * final answer (`unchanged` meaning as that last one) comes when the hold is over, as an idle
   * poll's does, and the agent polls again. The server may still end the poll at a change.
   * Ignored on a POST, which has one answer.
   */
  follow?: boolean;
}

export interface PollResponse {
  /** Every task assigned to this instance that is not yet STOPPED on the server (none when `unchanged`). */
  tasks: TaskAssignment[];
  /** The tasks are exactly those the poll named in `known`, at those versions: nothing to do. */
  unchanged?: boolean;
}

export interface ContainerReport {
  name: string;
  lastStatus: ContainerStatus;
  exitCode?: number;
  reason?: string;
  healthStatus?: HealthStatus;
  runtimeId?: string;
  networkBindings?: Array<{
    bindIP: string;
    containerPort: number;
    hostPort: number;
    protocol: "tcp" | "udp";
  }>;
}

export interface TaskReport {
  taskArn: string;
  lastStatus: TaskStatus;
  containers: ContainerReport[];
  /** For awsvpc: the task's address. */
  privateIpv4Address?: string;
  macAddress?: string;
  /** Set with STOPPED (or when a stop begins for a reason the agent found). */
  stopCode?:
    | "TaskFailedToStart"
    | "EssentialContainerExited"
    | "UserInitiated"
    | "ServiceSchedulerInitiated"
    | "SpotInterruption"
    | "TerminationNotice";
  stoppedReason?: string;
  /** Milliseconds since the epoch, for the timestamps DescribeTasks reports. */
  pullStartedAt?: number;
  pullStoppedAt?: number;
  /** When the first essential container stopped (ECS's executionStoppedAt), once one has. */
  executionStoppedAt?: number;
  at: number;
}

/** Several tasks' reports in one request (`/agent/v1/reports`), at most `MAX_REPORTS_PER_BATCH`. */
export interface ReportBatch {
  reports: TaskReport[];
}

export const MAX_REPORTS_PER_BATCH = 100;

/**
 * The reports of a batch that were not applied, each with the error a single report would get; the
 * others were. A report listed here was refused, and would be again: the agent drops it. A request
 * that failed as a whole (no answer, a 5xx) is sent again, with backoff, until it is answered.
 */
export interface ReportBatchResponse {
  failures: Array<{ taskArn: string; code: string; message: string }>;
}

export interface LogBatch {
  events: Array<{ group: string; stream: string; createGroup: boolean; timestamp: number; message: string }>;
}

export interface StatsBatch {
  samples: Array<{
    taskArn: string;
    container: string;
    cpuUtilization: number;
    memoryBytes: number;
    at: number;
  }>;
}
