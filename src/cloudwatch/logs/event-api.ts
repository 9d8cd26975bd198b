import { z } from "zod";
import { decodeToken, encodeToken } from "../../aws/pagination.ts";
import type { Operation } from "../../aws/service.ts";
import { parseInput } from "../../aws/validate.ts";
import type { Store, Tx } from "../../store/store.ts";
import { checkBatch, planBatch } from "./batch.ts";
import { INVALID_NEXT_TOKEN, InvalidParameter } from "./errors.ts";
import {
  expireGroupEvents,
  pageBounds,
  readStream,
  type StoredEvent,
  scanGroup,
  storeEvents,
} from "./events.ts";
import { compileFilterPattern } from "./filter-pattern.ts";
import { groupNameOf, type LogGroupRecord, requireGroup } from "./groups.ts";
import {
  EventsLimit,
  GroupReference,
  InputLogEvent,
  LogGroupName,
  LogStreamName,
  NextToken,
  Timestamp,
} from "./shapes.ts";
import { requireStream, sequenceToken, streamIds } from "./streams.ts";
import { type Boundary, decodeEventToken, encodeEventToken, START } from "./tokens.ts";
import { eventId, outputEvent, scopeOf } from "./wire.ts";

const PutLogEventsInput = z.object({
  logGroupName: LogGroupName,
  logStreamName: LogStreamName,
  // At most 10,000 events; checkBatch says so without echoing them all back.
  logEvents: z.array(InputLogEvent).min(1),
  sequenceToken: z.string().min(1).optional(),
});

const GetLogEventsInput = z.object({
  ...GroupReference,
  logStreamName: LogStreamName,
  startTime: Timestamp.optional(),
  endTime: Timestamp.optional(),
  nextToken: NextToken.optional(),
  limit: EventsLimit.optional(),
  startFromHead: z.boolean().optional(),
  unmask: z.boolean().optional(),
});

const FilterLogEventsInput = z.object({
  ...GroupReference,
  logStreamNames: z.array(LogStreamName).min(1).max(100).optional(),
  logStreamNamePrefix: LogStreamName.optional(),
  startTime: Timestamp.optional(),
  endTime: Timestamp.optional(),
  filterPattern: z.string().max(1024).optional(),
  nextToken: NextToken.optional(),
  limit: EventsLimit.optional(),
  interleaved: z.boolean().optional(),
  unmask: z.boolean().optional(),
});

const MAX_EVENTS_PER_PAGE = 10_000;
/** How many events one FilterLogEvents call examines at most before answering with a nextToken. */
const FILTER_SCAN_BUDGET = 100_000;

/** FilterLogEvents' nextToken: the position of the last event examined. */
function encodeScanToken(at: Boundary): string {
  return encodeToken(`${at.timestamp}:${at.seq}`);
}

function decodeScanToken(token: string | undefined): Boundary | undefined {
  const invalid = () => InvalidParameter(INVALID_NEXT_TOKEN);
  const text = decodeToken(token, invalid);
  if (text === undefined) return undefined;
  const match = /^(\d+):(\d+)$/.exec(text);
  const at = { timestamp: Number(match?.[1]), seq: Number(match?.[2]) };
  if (match === null || !Number.isSafeInteger(at.timestamp) || !Number.isSafeInteger(at.seq)) throw invalid();
  return at;
}

async function namesOf(tx: Tx, group: LogGroupRecord, events: StoredEvent[]): Promise<Map<number, string>> {
  const ids = [...new Set(events.map((event) => event.streamId))];
  if (ids.length === 0) return new Map();
  const rows = await tx.all<{ id: number; name: string }>(
    `SELECT id, name FROM logs_streams WHERE group_id = ? AND id IN (${ids.map(() => "?").join(", ")})`,
    group.id,
    ...ids,
  );
  return new Map(rows.map((row) => [row.id, row.name]));
}

