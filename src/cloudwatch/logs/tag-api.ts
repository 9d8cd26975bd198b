import { z } from "zod";
import { parseArn } from "../../aws/arn.ts";
import type { Operation, RequestContext } from "../../aws/service.ts";
import { putTags, removeTags, type Tag, tagProblem, tagsOf } from "../../aws/tags.ts";
import { parseInput } from "../../aws/validate.ts";
import type { Store, Tx } from "../../store/store.ts";
import { GROUP_NOT_FOUND, InvalidParameter, ResourceNotFound, TooManyTags } from "./errors.ts";
import { groupNameOfArn, type LogGroupRecord, requireGroup } from "./groups.ts";
import { LogGroupName, ResourceArn, TagKeys, TagMap } from "./shapes.ts";
import { scopeOf, tagsFromMap, tagsToMap } from "./wire.ts";

const MAX_TAGS = 50;

const TagResourceInput = z.object({ resourceArn: ResourceArn, tags: TagMap });
const UntagResourceInput = z.object({ resourceArn: ResourceArn, tagKeys: TagKeys });
const ListTagsForResourceInput = z.object({ resourceArn: ResourceArn });
const TagLogGroupInput = z.object({ logGroupName: LogGroupName, tags: TagMap });
const UntagLogGroupInput = z.object({ logGroupName: LogGroupName, tags: z.array(z.string()).min(1) });
const ListTagsLogGroupInput = z.object({ logGroupName: LogGroupName });

/** Checks tags to add to a resource that has `existing`: TooManyTagsException past 50, else the tag rules. */
export function checkTags(tags: Tag[], existing: Tag[]): void {
  const keys = new Set([...existing, ...tags].map((tag) => tag.key));
  if (keys.size > MAX_TAGS) throw TooManyTags(`A resource can have no more than ${MAX_TAGS} tags.`);
  const problem = tagProblem(tags);
  if (problem !== undefined) throw InvalidParameter(problem);
}

/** The log group a tagging ARN names (`arn:aws:logs:<region>:<account>:log-group:<name>`). */
async function taggedGroup(tx: Tx, ctx: RequestContext, resourceArn: string): Promise<LogGroupRecord> {
  const arn = parseArn(resourceArn);
  if (arn === undefined || arn.service !== "logs") {
    throw InvalidParameter(`The specified ARN is not a CloudWatch Logs ARN: ${resourceArn}`);
  }
  const scope = scopeOf(ctx);
  if (!arn.resource.startsWith("log-group:")) {
    throw ResourceNotFound("The specified resource does not exist.");
  }
  const name = groupNameOfArn(scope, resourceArn);
  if (name === undefined) throw ResourceNotFound(GROUP_NOT_FOUND);
  return requireGroup(tx, scope, name);
}

async function addTags(tx: Tx, group: LogGroupRecord, tags: Tag[]): Promise<void> {
  checkTags(tags, await tagsOf(tx, group.arn));
  await putTags(tx, group.arn, tags);
}

/** TagResource, UntagResource, ListTagsForResource, and the older TagLogGroup, UntagLogGroup, ListTagsLogGroup. */
export function tagOperations(store: Store): Record<string, Operation> {
  return {
    async TagResource(raw, ctx) {
      const input = parseInput(TagResourceInput, raw, InvalidParameter);
      await store.transaction(async (tx) =>
        addTags(tx, await taggedGroup(tx, ctx, input.resourceArn), tagsFromMap(input.tags)),
      );
      return {};
    },

    async UntagResource(raw, ctx) {
      const input = parseInput(UntagResourceInput, raw, InvalidParameter);
      await store.transaction(async (tx) => {
        const group = await taggedGroup(tx, ctx, input.resourceArn);
        await removeTags(tx, group.arn, input.tagKeys);
      });
      return {};
    },

    async ListTagsForResource(raw, ctx) {
      const input = parseInput(ListTagsForResourceInput, raw, InvalidParameter);
      return store.read(async (tx) => {
        const group = await taggedGroup(tx, ctx, input.resourceArn);
        return { tags: tagsToMap(await tagsOf(tx, group.arn)) };
      });
    },

    async TagLogGroup(raw, ctx) {
      const input = parseInput(TagLogGroupInput, raw, InvalidParameter);
      await store.transaction(async (tx) =>
        addTags(tx, await requireGroup(tx, scopeOf(ctx), input.logGroupName), tagsFromMap(input.tags)),
      );
      return {};
    },

    async UntagLogGroup(raw, ctx) {
      const input = parseInput(UntagLogGroupInput, raw, InvalidParameter);
      await store.transaction(async (tx) => {
        const group = await requireGroup(tx, scopeOf(ctx), input.logGroupName);
        await removeTags(tx, group.arn, input.tags);
      });
      return {};
    },

    async ListTagsLogGroup(raw, ctx) {
      const input = parseInput(ListTagsLogGroupInput, raw, InvalidParameter);
      return store.read(async (tx) => {
        const group = await requireGroup(tx, scopeOf(ctx), input.logGroupName);
        return { tags: tagsToMap(await tagsOf(tx, group.arn)) };
      });
    },
  };
}
