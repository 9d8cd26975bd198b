import { formatArn, parseArn } from "../aws/arn.ts";
import { removeAllTags, type Tag, tagsOf } from "../aws/tags.ts";
import type { Tx } from "../store/store.ts";
import { ClusterNotFound, InvalidParameter } from "./errors.ts";
import { serviceCounts } from "./services.ts";
import type {
  CapacityProviderStrategyItemT,
  ClusterConfigurationT,
  ClusterFieldT,
  ClusterSettingT,
} from "./shapes.ts";

/** A cluster as stored. */
export interface ClusterRecord {
  arn: string;
  name: string;
  status: "ACTIVE" | "INACTIVE";
  settings: ClusterSettingT[];
  configuration?: ClusterConfigurationT;
  serviceConnectDefaults?: { namespace: string };
  capacityProviders: string[];
  defaultCapacityProviderStrategy: CapacityProviderStrategyItemT[];
  createdAt: number;
  updatedAt: number;
}

export interface Scope {
  region: string;
  accountId: string;
}

interface ClusterRow {
  [column: string]: string | number | null;
  arn: string;
  name: string;
  status: string;
  settings: string;
  configuration: string | null;
  service_connect_defaults: string | null;
  capacity_providers: string;
  default_strategy: string;
  created_at: number;
  updated_at: number;
}

export const DEFAULT_CLUSTER = "default";
const NAME = /^[a-zA-Z0-9_-]{1,255}$/;

export function clusterArn(scope: Scope, name: string): string {
  return formatArn({
    service: "ecs",
    region: scope.region,
    accountId: scope.accountId,
    resource: `cluster/${name}`,
  });
}

export function validClusterName(name: string): void {
  if (!NAME.test(name)) {
    throw InvalidParameter(
      "Cluster name must be 1-255 characters long and contain only letters (uppercase and lowercase), numbers, underscores, and hyphens.",
    );
  }
}

/**
 * The cluster name a `cluster` parameter refers to: a short name or a full
 * ARN of this region and account. Undefined when it names nothing here.
 */
export function clusterNameOf(scope: Scope, reference: string): string | undefined {
  if (!reference.startsWith("arn:")) return reference;
  const arn = parseArn(reference);
  if (arn === undefined || arn.service !== "ecs" || !arn.resource.startsWith("cluster/")) return undefined;
  if (arn.region !== scope.region || arn.accountId !== scope.accountId) return undefined;
  return arn.resource.slice("cluster/".length);
}

