import type { z } from "zod";
import { formatArn, parseArn } from "../aws/arn.ts";
import { removeAllTags } from "../aws/tags.ts";
import type { Tx } from "../store/store.ts";
import type {
  CompatibilityT,
  ContainerDefinitionInput,
  KeyValuePair,
  MountPoint,
  NetworkModeT,
  PlacementConstraint,
  PortMapping,
  ProxyConfiguration,
  RuntimePlatform,
  Volume,
  VolumeFrom,
} from "./task-definition-shapes.ts";

/**
 * Task definitions as stored and as ECS returns them. The wire shape is kept
 * whole in `body`; the columns beside it (family, revision, status, times)
 * exist for lookups and listings, and are the truth for what changes after
 * registration (status, deregisteredAt).
 */

export type TaskDefinitionStatus = "ACTIVE" | "INACTIVE" | "DELETE_IN_PROGRESS";

/**
 * The row status of a deleted revision kept only so that its number is never handed out again
 * (ECS keeps counting a family's revisions): no body, never read but by `nextRevision`.
 */
const DELETED = "DELETED";

export interface HealthCheck {
  command: string[];
  interval: number;
  timeout: number;
  retries: number;
  startPeriod?: number;
}

export type PortMappingOut = Omit<z.infer<typeof PortMapping>, "protocol"> & { protocol: "tcp" | "udp" };

/** A container definition with the defaults ECS fills in. */
export type ContainerDefinition = Omit<
  ContainerDefinitionInput,
  | "name"
  | "image"
  | "cpu"
  | "essential"
  | "portMappings"
  | "environment"
  | "mountPoints"
  | "volumesFrom"
  | "systemControls"
  | "healthCheck"
> & {
  name: string;
  image: string;
  cpu: number;
  essential: boolean;
  portMappings: PortMappingOut[];
  environment: Array<z.infer<typeof KeyValuePair>>;
  mountPoints: Array<z.infer<typeof MountPoint>>;
  volumesFrom: Array<z.infer<typeof VolumeFrom>>;
  systemControls: Array<{ namespace?: string | undefined; value?: string | undefined }>;
  healthCheck?: HealthCheck;
};

/** A task volume; its name is always present once registered. */
export type TaskVolume = Omit<z.infer<typeof Volume>, "name"> & { name: string };

/** The ECS `TaskDefinition` wire shape (timestamps in epoch seconds). */
export interface TaskDefinition {
  taskDefinitionArn: string;
  containerDefinitions: ContainerDefinition[];
  family: string;
  taskRoleArn?: string;
  executionRoleArn?: string;
  /** Absent when the caller gave none: the task then uses `bridge` on EC2 (see `networkModeOf`). */
  networkMode?: NetworkModeT;
  revision: number;
  volumes: TaskVolume[];
  status: TaskDefinitionStatus;
  requiresAttributes?: Array<{ name: string }>;
  placementConstraints: Array<z.infer<typeof PlacementConstraint>>;
  compatibilities: CompatibilityT[];
  runtimePlatform?: z.infer<typeof RuntimePlatform>;
  requiresCompatibilities?: CompatibilityT[];
  /** Task CPU units as a numeric string ("256"). */
  cpu?: string;
  /** Task memory in MiB as a numeric string ("512"). */
  memory?: string;
  inferenceAccelerators?: Array<{ deviceName: string; deviceType: string }>;
  pidMode?: "host" | "task";
  ipcMode?: "host" | "task" | "none";
  proxyConfiguration?: z.infer<typeof ProxyConfiguration>;
  registeredAt: number;
  deregisteredAt?: number;
  registeredBy?: string;
  ephemeralStorage?: { sizeInGiB: number };
  enableFaultInjection?: boolean;
}

/** What validation produces: everything but the identity ECS assigns at registration. */
export type TaskDefinitionDraft = Omit<
  TaskDefinition,
  "taskDefinitionArn" | "revision" | "status" | "registeredAt" | "deregisteredAt" | "registeredBy"
>;

export interface Scope {
  region: string;
  accountId: string;
}

/** The network mode a task of this definition runs with. */
export function networkModeOf(definition: Pick<TaskDefinition, "networkMode">): NetworkModeT {
  return definition.networkMode ?? "bridge";
}

export function taskDefinitionArn(scope: Scope, family: string, revision: number): string {
  return formatArn({
    service: "ecs",
    region: scope.region,
    accountId: scope.accountId,
    resource: `task-definition/${family}:${revision}`,
  });
}

export interface TaskDefinitionReference {
  family: string;
  /** Undefined when the reference names the family alone (its latest ACTIVE revision). */
  revision?: number;
}

const REFERENCE = /^([a-zA-Z0-9_-]{1,255})(?::([1-9][0-9]{0,9}))?$/;

/**
 * Reads a `taskDefinition` parameter: `family`, `family:revision` or a full
 * ARN of this region and account. Undefined when it cannot name anything.
 */