/** PutLogEvents, GetLogEvents, FilterLogEvents. */
export function eventOperations(store: Store): Record<string, Operation> {
  return {
    async PutLogEvents(raw, ctx) {
      const input = parseInput(PutLogEventsInput, raw, InvalidParameter);
      checkBatch(input.logEvents);
      const now = ctx.now.getTime();
      // The sequence token is accepted and ignored, as the service now does.
      return store.transaction(async (tx) => {
        const group = await requireGroup(tx, scopeOf(ctx), input.logGroupName);
        const stream = await requireStream(tx, group, input.logStreamName);
        const plan = planBatch(input.logEvents, now, group.retentionInDays);
        await expireGroupEvents(tx, group, now);
        const uploads = await storeEvents(tx, group, stream, plan.accepted, now);
        const output: Record<string, unknown> = { nextSequenceToken: sequenceToken(uploads) };
        if (plan.rejected !== undefined) output.rejectedLogEventsInfo = plan.rejected;
        return output;
      });
    },

    async GetLogEvents(raw, ctx) {
      const input = parseInput(GetLogEventsInput, raw, InvalidParameter);
      const scope = scopeOf(ctx);
      const name = groupNameOf(scope, input);
      const token = input.nextToken === undefined ? undefined : decodeEventToken(input.nextToken);
      if (input.nextToken !== undefined && token === undefined) throw InvalidParameter(INVALID_NEXT_TOKEN);
      const direction = token?.direction ?? (input.startFromHead === true ? "f" : "b");
      const page = await store.read(async (tx) => {
        const group = await requireGroup(tx, scope, name);
        const stream = await requireStream(tx, group, input.logStreamName);
        return readStream(tx, group, stream, {
          direction,
          from: token?.at,
          startTime: input.startTime,
          endTime: input.endTime,
          limit: input.limit ?? MAX_EVENTS_PER_PAGE,
        });
      });
      const bounds = pageBounds(page);
      // An empty page leaves the caller where it was: the token passed in comes back unchanged.
      const at = token?.at ?? START;
      const forward = bounds?.last ?? at;
      const backward = bounds?.first ?? at;
      return {
        events: page.map(outputEvent),
        nextForwardToken:
          bounds === undefined && token?.direction === "f" ? input.nextToken : encodeEventToken("f", forward),
        nextBackwardToken:
          bounds === undefined && token?.direction === "b"
            ? input.nextToken
            : encodeEventToken("b", backward),
      };
    },

    async FilterLogEvents(raw, ctx) {
      const input = parseInput(FilterLogEventsInput, raw, InvalidParameter);
      const scope = scopeOf(ctx);
      const name = groupNameOf(scope, input);
      if (input.logStreamNames !== undefined && input.logStreamNamePrefix !== undefined) {
        throw InvalidParameter("logStreamNames and logStreamNamePrefix are mutually exclusive parameters.");
      }
      const matches = compileFilterPattern(input.filterPattern ?? "");
      const resumeAfter = decodeScanToken(input.nextToken);
      return store.read(async (tx) => {
        const group = await requireGroup(tx, scope, name);
        const selected =
          input.logStreamNames === undefined && input.logStreamNamePrefix === undefined
            ? undefined
            : await streamIds(tx, group, { names: input.logStreamNames, prefix: input.logStreamNamePrefix });
        const result = await scanGroup(tx, group, {
          after: resumeAfter,
          startTime: input.startTime,
          endTime: input.endTime,
          streamIds: selected === undefined ? undefined : [...selected.keys()],
          matches,
          limit: input.limit ?? MAX_EVENTS_PER_PAGE,
          budget: FILTER_SCAN_BUDGET,
        });
        const names = selected ?? (await namesOf(tx, group, result.events));
        const events = result.events.map((event) => ({
          logStreamName: names.get(event.streamId) ?? "",
          ...outputEvent(event),
          eventId: eventId(event),
        }));
        const output: Record<string, unknown> = { events, searchedLogStreams: [] };
        if (result.resumeAfter !== undefined) output.nextToken = encodeScanToken(result.resumeAfter);
        return output;
      });
    },
  };
}
