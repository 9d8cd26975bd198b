import { createHash, randomBytes } from "node:crypto";
import { formatArn, parseArn } from "../aws/arn.ts";
import type { InstanceView } from "../scheduler/placement.ts";
import type { Tx } from "../store/store.ts";
import type { Scope } from "./clusters.ts";
import { PENDING_STATUSES } from "./tasks.ts";

/** An agent that has not polled for this long is reported `agentConnected: false`. */
export const AGENT_TIMEOUT_MS = 30_000;
/** How long an agent's poll may wait for work. */
export const POLL_TIMEOUT_MS = 20_000;

export interface Attribute {
  name: string;
  value?: string;
}

/** A container instance as stored (`body`), besides its indexed columns. */
export interface InstanceRecord {
  arn: string;
  clusterArn: string;
  instanceId: string;
  status: "ACTIVE" | "DRAINING" | "INACTIVE";
  registeredAt: number;
  updatedAt: number;
  lastHeartbeat: number;
  version: number;
  versionInfo: { agentVersion: string; agentHash?: string; dockerVersion?: string };
  registered: { cpu: number; memory: number };
  attributes: Attribute[];
  hostname: string;
  address: string;
  capacity: "EC2" | "FARGATE";
  /** Host ports tasks bind on the node, as its agent last reported. */
  usedPorts: { tcp: number[]; udp: number[] };
}

/**
 * Fargate capacity (agents registered with `capacity: "FARGATE"`) belongs to
 * this cluster. Its name is one no user can create (a dot), so it is never
 * listed or described; its instances serve the FARGATE tasks of every cluster.
 */
export const FARGATE_CAPACITY_CLUSTER = "wharf.fargate";

export function fargateCapacityArn(scope: Scope): string {
  return formatArn({
    service: "ecs",
    region: scope.region,
    accountId: scope.accountId,
    resource: `cluster/${FARGATE_CAPACITY_CLUSTER}`,
  });
}

/** The ports ECS reserves on every container instance for the agent and Docker. */
export const RESERVED_TCP_PORTS = [22, 2375, 2376, 51678, 51679];

export interface InstanceRow {
  [column: string]: string | number | null;
  arn: string;
  body: string;
  last_heartbeat: number;
  status: string;
}

export function newInstanceArn(scope: Scope, cluster: string): { arn: string; instanceId: string } {
  const id = randomBytes(16).toString("hex");
  return {
    arn: formatArn({
      service: "ecs",
      region: scope.region,
      accountId: scope.accountId,
      resource: `container-instance/${cluster}/${id}`,
    }),
    instanceId: `i-${randomBytes(9).toString("hex").slice(0, 17)}`,
  };
}

export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

export function fromRow(row: InstanceRow): InstanceRecord {
  const record = JSON.parse(row.body) as InstanceRecord;
  record.status = row.status as InstanceRecord["status"];
  record.lastHeartbeat = row.last_heartbeat;
  return record;
}

/** What follows every instance write (the scheduler's in-memory state). */
export interface InstanceWrites {
  /** `tokenHash`: the agent's new token, when the write gives it one. */
  instanceSaved(tx: Tx, record: InstanceRecord, tokenHash?: string): void;
}

export async function saveInstance(
  tx: Tx,
  record: InstanceRecord,
  writes: InstanceWrites,
  tokenHash?: string,
): Promise<void> {
  writes.instanceSaved(tx, record, tokenHash);
  const changed = await tx.run(
    "UPDATE ecs_container_instances SET status = ?, agent_connected = 1, last_heartbeat = ?, updated_at = ?, body = ?, token_hash = COALESCE(?, token_hash) WHERE arn = ?",
    record.status,
    record.lastHeartbeat,
    record.updatedAt,
    JSON.stringify(record),
    tokenHash ?? null,
    record.arn,
  );
  if (changed > 0) return;
  await tx.run(
    `INSERT INTO ecs_container_instances (arn, cluster_arn, instance_id, status, agent_connected, last_heartbeat, registered_at,
       updated_at, token_hash, body) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?)`,
    record.arn,
    record.clusterArn,
    record.instanceId,
    record.status,
    record.lastHeartbeat,
    record.registeredAt,
    record.updatedAt,
    tokenHash ?? "",
    JSON.stringify(record),
  );
}

export async function findInstance(tx: Tx, arn: string): Promise<InstanceRecord | undefined> {
  const row = await tx.get<InstanceRow>(
    "SELECT arn, body, last_heartbeat, status FROM ecs_container_instances WHERE arn = ?",
    arn,
  );
  return row === undefined ? undefined : fromRow(row);
}

/** An instance's status column alone (no body to parse), or undefined when there is no such row. */
export async function instanceStatus(tx: Tx, arn: string): Promise<string | undefined> {
  const row = await tx.get<{ status: string }>(
    "SELECT status FROM ecs_container_instances WHERE arn = ?",
    arn,
  );
  return row?.status;
}

/** The instance a `containerInstance` parameter names in a cluster: a full ARN or the id after the cluster name. */
export async function resolveInstance(tx: Tx, scope: Scope, clusterArn: string, reference: string) {
  const cluster = clusterArn.slice(clusterArn.indexOf("cluster/") + "cluster/".length);
  let arn = reference;
  if (!reference.startsWith("arn:")) {
    arn = formatArn({
      service: "ecs",
      region: scope.region,
      accountId: scope.accountId,
      resource: `container-instance/${cluster}/${reference}`,
    });
  } else if (parseArn(reference)?.service !== "ecs") {
    return undefined;
  }
  const record = await findInstance(tx, arn);
  return record !== undefined && record.clusterArn === clusterArn ? record : undefined;
}

