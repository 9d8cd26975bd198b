import { randomBytes } from "node:crypto";
import { z } from "zod";
import { decodeToken, toPage } from "../aws/pagination.ts";
import type { Operation, RequestContext } from "../aws/service.ts";
import { putTags, tagsOf, toTags } from "../aws/tags.ts";
import { parseInput } from "../aws/validate.ts";
import { instanceSubjects } from "../scheduler/placement.ts";
import { evaluate, parseQuery, QueryError } from "../scheduler/query.ts";
import type { Store, Tx } from "../store/store.ts";
import { activeCluster, type ClusterRecord, findCluster } from "./clusters.ts";
import { AttributeLimitExceeded, ClusterNotFound, InvalidParameter, TargetNotFound } from "./errors.ts";
import {
  type Attribute,
  findInstance,
  hashToken,
  type InstanceRecord,
  instanceShape,
  instancesOf,
  instanceUsage,
  instanceView,
  newInstanceArn,
  resolveInstance,
  saveInstance,
} from "./instances.ts";
import type { InstanceNotifier } from "./notifier.ts";
import type { SchedulerState } from "./scheduler-state.ts";
import { Tags } from "./shapes.ts";
import { requestStop, saveTask, tasksForInstance } from "./tasks.ts";

const AttributeShape = z.object({
  name: z.string().min(1).max(128),
  value: z.string().max(128).optional(),
  targetType: z.enum(["container-instance"]).optional(),
  targetId: z.string().optional(),
});
// ECS: names of letters, numbers, hyphens, underscores, forward and back slashes and periods;
// values of those, at signs, colons and spaces, not starting or ending with a space.
const ATTRIBUTE_NAME = /^[a-zA-Z0-9_.\-/\\]{1,128}$/;
const ATTRIBUTE_VALUE = /^(?! )[a-zA-Z0-9_.\-@/:\\ ]{1,128}(?<! )$/;
/** Custom attributes a container instance may have: ECS's limit (its own ecs.* ones aside). */
const MAX_CUSTOM_ATTRIBUTES = 10;

function isCustom(attribute: Attribute): boolean {
  return !attribute.name.startsWith("ecs.") && !attribute.name.startsWith("com.amazonaws.ecs.");
}

const RegisterInput = z.object({
  cluster: z.string().optional(),
  instanceIdentityDocument: z.string().optional(),
  instanceIdentityDocumentSignature: z.string().optional(),
  totalResources: z
    .array(
      z.object({ name: z.string(), type: z.string().optional(), integerValue: z.number().int().optional() }),
    )
    .optional(),
  versionInfo: z
    .object({
      agentVersion: z.string().optional(),
      agentHash: z.string().optional(),
      dockerVersion: z.string().optional(),
    })
    .optional(),
  containerInstanceArn: z.string().optional(),
  attributes: z.array(AttributeShape).optional(),
  tags: Tags.optional(),
});
const DeregisterInput = z.object({
  cluster: z.string().optional(),
  containerInstance: z.string(),
  force: z.boolean().optional(),
});
const DescribeInput = z.object({
  cluster: z.string().optional(),
  containerInstances: z.array(z.string()).min(1).max(100),
  include: z.array(z.enum(["TAGS", "CONTAINER_INSTANCE_HEALTH"])).optional(),
});
const ListInput = z.object({
  cluster: z.string().optional(),
  filter: z.string().optional(),
  nextToken: z.string().optional(),
  maxResults: z.number().int().min(1).max(100).optional(),
  status: z.enum(["ACTIVE", "DRAINING", "REGISTERING", "DEREGISTERING", "REGISTRATION_FAILED"]).optional(),
});
const UpdateStateInput = z.object({
  cluster: z.string().optional(),
  containerInstances: z.array(z.string()).min(1).max(10),
  status: z.enum(["ACTIVE", "DRAINING"]),
});
const PutAttributesInput = z.object({
  cluster: z.string().optional(),
  attributes: z.array(AttributeShape).min(1).max(10),
});
const ListAttributesInput = z.object({
  cluster: z.string().optional(),
  targetType: z.enum(["container-instance"]),
  attributeName: z.string().optional(),
  attributeValue: z.string().optional(),
  nextToken: z.string().optional(),
  maxResults: z.number().int().min(1).max(100).optional(),
});

function scopeOf(ctx: RequestContext) {
  return { region: ctx.region, accountId: ctx.accountId };
}

