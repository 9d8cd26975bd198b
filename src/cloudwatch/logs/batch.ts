/**
 * PutLogEvents' rules for a batch, as pure functions of the batch, the
 * clock and the group's retention: what fails the whole call, and which
 * events are set aside into `rejectedLogEventsInfo`.
 */
import { InvalidParameter } from "./errors.ts";

export interface LogEventInput {
  timestamp: number;
  message: string;
}

export const MAX_BATCH_EVENTS = 10_000;
export const MAX_BATCH_BYTES = 1_048_576;
/** What the service adds to each message when it sizes a batch. */
export const EVENT_OVERHEAD_BYTES = 26;

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** Events older than this are too old. */
export const MAX_AGE_MS = 14 * DAY_MS;
/** Events further in the future than this are too new. */
export const MAX_FUTURE_MS = 2 * HOUR_MS;
/** The accepted events of one batch may span at most this. */
export const MAX_SPAN_MS = DAY_MS;

/** Indexes into the batch, in the service's wire names (end indexes exclusive, start inclusive). */
export interface RejectedInfo {
  tooOldLogEventEndIndex?: number;
  tooNewLogEventStartIndex?: number;
  expiredLogEventEndIndex?: number;
}

export interface BatchPlan {
  /** The events to store, in order. */
  accepted: LogEventInput[];
  /** Absent when every event was accepted. */
  rejected?: RejectedInfo;
}

export function messageBytes(message: string): number {
  return Buffer.byteLength(message, "utf8");
}

/** Fails the call for a batch the service refuses whole: too many events, too many bytes, out of order. */
export function checkBatch(events: LogEventInput[]): void {
  if (events.length > MAX_BATCH_EVENTS) {
    throw InvalidParameter(
      `1 validation error detected: Value at 'logEvents' failed to satisfy constraint: Member must have length less than or equal to ${MAX_BATCH_EVENTS}`,
    );
  }
  let bytes = 0;
  for (const event of events) bytes += messageBytes(event.message) + EVENT_OVERHEAD_BYTES;
  if (bytes > MAX_BATCH_BYTES) {
    throw InvalidParameter(`Upload too large: ${bytes} bytes exceeds limit of ${MAX_BATCH_BYTES}`);
  }
  for (let i = 1; i < events.length; i++) {
    const previous = events[i - 1];
    const current = events[i];
    if (previous !== undefined && current !== undefined && current.timestamp < previous.timestamp) {
      throw InvalidParameter("Log events in a single PutLogEvents request must be in chronological order.");
    }
  }
}

/** Whether an event is young enough, old enough, and inside the group's retention. */
export interface EventAge {
  tooOld: boolean;
  expired: boolean;
  tooNew: boolean;
}

export function ageOf(timestamp: number, now: number, retentionInDays: number | null): EventAge {
  return {
    tooOld: timestamp < now - MAX_AGE_MS,
    expired: retentionInDays !== null && timestamp < now - retentionInDays * DAY_MS,
    tooNew: timestamp > now + MAX_FUTURE_MS,
  };
}

export function isAcceptable(age: EventAge): boolean {
  return !age.tooOld && !age.expired && !age.tooNew;
}

/**
 * Splits a chronological batch into the events to store and the indexes of
 * those set aside: older than 14 days (too old), older than the group's
 * retention (expired), more than 2 hours ahead (too new). Fails when the
 * accepted events span more than 24 hours, as the service does.
 */
export function planBatch(events: LogEventInput[], now: number, retentionInDays: number | null): BatchPlan {
  let tooOld = 0;
  let expired = 0;
  let tooNewStart: number | undefined;
  const accepted: LogEventInput[] = [];
  events.forEach((event, index) => {
    const age = ageOf(event.timestamp, now, retentionInDays);
    if (age.tooOld) tooOld = index + 1;
    if (age.expired) expired = index + 1;
    if (age.tooNew && tooNewStart === undefined) tooNewStart = index;
    if (isAcceptable(age)) accepted.push(event);
  });
  const first = accepted[0];
  const last = accepted[accepted.length - 1];
  if (first !== undefined && last !== undefined && last.timestamp - first.timestamp > MAX_SPAN_MS) {
    throw InvalidParameter(
      "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.",
    );
  }
  const rejected: RejectedInfo = {};
  if (tooOld > 0) rejected.tooOldLogEventEndIndex = tooOld;
  if (tooNewStart !== undefined) rejected.tooNewLogEventStartIndex = tooNewStart;
  if (expired > 0) rejected.expiredLogEventEndIndex = expired;
  return Object.keys(rejected).length === 0 ? { accepted } : { accepted, rejected };
}
