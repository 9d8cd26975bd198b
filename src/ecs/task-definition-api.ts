import { principalArn } from "../auth/access-keys.ts";
import { decodeToken, encodeToken } from "../aws/pagination.ts";
import type { Operation, RequestContext } from "../aws/service.ts";
import { putTags, tagProblem, tagsOf } from "../aws/tags.ts";
import { parseInput } from "../aws/validate.ts";
import type { Store } from "../store/store.ts";
import { toWireTags } from "./clusters.ts";
import { ClientException, InvalidParameter } from "./errors.ts";
import { draftTaskDefinition } from "./task-definition-rules.ts";
import {
  DeleteTaskDefinitionsInput,
  DeregisterTaskDefinitionInput,
  DescribeTaskDefinitionInput,
  ListTaskDefinitionFamiliesInput,
  ListTaskDefinitionsInput,
  RegisterTaskDefinitionInput,
} from "./task-definition-shapes.ts";
import {
  assembleTaskDefinition,
  findTaskDefinition,
  insertTaskDefinition,
  type ListPosition,
  listFamilyRows,
  listTaskDefinitionRows,
  nextRevision,
  parseTaskDefinitionReference,
  type Scope,
  setTaskDefinitionStatus,
  type TaskDefinition,
  taskDefinitionArn,
} from "./task-definitions.ts";

const NOT_FOUND = "Unable to describe task definition.";

function scopeOf(ctx: RequestContext): Scope {
  return { region: ctx.region, accountId: ctx.accountId };
}

function positionToken(position: ListPosition): string {
  return encodeToken(`${position.family}:${position.revision}`);
}

function readPosition(token: string | undefined): ListPosition | undefined {
  const after = decodeToken(token, () => InvalidParameter("Invalid NextToken"));
  if (after === undefined) return undefined;
  const colon = after.lastIndexOf(":");
  const revision = Number(after.slice(colon + 1));
  if (colon < 1 || !Number.isInteger(revision)) throw InvalidParameter("Invalid NextToken");
  return { family: after.slice(0, colon), revision };
}