export function parseTaskDefinitionReference(
  scope: Scope,
  reference: string,
): TaskDefinitionReference | undefined {
  let text = reference;
  if (reference.startsWith("arn:")) {
    const arn = parseArn(reference);
    if (arn === undefined || arn.service !== "ecs" || !arn.resource.startsWith("task-definition/")) {
      return undefined;
    }
    if (arn.region !== scope.region || arn.accountId !== scope.accountId) return undefined;
    text = arn.resource.slice("task-definition/".length);
  }
  const match = REFERENCE.exec(text);
  if (match === null || match[1] === undefined) return undefined;
  return match[2] === undefined ? { family: match[1] } : { family: match[1], revision: Number(match[2]) };
}

/** Puts the members in the order ECS writes them, so responses read like ECS's. */
export function assembleTaskDefinition(
  draft: TaskDefinitionDraft,
  identity: Pick<TaskDefinition, "taskDefinitionArn" | "revision" | "status" | "registeredAt"> &
    Partial<Pick<TaskDefinition, "deregisteredAt" | "registeredBy">>,
): TaskDefinition {
  const { containerDefinitions, family, volumes, placementConstraints, compatibilities, ...rest } = draft;
  const ordered: Record<string, unknown> = {
    taskDefinitionArn: identity.taskDefinitionArn,
    containerDefinitions,
    family,
    taskRoleArn: rest.taskRoleArn,
    executionRoleArn: rest.executionRoleArn,
    networkMode: rest.networkMode,
    revision: identity.revision,
    volumes,
    status: identity.status,
    requiresAttributes: rest.requiresAttributes,
    placementConstraints,
    compatibilities,
    runtimePlatform: rest.runtimePlatform,
    requiresCompatibilities: rest.requiresCompatibilities,
    cpu: rest.cpu,
    memory: rest.memory,
    inferenceAccelerators: rest.inferenceAccelerators,
    pidMode: rest.pidMode,
    ipcMode: rest.ipcMode,
    proxyConfiguration: rest.proxyConfiguration,
    registeredAt: identity.registeredAt,
    deregisteredAt: identity.deregisteredAt,
    registeredBy: identity.registeredBy,
    ephemeralStorage: rest.ephemeralStorage,
    enableFaultInjection: rest.enableFaultInjection,
  };
  for (const [key, value] of Object.entries(ordered)) if (value === undefined) delete ordered[key];
  return ordered as unknown as TaskDefinition;
}

interface TaskDefinitionRow {
  [column: string]: string | number | null;
  arn: string;
  family: string;
  revision: number;
  status: string;
  body: string;
  registered_at: number;
  deregistered_at: number | null;
}

function statusOf(value: string): TaskDefinitionStatus {
  return value === "ACTIVE" || value === "INACTIVE" ? value : "DELETE_IN_PROGRESS";
}

function fromRow(row: TaskDefinitionRow): TaskDefinition {
  const body = JSON.parse(row.body) as TaskDefinition;
  return { ...body, status: statusOf(row.status) };
}

/** The next revision of a family: one past the highest ever registered, deleted ones included. */
export async function nextRevision(tx: Tx, family: string): Promise<number> {
  const row = await tx.get<{ latest: number | null }>(
    "SELECT MAX(revision) AS latest FROM ecs_task_definitions WHERE family = ?",
    family,
  );
  return (row?.latest ?? 0) + 1;
}

export async function insertTaskDefinition(tx: Tx, td: TaskDefinition): Promise<void> {
  await tx.run(
    `INSERT INTO ecs_task_definitions (arn, family, revision, status, body, registered_at, deregistered_at)
     VALUES (?, ?, ?, ?, ?, ?, ?)`,
    td.taskDefinitionArn,
    td.family,
    td.revision,
    td.status,
    JSON.stringify(td),
    Math.round(td.registeredAt * 1000),
    td.deregisteredAt === undefined ? null : Math.round(td.deregisteredAt * 1000),
  );
}

/** Moves a task definition to another status; returns it as it now reads. */
export async function setTaskDefinitionStatus(
  tx: Tx,
  td: TaskDefinition,
  status: TaskDefinitionStatus,
  nowMs: number,
): Promise<TaskDefinition> {
  const { status: _old, ...draft } = td;
  const deregisteredAt = td.deregisteredAt ?? (status === "ACTIVE" ? undefined : nowMs / 1000);
  const updated = assembleTaskDefinition(draft, { ...td, status, deregisteredAt });
  await tx.run(
    "UPDATE ecs_task_definitions SET status = ?, body = ?, deregistered_at = ? WHERE arn = ?",
    status,
    JSON.stringify(updated),
    deregisteredAt === undefined ? null : Math.round(deregisteredAt * 1000),
    td.taskDefinitionArn,
  );
  return updated;
}

