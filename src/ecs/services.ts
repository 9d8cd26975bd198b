import { randomUUID } from "node:crypto";
import { formatArn, parseArn } from "../aws/arn.ts";
import { tagsOf } from "../aws/tags.ts";
import type { StrategyItem } from "../scheduler/capacity.ts";
import type { DeploymentState } from "../scheduler/deployment.ts";
import type { Strategy } from "../scheduler/placement.ts";
import type { Tx } from "../store/store.ts";
import type { Scope } from "./clusters.ts";
import type {
  LoadBalancerT,
  NetworkConfigurationT,
  PlacementConstraintT,
  PlacementStrategyT,
  ServiceRegistryT,
} from "./service-shapes.ts";
import { clusterNameOfArn, PENDING_STATUSES } from "./tasks.ts";

/**
 * ECS services as stored and as DescribeServices returns them. The record is
 * kept whole in `body`; the columns beside it serve lookups and listings.
 * Events live in their own table, the newest 100 per service. Running and
 * pending counts are read from the tasks each time, never stored.
 */

export type ServiceStatus = "ACTIVE" | "DRAINING" | "INACTIVE";

export interface DeploymentConfigurationT {
  minimumHealthyPercent: number;
  maximumPercent: number;
  deploymentCircuitBreaker: { enable: boolean; rollback: boolean };
  alarms?: { alarmNames: string[]; enable: boolean; rollback: boolean };
}

export interface ServiceRecord {
  arn: string;
  name: string;
  clusterArn: string;
  status: ServiceStatus;
  desiredCount: number;
  /** The capacity its tasks run on: FARGATE for a capacity provider strategy too (Wharf's are all Fargate). */
  launchType: "EC2" | "FARGATE";
  /** The strategy the service was given (or took from its cluster); then ECS shows no launch type. */
  capacityProviderStrategy?: StrategyItem[];
  /** The Fargate platform version it was given (LATEST unless given). */
  platformVersion?: string;
  schedulingStrategy: "REPLICA" | "DAEMON";
  /** The PRIMARY deployment's task definition ARN. */
  taskDefinition: string;
  deploymentConfiguration: DeploymentConfigurationT;
  placementConstraints: PlacementConstraintT[];
  placementStrategy: PlacementStrategyT[];
  networkConfiguration?: NonNullable<NetworkConfigurationT>;
  loadBalancers: LoadBalancerT[];
  serviceRegistries: ServiceRegistryT[];
  healthCheckGracePeriodSeconds?: number;
  enableECSManagedTags: boolean;
  propagateTags: "TASK_DEFINITION" | "SERVICE" | "NONE";
  enableExecuteCommand: boolean;
  role?: string;
  /** PRIMARY first, then ACTIVE ones still running tasks and INACTIVE ones (kept until the PRIMARY completes). */
  deployments: DeploymentState[];
  lastCompleted?: DeploymentState;
  clientToken?: string;
  /** The access key whose registry credentials the service's tasks pull with (the last to create or update it). */
  accessKeyId: string;
  /** The principal that created the service (`principalArn`); services stored before it was kept have none. */
  createdBy?: string;
  createdAt: number;
  updatedAt: number;
}

export interface ServiceEvent {
  id: string;
  createdAt: number;
  message: string;
}

/** Where a service places tasks when it names no strategy: spread over zones, then instances. */
export const SERVICE_DEFAULT_STRATEGIES: Strategy[] = [
  { type: "spread", field: "attribute:ecs.availability-zone" },
  { type: "spread", field: "instanceId" },
];

/** ECS keeps this many events per service. */
export const EVENTS_KEPT = 100;

export function serviceArn(scope: Scope, clusterArn: string, name: string): string {
  return formatArn({
    service: "ecs",
    region: scope.region,
    accountId: scope.accountId,
    resource: `service/${clusterNameOfArn(clusterArn)}/${name}`,
  });
}

