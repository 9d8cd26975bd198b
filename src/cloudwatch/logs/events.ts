import type { SqlValue, Store, Tx } from "../../store/store.ts";
import { EVENT_OVERHEAD_BYTES, type LogEventInput, messageBytes } from "./batch.ts";
import type { EventMatcher } from "./filter-pattern.ts";
import { groupById, groupsWithRetention, type LogGroupRecord } from "./groups.ts";
import type { LogStreamRecord } from "./streams.ts";
import { after, type Boundary, before, type Direction } from "./tokens.ts";

/** A stored event. Within a group, events order by (timestamp, seq). */
export interface StoredEvent {
  streamId: number;
  seq: number;
  timestamp: number;
  ingestionTime: number;
  message: string;
}

interface EventRow {
  [column: string]: string | number;
  stream_id: number;
  seq: number;
  event_time: number;
  ingestion_time: number;
  message: string;
}

function fromRow(row: EventRow): StoredEvent {
  return {
    streamId: row.stream_id,
    seq: row.seq,
    timestamp: row.event_time,
    ingestionTime: row.ingestion_time,
    message: row.message,
  };
}

/** A WHERE clause built from the conditions a query has, so each one can use the indexes. */
class Conditions {
  readonly clauses: string[];
  readonly params: SqlValue[];

  constructor(clause: string, ...params: SqlValue[]) {
    this.clauses = [clause];
    this.params = params;
  }

  add(clause: string, ...params: SqlValue[]): void {
    this.clauses.push(clause);
    this.params.push(...params);
  }

  get sql(): string {
    return this.clauses.join(" AND ");
  }
}

/** A response carries at most this many bytes of events, as the service's 1 MB pages. */
export const MAX_PAGE_BYTES = 1_048_576;

function eventBytes(event: StoredEvent): number {
  return messageBytes(event.message) + EVENT_OVERHEAD_BYTES;
}

/**
 * Stores accepted events (chronological) in a stream and brings the
 * stream's and group's summaries up to date. Counts one upload, for the
 * sequence token, even when no event was accepted. Returns the new count.
 */
export async function storeEvents(
  tx: Tx,
  group: LogGroupRecord,
  stream: LogStreamRecord,
  events: LogEventInput[],
  ingestionTime: number,
): Promise<number> {
  const current = await tx.get<{ next_seq: number }>(
    "SELECT next_seq FROM logs_groups WHERE id = ?",
    group.id,
  );
  let seq = current?.next_seq ?? group.nextSeq;
  let bytes = 0;
  for (const event of events) {
    await tx.run(
      `INSERT INTO logs_events (group_id, stream_id, seq, event_time, ingestion_time, message)
       VALUES (?, ?, ?, ?, ?, ?)`,
      group.id,
      stream.id,
      seq,
      event.timestamp,
      ingestionTime,
      event.message,
    );
    seq++;
    bytes += messageBytes(event.message);
  }
  await tx.run(
    "UPDATE logs_groups SET next_seq = ?, stored_bytes = stored_bytes + ? WHERE id = ?",
    seq,
    bytes,
    group.id,
  );
  const first = events[0];
  const last = events[events.length - 1];
  await tx.run(
    `UPDATE logs_streams SET uploads = uploads + 1, stored_bytes = stored_bytes + ?,
       first_event_ts = CASE WHEN ? = 0 THEN first_event_ts
         WHEN first_event_ts IS NULL OR first_event_ts > ? THEN ? ELSE first_event_ts END,
       last_event_ts = CASE WHEN ? = 0 THEN last_event_ts
         WHEN last_event_ts IS NULL OR last_event_ts < ? THEN ? ELSE last_event_ts END,
       last_ingestion_time = CASE WHEN ? = 0 THEN last_ingestion_time ELSE ? END
     WHERE id = ?`,
    bytes,
    events.length,
    first?.timestamp ?? 0,
    first?.timestamp ?? 0,
    events.length,
    last?.timestamp ?? 0,
    last?.timestamp ?? 0,
    events.length,
    ingestionTime,
    stream.id,
  );
  return stream.uploads + 1;
}

export interface StreamRead {
  /** Read forwards from or backwards to this boundary; absent: from the head or the tail. */
  direction: Direction;
  from?: Boundary | undefined;
  /** Events at or after this time (inclusive). */
  startTime?: number | undefined;
  /** Events before this time (exclusive), as GetLogEvents counts it. */
  endTime?: number | undefined;
  limit: number;
}

/**
 * One GetLogEvents page of a stream, in chronological order: forwards from
 * a boundary (or the head), or the latest events before a boundary (or the
 * tail). Stops early at 1 MB of events, keeping at least one.
 */
export async function readStream(
  tx: Tx,
  group: LogGroupRecord,
  stream: LogStreamRecord,
  read: StreamRead,
): Promise<StoredEvent[]> {
  const forward = read.direction === "f";
  const where = new Conditions("group_id = ? AND stream_id = ?", group.id, stream.id);
  if (read.from !== undefined) {
    where.add(`(event_time, seq) ${forward ? ">=" : "<"} (?, ?)`, read.from.timestamp, read.from.seq);
  }
  if (read.startTime !== undefined) where.add("event_time >= ?", read.startTime);
  if (read.endTime !== undefined) where.add("event_time < ?", read.endTime);
  const order = forward ? "ASC" : "DESC";
  const rows = await tx.all<EventRow>(
    `SELECT stream_id, seq, event_time, ingestion_time, message FROM logs_events WHERE ${where.sql}
     ORDER BY event_time ${order}, seq ${order} LIMIT ?`,
    ...where.params,
    read.limit,
  );
  const page: StoredEvent[] = [];
  let bytes = 0;
  for (const row of rows) {
    const event = fromRow(row);
    bytes += eventBytes(event);
    if (bytes > MAX_PAGE_BYTES && page.length > 0) break;
    page.push(event);
  }
  return forward ? page : page.reverse();
}

