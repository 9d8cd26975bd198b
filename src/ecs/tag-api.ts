import { z } from "zod";
import { parseArn } from "../aws/arn.ts";
import type { Operation, RequestContext } from "../aws/service.ts";
import { putTags, removeTags, tagProblem, tagsOf } from "../aws/tags.ts";
import { parseInput } from "../aws/validate.ts";
import type { Store, Tx } from "../store/store.ts";
import { findCluster, toWireTags } from "./clusters.ts";
import { ClientException, ClusterNotFound, InvalidParameter, ResourceNotFound } from "./errors.ts";
import { findInstance } from "./instances.ts";
import { findServiceByArn } from "./services.ts";
import { Tags } from "./shapes.ts";
import { findTaskDefinition } from "./task-definitions.ts";
import { findTask } from "./tasks.ts";

const TagResourceInput = z.object({ resourceArn: z.string(), tags: Tags });
const UntagResourceInput = z.object({ resourceArn: z.string(), tagKeys: z.array(z.string()).max(50) });
const ListTagsInput = z.object({ resourceArn: z.string() });

/**
 * Checks that an ECS ARN names a resource that exists and can carry tags.
 * Each resource type that lands adds its case here.
 */
async function requireTaggable(tx: Tx, ctx: RequestContext, resourceArn: string): Promise<void> {
  const arn = parseArn(resourceArn);
  if (arn === undefined || arn.service !== "ecs") throw InvalidParameter("The ARN provided is invalid.");
  const type = arn.resource.split("/", 1)[0];
  if (type === "cluster") {
    const cluster = await findCluster(tx, { region: ctx.region, accountId: ctx.accountId }, resourceArn);
    if (cluster === undefined) throw ClusterNotFound("Cluster not found.");
    // A deleted cluster stays describable, and ECS names it so rather than not finding it.
    if (cluster.status !== "ACTIVE") {
      throw InvalidParameter("The specified cluster is inactive. Specify an active cluster and try again.");
    }
    return;
  }
  if (type === "task-definition") {
    const scope = { region: ctx.region, accountId: ctx.accountId };
    const definition = await findTaskDefinition(tx, scope, resourceArn);
    // Tags belong to one revision: an ARN without its revision names no taggable resource.
    if (
      definition === undefined ||
      definition.taskDefinitionArn !== resourceArn ||
      definition.status === "DELETE_IN_PROGRESS"
    ) {
      throw ClientException("Unable to describe task definition.");
    }
    return;
  }
  if (type === "service" || type === "task" || type === "container-instance") {
    // Services, tasks and container instances are named under their cluster (the long ARN format);
    // ECS refuses to tag the old short form.
    if (arn.resource.split("/").length !== 3) {
      throw InvalidParameter("Long arn format must be used for tagging operations");
    }
    const ours = arn.region === ctx.region && arn.accountId === ctx.accountId;
    if (!ours || !(await clusterResourceExists(tx, type, resourceArn)))
      throw ResourceNotFound("The specified resource wasn't found.");
    return;
  }
  throw InvalidParameter("The specified resource type is not supported for tagging.");
}

async function clusterResourceExists(tx: Tx, type: string, arn: string): Promise<boolean> {
  if (type === "service") {
    const service = await findServiceByArn(tx, arn);
    return service !== undefined && service.status !== "INACTIVE";
  }
  if (type === "task") return (await findTask(tx, arn)) !== undefined;
  return (await findInstance(tx, arn)) !== undefined;
}

/** ECS TagResource, UntagResource, ListTagsForResource. */
export function tagOperations(store: Store): Record<string, Operation> {
  return {
    async TagResource(raw, ctx) {
      const input = parseInput(TagResourceInput, raw, InvalidParameter);
      await store.transaction(async (tx) => {
        await requireTaggable(tx, ctx, input.resourceArn);
        const problem = tagProblem(input.tags, await tagsOf(tx, input.resourceArn));
        if (problem !== undefined) throw InvalidParameter(problem);
        await putTags(tx, input.resourceArn, input.tags);
      });
      return {};
    },

    async UntagResource(raw, ctx) {
      const input = parseInput(UntagResourceInput, raw, InvalidParameter);
      await store.transaction(async (tx) => {
        await requireTaggable(tx, ctx, input.resourceArn);
        await removeTags(tx, input.resourceArn, input.tagKeys);
      });
      return {};
    },

    async ListTagsForResource(raw, ctx) {
      const input = parseInput(ListTagsInput, raw, InvalidParameter);
      return store.read(async (tx) => {
        await requireTaggable(tx, ctx, input.resourceArn);
        return { tags: toWireTags(await tagsOf(tx, input.resourceArn)) };
      });
    },
  };
}
