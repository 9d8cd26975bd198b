import { z } from "zod";
import { parseInput } from "../../aws/validate.ts";
import type { Store } from "../../store/store.ts";
import { ageOf, isAcceptable, type LogEventInput } from "./batch.ts";
import { GROUP_NOT_FOUND, InvalidParameter, ResourceNotFound } from "./errors.ts";
import { expireGroupEvents, storeEvents } from "./events.ts";
import { checkNewGroupName, findGroup, insertGroup, type Scope } from "./groups.ts";
import { LogGroupName, LogStreamName } from "./shapes.ts";
import { findStream, insertStream } from "./streams.ts";

export interface AppendOptions {
  /** Create the group when it is missing (the awslogs driver's `awslogs-create-group`). */
  createGroup: boolean;
  now: Date;
}

const Names = z.object({ logGroupName: LogGroupName, logStreamName: LogStreamName });

/**
 * Appends events to a stream, creating the group (if createGroup) and the
 * stream when missing. The server side of the node agent's log shipping: no
 * SigV4 and no batch limits; events are stored in chronological order, and
 * those PutLogEvents would set aside (older than 14 days or the group's
 * retention, more than 2 hours ahead) or that are empty are dropped. Bad
 * names and a missing group (without createGroup) throw the API's errors.
 */
export async function appendLogEvents(
  store: Store,
  scope: { region: string; accountId: string },
  group: string,
  stream: string,
  events: { timestamp: number; message: string }[],
  options: AppendOptions,
): Promise<void> {
  parseInput(Names, { logGroupName: group, logStreamName: stream }, InvalidParameter);
  const now = options.now.getTime();
  const sorted: LogEventInput[] = events
    .filter((event) => event.message !== "" && Number.isSafeInteger(event.timestamp) && event.timestamp >= 0)
    .map((event) => ({ timestamp: event.timestamp, message: event.message }))
    .sort((a, b) => a.timestamp - b.timestamp);
  const where: Scope = { region: scope.region, accountId: scope.accountId };
  await store.transaction(async (tx) => {
    let record = await findGroup(tx, where, group);
    if (record === undefined && !options.createGroup) throw ResourceNotFound(GROUP_NOT_FOUND);
    if (record === undefined) {
      checkNewGroupName(group);
      record = await insertGroup(tx, where, {
        name: group,
        logGroupClass: "STANDARD",
        kmsKeyId: null,
        createdAt: now,
      });
    }
    const target = (await findStream(tx, record, stream)) ?? (await insertStream(tx, record, stream, now));
    await expireGroupEvents(tx, record, now);
    const retention = record.retentionInDays;
    const accepted = sorted.filter((event) => isAcceptable(ageOf(event.timestamp, now, retention)));
    await storeEvents(tx, record, target, accepted, now);
  });
}