function checkAttribute(attribute: Attribute): void {
  if (!ATTRIBUTE_NAME.test(attribute.name))
    throw InvalidParameter(`Attribute name '${attribute.name}' is invalid.`);
  if (attribute.value !== undefined && !ATTRIBUTE_VALUE.test(attribute.value)) {
    throw InvalidParameter(`Attribute value '${attribute.value}' is invalid.`);
  }
}

/** Merges attributes by name; later ones replace earlier ones. */
export function mergeAttributes(current: Attribute[], changes: Attribute[]): Attribute[] {
  const merged = new Map(current.map((a) => [a.name, a]));
  for (const change of changes)
    merged.set(
      change.name,
      change.value === undefined ? { name: change.name } : { name: change.name, value: change.value },
    );
  return [...merged.values()].sort((a, b) => a.name.localeCompare(b.name));
}

/** Registers (or re-registers) a node; shared by the ECS API and the agent channel. */
export async function registerInstance(
  tx: Tx,
  state: SchedulerState,
  ctx: { region: string; accountId: string; now: number },
  cluster: ClusterRecord,
  options: {
    arn?: string;
    cpu: number;
    memory: number;
    attributes: Attribute[];
    versionInfo: InstanceRecord["versionInfo"];
    hostname: string;
    address: string;
    capacity: "EC2" | "FARGATE";
  },
): Promise<{ record: InstanceRecord; token: string }> {
  const token = randomBytes(32).toString("base64url");
  const existing = options.arn === undefined ? undefined : await findInstance(tx, options.arn);
  const reuse =
    existing !== undefined && existing.clusterArn === cluster.arn && existing.status !== "INACTIVE";
  const ids = reuse
    ? { arn: existing.arn, instanceId: existing.instanceId }
    : newInstanceArn(ctx, cluster.name);
  const record: InstanceRecord = {
    arn: ids.arn,
    clusterArn: cluster.arn,
    instanceId: ids.instanceId,
    status: reuse ? existing.status : "ACTIVE",
    registeredAt: reuse ? existing.registeredAt : ctx.now,
    updatedAt: ctx.now,
    lastHeartbeat: ctx.now,
    version: (existing?.version ?? 0) + 1,
    versionInfo: options.versionInfo,
    registered: { cpu: options.cpu, memory: options.memory },
    attributes: mergeAttributes(reuse ? existing.attributes : [], options.attributes),
    hostname: options.hostname,
    address: options.address,
    capacity: options.capacity,
    usedPorts: reuse ? existing.usedPorts : { tcp: [], udp: [] },
  };
  await saveInstance(tx, record, state, hashToken(token));
  return { record, token };
}

