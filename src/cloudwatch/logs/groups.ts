import { formatArn, parseArn } from "../../aws/arn.ts";
import { removeAllTags } from "../../aws/tags.ts";
import type { Tx } from "../../store/store.ts";
import { GROUP_NOT_FOUND, InvalidParameter, ResourceNotFound } from "./errors.ts";
import type { LogGroupClassT } from "./shapes.ts";

/** The region and account a request, or the node agent's shipping, acts in. */
export interface Scope {
  region: string;
  accountId: string;
}

/** A log group as stored. */
export interface LogGroupRecord {
  id: number;
  name: string;
  /** The ARN without the trailing `:*`: what tagging and `logGroupIdentifier` use. */
  arn: string;
  createdAt: number;
  retentionInDays: number | null;
  logGroupClass: LogGroupClassT;
  kmsKeyId: string | null;
  storedBytes: number;
  /** The sequence number the next ingested event takes; events order by (timestamp, seq). */
  nextSeq: number;
}

interface GroupRow {
  [column: string]: string | number | null;
  id: number;
  name: string;
  arn: string;
  created_at: number;
  retention_days: number | null;
  log_group_class: string;
  kms_key_id: string | null;
  stored_bytes: number;
  next_seq: number;
}

export function logGroupArn(scope: Scope, name: string): string {
  return formatArn({
    service: "logs",
    region: scope.region,
    accountId: scope.accountId,
    resource: `log-group:${name}`,
  });
}

/**
 * The group name a `logGroupName` or `logGroupIdentifier` (a name, or an ARN
 * with or without the trailing `:*`) refers to. Exactly one must be given.
 */
export function groupNameOf(
  scope: Scope,
  reference: { logGroupName?: string | undefined; logGroupIdentifier?: string | undefined },
): string {
  const { logGroupName, logGroupIdentifier } = reference;
  if (logGroupName !== undefined && logGroupIdentifier !== undefined) {
    throw InvalidParameter("LogGroupName and LogGroupIdentifier are mutually exclusive parameters.");
  }
  if (logGroupName !== undefined) return logGroupName;
  if (logGroupIdentifier === undefined) {
    throw InvalidParameter("Either LogGroupName or LogGroupIdentifier must be specified.");
  }
  if (!logGroupIdentifier.startsWith("arn:")) return logGroupIdentifier;
  const name = groupNameOfArn(scope, logGroupIdentifier);
  if (name === undefined) throw ResourceNotFound(GROUP_NOT_FOUND);
  return name;
}

/** The group a log-group ARN of this region and account names; undefined for any other ARN. */
export function groupNameOfArn(scope: Scope, value: string): string | undefined {
  const arn = parseArn(value);
  if (arn === undefined || arn.service !== "logs" || !arn.resource.startsWith("log-group:")) return undefined;
  if (arn.region !== scope.region || arn.accountId !== scope.accountId) return undefined;
  let name = arn.resource.slice("log-group:".length);
  if (name.endsWith(":*")) name = name.slice(0, -2);
  return name === "" || name.includes(":") ? undefined : name;
}

/** CreateLogGroup's rule beyond the name pattern. */
export function checkNewGroupName(name: string): void {
  if (name.toLowerCase().startsWith("aws/")) {
    throw InvalidParameter("Log groups starting with AWS/ are reserved for AWS.");
  }
}

function fromRow(row: GroupRow): LogGroupRecord {
  const logGroupClass =
    row.log_group_class === "INFREQUENT_ACCESS" || row.log_group_class === "DELIVERY"
      ? row.log_group_class
      : "STANDARD";
  return {
    id: row.id,
    name: row.name,
    arn: row.arn,
    createdAt: row.created_at,
    retentionInDays: row.retention_days,
    logGroupClass,
    kmsKeyId: row.kms_key_id,
    storedBytes: row.stored_bytes,
    nextSeq: row.next_seq,
  };
}

export async function findGroup(tx: Tx, scope: Scope, name: string): Promise<LogGroupRecord | undefined> {
  const row = await tx.get<GroupRow>(
    "SELECT * FROM logs_groups WHERE region = ? AND account_id = ? AND name = ?",
    scope.region,
    scope.accountId,
    name,
  );
  return row === undefined ? undefined : fromRow(row);
}

