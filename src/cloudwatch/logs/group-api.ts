import { z } from "zod";
import { decodeToken, encodeToken } from "../../aws/pagination.ts";
import type { Operation } from "../../aws/service.ts";
import { putTags } from "../../aws/tags.ts";
import { parseInput } from "../../aws/validate.ts";
import type { Store } from "../../store/store.ts";
import { GROUP_EXISTS, INVALID_NEXT_TOKEN, InvalidParameter, ResourceAlreadyExists } from "./errors.ts";
import {
  checkNewGroupName,
  deleteGroup,
  findGroup,
  insertGroup,
  listGroups,
  requireGroup,
  setRetention,
} from "./groups.ts";
import {
  DescribeLimit,
  LogGroupClass,
  LogGroupName,
  LogGroupNamePattern,
  NextToken,
  RetentionInDays,
  TagMap,
} from "./shapes.ts";
import { checkTags } from "./tag-api.ts";
import { groupShape, scopeOf, tagsFromMap } from "./wire.ts";

const CreateLogGroupInput = z.object({
  logGroupName: LogGroupName,
  kmsKeyId: z.string().max(256).optional(),
  tags: TagMap.optional(),
  logGroupClass: LogGroupClass.optional(),
});

const LogGroupInput = z.object({ logGroupName: LogGroupName });

const DescribeLogGroupsInput = z.object({
  logGroupNamePrefix: LogGroupName.optional(),
  logGroupNamePattern: LogGroupNamePattern.optional(),
  logGroupClass: LogGroupClass.optional(),
  nextToken: NextToken.optional(),
  limit: DescribeLimit.optional(),
});

const PutRetentionPolicyInput = z.object({ logGroupName: LogGroupName, retentionInDays: RetentionInDays });

/** CreateLogGroup, DeleteLogGroup, DescribeLogGroups, PutRetentionPolicy, DeleteRetentionPolicy. */
export function groupOperations(store: Store): Record<string, Operation> {
  return {
    async CreateLogGroup(raw, ctx) {
      const input = parseInput(CreateLogGroupInput, raw, InvalidParameter);
      checkNewGroupName(input.logGroupName);
      const tags = tagsFromMap(input.tags ?? {});
      checkTags(tags, []);
      const scope = scopeOf(ctx);
      await store.transaction(async (tx) => {
        if ((await findGroup(tx, scope, input.logGroupName)) !== undefined) {
          throw ResourceAlreadyExists(GROUP_EXISTS);
        }
        const group = await insertGroup(tx, scope, {
          name: input.logGroupName,
          logGroupClass: input.logGroupClass ?? "STANDARD",
          kmsKeyId: input.kmsKeyId ?? null,
          createdAt: ctx.now.getTime(),
        });
        await putTags(tx, group.arn, tags);
      });
      return {};
    },

    async DeleteLogGroup(raw, ctx) {
      const input = parseInput(LogGroupInput, raw, InvalidParameter);
      await store.transaction(async (tx) => {
        await deleteGroup(tx, await requireGroup(tx, scopeOf(ctx), input.logGroupName));
      });
      return {};
    },

    async DescribeLogGroups(raw, ctx) {
      const input = parseInput(DescribeLogGroupsInput, raw, InvalidParameter);
      if (input.logGroupNamePrefix !== undefined && input.logGroupNamePattern !== undefined) {
        throw InvalidParameter(
          "LogGroupNamePrefix and LogGroupNamePattern are mutually exclusive parameters.",
        );
      }
      const limit = input.limit ?? 50;
      const after = decodeToken(input.nextToken, () => InvalidParameter(INVALID_NEXT_TOKEN));
      const pattern = input.logGroupNamePattern === "" ? undefined : input.logGroupNamePattern;
      const groups = await store.read((tx) =>
        listGroups(tx, scopeOf(ctx), {
          prefix: input.logGroupNamePrefix,
          pattern,
          logGroupClass: input.logGroupClass,
          after,
          limit,
        }),
      );
      const page = groups.slice(0, limit);
      const logGroups = page.map((group) => groupShape(group, pattern !== undefined));
      const last = page[page.length - 1];
      return groups.length > limit && last !== undefined
        ? { logGroups, nextToken: encodeToken(last.name) }
        : { logGroups };
    },

    async PutRetentionPolicy(raw, ctx) {
      const input = parseInput(PutRetentionPolicyInput, raw, InvalidParameter);
      await store.transaction(async (tx) => {
        const group = await requireGroup(tx, scopeOf(ctx), input.logGroupName);
        await setRetention(tx, group, input.retentionInDays);
      });
      return {};
    },

    async DeleteRetentionPolicy(raw, ctx) {
      const input = parseInput(LogGroupInput, raw, InvalidParameter);
      await store.transaction(async (tx) => {
        const group = await requireGroup(tx, scopeOf(ctx), input.logGroupName);
        await setRetention(tx, group, null);
      });
      return {};
    },
  };
}