/** ECS RegisterTaskDefinition, DescribeTaskDefinition, List…, DeregisterTaskDefinition, DeleteTaskDefinitions. */
export function taskDefinitionOperations(store: Store): Record<string, Operation> {
  return {
    async RegisterTaskDefinition(raw, ctx) {
      const input = parseInput(RegisterTaskDefinitionInput, raw, ClientException);
      const draft = draftTaskDefinition(input);
      const tags = input.tags ?? [];
      const tagError = tagProblem(tags);
      if (tagError !== undefined) throw InvalidParameter(tagError);
      const scope = scopeOf(ctx);
      return store.transaction(async (tx) => {
        const revision = await nextRevision(tx, draft.family);
        const definition = assembleTaskDefinition(draft, {
          taskDefinitionArn: taskDefinitionArn(scope, draft.family, revision),
          revision,
          status: "ACTIVE",
          registeredAt: ctx.now.getTime() / 1000,
          registeredBy: await principalArn(tx, ctx.identity.accessKeyId, ctx.accountId),
        });
        await insertTaskDefinition(tx, definition);
        await putTags(tx, definition.taskDefinitionArn, tags);
        return tags.length === 0
          ? { taskDefinition: definition }
          : { taskDefinition: definition, tags: toWireTags(await tagsOf(tx, definition.taskDefinitionArn)) };
      });
    },

    async DescribeTaskDefinition(raw, ctx) {
      const input = parseInput(DescribeTaskDefinitionInput, raw, ClientException);
      return store.read(async (tx) => {
        const definition = await findTaskDefinition(tx, scopeOf(ctx), input.taskDefinition);
        if (definition === undefined) throw ClientException(NOT_FOUND);
        if (!(input.include ?? []).includes("TAGS")) return { taskDefinition: definition };
        return {
          taskDefinition: definition,
          tags: toWireTags(await tagsOf(tx, definition.taskDefinitionArn)),
        };
      });
    },

    async ListTaskDefinitions(raw) {
      const input = parseInput(ListTaskDefinitionsInput, raw, InvalidParameter);
      const limit = input.maxResults ?? 100;
      const after = readPosition(input.nextToken);
      const rows = await store.read((tx) =>
        listTaskDefinitionRows(tx, {
          // ECS reads ListTaskDefinitions' familyPrefix as one whole family name.
          family: input.familyPrefix === "" ? undefined : input.familyPrefix,
          status: input.status ?? "ACTIVE",
          descending: input.sort === "DESC",
          after,
          limit,
        }),
      );
      const page = rows.slice(0, limit);
      const taskDefinitionArns = page.map((row) => row.arn);
      const last = page[page.length - 1];
      return rows.length > limit && last !== undefined
        ? { taskDefinitionArns, nextToken: positionToken(last) }
        : { taskDefinitionArns };
    },

    async ListTaskDefinitionFamilies(raw) {
      const input = parseInput(ListTaskDefinitionFamiliesInput, raw, InvalidParameter);
      const limit = input.maxResults ?? 100;
      const after = decodeToken(input.nextToken, () => InvalidParameter("Invalid NextToken"));
      const rows = await store.read((tx) =>
        listFamilyRows(tx, { prefix: input.familyPrefix, status: input.status ?? "ALL", after, limit }),
      );
      const families = rows.slice(0, limit);
      const last = families[families.length - 1];
      return rows.length > limit && last !== undefined
        ? { families, nextToken: encodeToken(last) }
        : { families };
    },

    async DeregisterTaskDefinition(raw, ctx) {
      const input = parseInput(DeregisterTaskDefinitionInput, raw, ClientException);
      const scope = scopeOf(ctx);
      const reference = parseTaskDefinitionReference(scope, input.taskDefinition);
      if (reference !== undefined && reference.revision === undefined) {
        throw ClientException("Revision is missing.");
      }
      return store.transaction(async (tx) => {
        const definition = await findTaskDefinition(tx, scope, input.taskDefinition);
        if (definition === undefined || definition.status === "DELETE_IN_PROGRESS") {
          throw ClientException("The specified task definition does not exist.");
        }
        if (definition.status === "INACTIVE") return { taskDefinition: definition };
        return {
          taskDefinition: await setTaskDefinitionStatus(tx, definition, "INACTIVE", ctx.now.getTime()),
        };
      });
    },

    async DeleteTaskDefinitions(raw, ctx) {
      const input = parseInput(DeleteTaskDefinitionsInput, raw, ClientException);
      const scope = scopeOf(ctx);
      return store.transaction(async (tx) => {
        const taskDefinitions: TaskDefinition[] = [];
        const failures: Array<{ arn: string; reason: string }> = [];
        for (const given of input.taskDefinitions) {
          const reference = parseTaskDefinitionReference(scope, given);
          if (reference?.revision === undefined) {
            failures.push({
              arn: given,
              reason:
                "The specified task definition identifier is invalid. Specify a valid name or ARN and try again.",
            });
            continue;
          }
          const definition = await findTaskDefinition(tx, scope, given);
          if (definition === undefined) {
            failures.push({
              arn: given,
              reason:
                "The specified task definition does not exist. Specify a valid account, family, revision and try again.",
            });
          } else if (definition.status === "ACTIVE") {
            failures.push({
              arn: definition.taskDefinitionArn,
              reason:
                "The specified task definition is still in ACTIVE status. Please deregister the target and try again.",
            });
          } else if (definition.status === "DELETE_IN_PROGRESS") {
            taskDefinitions.push(definition);
          } else {
            taskDefinitions.push(
              await setTaskDefinitionStatus(tx, definition, "DELETE_IN_PROGRESS", ctx.now.getTime()),
            );
          }
        }
        return { taskDefinitions, failures };
      });
    },
  };
}