export async function instancesOf(
  tx: Tx,
  clusterArn: string,
  includeInactive = false,
): Promise<InstanceRecord[]> {
  const rows = await tx.all<InstanceRow>(
    `SELECT arn, body, last_heartbeat, status FROM ecs_container_instances WHERE cluster_arn = ?${includeInactive ? "" : " AND status != 'INACTIVE'"} ORDER BY arn`,
    clusterArn,
  );
  return rows.map(fromRow);
}

/** The ARN of the instance a node token belongs to (INACTIVE too: its agent is told it is deregistered). */
export async function instanceArnByToken(tx: Tx, token: string): Promise<string | undefined> {
  const row = await tx.get<{ arn: string }>(
    "SELECT arn FROM ecs_container_instances WHERE token_hash = ?",
    hashToken(token),
  );
  return row?.arn;
}

export function isConnected(record: InstanceRecord, now: number): boolean {
  return now - record.lastHeartbeat <= AGENT_TIMEOUT_MS;
}

/** What tasks on an instance hold: CPU, memory, host ports, counts by group and status. */
export interface InstanceUsage {
  cpu: number;
  memory: number;
  tcp: number[];
  udp: number[];
  running: number;
  pending: number;
  groups: Map<string, number>;
}

/** Sums the reservations of every task on the instance that is not STOPPED. */
export async function instanceUsage(tx: Tx, arn: string): Promise<InstanceUsage> {
  const rows = await tx.all<{ body: string; last_status: string; desired_status: string }>(
    "SELECT body, last_status, desired_status FROM ecs_tasks WHERE container_instance_arn = ? AND last_status != 'STOPPED'",
    arn,
  );
  const usage: InstanceUsage = {
    cpu: 0,
    memory: 0,
    tcp: [],
    udp: [],
    running: 0,
    pending: 0,
    groups: new Map(),
  };
  for (const row of rows) {
    const task = JSON.parse(row.body) as {
      reservation: { cpu: number; memory: number; tcp: number[]; udp: number[] };
      wire: { group?: string };
    };
    usage.cpu += task.reservation.cpu;
    usage.memory += task.reservation.memory;
    usage.tcp.push(...task.reservation.tcp);
    usage.udp.push(...task.reservation.udp);
    // ECS: runningTasksCount counts the tasks "that have a desired status (desiredStatus) of
    // RUNNING", pendingTasksCount those "in the PENDING status" (not yet RUNNING).
    if (row.desired_status === "RUNNING") usage.running++;
    if (PENDING_STATUSES.has(row.last_status)) usage.pending++;
    const group = task.wire.group ?? "";
    usage.groups.set(group, (usage.groups.get(group) ?? 0) + 1);
  }
  return usage;
}

/** The placement snapshot of an instance. */
export function instanceView(record: InstanceRecord, usage: InstanceUsage, now: number): InstanceView {
  const attributes: Record<string, string> = {};
  for (const attribute of record.attributes) attributes[attribute.name] = attribute.value ?? "";
  return {
    arn: record.arn,
    instanceId: record.instanceId,
    status: record.status,
    connected: isConnected(record, now),
    remaining: { cpu: record.registered.cpu - usage.cpu, memory: record.registered.memory - usage.memory },
    ports: {
      tcp: new Set([...RESERVED_TCP_PORTS, ...usage.tcp, ...record.usedPorts.tcp]),
      udp: new Set([...usage.udp, ...record.usedPorts.udp]),
    },
    attributes,
    groups: usage.groups,
    runningTasks: usage.running,
    registeredAt: record.registeredAt,
    agentVersion: record.versionInfo.agentVersion,
  };
}

/** The ECS `ContainerInstance` wire shape. */
export function instanceShape(
  record: InstanceRecord,
  usage: InstanceUsage,
  now: number,
): Record<string, unknown> {
  const resources = (cpu: number, memory: number, tcp: number[], udp: number[]) => [
    { name: "CPU", type: "INTEGER", doubleValue: 0, longValue: 0, integerValue: cpu },
    { name: "MEMORY", type: "INTEGER", doubleValue: 0, longValue: 0, integerValue: memory },
    {
      name: "PORTS",
      type: "STRINGSET",
      doubleValue: 0,
      longValue: 0,
      integerValue: 0,
      stringSetValue: tcp.map(String),
    },
    {
      name: "PORTS_UDP",
      type: "STRINGSET",
      doubleValue: 0,
      longValue: 0,
      integerValue: 0,
      stringSetValue: udp.map(String),
    },
  ];
  return {
    containerInstanceArn: record.arn,
    ec2InstanceId: record.instanceId,
    version: record.version,
    versionInfo: record.versionInfo,
    remainingResources: resources(
      record.registered.cpu - usage.cpu,
      record.registered.memory - usage.memory,
      [...new Set([...RESERVED_TCP_PORTS, ...usage.tcp])].sort((a, b) => a - b),
      [...new Set(usage.udp)].sort((a, b) => a - b),
    ),
    registeredResources: resources(record.registered.cpu, record.registered.memory, RESERVED_TCP_PORTS, []),
    status: record.status,
    agentConnected: isConnected(record, now),
    runningTasksCount: usage.running,
    pendingTasksCount: usage.pending,
    attributes: record.attributes,
    registeredAt: record.registeredAt / 1000,
    attachments: [],
    tags: [],
  };
}