/** The boundaries around a page, for its next tokens. */
export function pageBounds(page: StoredEvent[]): { first: Boundary; last: Boundary } | undefined {
  const first = page[0];
  const last = page[page.length - 1];
  if (first === undefined || last === undefined) return undefined;
  return { first: before(first), last: after(last) };
}

export interface GroupScan {
  /** Continue after this event position. */
  after?: Boundary | undefined;
  startTime?: number | undefined;
  /** Inclusive, as FilterLogEvents counts it. */
  endTime?: number | undefined;
  /** Only these streams; undefined for all of the group's. */
  streamIds?: number[] | undefined;
  matches: EventMatcher;
  limit: number;
  /** Stop after examining this many events, so one request's work stays bounded. */
  budget: number;
}

export interface ScanResult {
  events: StoredEvent[];
  /** Where the next page continues; undefined when the scan reached the end. */
  resumeAfter?: Boundary;
}

const SCAN_BATCH = 1000;

/**
 * Events of a group in (timestamp, seq) order that match, across its
 * streams: FilterLogEvents' interleaved page. Stops at `limit` matches,
 * 1 MB of events, or `budget` events examined, and says where to resume.
 */
export async function scanGroup(tx: Tx, group: LogGroupRecord, scan: GroupScan): Promise<ScanResult> {
  const events: StoredEvent[] = [];
  let bytes = 0;
  let examined = 0;
  let cursor = scan.after;
  const streams = scan.streamIds;
  if (streams !== undefined && streams.length === 0) return { events };
  for (;;) {
    const where = new Conditions("group_id = ?", group.id);
    if (cursor !== undefined) where.add("(event_time, seq) > (?, ?)", cursor.timestamp, cursor.seq);
    if (scan.startTime !== undefined) where.add("event_time >= ?", scan.startTime);
    if (scan.endTime !== undefined) where.add("event_time <= ?", scan.endTime);
    if (streams !== undefined) where.add(`stream_id IN (${streams.map(() => "?").join(", ")})`, ...streams);
    const rows = await tx.all<EventRow>(
      `SELECT stream_id, seq, event_time, ingestion_time, message FROM logs_events WHERE ${where.sql}
       ORDER BY event_time, seq LIMIT ?`,
      ...where.params,
      SCAN_BATCH,
    );
    for (const row of rows) {
      const event = fromRow(row);
      if (scan.matches(event.message)) {
        const size = eventBytes(event);
        // A full page ends before this event; `cursor` is the event examined just before it.
        if (bytes + size > MAX_PAGE_BYTES && cursor !== undefined && events.length > 0) {
          return { events, resumeAfter: cursor };
        }
        events.push(event);
        bytes += size;
      }
      cursor = { timestamp: event.timestamp, seq: event.seq };
      examined++;
      if (events.length >= scan.limit || examined >= scan.budget) {
        return { events, resumeAfter: cursor };
      }
    }
    if (rows.length < SCAN_BATCH) return { events };
  }
}

/**
 * Deletes a group's events older than its retention as of `now`, keeping
 * the stored-bytes summaries right; returns how many. Level-triggered and
 * idempotent: a second run with the same clock deletes nothing.
 */
export async function expireGroupEvents(tx: Tx, group: LogGroupRecord, now: number): Promise<number> {
  if (group.retentionInDays === null) return 0;
  const cutoff = now - group.retentionInDays * 86_400_000;
  const rows = await tx.all<{ stream_id: number; message: string }>(
    "SELECT stream_id, message FROM logs_events WHERE group_id = ? AND event_time < ?",
    group.id,
    cutoff,
  );
  if (rows.length === 0) return 0;
  const bytesPerStream = new Map<number, number>();
  let total = 0;
  for (const row of rows) {
    const bytes = messageBytes(row.message);
    bytesPerStream.set(row.stream_id, (bytesPerStream.get(row.stream_id) ?? 0) + bytes);
    total += bytes;
  }
  await tx.run("DELETE FROM logs_events WHERE group_id = ? AND event_time < ?", group.id, cutoff);
  for (const [streamId, bytes] of bytesPerStream) {
    await tx.run("UPDATE logs_streams SET stored_bytes = stored_bytes - ? WHERE id = ?", bytes, streamId);
  }
  await tx.run("UPDATE logs_groups SET stored_bytes = stored_bytes - ? WHERE id = ?", total, group.id);
  return rows.length;
}

/**
 * Expires every group's events past its retention, one group per
 * transaction; returns how many events were deleted. The server runs it on
 * a timer, so a group that nobody writes to still forgets old events.
 */
export async function expireAllGroups(store: Store, now: number): Promise<number> {
  const groups = await store.read((tx) => groupsWithRetention(tx));
  let total = 0;
  for (const group of groups) {
    total += await store.transaction(async (tx) => {
      // The group as it is now: it may have been deleted or had its retention changed meanwhile.
      const current = await groupById(tx, group.id);
      return current === undefined ? 0 : expireGroupEvents(tx, current, now);
    });
  }
  return total;
}
