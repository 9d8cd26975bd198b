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
  /** The capacity provider of the strategy the task was started with. */
  capacityProviderName?: string;
  availabilityZone?: string;
  attachments: Array<Record<string, unknown>>;
  healthStatus: string;
  enableExecuteCommand: boolean;
  tags?: Array<{ key: string; value: string }>;
  platformFamily?: string;
  platformVersion?: string;
}

/**
 * A task as the store keeps it. Its row holds the assignment in a column of its own, written
 * once: it never changes after `newTask`, while the rest (the body) changes with every report.
 */
export interface TaskRecord {
  wire: TaskWire;
  /**
   * What the agent needs to run it (without version/desiredStatus, which the wire holds). Fixed
   * once the task is made; a record read from the store parses it when first asked for.
   */
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

/**
 * A task ID: 32 hex digits, as ECS's, of which the first 12 are the creation time in
 * milliseconds and the other 20 (80 bits) are random, as in a version 7 UUID. IDs made later sort
 * later, so each new task's ARN lands at the end of the ARN index, in pages already being written,
 * rather than in a random page of it; they stay as unguessable as any task ID needs to be.
 */
export function newTaskArn(scope: Scope, clusterArn: string, now: number): string {
  const time = Math.max(0, Math.min(Math.floor(now), 0xffffffffffff))
    .toString(16)
    .padStart(12, "0");
  return formatArn({
    service: "ecs",
    region: scope.region,
    accountId: scope.accountId,
    resource: `task/${clusterNameOfArn(clusterArn)}/${time}${randomHex(10)}`,
  });
}

/**
 * `arn:aws:ecs:<region>:<account>:container/<cluster>/<task id>/<uuid>`, ECS's form: the task's
 * ARN with `container` for `task` and a fresh UUID after it.
 */
export function newContainerArn(taskArn: string): string {
  return `${taskArn.replace(":task/", ":container/")}/${randomUUID()}`;
}

/** The DescribeTasks shape: timestamps as epoch seconds, internal fields left out. */
export function taskShape(record: TaskRecord, includeTags: boolean): Record<string, unknown> {
  const wire = record.wire;
  // The task's names first, and each container's, as a task is made (a record read from its row
  // has them last: `recordOf`). A copy: the record is left as it is.
  const out: Record<string, unknown> = {
    taskArn: wire.taskArn,
    clusterArn: wire.clusterArn,
    taskDefinitionArn: wire.taskDefinitionArn,
  };
  if (wire.containerInstanceArn !== undefined) out.containerInstanceArn = wire.containerInstanceArn;
  Object.assign(out, wire);
  out.containers = wire.containers.map((container) =>
    Object.assign({ containerArn: container.containerArn, taskArn: container.taskArn }, container),
  );
  for (const field of TIMESTAMPS) {
    const value = record.wire[field];
    if (value !== undefined) out[field] = value / 1000;
  }
  if (!includeTags) delete out.tags;
  // A Fargate task names no container instance: the capacity it runs on is Wharf's, not the user's.
  if (record.wire.launchType === "FARGATE") delete out.containerInstanceArn;
  return out;
}

/** The statuses of a task on its way to RUNNING: ECS's pending ones. */
export const PENDING_STATUSES: ReadonlySet<string> = new Set(["PROVISIONING", "PENDING", "ACTIVATING"]);

/** What follows every task write (the scheduler's in-memory state). */
export interface TaskWrites {
  taskSaved(tx: Tx, record: TaskRecord): void;
}

/** The columns a task's row holds besides its body, as they were when the record was read or written. */
interface StoredColumns {
  lastStatus: string;
  desiredStatus: string;
  stoppedAt: number | null;
}

/**
 * The row's columns of each record read with `findTask` or saved since: a save then sets only
 * the columns that changed, so SQLite rewrites only the index entries on those (a RUNNING
 * report leaves the desired status and its index alone). A record without them, or whose
 * transaction rolled back, gets every column written.
 */
const STORED = Symbol("the row's columns");

/**
 * Each record's assignment as JSON where it is known without serializing it: a record from
 * `TaskMaker` (which serializes what the tasks of one request share once) or read from its row.
 * An assignment never changes, so neither does its JSON.
 */
const ASSIGNMENT_JSON = Symbol("the assignment's JSON");

/**
 * A made record's assignment JSON without its closing brace (`knowAssignmentJson`): the task's
 * own start, then what the tasks of its request share, kept apart rather than sliced from the
 * whole. Slicing a string V8 built by concatenation first copies it flat, and the slice keeps
 * that copy: each task the server kept an answer for held a ~700-byte copy of what its request's
 * tasks share (24.6 of the server's 95 MB of live heap with 35,000 tasks).
 */
const ASSIGNMENT_OPEN = Symbol("the assignment's JSON, open");

/** A read record's assignment once parsed (`recordOf`). */
const ASSIGNMENT = Symbol("the assignment");

/** What a record carries besides its fields, out of sight of JSON, spreads and Object.keys. */
type Annotated = TaskRecord & {
  [STORED]?: StoredColumns;
  [ASSIGNMENT_JSON]?: string;
  [ASSIGNMENT_OPEN]?: string;
  [ASSIGNMENT]?: TaskRecord["assignment"];
};

/**
 * Sets one of a record's annotations. They are properties of the record, not entries of a
 * WeakMap: node 20's young-generation collector keeps a WeakMap's keys alive, so every record
 * (its row's strings and parsed body with it) outlived its transaction into the old generation.
 * Not enumerable, so a copy of a record (`{ ...record }`) does not take them.
 */
function annotate(record: TaskRecord, key: typeof STORED, value: StoredColumns | undefined): void;
function annotate(
  record: TaskRecord,
  key: typeof ASSIGNMENT_JSON | typeof ASSIGNMENT_OPEN,
  value: string,
): void;
function annotate(record: TaskRecord, key: typeof ASSIGNMENT, value: TaskRecord["assignment"]): void;
function annotate(record: TaskRecord, key: symbol, value: unknown): void {
  Object.defineProperty(record, key, { value, writable: true, configurable: true, enumerable: false });
}

function columnsOf(wire: TaskWire): StoredColumns {
  return {
    lastStatus: wire.lastStatus,
    desiredStatus: wire.desiredStatus,
    stoppedAt: wire.stoppedAt ?? null,
  };
}

/** The UPDATE for each combination of changed columns, built once. */
const updates = new Map<number, string>();

function updateSql(lastStatus: boolean, desiredStatus: boolean, stoppedAt: boolean): string {
  const key = Number(lastStatus) | (Number(desiredStatus) << 1) | (Number(stoppedAt) << 2);
  let sql = updates.get(key);
  if (sql === undefined) {
    const set = [
      ...(lastStatus ? ["last_status = ?"] : []),
      ...(desiredStatus ? ["desired_status = ?"] : []),
      "updated_at = ?",
      ...(stoppedAt ? ["stopped_at = ?"] : []),
      "version = ?",
      "body = ?",
    ];
    sql = `UPDATE ecs_tasks SET ${set.join(", ")} WHERE arn = ?`;
    updates.set(key, sql);
  }
  return sql;
}

export async function saveTask(tx: Tx, record: TaskRecord, now: number, writes: TaskWrites): Promise<void> {
  MADE.get(tx)?.delete(record.wire.taskArn);
  const before = (record as Annotated)[STORED];
  const columns = remember(tx, record, writes);
  const lastStatus = before === undefined || before.lastStatus !== columns.lastStatus;
  const desiredStatus = before === undefined || before.desiredStatus !== columns.desiredStatus;
  const stoppedAt = before === undefined || before.stoppedAt !== columns.stoppedAt;
  const wire = record.wire;
  const body = bodyOf(record);
  const changed = await tx.run(
    updateSql(lastStatus, desiredStatus, stoppedAt),
    ...(lastStatus ? [columns.lastStatus] : []),
    ...(desiredStatus ? [columns.desiredStatus] : []),
    now,
    ...(stoppedAt ? [columns.stoppedAt] : []),
    wire.version,
    body,
    wire.taskArn,
  );
  if (changed === 0) await insertRow(tx, record, now, body);
}

/**
 * Writes a task just made (`newTask`): one INSERT, without first trying the UPDATE that
 * `saveTask` tries. Fails if the ARN is already taken (new task IDs carry 80 random bits).
 * `body` is `bodyOf(record)` where the caller knows it already (`TaskMaker`).
 */
export async function insertTask(
  tx: Tx,
  record: TaskRecord,
  now: number,
  writes: TaskWrites,
  body = bodyOf(record),
): Promise<void> {
  remember(tx, record, writes);
  await insertRow(tx, record, now, body);
  keepMade(tx, record);
}

/**
 * By connection: tasks inserted through it and neither read back nor saved since, each record
 * exactly as its row holds it. A task's first report (its agent's RUNNING, moments after the
 * task was made) then takes its record from here rather than reading and parsing its row (~7%
 * of the server's time in a large scale-up). A record is taken out when read (its reader may change
 * it), dropped when its task is saved (the row is read again after), and not served once its
 * insert was undone (`remember` clears its columns then); past MADE_KEPT the oldest go. Only a
 * connection's own transactions see it: the reader connection inserts nothing.
 */
const MADE = new WeakMap<Tx, Map<string, TaskRecord>>();

/** Tasks made and not yet read back that a connection keeps at most (a scale-up's in flight are far fewer). */
const MADE_KEPT = 4096;

function keepMade(tx: Tx, record: TaskRecord): void {
  let made = MADE.get(tx);
  if (made === undefined) {
    made = new Map();
    MADE.set(tx, made);
  }
  if (made.size >= MADE_KEPT) made.delete(made.keys().next().value as string);
  made.set(record.wire.taskArn, record);
}

/** The record `insertTask` kept for the task, taken out; undefined if there is none, or its insert was undone. */
function takeMade(tx: Tx, arn: string): TaskRecord | undefined {
  const made = MADE.get(tx);
  const record = made?.get(arn);
  if (record === undefined) return undefined;
  made?.delete(arn);
  return (record as Annotated)[STORED] === undefined ? undefined : record;
}

/**
 * The row's body: everything the row's other columns do not hold. The task's ARN, cluster, task
 * definition, instance and service have columns of their own, and each container names its
 * task: left out of the body, a row is ~40% smaller (two to a 4 KiB page rather than one), and
 * every report parses and serializes that much less. (startedBy, which has a column too, stays:
 * it is short, and where it sits is where DescribeTasks lists it.) A body written before holds
 * them too; `recordOf` takes them from the columns either way.
 */
export function bodyOf(record: TaskRecord): string {
  const {
    taskArn: _taskArn,
    clusterArn: _clusterArn,
    taskDefinitionArn: _taskDefinitionArn,
    containerInstanceArn: _containerInstanceArn,
    ...wire
  } = record.wire;
  // Assigned, not spread last, so that the containers keep their place among the fields.
  wire.containers = wire.containers.map(({ taskArn: _task, ...container }) => container as ContainerWire);
  return JSON.stringify({ wire, reservation: record.reservation, desiredVersion: record.desiredVersion });
}

/** The columns a task's body leaves out (`bodyOf`), and the body. */
const BODY_COLUMNS = "arn, cluster_arn, task_definition_arn, container_instance_arn, service_name, body";

/** What a task's record is read from: `BODY_COLUMNS` and the assignment. */
export const TASK_COLUMNS = `${BODY_COLUMNS}, assignment`;

type BodyRow = {
  arn: string;
  cluster_arn: string;
  task_definition_arn: string;
  container_instance_arn: string | null;
  service_name: string | null;
  body: string;
};

export type TaskRow = BodyRow & { assignment: string };

/** The record of a task's row but its assignment. */
function withoutAssignment(row: BodyRow): Omit<TaskRecord, "assignment"> {
  const record = JSON.parse(row.body) as TaskRecord;
  // Set on the parsed objects, not copied into new ones: a copy costs more to make and to
  // serialize again. (A body written before `bodyOf` left them out holds the same values.)
  const wire = record.wire;
  wire.taskArn = row.arn;
  wire.clusterArn = row.cluster_arn;
  wire.taskDefinitionArn = row.task_definition_arn;
  if (row.container_instance_arn !== null) wire.containerInstanceArn = row.container_instance_arn;
  for (const container of wire.containers) container.taskArn = row.arn;
  if (row.service_name !== null) record.serviceName = row.service_name;
  return record;
}

/** The record of a task's row (`TASK_COLUMNS`); its assignment is parsed only if something reads it. */
export function recordOf(row: TaskRow): TaskRecord {
  const record = withoutAssignment(row) as TaskRecord;
  annotate(record, ASSIGNMENT_JSON, row.assignment);
  Object.defineProperty(record, "assignment", LAZY_ASSIGNMENT);
  return record;
}

/** A read record's assignment, parsed from its JSON the first time it is asked for. */
function parsedAssignment(this: Annotated): TaskRecord["assignment"] {
  let assignment = this[ASSIGNMENT];
  if (assignment === undefined) {
    assignment = JSON.parse(this[ASSIGNMENT_JSON] ?? "{}") as TaskRecord["assignment"];
    annotate(this, ASSIGNMENT, assignment);
  }
  return assignment;
}

/**
 * The same accessor for every record read: one with a getter of its own (a closure) gave each
 * record a hidden class of its own, which node 20's young-generation collector keeps alive with
 * the record until a full collection: every record read (its row's strings with it) was copied
 * into the old generation.
 */
const LAZY_ASSIGNMENT: PropertyDescriptor = { get: parsedAssignment, enumerable: true, configurable: true };

/**
 * Every task not yet STOPPED, without its assignment (which only an agent's poll reads): what
 * the scheduler's state is loaded from.
 */
export async function liveTasks(tx: Tx): Promise<Array<Omit<TaskRecord, "assignment">>> {
  const rows = await tx.all<BodyRow>(`SELECT ${BODY_COLUMNS} FROM ecs_tasks WHERE last_status != 'STOPPED'`);
  return rows.map(withoutAssignment);
}

/** Hands the record to the scheduler's state and notes the columns its row is about to hold. */
function remember(tx: Tx, record: TaskRecord, writes: TaskWrites): StoredColumns {
  writes.taskSaved(tx, record);
  const columns = columnsOf(record.wire);
  annotate(record, STORED, columns);
  tx.onRollback(() => annotate(record, STORED, undefined));
  return columns;
}

async function insertRow(tx: Tx, record: TaskRecord, now: number, body: string): Promise<void> {
  const wire = record.wire;
  await tx.run(
    `INSERT INTO ecs_tasks (arn, cluster_arn, container_instance_arn, task_definition_arn, family, last_status, desired_status,
       started_by, service_name, created_at, updated_at, stopped_at, version, body, assignment)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
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
    assignmentJson(record),
  );
}

export async function findTask(tx: Tx, arn: string): Promise<TaskRecord | undefined> {
  const made = takeMade(tx, arn);
  if (made !== undefined) return made;
  const row = await tx.get<TaskRow>(`SELECT ${TASK_COLUMNS} FROM ecs_tasks WHERE arn = ?`, arn);
  if (row === undefined) return undefined;
  const record = recordOf(row);
  annotate(record, STORED, columnsOf(record.wire));
  return record;
}

/** Tasks an agent should know about: assigned to it and not yet STOPPED. */
export async function tasksForInstance(tx: Tx, instanceArn: string): Promise<TaskRecord[]> {
  const rows = await tx.all<TaskRow>(
    `SELECT ${TASK_COLUMNS} FROM ecs_tasks WHERE container_instance_arn = ? AND last_status != 'STOPPED' ORDER BY created_at`,
    instanceArn,
  );
  return rows.map(recordOf);
}

/** What the agent protocol adds to a task's assignment: what the agent is to do with it now. */
function desiredOf(record: TaskRecord): Pick<TaskAssignment, "version" | "desiredStatus" | "stopReason"> {
  const desired: Pick<TaskAssignment, "version" | "desiredStatus" | "stopReason"> = {
    version: record.desiredVersion,
    desiredStatus: record.wire.desiredStatus,
  };
  if (record.wire.desiredStatus === "STOPPED" && record.wire.stoppedReason !== undefined) {
    desired.stopReason = record.wire.stoppedReason;
  }
  return desired;
}

export function assignmentOf(record: TaskRecord): TaskAssignment {
  return { ...record.assignment, ...desiredOf(record) };
}

/**
 * Says what `JSON.stringify(record.assignment)` gives, for a record just made, as that JSON
 * without its closing brace (`ASSIGNMENT_OPEN`), built from parts that it does not copy. A made
 * assignment always has fields (its task's ARN first).
 */
export function knowAssignmentJson(record: TaskRecord, opened: string): void {
  annotate(record, ASSIGNMENT_OPEN, opened);
}

/** `JSON.stringify(record.assignment)`. */
export function assignmentJson(record: TaskRecord): string {
  let json = (record as Annotated)[ASSIGNMENT_JSON];
  if (json === undefined) {
    const opened = (record as Annotated)[ASSIGNMENT_OPEN];
    json = opened === undefined ? JSON.stringify(record.assignment) : `${opened}}`;
    annotate(record, ASSIGNMENT_JSON, json);
  }
  return json;
}

/** `JSON.stringify(assignmentOf(record))`, the agent protocol's form, from the assignment's JSON. */
export function assignmentOfJson(record: TaskRecord): string {
  const desired = JSON.stringify(desiredOf(record));
  // A made record's parts as they are, not a slice of the whole (`ASSIGNMENT_OPEN`): what polls
  // are answered from is kept for every live task.
  const opened = (record as Annotated)[ASSIGNMENT_OPEN];
  if (opened !== undefined) return `${opened},${desired.slice(1)}`;
  const assignment = assignmentJson(record);
  return assignment === "{}" ? desired : `${assignment.slice(0, -1)},${desired.slice(1)}`;
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
  const asked = wire.desiredStatus !== "STOPPED";
  if (asked) {
    wire.desiredStatus = "STOPPED";
    wire.stoppedReason ??= reason;
    wire.stopCode ??= stopCode;
    wire.stoppingAt ??= now;
    wire.version++;
    record.desiredVersion++;
  }
  if (immediately) {
    // A task already asked to stop changes now too: its version grows, so watchers see it.
    if (!asked) wire.version++;
    wire.lastStatus = "STOPPED";
    wire.stoppedAt = now;
    wire.executionStoppedAt ??= now;
    for (const container of wire.containers) {
      if (container.lastStatus !== "STOPPED") container.lastStatus = "STOPPED";
    }
  }
  return true;
}

/** Applies a container's report; returns whether the container changed. */
function applyContainer(container: ContainerWire, report: ContainerReport): boolean {
  const order = { PENDING: 0, RUNNING: 1, STOPPED: 2 } as const;
  const current = order[container.lastStatus as keyof typeof order] ?? 0;
  let changed = false;
  if (order[report.lastStatus] >= current && container.lastStatus !== report.lastStatus) {
    container.lastStatus = report.lastStatus;
    changed = true;
  }
  if (report.exitCode !== undefined && container.exitCode !== report.exitCode) {
    container.exitCode = report.exitCode;
    changed = true;
  }
  if (report.reason !== undefined && container.reason !== report.reason) {
    container.reason = report.reason;
    changed = true;
  }
  if (report.healthStatus !== undefined && container.healthStatus !== report.healthStatus) {
    container.healthStatus = report.healthStatus;
    changed = true;
  }
  if (report.runtimeId !== undefined && container.runtimeId !== report.runtimeId) {
    container.runtimeId = report.runtimeId;
    changed = true;
  }
  if (report.networkBindings !== undefined) {
    if (JSON.stringify(report.networkBindings) !== JSON.stringify(container.networkBindings)) changed = true;
    container.networkBindings = report.networkBindings;
  }
  return changed;
}

/** The essential containers with a health check: those that decide the task's health. */
export function checkedEssentials(record: TaskRecord): AssignedContainer[] {
  // Only a container with a health check has a health status (`containerWire`): a task without
  // one is told from its wire alone, and a record read from the store leaves its assignment unparsed.
  if (!record.wire.containers.some((c) => c.healthStatus !== undefined)) return [];
  return record.assignment.containers.filter((c) => c.essential && c.healthCheck !== undefined);
}

/** The task's health: UNHEALTHY if an essential container is, HEALTHY if every checked essential one is. */
function taskHealth(record: TaskRecord): string {
  const essentials = checkedEssentials(record);
  if (essentials.length === 0) return "UNKNOWN";
  const statuses = essentials.map(
    (c) => record.wire.containers.find((w) => w.name === c.name)?.healthStatus ?? "UNKNOWN",
  );
  if (statuses.includes("UNHEALTHY")) return "UNHEALTHY";
  return statuses.every((s) => s === "HEALTHY") ? "HEALTHY" : "UNKNOWN";
}

/** Applies the task's network interface the agent reports (awsvpc); returns whether anything changed. */
function applyInterface(wire: TaskWire, report: TaskReport, address: string): boolean {
  const attachment = wire.attachments.find((a) => a.type === "ElasticNetworkInterface");
  if (attachment === undefined) return false;
  const before = JSON.stringify([attachment, wire.containers.map((c) => c.networkInterfaces)]);
  attachment.status = "ATTACHED";
  attachment.details = [
    { name: "subnetId", value: "subnet-wharf" },
    { name: "networkInterfaceId", value: `eni-${String(attachment.id).slice(0, 17)}` },
    { name: "macAddress", value: report.macAddress ?? "" },
    { name: "privateIPv4Address", value: address },
  ];
  for (const container of wire.containers) {
    container.networkInterfaces = [{ attachmentId: String(attachment.id), privateIpv4Address: address }];
  }
  return JSON.stringify([attachment, wire.containers.map((c) => c.networkInterfaces)]) !== before;
}

/**
 * Applies what an agent reports. Statuses only move forward in ECS's order;
 * each transition stamps its timestamp once. Returns whether anything changed
 * (each step says whether it changed a field, so the task is not serialized
 * twice to find out); the wire `version` grows only then.
 */
export function applyReport(record: TaskRecord, report: TaskReport): boolean {
  const wire = record.wire;
  if (wire.lastStatus === "STOPPED") return false;
  let changed = false;
  for (const containerReport of report.containers) {
    const container = wire.containers.find((c) => c.name === containerReport.name);
    if (container !== undefined && applyContainer(container, containerReport)) changed = true;
  }
  if (report.pullStartedAt !== undefined && wire.pullStartedAt === undefined) {
    wire.pullStartedAt = report.pullStartedAt;
    changed = true;
  }
  if (report.pullStoppedAt !== undefined && wire.pullStoppedAt === undefined) {
    wire.pullStoppedAt = report.pullStoppedAt;
    changed = true;
  }
  // When the task's containers stopped, before the agent released its network (ECS's executionStoppedAt).
  if (
    report.executionStoppedAt !== undefined &&
    wire.executionStoppedAt === undefined &&
    statusRank(report.lastStatus) >= statusRank("DEACTIVATING")
  ) {
    wire.executionStoppedAt = report.executionStoppedAt;
    changed = true;
  }
  if (report.privateIpv4Address !== undefined && applyInterface(wire, report, report.privateIpv4Address))
    changed = true;
  if (statusRank(report.lastStatus) > statusRank(wire.lastStatus)) {
    // The status moves: the task changed whatever else does.
    changed = true;
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
  const health = taskHealth(record);
  if (wire.healthStatus !== health) {
    wire.healthStatus = health;
    changed = true;
  }
  if (!changed) return false;
  wire.version++;
  return true;
}

export function containerWire(
  taskArn: string,
  container: AssignedContainer,
  containerArn = newContainerArn(taskArn),
): ContainerWire {
  const wire: ContainerWire = {
    containerArn,
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
