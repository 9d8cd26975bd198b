import { randomBytes, randomUUID } from "node:crypto";
import { formatArn } from "../aws/arn.ts";
import {
  type AssignedContainer,
  type ContainerReport,
  statusRank,
  type TaskAssignment,
  type TaskReport,
  type TaskStatus,
} from "../shared/agent-protocol.ts";
import type { Tx } from "../store/store.ts";
import type { Scope } from "./clusters.ts";

/** Stopped tasks stay describable at least this long (ECS: about an hour). */
export const STOPPED_RETENTION_MS = 60 * 60_000;

export interface ContainerWire {
  containerArn: string;
  taskArn: string;
  name: string;
  image: string;
  lastStatus: string;
  exitCode?: number;
  reason?: string;
  healthStatus?: string;
  runtimeId?: string;
  networkBindings: Array<{ bindIP: string; containerPort: number; hostPort: number; protocol: string }>;
  networkInterfaces: Array<{ attachmentId: string; privateIpv4Address: string }>;
  cpu?: string;
  memory?: string;
  memoryReservation?: string;
}

/** The task's ECS wire shape, timestamps kept in milliseconds until output. */
export interface TaskWire {
  taskArn: string;
  clusterArn: string;
  taskDefinitionArn: string;
  containerInstanceArn?: string;
  overrides: Record<string, unknown>;
  lastStatus: TaskStatus;
  desiredStatus: "RUNNING" | "STOPPED";
  cpu?: string;
  memory?: string;
  containers: ContainerWire[];
  startedBy?: string;
  version: number;
  stoppedReason?: string;
  stopCode?: string;
  connectivity?: string;
  connectivityAt?: number;
  pullStartedAt?: number;
  pullStoppedAt?: number;
  executionStoppedAt?: number;
  createdAt: number;
  startedAt?: number;
  stoppingAt?: number;
  stoppedAt?: number;
  group: string;
  launchType: string;
  availabilityZone?: string;
  attachments: Array<Record<string, unknown>>;
  healthStatus: string;
  enableExecuteCommand: boolean;
  tags?: Array<{ key: string; value: string }>;
  platformFamily?: string;
  platformVersion?: string;
}

export interface TaskRecord {
  wire: TaskWire;
  /** What the agent needs to run it (without version/desiredStatus, which the wire holds). */
  assignment: Omit<TaskAssignment, "version" | "desiredStatus" | "stopReason">;
  reservation: { cpu: number; memory: number; tcp: number[]; udp: number[] };
  serviceName?: string;
  /** Grows when the agent must act (a new desired status); the wire `version` grows with every change. */
  desiredVersion: number;
}

const TIMESTAMPS = [
  "connectivityAt",
  "pullStartedAt",
  "pullStoppedAt",
  "executionStoppedAt",
  "createdAt",
  "startedAt",
  "stoppingAt",
  "stoppedAt",
] as const;

export function clusterNameOfArn(clusterArn: string): string {
  return clusterArn.slice(clusterArn.indexOf("cluster/") + "cluster/".length);
}

/** Random bytes drawn from the CSPRNG a page at a time: one call per task ID costs more than the ID. */
const entropy = { bytes: Buffer.alloc(0), at: 0 };

/** `n` random bytes as hex. */
function randomHex(n: number): string {
  if (entropy.at + n > entropy.bytes.length) {
    entropy.bytes = randomBytes(4096);
    entropy.at = 0;
  }
  const hex = entropy.bytes.toString("hex", entropy.at, entropy.at + n);
  entropy.at += n;
  return hex;
}

export function newTaskArn(scope: Scope, clusterArn: string): string {
  return formatArn({
    service: "ecs",
    region: scope.region,
    accountId: scope.accountId,
    resource: `task/${clusterNameOfArn(clusterArn)}/${randomHex(16)}`,
  });
}

export function newContainerArn(scope: Scope, taskArn: string): string {
  const [, , cluster, id] = taskArn.split(":").slice(5).join(":").split("/");
  return formatArn({
    service: "ecs",
    region: scope.region,
    accountId: scope.accountId,
    resource: `container/${cluster ?? ""}/${id ?? ""}/${randomUUID()}`,
  });
}