function fromRow(row: ClusterRow): ClusterRecord {
  const record: ClusterRecord = {
    arn: row.arn,
    name: row.name,
    status: row.status === "ACTIVE" ? "ACTIVE" : "INACTIVE",
    settings: JSON.parse(row.settings) as ClusterSettingT[],
    capacityProviders: JSON.parse(row.capacity_providers) as string[],
    defaultCapacityProviderStrategy: JSON.parse(row.default_strategy) as CapacityProviderStrategyItemT[],
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
  if (row.configuration !== null)
    record.configuration = JSON.parse(row.configuration) as ClusterConfigurationT;
  if (row.service_connect_defaults !== null) {
    record.serviceConnectDefaults = JSON.parse(row.service_connect_defaults) as { namespace: string };
  }
  return record;
}

export async function findCluster(
  tx: Tx,
  scope: Scope,
  reference: string,
): Promise<ClusterRecord | undefined> {
  const name = clusterNameOf(scope, reference);
  if (name === undefined) return undefined;
  const row = await tx.get<ClusterRow>("SELECT * FROM ecs_clusters WHERE name = ?", name);
  return row === undefined ? undefined : fromRow(row);
}

/** The ACTIVE cluster a `cluster` parameter names, or ECS's ClusterNotFoundException. */
export async function activeCluster(
  tx: Tx,
  scope: Scope,
  reference: string | undefined,
): Promise<ClusterRecord> {
  const cluster = await findCluster(tx, scope, reference ?? DEFAULT_CLUSTER);
  if (cluster === undefined || cluster.status !== "ACTIVE") throw ClusterNotFound("Cluster not found.");
  return cluster;
}

export async function saveCluster(tx: Tx, cluster: ClusterRecord): Promise<void> {
  await tx.run(
    `INSERT INTO ecs_clusters (arn, name, status, settings, configuration, service_connect_defaults,
       capacity_providers, default_strategy, created_at, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (arn) DO UPDATE SET status = excluded.status, settings = excluded.settings,
       configuration = excluded.configuration, service_connect_defaults = excluded.service_connect_defaults,
       capacity_providers = excluded.capacity_providers, default_strategy = excluded.default_strategy,
       created_at = excluded.created_at, updated_at = excluded.updated_at`,
    cluster.arn,
    cluster.name,
    cluster.status,
    JSON.stringify(cluster.settings),
    cluster.configuration === undefined ? null : JSON.stringify(cluster.configuration),
    cluster.serviceConnectDefaults === undefined ? null : JSON.stringify(cluster.serviceConnectDefaults),
    JSON.stringify(cluster.capacityProviders),
    JSON.stringify(cluster.defaultCapacityProviderStrategy),
    cluster.createdAt,
    cluster.updatedAt,
  );
}

/** Marks a cluster INACTIVE; it stays describable, as in ECS, and can be created again. */
export async function deactivateCluster(tx: Tx, cluster: ClusterRecord, now: number): Promise<ClusterRecord> {
  const inactive: ClusterRecord = { ...cluster, status: "INACTIVE", updatedAt: now };
  await saveCluster(tx, inactive);
  await removeAllTags(tx, cluster.arn);
  return inactive;
}

/** ACTIVE clusters in name order after `after`, at most `limit` + 1 (for paging). */
export async function listActiveClusters(
  tx: Tx,
  after: string | undefined,
  limit: number,
): Promise<Array<{ arn: string; name: string }>> {
  return tx.all<{ arn: string; name: string }>(
    "SELECT arn, name FROM ecs_clusters WHERE status = 'ACTIVE' AND name > ? ORDER BY name LIMIT ?",
    after ?? "",
    limit + 1,
  );
}

/**
 * What runs in a cluster: container instances, tasks not yet STOPPED and
 * services, by launch type. This is the one place the counts come from.
 */
export interface ClusterUsage {
  registeredContainerInstancesCount: number;
  runningTasksCount: number;
  pendingTasksCount: number;
  activeServicesCount: number;
  statistics: Array<{ name: string; value: string }>;
}

export async function clusterUsage(tx: Tx, cluster: ClusterRecord): Promise<ClusterUsage> {
  const statistic = (name: string, value: number) => ({ name, value: String(value) });
  const services = await serviceCounts(tx, cluster.arn);
  const fargateServices = await tx.all<{ status: string; n: number }>(
    "SELECT status, COUNT(*) AS n FROM ecs_services WHERE cluster_arn = ? AND launch_type = 'FARGATE' GROUP BY status",
    cluster.arn,
  );
  const fargateService = (status: string) => fargateServices.find((row) => row.status === status)?.n ?? 0;
  const tasks = await tx.all<{ launch_type: string | null; running: number; n: number }>(
    `SELECT json_extract(body, '$.wire.launchType') AS launch_type, last_status = 'RUNNING' AS running, COUNT(*) AS n
     FROM ecs_tasks WHERE cluster_arn = ? AND last_status != 'STOPPED' GROUP BY 1, 2`,
    cluster.arn,
  );
  const taskCount = (fargate: boolean, running: boolean) =>
    tasks
      .filter((row) => (row.launch_type === "FARGATE") === fargate && row.running === (running ? 1 : 0))
      .reduce((sum, row) => sum + row.n, 0);
  const instances = await tx.get<{ n: number }>(
    "SELECT COUNT(*) AS n FROM ecs_container_instances WHERE cluster_arn = ? AND status != 'INACTIVE'",
    cluster.arn,
  );
  return {
    registeredContainerInstancesCount: instances?.n ?? 0,
    runningTasksCount: taskCount(false, true) + taskCount(true, true),
    pendingTasksCount: taskCount(false, false) + taskCount(true, false),
    activeServicesCount: services.active,
    statistics: [
      statistic("runningEC2TasksCount", taskCount(false, true)),
      statistic("runningFargateTasksCount", taskCount(true, true)),
      statistic("pendingEC2TasksCount", taskCount(false, false)),
      statistic("pendingFargateTasksCount", taskCount(true, false)),
      statistic("activeEC2ServiceCount", services.active - fargateService("ACTIVE")),
      statistic("activeFargateServiceCount", fargateService("ACTIVE")),
      statistic("drainingEC2ServiceCount", services.draining - fargateService("DRAINING")),
      statistic("drainingFargateServiceCount", fargateService("DRAINING")),
    ],
  };
}

/** The ECS `Cluster` wire shape. `include` adds the optional parts DescribeClusters asks for. */
export async function clusterShape(
  tx: Tx,
  cluster: ClusterRecord,
  include: ReadonlySet<ClusterFieldT>,
): Promise<Record<string, unknown>> {
  const usage = await clusterUsage(tx, cluster);
  const shape: Record<string, unknown> = {
    clusterArn: cluster.arn,
    clusterName: cluster.name,
    status: cluster.status,
    registeredContainerInstancesCount: usage.registeredContainerInstancesCount,
    runningTasksCount: usage.runningTasksCount,
    pendingTasksCount: usage.pendingTasksCount,
    activeServicesCount: usage.activeServicesCount,
    statistics: include.has("STATISTICS") ? usage.statistics : [],
    tags: include.has("TAGS") ? toWireTags(await tagsOf(tx, cluster.arn)) : [],
    settings: include.has("SETTINGS") ? cluster.settings : [],
    capacityProviders: cluster.capacityProviders,
    defaultCapacityProviderStrategy: cluster.defaultCapacityProviderStrategy,
  };
  if (include.has("CONFIGURATIONS") && cluster.configuration !== undefined) {
    shape.configuration = cluster.configuration;
  }
  if (include.has("ATTACHMENTS")) {
    shape.attachments = [];
    if (cluster.capacityProviders.length > 0) shape.attachmentsStatus = "UPDATE_COMPLETE";
  }
  if (cluster.serviceConnectDefaults !== undefined)
    shape.serviceConnectDefaults = cluster.serviceConnectDefaults;
  return shape;
}

export function toWireTags(tags: Tag[]): Array<{ key: string; value: string }> {
  return tags.map((tag) => ({ key: tag.key, value: tag.value }));
}
