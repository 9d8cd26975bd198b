import { z } from "zod";
import { decodeToken, encodeToken } from "../../aws/pagination.ts";
import type { Operation } from "../../aws/service.ts";
import { parseInput } from "../../aws/validate.ts";
import type { Store } from "../../store/store.ts";
import { INVALID_NEXT_TOKEN, InvalidParameter, ResourceAlreadyExists, STREAM_EXISTS } from "./errors.ts";
import { groupNameOf, requireGroup } from "./groups.ts";
import { DescribeLimit, GroupReference, LogGroupName, LogStreamName, NextToken } from "./shapes.ts";
import {
  deleteStream,
  findStream,
  insertStream,
  listStreams,
  requireStream,
  type StreamListing,
  type StreamPosition,
  streamPosition,
} from "./streams.ts";
import { scopeOf, streamShape } from "./wire.ts";

const StreamInput = z.object({ logGroupName: LogGroupName, logStreamName: LogStreamName });

const DescribeLogStreamsInput = z.object({
  ...GroupReference,
  logStreamNamePrefix: LogStreamName.optional(),
  orderBy: z.enum(["LogStreamName", "LastEventTime"]).optional(),
  descending: z.boolean().optional(),
  nextToken: NextToken.optional(),
  limit: DescribeLimit.optional(),
});

/** A DescribeLogStreams token: the ordering it was issued for and the last stream's position. */
function encodeStreamToken(listing: StreamListing, position: StreamPosition): string {
  return encodeToken(JSON.stringify([listing.orderBy, listing.descending, position.key, position.name]));
}

function decodeStreamToken(token: string | undefined, listing: StreamListing): StreamPosition | undefined {
  const invalid = () => InvalidParameter(INVALID_NEXT_TOKEN);
  const text = decodeToken(token, invalid);
  if (text === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw invalid();
  }
  if (!Array.isArray(parsed) || parsed.length !== 4) throw invalid();
  const [orderBy, descending, key, name] = parsed as unknown[];
  if (orderBy !== listing.orderBy || descending !== listing.descending) throw invalid();
  if (typeof key !== "number" || typeof name !== "string") throw invalid();
  return { key, name };
}

/** CreateLogStream, DeleteLogStream, DescribeLogStreams. */
export function streamOperations(store: Store): Record<string, Operation> {
  return {
    async CreateLogStream(raw, ctx) {
      const input = parseInput(StreamInput, raw, InvalidParameter);
      await store.transaction(async (tx) => {
        const group = await requireGroup(tx, scopeOf(ctx), input.logGroupName);
        if ((await findStream(tx, group, input.logStreamName)) !== undefined) {
          throw ResourceAlreadyExists(STREAM_EXISTS);
        }
        await insertStream(tx, group, input.logStreamName, ctx.now.getTime());
      });
      return {};
    },

    async DeleteLogStream(raw, ctx) {
      const input = parseInput(StreamInput, raw, InvalidParameter);
      await store.transaction(async (tx) => {
        const group = await requireGroup(tx, scopeOf(ctx), input.logGroupName);
        await deleteStream(tx, await requireStream(tx, group, input.logStreamName));
      });
      return {};
    },

    async DescribeLogStreams(raw, ctx) {
      const input = parseInput(DescribeLogStreamsInput, raw, InvalidParameter);
      const scope = scopeOf(ctx);
      const name = groupNameOf(scope, input);
      const listing: StreamListing = {
        orderBy: input.orderBy ?? "LogStreamName",
        descending: input.descending ?? false,
        prefix: input.logStreamNamePrefix,
        limit: input.limit ?? 50,
      };
      if (listing.orderBy === "LastEventTime" && listing.prefix !== undefined) {
        throw InvalidParameter("Cannot order by LastEventTime with a logStreamNamePrefix.");
      }
      listing.after = decodeStreamToken(input.nextToken, listing);
      return store.read(async (tx) => {
        const group = await requireGroup(tx, scope, name);
        const streams = await listStreams(tx, group, listing);
        const page = streams.slice(0, listing.limit);
        const logStreams = page.map((stream) => streamShape(group, stream));
        const last = page[page.length - 1];
        return streams.length > listing.limit && last !== undefined
          ? { logStreams, nextToken: encodeStreamToken(listing, streamPosition(last, listing.orderBy)) }
          : { logStreams };
      });
    },
  };
}