/** The group, or the service's ResourceNotFoundException. */
export async function requireGroup(tx: Tx, scope: Scope, name: string): Promise<LogGroupRecord> {
  const group = await findGroup(tx, scope, name);
  if (group === undefined) throw ResourceNotFound(GROUP_NOT_FOUND);
  return group;
}

export interface NewGroup {
  name: string;
  logGroupClass: LogGroupClassT;
  kmsKeyId: string | null;
  createdAt: number;
}

/** Inserts a group that the caller has checked does not exist. */
export async function insertGroup(tx: Tx, scope: Scope, group: NewGroup): Promise<LogGroupRecord> {
  const last = await tx.get<{ id: number | null }>("SELECT MAX(id) AS id FROM logs_groups");
  const record: LogGroupRecord = {
    id: (last?.id ?? 0) + 1,
    name: group.name,
    arn: logGroupArn(scope, group.name),
    createdAt: group.createdAt,
    retentionInDays: null,
    logGroupClass: group.logGroupClass,
    kmsKeyId: group.kmsKeyId,
    storedBytes: 0,
    nextSeq: 1,
  };
  await tx.run(
    `INSERT INTO logs_groups (id, region, account_id, name, arn, created_at, retention_days, log_group_class,
       kms_key_id, stored_bytes, next_seq)
     VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, 0, 1)`,
    record.id,
    scope.region,
    scope.accountId,
    record.name,
    record.arn,
    record.createdAt,
    record.logGroupClass,
    record.kmsKeyId,
  );
  return record;
}

/** Deletes a group with its streams, events and tags. */
export async function deleteGroup(tx: Tx, group: LogGroupRecord): Promise<void> {
  await tx.run("DELETE FROM logs_events WHERE group_id = ?", group.id);
  await tx.run("DELETE FROM logs_streams WHERE group_id = ?", group.id);
  await tx.run("DELETE FROM logs_groups WHERE id = ?", group.id);
  await removeAllTags(tx, group.arn);
}

/** Every group, in any account and region, that has a retention policy (for the expiry sweep). */
export async function groupsWithRetention(tx: Tx): Promise<LogGroupRecord[]> {
  const rows = await tx.all<GroupRow>(
    "SELECT * FROM logs_groups WHERE retention_days IS NOT NULL ORDER BY id",
  );
  return rows.map(fromRow);
}

export async function groupById(tx: Tx, id: number): Promise<LogGroupRecord | undefined> {
  const row = await tx.get<GroupRow>("SELECT * FROM logs_groups WHERE id = ?", id);
  return row === undefined ? undefined : fromRow(row);
}

export async function setRetention(tx: Tx, group: LogGroupRecord, days: number | null): Promise<void> {
  await tx.run("UPDATE logs_groups SET retention_days = ? WHERE id = ?", days, group.id);
}

export interface GroupListing {
  /** Only names starting with this. */
  prefix?: string | undefined;
  /** Only names containing this (case-sensitive). */
  pattern?: string | undefined;
  logGroupClass?: LogGroupClassT | undefined;
  /** Continue after this name. */
  after?: string | undefined;
  /** At most this many, plus one to tell whether there are more. */
  limit: number;
}

/** Groups in name order (byte order, as the service's ASCII sort), at most `limit` + 1. */
export async function listGroups(tx: Tx, scope: Scope, listing: GroupListing): Promise<LogGroupRecord[]> {
  const found: LogGroupRecord[] = [];
  const batch = Math.max(listing.limit + 1, 100);
  // Every name has at least one character, so "" sorts before them all.
  let after = listing.after ?? "";
  // The substring filter runs here rather than in SQL, where case-sensitive substring search is not portable.
  for (;;) {
    const rows = await tx.all<GroupRow>(
      `SELECT * FROM logs_groups WHERE region = ? AND account_id = ? AND name > ?
         AND (? = '' OR substr(name, 1, length(?)) = ?) AND (? = '' OR log_group_class = ?)
       ORDER BY name LIMIT ?`,
      scope.region,
      scope.accountId,
      after,
      listing.prefix ?? "",
      listing.prefix ?? "",
      listing.prefix ?? "",
      listing.logGroupClass ?? "",
      listing.logGroupClass ?? "",
      batch,
    );
    for (const row of rows) {
      if (listing.pattern !== undefined && !row.name.includes(listing.pattern)) continue;
      found.push(fromRow(row));
      if (found.length > listing.limit) return found;
    }
    const last = rows[rows.length - 1];
    if (rows.length < batch || last === undefined) return found;
    after = last.name;
  }
}