/**
 * The service name a `service` parameter refers to in a cluster: a name, or
 * an ARN in the long (`service/cluster/name`) or short (`service/name`) form.
 * Undefined when it names nothing in this cluster.
 */
export function serviceNameOf(scope: Scope, clusterArn: string, reference: string): string | undefined {
  if (!reference.startsWith("arn:")) return reference;
  const arn = parseArn(reference);
  if (arn === undefined || arn.service !== "ecs" || !arn.resource.startsWith("service/")) return undefined;
  if (arn.region !== scope.region || arn.accountId !== scope.accountId) return undefined;
  const parts = arn.resource.split("/");
  if (parts.length === 3 && parts[1] !== clusterNameOfArn(clusterArn)) return undefined;
  return parts[parts.length - 1];
}

export async function saveService(tx: Tx, record: ServiceRecord): Promise<void> {
  await tx.run(
    `INSERT INTO ecs_services (arn, cluster_arn, name, status, launch_type, scheduling_strategy, created_at, updated_at, body)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (arn) DO UPDATE SET status = excluded.status, launch_type = excluded.launch_type,
       scheduling_strategy = excluded.scheduling_strategy, created_at = excluded.created_at,
       updated_at = excluded.updated_at, body = excluded.body`,
    record.arn,
    record.clusterArn,
    record.name,
    record.status,
    record.launchType,
    record.schedulingStrategy,
    record.createdAt,
    record.updatedAt,
    JSON.stringify(record),
  );
}

export async function findServiceByArn(tx: Tx, arn: string): Promise<ServiceRecord | undefined> {
  const row = await tx.get<{ body: string }>("SELECT body FROM ecs_services WHERE arn = ?", arn);
  return row === undefined ? undefined : (JSON.parse(row.body) as ServiceRecord);
}

export async function findService(
  tx: Tx,
  scope: Scope,
  clusterArn: string,
  reference: string,
): Promise<ServiceRecord | undefined> {
  const name = serviceNameOf(scope, clusterArn, reference);
  return name === undefined ? undefined : findServiceByArn(tx, serviceArn(scope, clusterArn, name));
}

/** Services that are not INACTIVE, by ARN after `after`, at most `limit` + 1 (for paging). */
export async function listServiceArns(
  tx: Tx,
  clusterArn: string,
  after: string | undefined,
  limit: number,
  filters: { launchType?: string | undefined; schedulingStrategy?: string | undefined },
): Promise<string[]> {
  // A service being deleted (DRAINING) is no longer listed, as ECS's DeleteService says.
  const clauses = ["cluster_arn = ?", "status = 'ACTIVE'", "arn > ?"];
  const params: string[] = [clusterArn, after ?? ""];
  if (filters.launchType !== undefined) clauses.push("launch_type = ?") && params.push(filters.launchType);
  if (filters.schedulingStrategy !== undefined)
    clauses.push("scheduling_strategy = ?") && params.push(filters.schedulingStrategy);
  const rows = await tx.all<{ arn: string }>(
    `SELECT arn FROM ecs_services WHERE ${clauses.join(" AND ")} ORDER BY arn LIMIT ?`,
    ...params,
    limit + 1,
  );
  return rows.map((row) => row.arn);
}

/** Every service the scheduler still has work for, optionally in one cluster. */
export async function liveServiceArns(tx: Tx, clusterArn?: string): Promise<string[]> {
  const rows =
    clusterArn === undefined
      ? await tx.all<{ arn: string }>("SELECT arn FROM ecs_services WHERE status != 'INACTIVE'")
      : await tx.all<{ arn: string }>(
          "SELECT arn FROM ecs_services WHERE cluster_arn = ? AND status != 'INACTIVE'",
          clusterArn,
        );
  return rows.map((row) => row.arn);
}

