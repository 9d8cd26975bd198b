import type { RequestContext } from "../../aws/service.ts";
import type { Tag } from "../../aws/tags.ts";
import type { StoredEvent } from "./events.ts";
import type { LogGroupRecord, Scope } from "./groups.ts";
import { type LogStreamRecord, logStreamArn, sequenceToken } from "./streams.ts";

/** The service's wire shapes, built in one place. Timestamps are epoch milliseconds. */

export function scopeOf(ctx: RequestContext): Scope {
  return { region: ctx.region, accountId: ctx.accountId };
}

/** The `LogGroup` shape; with a name pattern the service returns only the name, ARN and creation time. */
export function groupShape(group: LogGroupRecord, namesOnly = false): Record<string, unknown> {
  const shape: Record<string, unknown> = {
    logGroupName: group.name,
    creationTime: group.createdAt,
    arn: `${group.arn}:*`,
  };
  if (namesOnly) return shape;
  if (group.retentionInDays !== null) shape.retentionInDays = group.retentionInDays;
  shape.metricFilterCount = 0;
  shape.storedBytes = group.storedBytes;
  if (group.kmsKeyId !== null) shape.kmsKeyId = group.kmsKeyId;
  shape.logGroupClass = group.logGroupClass;
  shape.logGroupArn = group.arn;
  return shape;
}

/** The `LogStream` shape; `storedBytes` is always 0, as the service reports it for streams. */
export function streamShape(group: LogGroupRecord, stream: LogStreamRecord): Record<string, unknown> {
  const shape: Record<string, unknown> = { logStreamName: stream.name, creationTime: stream.createdAt };
  if (stream.firstEventTimestamp !== null) shape.firstEventTimestamp = stream.firstEventTimestamp;
  if (stream.lastEventTimestamp !== null) shape.lastEventTimestamp = stream.lastEventTimestamp;
  if (stream.lastIngestionTime !== null) shape.lastIngestionTime = stream.lastIngestionTime;
  if (stream.uploads > 0) shape.uploadSequenceToken = sequenceToken(stream.uploads);
  shape.arn = logStreamArn(group, stream.name);
  shape.storedBytes = 0;
  return shape;
}

/** An event's id, unique within its group: 56 digits, like the service's. */
export function eventId(event: StoredEvent): string {
  return `${String(event.timestamp).padStart(28, "0")}${String(event.seq).padStart(28, "0")}`;
}

export function outputEvent(event: StoredEvent): Record<string, unknown> {
  return { timestamp: event.timestamp, message: event.message, ingestionTime: event.ingestionTime };
}

export function tagsFromMap(tags: Record<string, string>): Tag[] {
  return Object.entries(tags).map(([key, value]) => ({ key, value }));
}

export function tagsToMap(tags: Tag[]): Record<string, string> {
  return Object.fromEntries(tags.map((tag) => [tag.key, tag.value]));
}