/**
 * Deletes a revision for good, with its tags: DescribeTaskDefinition and every listing no longer
 * know it. A family's highest revision leaves a DELETED row behind (and any older one of the
 * family goes), so that the next registration still gets the next number.
 */
export async function removeTaskDefinition(
  tx: Tx,
  td: { arn: string; family: string; revision: number },
): Promise<void> {
  await removeAllTags(tx, td.arn);
  const row = await tx.get<{ latest: number }>(
    "SELECT MAX(revision) AS latest FROM ecs_task_definitions WHERE family = ?",
    td.family,
  );
  const latest = row?.latest ?? td.revision;
  if (latest === td.revision) {
    await tx.run("UPDATE ecs_task_definitions SET status = ?, body = '{}' WHERE arn = ?", DELETED, td.arn);
  } else {
    await tx.run("DELETE FROM ecs_task_definitions WHERE arn = ?", td.arn);
  }
  await tx.run(
    "DELETE FROM ecs_task_definitions WHERE family = ? AND status = ? AND revision < ?",
    td.family,
    DELETED,
    latest,
  );
}

/**
 * The task definition a `taskDefinition` parameter names: `family` (its
 * latest ACTIVE revision), `family:revision` or a full ARN. A named revision
 * is returned whatever its status; callers that may only use ACTIVE ones
 * check `status` themselves.
 */
export async function findTaskDefinition(
  tx: Tx,
  scope: Scope,
  reference: string,
): Promise<TaskDefinition | undefined> {
  const parsed = parseTaskDefinitionReference(scope, reference);
  if (parsed === undefined) return undefined;
  const row =
    parsed.revision === undefined
      ? await tx.get<TaskDefinitionRow>(
          "SELECT * FROM ecs_task_definitions WHERE family = ? AND status = 'ACTIVE' ORDER BY revision DESC LIMIT 1",
          parsed.family,
        )
      : await tx.get<TaskDefinitionRow>(
          "SELECT * FROM ecs_task_definitions WHERE family = ? AND revision = ? AND status != ?",
          parsed.family,
          parsed.revision,
          DELETED,
        );
  if (row === undefined) return undefined;
  // The table holds one region's definitions; an ARN of another region or account names nothing here.
  return row.arn === taskDefinitionArn(scope, row.family, row.revision) ? fromRow(row) : undefined;
}

export interface ListPosition {
  family: string;
  revision: number;
}

/** Task definition ARNs of one status, ordered by family then revision, after `after`; `limit` + 1 rows. */
export async function listTaskDefinitionRows(
  tx: Tx,
  options: {
    family?: string | undefined;
    status: TaskDefinitionStatus;
    descending: boolean;
    after?: ListPosition | undefined;
    limit: number;
  },
): Promise<Array<{ arn: string; family: string; revision: number }>> {
  const where = ["status = ?"];
  const params: Array<string | number> = [options.status];
  if (options.family !== undefined) {
    where.push("family = ?");
    params.push(options.family);
  }
  if (options.after !== undefined) {
    const beyond = options.descending ? "<" : ">";
    where.push(`(family ${beyond} ? OR (family = ? AND revision ${beyond} ?))`);
    params.push(options.after.family, options.after.family, options.after.revision);
  }
  const direction = options.descending ? "DESC" : "ASC";
  return tx.all<{ arn: string; family: string; revision: number }>(
    `SELECT arn, family, revision FROM ecs_task_definitions WHERE ${where.join(" AND ")}
     ORDER BY family ${direction}, revision ${direction} LIMIT ?`,
    ...params,
    options.limit + 1,
  );
}

/**
 * Family names in order after `after`; `limit` + 1 of them. ACTIVE families
 * have at least one ACTIVE revision, INACTIVE ones have none, ALL is both.
 */
export async function listFamilyRows(
  tx: Tx,
  options: {
    prefix?: string | undefined;
    status: "ACTIVE" | "INACTIVE" | "ALL";
    after?: string | undefined;
    limit: number;
  },
): Promise<string[]> {
  const where = ["family > ?", "status != ?"];
  const params: Array<string | number> = [options.after ?? "", DELETED];
  if (options.prefix !== undefined && options.prefix !== "") {
    where.push("substr(family, 1, ?) = ?");
    params.push(options.prefix.length, options.prefix);
  }
  const having =
    options.status === "ACTIVE"
      ? "HAVING SUM(CASE WHEN status = 'ACTIVE' THEN 1 ELSE 0 END) > 0"
      : options.status === "INACTIVE"
        ? "HAVING SUM(CASE WHEN status = 'ACTIVE' THEN 1 ELSE 0 END) = 0"
        : "";
  const rows = await tx.all<{ family: string }>(
    `SELECT family FROM ecs_task_definitions WHERE ${where.join(" AND ")}
     GROUP BY family ${having} ORDER BY family LIMIT ?`,
    ...params,
    options.limit + 1,
  );
  return rows.map((row) => row.family);
}