/** ACTIVE and DRAINING services of a cluster, for its counts and statistics. */
export async function serviceCounts(
  tx: Tx,
  clusterArn: string,
): Promise<{ active: number; draining: number }> {
  const rows = await tx.all<{ status: string; n: number }>(
    "SELECT status, COUNT(*) AS n FROM ecs_services WHERE cluster_arn = ? GROUP BY status",
    clusterArn,
  );
  const count = (status: string) => rows.find((row) => row.status === status)?.n ?? 0;
  return { active: count("ACTIVE"), draining: count("DRAINING") };
}

/** Appends events, oldest first, keeping the newest EVENTS_KEPT. */
export async function addEvents(tx: Tx, arn: string, messages: string[], now: number): Promise<void> {
  if (messages.length === 0) return;
  const last = await tx.get<{ seq: number | null }>(
    "SELECT MAX(seq) AS seq FROM ecs_service_events WHERE service_arn = ?",
    arn,
  );
  let seq = last?.seq ?? 0;
  for (const message of messages) {
    seq++;
    await tx.run(
      "INSERT INTO ecs_service_events (service_arn, seq, id, created_at, message) VALUES (?, ?, ?, ?, ?)",
      arn,
      seq,
      randomUUID(),
      now,
      message,
    );
  }
  await tx.run("DELETE FROM ecs_service_events WHERE service_arn = ? AND seq <= ?", arn, seq - EVENTS_KEPT);
}

/** The newest events first. */
export async function recentEvents(tx: Tx, arn: string, limit = EVENTS_KEPT): Promise<ServiceEvent[]> {
  const rows = await tx.all<{ id: string; created_at: number; message: string }>(
    "SELECT id, created_at, message FROM ecs_service_events WHERE service_arn = ? ORDER BY seq DESC LIMIT ?",
    arn,
    limit,
  );
  return rows.map((row) => ({ id: row.id, createdAt: row.created_at, message: row.message }));
}

/**
 * The service's events since it last started or stopped tasks, newest first: what a reconcile
 * pass judges repeats against (`withoutRepeats`). The events before, whose messages list up to
 * hundreds of task IDs each, are not read.
 */
export async function eventsSinceLastAction(
  tx: Tx,
  arn: string,
  name: string,
): Promise<Array<{ createdAt: number; message: string }>> {
  const started = `(service ${name}) has started `;
  const stopped = `(service ${name}) has stopped `;
  const rows = await tx.all<{ created_at: number; message: string }>(
    `SELECT created_at, message FROM ecs_service_events
     WHERE service_arn = ? AND seq > COALESCE((SELECT MAX(seq) FROM ecs_service_events
       WHERE service_arn = ? AND (substr(message, 1, ?) = ? OR substr(message, 1, ?) = ?)), 0)
     ORDER BY seq DESC LIMIT ?`,
    arn,
    arn,
    started.length,
    started,
    stopped.length,
    stopped,
    EVENTS_KEPT,
  );
  return rows.map((row) => ({ createdAt: row.created_at, message: row.message }));
}

export async function clearEvents(tx: Tx, arn: string): Promise<void> {
  await tx.run("DELETE FROM ecs_service_events WHERE service_arn = ?", arn);
}

/** Running and pending tasks of each deployment, as the tasks say now. */
async function taskCounts(
  tx: Tx,
  record: ServiceRecord,
): Promise<Map<string, { running: number; pending: number }>> {
  const rows = await tx.all<{ started_by: string | null; last_status: string; n: number }>(
    `SELECT started_by, last_status, COUNT(*) AS n FROM ecs_tasks
     WHERE cluster_arn = ? AND service_name = ? AND desired_status = 'RUNNING' AND last_status != 'STOPPED'
     GROUP BY started_by, last_status`,
    record.clusterArn,
    record.name,
  );
  const counts = new Map<string, { running: number; pending: number }>();
  for (const row of rows) {
    const id = row.started_by ?? "";
    const entry = counts.get(id) ?? { running: 0, pending: 0 };
    if (row.last_status === "RUNNING") entry.running += row.n;
    else if (PENDING_STATUSES.has(row.last_status)) entry.pending += row.n;
    counts.set(id, entry);
  }
  return counts;
}