/** The DescribeTasks shape: timestamps as epoch seconds, internal fields left out. */
export function taskShape(record: TaskRecord, includeTags: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = { ...record.wire };
  for (const field of TIMESTAMPS) {
    const value = record.wire[field];
    if (value !== undefined) out[field] = value / 1000;
  }
  if (!includeTags) delete out.tags;
  // A Fargate task names no container instance: the capacity it runs on is Wharf's, not the user's.
  if (record.wire.launchType === "FARGATE") delete out.containerInstanceArn;
  return out;
}

/** What follows every task write (the scheduler's in-memory state). */
export interface TaskWrites {
  taskSaved(tx: Tx, record: TaskRecord): void;
}

export async function saveTask(tx: Tx, record: TaskRecord, now: number, writes: TaskWrites): Promise<void> {
  writes.taskSaved(tx, record);
  const wire = record.wire;
  const body = JSON.stringify(record);
  const changed = await tx.run(
    `UPDATE ecs_tasks SET last_status = ?, desired_status = ?, updated_at = ?, stopped_at = ?, version = ?, body = ?
     WHERE arn = ?`,
    wire.lastStatus,
    wire.desiredStatus,
    now,
    wire.stoppedAt ?? null,
    wire.version,
    body,
    wire.taskArn,
  );
  if (changed > 0) return;
  await tx.run(
    `INSERT INTO ecs_tasks (arn, cluster_arn, container_instance_arn, task_definition_arn, family, last_status, desired_status,
       started_by, service_name, created_at, updated_at, stopped_at, version, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    wire.taskArn,
    wire.clusterArn,
    wire.containerInstanceArn ?? null,
    wire.taskDefinitionArn,
    record.assignment.family,
    wire.lastStatus,
    wire.desiredStatus,
    wire.startedBy ?? null,
    record.serviceName ?? null,
    wire.createdAt,
    now,
    wire.stoppedAt ?? null,
    wire.version,
    body,
  );
}

export async function findTask(tx: Tx, arn: string): Promise<TaskRecord | undefined> {
  const row = await tx.get<{ body: string }>("SELECT body FROM ecs_tasks WHERE arn = ?", arn);
  return row === undefined ? undefined : (JSON.parse(row.body) as TaskRecord);
}

/** Tasks an agent should know about: assigned to it and not yet STOPPED. */
export async function tasksForInstance(tx: Tx, instanceArn: string): Promise<TaskRecord[]> {
  const rows = await tx.all<{ body: string }>(
    "SELECT body FROM ecs_tasks WHERE container_instance_arn = ? AND last_status != 'STOPPED' ORDER BY created_at",
    instanceArn,
  );
  return rows.map((row) => JSON.parse(row.body) as TaskRecord);
}

export function assignmentOf(record: TaskRecord): TaskAssignment {
  const assignment: TaskAssignment = {
    ...record.assignment,
    version: record.desiredVersion,
    desiredStatus: record.wire.desiredStatus,
  };
  if (record.wire.desiredStatus === "STOPPED" && record.wire.stoppedReason !== undefined) {
    assignment.stopReason = record.wire.stoppedReason;
  }
  return assignment;
}

/**
 * Asks for a task to stop. The first reason given is the one ECS reports.
 * A task whose agent is gone for good (instance deregistered) stops at once.
 */
export function requestStop(
  record: TaskRecord,
  reason: string,
  stopCode: string,
  now: number,
  immediately = false,
): boolean {
  const wire = record.wire;
  if (wire.lastStatus === "STOPPED") return false;
  if (wire.desiredStatus !== "STOPPED") {
    wire.desiredStatus = "STOPPED";
    wire.stoppedReason ??= reason;
    wire.stopCode ??= stopCode;
    wire.stoppingAt ??= now;
    wire.version++;
    record.desiredVersion++;
  }
  if (immediately) {
    wire.lastStatus = "STOPPED";
    wire.stoppedAt = now;
    wire.executionStoppedAt ??= now;
    for (const container of wire.containers) {
      if (container.lastStatus !== "STOPPED") container.lastStatus = "STOPPED";
    }
  }
  return true;
}

function applyContainer(container: ContainerWire, report: ContainerReport): void {
  const order = { PENDING: 0, RUNNING: 1, STOPPED: 2 } as const;
  const current = order[container.lastStatus as keyof typeof order] ?? 0;
  if (order[report.lastStatus] >= current) container.lastStatus = report.lastStatus;
  if (report.exitCode !== undefined) container.exitCode = report.exitCode;
  if (report.reason !== undefined) container.reason = report.reason;
  if (report.healthStatus !== undefined) container.healthStatus = report.healthStatus;
  if (report.runtimeId !== undefined) container.runtimeId = report.runtimeId;
  if (report.networkBindings !== undefined) container.networkBindings = report.networkBindings;
}

/** The task's health: UNHEALTHY if an essential container is, HEALTHY if every checked essential one is. */
function taskHealth(record: TaskRecord): string {
  const essentials = record.assignment.containers.filter((c) => c.essential && c.healthCheck !== undefined);
  if (essentials.length === 0) return "UNKNOWN";
  const statuses = essentials.map(
    (c) => record.wire.containers.find((w) => w.name === c.name)?.healthStatus ?? "UNKNOWN",
  );
  if (statuses.includes("UNHEALTHY")) return "UNHEALTHY";
  return statuses.every((s) => s === "HEALTHY") ? "HEALTHY" : "UNKNOWN";
}

/**
 * Applies what an agent reports. Statuses only move forward in ECS's order;
 * each transition stamps its timestamp once. Returns whether anything changed.
 */
export function applyReport(record: TaskRecord, report: TaskReport): boolean {
  const wire = record.wire;
  if (wire.lastStatus === "STOPPED") return false;
  const before = JSON.stringify(wire);
  for (const containerReport of report.containers) {
    const container = wire.containers.find((c) => c.name === containerReport.name);
    if (container !== undefined) applyContainer(container, containerReport);
  }
  if (report.pullStartedAt !== undefined) wire.pullStartedAt ??= report.pullStartedAt;
  if (report.pullStoppedAt !== undefined) wire.pullStoppedAt ??= report.pullStoppedAt;
  if (report.privateIpv4Address !== undefined) {
    const attachment = wire.attachments.find((a) => a.type === "ElasticNetworkInterface");
    if (attachment !== undefined) {
      attachment.status = "ATTACHED";
      attachment.details = [
        { name: "subnetId", value: "subnet-wharf" },
        { name: "networkInterfaceId", value: `eni-${String(attachment.id).slice(0, 17)}` },
        { name: "macAddress", value: report.macAddress ?? "" },
        { name: "privateIPv4Address", value: report.privateIpv4Address },
      ];
      for (const container of wire.containers) {
        container.networkInterfaces = [
          { attachmentId: String(attachment.id), privateIpv4Address: report.privateIpv4Address },
        ];
      }
    }
  }
  if (statusRank(report.lastStatus) > statusRank(wire.lastStatus)) {
    wire.lastStatus = report.lastStatus;
    const at = report.at;
    if (report.lastStatus === "RUNNING") {
      wire.startedAt ??= at;
      wire.connectivity = "CONNECTED";
      wire.connectivityAt ??= at;
    }
    if (statusRank(report.lastStatus) >= statusRank("DEACTIVATING")) {
      wire.desiredStatus = "STOPPED";
      wire.stoppingAt ??= at;
      if (report.stopCode !== undefined) wire.stopCode ??= report.stopCode;
      if (report.stoppedReason !== undefined) wire.stoppedReason ??= report.stoppedReason;
    }
    if (report.lastStatus === "STOPPED") {
      wire.stoppedAt = at;
      wire.executionStoppedAt ??= at;
      wire.connectivity = "DISCONNECTED";
      for (const attachment of wire.attachments) attachment.status = "DELETED";
    }
  }
  wire.healthStatus = taskHealth(record);
  if (JSON.stringify(wire) === before) return false;
  wire.version++;
  return true;
}

export function containerWire(scope: Scope, taskArn: string, container: AssignedContainer): ContainerWire {
  const wire: ContainerWire = {
    containerArn: newContainerArn(scope, taskArn),
    taskArn,
    name: container.name,
    image: container.image,
    lastStatus: "PENDING",
    networkBindings: [],
    networkInterfaces: [],
  };
  if (container.cpu !== undefined) wire.cpu = String(container.cpu);
  if (container.memory !== undefined) wire.memory = String(container.memory);
  if (container.memoryReservation !== undefined) wire.memoryReservation = String(container.memoryReservation);
  if (container.healthCheck !== undefined) wire.healthStatus = "UNKNOWN";
  return wire;
}
