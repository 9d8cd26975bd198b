import type { SqlValue, Tx } from "../../store/store.ts";
import { ResourceNotFound, STREAM_NOT_FOUND } from "./errors.ts";
import type { LogGroupRecord } from "./groups.ts";

/** A log stream as stored, with what its events add up to. */
export interface LogStreamRecord {
  id: number;
  groupId: number;
  name: string;
  createdAt: number;
  firstEventTimestamp: number | null;
  lastEventTimestamp: number | null;
  lastIngestionTime: number | null;
  /** How many PutLogEvents calls it has taken; the sequence tokens count these. */
  uploads: number;
  storedBytes: number;
}

interface StreamRow {
  [column: string]: string | number | null;
  id: number;
  group_id: number;
  name: string;
  created_at: number;
  first_event_ts: number | null;
  last_event_ts: number | null;
  last_ingestion_time: number | null;
  uploads: number;
  stored_bytes: number;
}

function fromRow(row: StreamRow): LogStreamRecord {
  return {
    id: row.id,
    groupId: row.group_id,
    name: row.name,
    createdAt: row.created_at,
    firstEventTimestamp: row.first_event_ts,
    lastEventTimestamp: row.last_event_ts,
    lastIngestionTime: row.last_ingestion_time,
    uploads: row.uploads,
    storedBytes: row.stored_bytes,
  };
}

export function logStreamArn(group: LogGroupRecord, name: string): string {
  return `${group.arn}:log-stream:${name}`;
}

/** A sequence token as the service prints them: 56 digits. */
export function sequenceToken(uploads: number): string {
  return String(uploads).padStart(56, "0");
}

export async function findStream(
  tx: Tx,
  group: LogGroupRecord,
  name: string,
): Promise<LogStreamRecord | undefined> {
  const row = await tx.get<StreamRow>(
    "SELECT * FROM logs_streams WHERE group_id = ? AND name = ?",
    group.id,
    name,
  );
  return row === undefined ? undefined : fromRow(row);
}

/** The stream, or the service's ResourceNotFoundException. */
export async function requireStream(tx: Tx, group: LogGroupRecord, name: string): Promise<LogStreamRecord> {
  const stream = await findStream(tx, group, name);
  if (stream === undefined) throw ResourceNotFound(STREAM_NOT_FOUND);
  return stream;
}

/** Inserts a stream that the caller has checked does not exist. */
export async function insertStream(
  tx: Tx,
  group: LogGroupRecord,
  name: string,
  createdAt: number,
): Promise<LogStreamRecord> {
  const last = await tx.get<{ id: number | null }>("SELECT MAX(id) AS id FROM logs_streams");
  const record: LogStreamRecord = {
    id: (last?.id ?? 0) + 1,
    groupId: group.id,
    name,
    createdAt,
    firstEventTimestamp: null,
    lastEventTimestamp: null,
    lastIngestionTime: null,
    uploads: 0,
    storedBytes: 0,
  };
  await tx.run(
    `INSERT INTO logs_streams (id, group_id, name, created_at, first_event_ts, last_event_ts,
       last_ingestion_time, uploads, stored_bytes)
     VALUES (?, ?, ?, ?, NULL, NULL, NULL, 0, 0)`,
    record.id,
    group.id,
    name,
    createdAt,
  );
  return record;
}

/** Deletes a stream and its events; the group stops counting their bytes. */
export async function deleteStream(tx: Tx, stream: LogStreamRecord): Promise<void> {
  await tx.run("DELETE FROM logs_events WHERE group_id = ? AND stream_id = ?", stream.groupId, stream.id);
  await tx.run("DELETE FROM logs_streams WHERE id = ?", stream.id);
  await tx.run(
    "UPDATE logs_groups SET stored_bytes = stored_bytes - ? WHERE id = ?",
    stream.storedBytes,
    stream.groupId,
  );
}

export interface StreamListing {
  orderBy: "LogStreamName" | "LastEventTime";
  descending: boolean;
  prefix?: string | undefined;
  /** Continue after this position (as `streamPosition` gives it). */
  after?: StreamPosition | undefined;
  limit: number;
}

/** Where a stream sits in a listing: its sort key, and its name to break ties. */
export interface StreamPosition {
  key: number;
  name: string;
}

/** The sort key of a stream under an ordering; streams without events sort as time 0. */
export function streamPosition(stream: LogStreamRecord, orderBy: StreamListing["orderBy"]): StreamPosition {
  return { key: orderBy === "LastEventTime" ? (stream.lastEventTimestamp ?? 0) : 0, name: stream.name };
}

/** A group's streams in the listing's order, at most `limit` + 1. */
export async function listStreams(
  tx: Tx,
  group: LogGroupRecord,
  listing: StreamListing,
): Promise<LogStreamRecord[]> {
  const byTime = listing.orderBy === "LastEventTime";
  const direction = listing.descending ? "DESC" : "ASC";
  const beyond = listing.descending ? "<" : ">";
  const clauses = ["group_id = ?"];
  const params: SqlValue[] = [group.id];
  if (listing.prefix !== undefined) {
    clauses.push("substr(name, 1, length(?)) = ?");
    params.push(listing.prefix, listing.prefix);
  }
  const after = listing.after;
  if (after !== undefined && byTime) {
    clauses.push(`(COALESCE(last_event_ts, 0), name) ${beyond} (?, ?)`);
    params.push(after.key, after.name);
  } else if (after !== undefined) {
    clauses.push(`name ${beyond} ?`);
    params.push(after.name);
  }
  const order = byTime ? `COALESCE(last_event_ts, 0) ${direction}, name ${direction}` : `name ${direction}`;
  const rows = await tx.all<StreamRow>(
    `SELECT * FROM logs_streams WHERE ${clauses.join(" AND ")} ORDER BY ${order} LIMIT ?`,
    ...params,
    listing.limit + 1,
  );
  return rows.map(fromRow);
}

/** The ids of a group's streams named in `names`, or starting with `prefix`. */
export async function streamIds(
  tx: Tx,
  group: LogGroupRecord,
  selection: { names?: string[] | undefined; prefix?: string | undefined },
): Promise<Map<number, string>> {
  if (selection.names !== undefined && selection.names.length === 0) return new Map();
  const rows =
    selection.names !== undefined
      ? await tx.all<{ id: number; name: string }>(
          `SELECT id, name FROM logs_streams WHERE group_id = ? AND name IN (${selection.names.map(() => "?").join(", ")})`,
          group.id,
          ...selection.names,
        )
      : await tx.all<{ id: number; name: string }>(
          "SELECT id, name FROM logs_streams WHERE group_id = ? AND (? = '' OR substr(name, 1, length(?)) = ?)",
          group.id,
          selection.prefix ?? "",
          selection.prefix ?? "",
          selection.prefix ?? "",
        );
  return new Map(rows.map((row) => [row.id, row.name]));
}