function deploymentConfigurationShape(config: DeploymentConfigurationT): Record<string, unknown> {
  const shape: Record<string, unknown> = {
    deploymentCircuitBreaker: config.deploymentCircuitBreaker,
    maximumPercent: config.maximumPercent,
    minimumHealthyPercent: config.minimumHealthyPercent,
  };
  if (config.alarms !== undefined) shape.alarms = config.alarms;
  return shape;
}

/**
 * What a service or one of its deployments runs on, as ECS shows it: its capacity provider
 * strategy, or else its launch type; and the platform fields of Fargate capacity.
 */
function capacityShape(
  record: ServiceRecord,
  of: { capacityProviderStrategy?: StrategyItem[]; platformVersion?: string },
): Record<string, unknown> {
  const strategy = of.capacityProviderStrategy;
  const shape: Record<string, unknown> =
    strategy === undefined ? { launchType: record.launchType } : { capacityProviderStrategy: strategy };
  if (record.launchType === "FARGATE")
    Object.assign(shape, { platformVersion: of.platformVersion ?? "LATEST", platformFamily: "Linux" });
  return shape;
}

/** The ECS `Service` wire shape (timestamps in epoch seconds, events newest first). */
export async function serviceShape(
  tx: Tx,
  record: ServiceRecord,
  includeTags: boolean,
): Promise<Record<string, unknown>> {
  const counts = await taskCounts(tx, record);
  const deployments = record.deployments.map((d) => {
    const count = counts.get(d.id) ?? { running: 0, pending: 0 };
    const shape: Record<string, unknown> = {
      id: d.id,
      status: d.status,
      taskDefinition: d.taskDefinition,
      desiredCount: d.desiredCount,
      pendingCount: count.pending,
      runningCount: count.running,
      failedTasks: d.failedTasks,
      createdAt: d.createdAt / 1000,
      updatedAt: d.updatedAt / 1000,
      ...capacityShape(record, d),
      rolloutState: d.rolloutState,
      rolloutStateReason: d.rolloutStateReason,
    };
    if (d.networkConfiguration !== undefined) shape.networkConfiguration = d.networkConfiguration;
    return shape;
  });
  const total = (field: "running" | "pending") =>
    record.deployments.reduce((sum, d) => sum + (counts.get(d.id)?.[field] ?? 0), 0);
  const events = await recentEvents(tx, record.arn);
  const shape: Record<string, unknown> = {
    serviceArn: record.arn,
    serviceName: record.name,
    clusterArn: record.clusterArn,
    loadBalancers: record.loadBalancers,
    serviceRegistries: record.serviceRegistries,
    status: record.status,
    desiredCount: record.desiredCount,
    runningCount: total("running"),
    pendingCount: total("pending"),
    ...capacityShape(record, record),
    taskDefinition: record.taskDefinition,
    deploymentConfiguration: deploymentConfigurationShape(record.deploymentConfiguration),
    deployments,
    events: events.map((e) => ({ id: e.id, createdAt: e.createdAt / 1000, message: e.message })),
    createdAt: record.createdAt / 1000,
    placementConstraints: record.placementConstraints,
    placementStrategy: record.placementStrategy,
    schedulingStrategy: record.schedulingStrategy,
    deploymentController: { type: "ECS" },
    enableECSManagedTags: record.enableECSManagedTags,
    propagateTags: record.propagateTags,
    enableExecuteCommand: record.enableExecuteCommand,
  };
  if (record.role !== undefined) shape.roleArn = record.role;
  if (record.createdBy !== undefined) shape.createdBy = record.createdBy;
  if (record.networkConfiguration !== undefined) shape.networkConfiguration = record.networkConfiguration;
  if (record.healthCheckGracePeriodSeconds !== undefined)
    shape.healthCheckGracePeriodSeconds = record.healthCheckGracePeriodSeconds;
  if (includeTags) shape.tags = (await tagsOf(tx, record.arn)).map((t) => ({ key: t.key, value: t.value }));
  return shape;
}