/** ECS container instance operations and attributes. */
export function instanceOperations(
  store: Store,
  notifier: InstanceNotifier,
  state: SchedulerState,
): Record<string, Operation> {
  async function instanceOrFail(tx: Tx, ctx: RequestContext, cluster: ClusterRecord, reference: string) {
    const record = await resolveInstance(tx, scopeOf(ctx), cluster.arn, reference);
    if (record === undefined) {
      throw InvalidParameter(
        `The referenced container instance ${reference} was not found in cluster ${cluster.name}.`,
      );
    }
    return record;
  }
  // Agents' latest heartbeats are in memory until they are flushed to the store.
  const heard = (record: InstanceRecord): InstanceRecord => ({
    ...record,
    lastHeartbeat: state.lastHeartbeat(record),
  });

  return {
    async RegisterContainerInstance(raw, ctx) {
      const input = parseInput(RegisterInput, raw, InvalidParameter);
      const resources = new Map((input.totalResources ?? []).map((r) => [r.name, r.integerValue ?? 0]));
      for (const attribute of input.attributes ?? []) checkAttribute(attribute);
      return store.transaction(async (tx) => {
        const cluster = await activeCluster(tx, scopeOf(ctx), input.cluster);
        const { record } = await registerInstance(
          tx,
          state,
          { ...scopeOf(ctx), now: ctx.now.getTime() },
          cluster,
          {
            ...(input.containerInstanceArn === undefined ? {} : { arn: input.containerInstanceArn }),
            cpu: resources.get("CPU") ?? 0,
            memory: resources.get("MEMORY") ?? 0,
            attributes: (input.attributes ?? []).map((a) =>
              a.value === undefined ? { name: a.name } : { name: a.name, value: a.value },
            ),
            versionInfo: {
              agentVersion: input.versionInfo?.agentVersion ?? "unknown",
              ...(input.versionInfo?.agentHash === undefined
                ? {}
                : { agentHash: input.versionInfo.agentHash }),
              ...(input.versionInfo?.dockerVersion === undefined
                ? {}
                : { dockerVersion: input.versionInfo.dockerVersion }),
            },
            hostname: "",
            address: "",
            capacity: "EC2",
          },
        );
        await putTags(tx, record.arn, toTags(input.tags ?? []));
        return {
          containerInstance: instanceShape(record, await instanceUsage(tx, record.arn), ctx.now.getTime()),
        };
      });
    },

    async DeregisterContainerInstance(raw, ctx) {
      const input = parseInput(DeregisterInput, raw, InvalidParameter);
      const now = ctx.now.getTime();
      const stopped: string[] = [];
      const out = await store.transaction(async (tx) => {
        const cluster = await activeCluster(tx, scopeOf(ctx), input.cluster);
        const record = await instanceOrFail(tx, ctx, cluster, input.containerInstance);
        const tasks = await tasksForInstance(tx, record.arn);
        if (tasks.length > 0 && input.force !== true) {
          throw InvalidParameter(
            "Found running tasks on the instance. Specify the force option to deregister a container instance with running tasks.",
          );
        }
        for (const task of tasks) {
          requestStop(
            task,
            "Container instance deregistration forced by user",
            "TerminationNotice",
            now,
            true,
          );
          await saveTask(tx, task, now, state);
          stopped.push(task.wire.taskArn);
        }
        // With the agent's latest heartbeat, which memory may hold ahead of the row.
        const inactive: InstanceRecord = { ...heard(record), status: "INACTIVE", updatedAt: now };
        await saveInstance(tx, inactive, state);
        return { containerInstance: instanceShape(inactive, await instanceUsage(tx, record.arn), now) };
      });
      notifier.notify(
        String((out.containerInstance as { containerInstanceArn: string }).containerInstanceArn),
      );
      return out;
    },

    async DescribeContainerInstances(raw, ctx) {
      const input = parseInput(DescribeInput, raw, InvalidParameter);
      const now = ctx.now.getTime();
      return store.read(async (tx) => {
        const cluster = await activeCluster(tx, scopeOf(ctx), input.cluster);
        const containerInstances: Record<string, unknown>[] = [];
        const failures: Array<{ arn: string; reason: string }> = [];
        for (const reference of input.containerInstances) {
          const record = await resolveInstance(tx, scopeOf(ctx), cluster.arn, reference);
          if (record === undefined) {
            failures.push({ arn: reference, reason: "MISSING" });
            continue;
          }
          const shape = instanceShape(heard(record), await instanceUsage(tx, record.arn), now);
          if (input.include?.includes("TAGS"))
            shape.tags = (await tagsOf(tx, record.arn)).map((t) => ({ key: t.key, value: t.value }));
          if (input.include?.includes("CONTAINER_INSTANCE_HEALTH")) {
            shape.healthStatus = {
              overallStatus: shape.agentConnected === true ? "OK" : "IMPAIRED",
              details: [
                { type: "CONTAINER_RUNTIME", status: shape.agentConnected === true ? "OK" : "IMPAIRED" },
              ],
            };
          }
          containerInstances.push(shape);
        }
        return { containerInstances, failures };
      });
    },

    async ListContainerInstances(raw, ctx) {
      const input = parseInput(ListInput, raw, InvalidParameter);
      let filter: ReturnType<typeof parseQuery> | undefined;
      if (input.filter !== undefined) {
        try {
          filter = parseQuery(input.filter);
        } catch (error) {
          throw InvalidParameter(
            `Invalid filter expression: ${error instanceof QueryError ? error.message : "syntax error"}`,
          );
        }
      }
      const limit = input.maxResults ?? 100;
      const after = decodeToken(input.nextToken, () => InvalidParameter("Invalid NextToken"));
      const now = ctx.now.getTime();
      const arns = await store.read(async (tx) => {
        const cluster = await activeCluster(tx, scopeOf(ctx), input.cluster);
        const out: string[] = [];
        for (const record of await instancesOf(tx, cluster.arn)) {
          if (after !== undefined && record.arn <= after) continue;
          if (input.status !== undefined && record.status !== input.status) continue;
          if (
            filter !== undefined &&
            !evaluate(
              filter,
              instanceSubjects(instanceView(heard(record), await instanceUsage(tx, record.arn), now)),
            )
          ) {
            continue;
          }
          out.push(record.arn);
          if (out.length > limit) break;
        }
        return out;
      });
      const page = toPage(arns, limit, (arn) => arn);
      return page.nextToken === undefined
        ? { containerInstanceArns: page.items }
        : { containerInstanceArns: page.items, nextToken: page.nextToken };
    },

    async UpdateContainerInstancesState(raw, ctx) {
      const input = parseInput(UpdateStateInput, raw, InvalidParameter);
      const now = ctx.now.getTime();
      return store.transaction(async (tx) => {
        const cluster = await activeCluster(tx, scopeOf(ctx), input.cluster);
        const containerInstances: Record<string, unknown>[] = [];
        const failures: Array<{ arn: string; reason: string }> = [];
        for (const reference of input.containerInstances) {
          const record = await resolveInstance(tx, scopeOf(ctx), cluster.arn, reference);
          if (record === undefined || record.status === "INACTIVE") {
            failures.push({ arn: reference, reason: "MISSING" });
            continue;
          }
          const updated: InstanceRecord = {
            ...record,
            status: input.status,
            updatedAt: now,
            version: record.version + 1,
          };
          await saveInstance(tx, updated, state);
          containerInstances.push(instanceShape(heard(updated), await instanceUsage(tx, record.arn), now));
        }
        return { containerInstances, failures };
      });
    },

    async PutAttributes(raw, ctx) {
      const input = parseInput(PutAttributesInput, raw, InvalidParameter);
      for (const attribute of input.attributes) checkAttribute(attribute);
      return store.transaction(async (tx) => {
        const cluster = await activeCluster(tx, scopeOf(ctx), input.cluster);
        for (const attribute of input.attributes) {
          if (attribute.targetId === undefined)
            throw InvalidParameter("targetId is required for container-instance attributes.");
          const record = await resolveInstance(tx, scopeOf(ctx), cluster.arn, attribute.targetId);
          if (record === undefined) throw TargetNotFound(`Could not find ${attribute.targetId}.`);
          const change =
            attribute.value === undefined
              ? { name: attribute.name }
              : { name: attribute.name, value: attribute.value };
          const attributes = mergeAttributes(record.attributes, [change]);
          // Refused only for one more past the limit: an instance registered with more keeps them.
          const custom = attributes.filter(isCustom).length;
          if (custom > MAX_CUSTOM_ATTRIBUTES && custom > record.attributes.filter(isCustom).length) {
            throw AttributeLimitExceeded("You can apply up to 10 custom attributes for each resource.");
          }
          await saveInstance(tx, { ...record, attributes }, state);
        }
        return { attributes: input.attributes };
      });
    },

    async DeleteAttributes(raw, ctx) {
      const input = parseInput(PutAttributesInput, raw, InvalidParameter);
      return store.transaction(async (tx) => {
        const cluster = await activeCluster(tx, scopeOf(ctx), input.cluster);
        for (const attribute of input.attributes) {
          if (attribute.targetId === undefined)
            throw InvalidParameter("targetId is required for container-instance attributes.");
          const record = await resolveInstance(tx, scopeOf(ctx), cluster.arn, attribute.targetId);
          if (record === undefined) throw TargetNotFound(`Could not find ${attribute.targetId}.`);
          await saveInstance(
            tx,
            { ...record, attributes: record.attributes.filter((a) => a.name !== attribute.name) },
            state,
          );
        }
        return { attributes: input.attributes };
      });
    },

    async ListAttributes(raw, ctx) {
      const input = parseInput(ListAttributesInput, raw, InvalidParameter);
      // ECS: "You must also specify an attribute name to use this parameter."
      if (input.attributeValue !== undefined && input.attributeName === undefined) {
        throw InvalidParameter("attributeName must be specified when attributeValue is specified.");
      }
      const limit = input.maxResults ?? 100;
      const after = Number(decodeToken(input.nextToken, () => InvalidParameter("Invalid NextToken")) ?? "0");
      return store.read(async (tx) => {
        const cluster = await findCluster(tx, scopeOf(ctx), input.cluster ?? "default");
        if (cluster === undefined || cluster.status !== "ACTIVE") throw ClusterNotFound("Cluster not found.");
        const attributes: Array<Record<string, string>> = [];
        for (const record of await instancesOf(tx, cluster.arn)) {
          for (const attribute of record.attributes) {
            if (input.attributeName !== undefined && attribute.name !== input.attributeName) continue;
            if (input.attributeValue !== undefined && attribute.value !== input.attributeValue) continue;
            const out: Record<string, string> = {
              name: attribute.name,
              targetType: "container-instance",
              targetId: record.arn,
            };
            if (attribute.value !== undefined) out.value = attribute.value;
            attributes.push(out);
          }
        }
        const page = attributes.slice(after, after + limit);
        const result: Record<string, unknown> = { attributes: page };
        if (after + limit < attributes.length)
          result.nextToken = Buffer.from(JSON.stringify({ after: String(after + limit) })).toString(
            "base64url",
          );
        return result;
      });
    },
  };
}
