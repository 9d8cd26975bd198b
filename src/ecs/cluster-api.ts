import { z } from "zod";
import { decodeToken, toPage } from "../aws/pagination.ts";
import type { Operation, RequestContext } from "../aws/service.ts";
import { putTags, tagProblem } from "../aws/tags.ts";
import { parseInput } from "../aws/validate.ts";
import type { Store, Tx } from "../store/store.ts";
import { checkStrategy } from "./capacity.ts";
import {
  activeCluster,
  type ClusterRecord,
  clusterArn,
  clusterShape,
  clusterUsage,
  DEFAULT_CLUSTER,
  deactivateCluster,
  findCluster,
  listActiveClusters,
  saveCluster,
  validClusterName,
} from "./clusters.ts";
import {
  ClusterContainsContainerInstances,
  ClusterContainsServices,
  ClusterContainsTasks,
  ClusterNotFound,
  InvalidParameter,
  ResourceInUse,
} from "./errors.ts";
import {
  CapacityProviderStrategyItem,
  type CapacityProviderStrategyItemT,
  ClusterConfiguration,
  ClusterField,
  type ClusterFieldT,
  ClusterSetting,
  type ClusterSettingT,
  ServiceConnectDefaults,
  Tags,
} from "./shapes.ts";

const ALL_FIELDS: ReadonlySet<ClusterFieldT> = new Set(ClusterField.options);
/** Capacity providers every cluster may use without creating them. */
const BUILT_IN_PROVIDERS = new Set(["FARGATE", "FARGATE_SPOT"]);

const CreateClusterInput = z.object({
  clusterName: z.string().optional(),
  tags: Tags.optional(),
  settings: z.array(ClusterSetting).optional(),
  configuration: ClusterConfiguration.optional(),
  capacityProviders: z.array(z.string()).optional(),
  defaultCapacityProviderStrategy: z.array(CapacityProviderStrategyItem).optional(),
  serviceConnectDefaults: ServiceConnectDefaults.optional(),
});

const DescribeClustersInput = z.object({
  clusters: z.array(z.string()).max(100).optional(),
  include: z.array(ClusterField).optional(),
});

const ListClustersInput = z.object({
  nextToken: z.string().optional(),
  maxResults: z.number().int().min(1).max(100).optional(),
});

const ClusterInput = z.object({ cluster: z.string() });

const DescribeCapacityProvidersInput = z.object({
  capacityProviders: z.array(z.string()).max(100).optional(),
  include: z.array(z.enum(["TAGS"])).optional(),
  maxResults: z.number().int().min(1).max(10).optional(),
  nextToken: z.string().optional(),
});

const UpdateClusterInput = z.object({
  cluster: z.string(),
  settings: z.array(ClusterSetting).optional(),
  configuration: ClusterConfiguration.optional(),
  serviceConnectDefaults: ServiceConnectDefaults.optional(),
});

const UpdateClusterSettingsInput = z.object({ cluster: z.string(), settings: z.array(ClusterSetting) });

const PutClusterCapacityProvidersInput = z.object({
  cluster: z.string(),
  capacityProviders: z.array(z.string()),
  defaultCapacityProviderStrategy: z.array(CapacityProviderStrategyItem),
});

function scopeOf(ctx: RequestContext) {
  return { region: ctx.region, accountId: ctx.accountId };
}

/** Later settings of one name replace earlier ones; unnamed settings keep their value. */
function mergeSettings(current: ClusterSettingT[], changes: ClusterSettingT[]): ClusterSettingT[] {
  const merged = new Map(current.map((setting) => [setting.name, setting.value]));
  for (const setting of changes) merged.set(setting.name, setting.value);
  return [...merged].map(([name, value]) => ({ name, value }));
}

function checkCapacityProviders(providers: string[], strategy: CapacityProviderStrategyItemT[]): void {
  for (const provider of providers) {
    if (!BUILT_IN_PROVIDERS.has(provider)) {
      throw InvalidParameter(
        `The specified capacity provider '${provider}' does not exist. Specify a valid name or ARN and try again.`,
      );
    }
  }
  if (new Set(providers).size !== providers.length) {
    throw InvalidParameter("The specified capacity providers contain duplicates.");
  }
  // The default strategy is checked as RunTask and CreateService check one (capacity.ts).
  checkStrategy(strategy, { capacityProviders: providers });
}

/**
 * Whether a task of the cluster not yet STOPPED runs on one of `providers`, or a service of it
 * not yet INACTIVE names one in its strategy.
 */
async function providersInUse(tx: Tx, clusterArn: string, providers: string[]): Promise<boolean> {
  const names = JSON.stringify(providers);
  const task = await tx.get(
    `SELECT 1 FROM ecs_tasks WHERE cluster_arn = ? AND last_status != 'STOPPED'
       AND json_extract(body, '$.wire.capacityProviderName') IN (SELECT value FROM json_each(?)) LIMIT 1`,
    clusterArn,
    names,
  );
  if (task !== undefined) return true;
  const service = await tx.get(
    `SELECT 1 FROM ecs_services, json_each(ecs_services.body, '$.capacityProviderStrategy') AS item
       WHERE cluster_arn = ? AND status != 'INACTIVE'
         AND json_extract(item.value, '$.capacityProvider') IN (SELECT value FROM json_each(?)) LIMIT 1`,
    clusterArn,
    names,
  );
  return service !== undefined;
}

/** ECS cluster operations: CreateCluster, DescribeClusters, ListClusters, DeleteCluster, UpdateCluster, … */
export function clusterOperations(store: Store): Record<string, Operation> {
  return {
    async CreateCluster(raw, ctx) {
      const input = parseInput(CreateClusterInput, raw, InvalidParameter);
      const name = input.clusterName ?? DEFAULT_CLUSTER;
      validClusterName(name);
      const tags = input.tags ?? [];
      const tagError = tagProblem(tags);
      if (tagError !== undefined) throw InvalidParameter(tagError);
      const providers = input.capacityProviders ?? [];
      const strategy = input.defaultCapacityProviderStrategy ?? [];
      checkCapacityProviders(providers, strategy);
      const scope = scopeOf(ctx);
      return store.transaction(async (tx) => {
        const existing = await findCluster(tx, scope, name);
        // Creating a cluster that exists is idempotent in ECS: the existing cluster is returned as it is.
        if (existing !== undefined && existing.status === "ACTIVE") {
          return { cluster: await clusterShape(tx, existing, ALL_FIELDS) };
        }
        const now = ctx.now.getTime();
        const cluster: ClusterRecord = {
          arn: clusterArn(scope, name),
          name,
          status: "ACTIVE",
          settings: mergeSettings([{ name: "containerInsights", value: "disabled" }], input.settings ?? []),
          capacityProviders: providers,
          defaultCapacityProviderStrategy: strategy,
          createdAt: now,
          updatedAt: now,
        };
        if (input.configuration !== undefined) cluster.configuration = input.configuration;
        if (input.serviceConnectDefaults !== undefined)
          cluster.serviceConnectDefaults = input.serviceConnectDefaults;
        await saveCluster(tx, cluster);
        await putTags(tx, cluster.arn, tags);
        return { cluster: await clusterShape(tx, cluster, ALL_FIELDS) };
      });
    },

    async DescribeClusters(raw, ctx) {
      const input = parseInput(DescribeClustersInput, raw, InvalidParameter);
      const references =
        input.clusters === undefined || input.clusters.length === 0 ? [DEFAULT_CLUSTER] : input.clusters;
      const include = new Set(input.include ?? []);
      const scope = scopeOf(ctx);
      return store.read(async (tx) => {
        const clusters: Record<string, unknown>[] = [];
        const failures: Array<{ arn: string; reason: string }> = [];
        for (const reference of references) {
          const cluster = await findCluster(tx, scope, reference);
          if (cluster === undefined) {
            const arn = reference.startsWith("arn:") ? reference : clusterArn(scope, reference);
            failures.push({ arn, reason: "MISSING" });
          } else {
            clusters.push(await clusterShape(tx, cluster, include));
          }
        }
        return { clusters, failures };
      });
    },

    /**
     * The capacity providers there are: FARGATE and FARGATE_SPOT, which every account has (ECS:
     * "The Fargate capacity providers are available to all accounts"); Wharf has no others yet.
     */
    async DescribeCapacityProviders(raw, ctx) {
      const input = parseInput(DescribeCapacityProvidersInput, raw, InvalidParameter);
      const arnOf = (name: string) => `arn:aws:ecs:${ctx.region}:${ctx.accountId}:capacity-provider/${name}`;
      const failures: Array<{ arn: string; reason: string }> = [];
      const names = new Set<string>();
      for (const asked of input.capacityProviders ?? [...BUILT_IN_PROVIDERS]) {
        const name = [...BUILT_IN_PROVIDERS].find((p) => asked === p || asked === arnOf(p));
        if (name === undefined) failures.push({ arn: asked, reason: "MISSING" });
        else names.add(name);
      }
      const limit = input.maxResults ?? 10;
      const after = decodeToken(input.nextToken, () => InvalidParameter("Invalid NextToken"));
      const rows = [...names].sort().filter((name) => after === undefined || name > after);
      const page = toPage(rows, limit, (name) => name);
      const capacityProviders = page.items.map((name) => ({
        capacityProviderArn: arnOf(name),
        name,
        status: "ACTIVE",
        tags: [],
      }));
      return page.nextToken === undefined
        ? { capacityProviders, failures }
        : { capacityProviders, failures, nextToken: page.nextToken };
    },

    async ListClusters(raw) {
      const input = parseInput(ListClustersInput, raw, InvalidParameter);
      const limit = input.maxResults ?? 100;
      const after = decodeToken(input.nextToken, () => InvalidParameter("Invalid NextToken"));
      const rows = await store.read((tx) => listActiveClusters(tx, after, limit));
      const page = toPage(rows, limit, (row) => row.name);
      const clusterArns = page.items.map((row) => row.arn);
      return page.nextToken === undefined ? { clusterArns } : { clusterArns, nextToken: page.nextToken };
    },

    async DeleteCluster(raw, ctx) {
      const input = parseInput(ClusterInput, raw, InvalidParameter);
      const scope = scopeOf(ctx);
      return store.transaction(async (tx) => {
        const cluster = await findCluster(tx, scope, input.cluster);
        if (cluster === undefined) throw ClusterNotFound("Cluster not found.");
        if (cluster.status === "INACTIVE") return { cluster: await clusterShape(tx, cluster, ALL_FIELDS) };
        const usage = await clusterUsage(tx, cluster);
        if (usage.registeredContainerInstancesCount > 0) {
          throw ClusterContainsContainerInstances(
            "The Cluster cannot be deleted while Container Instances are active or draining.",
          );
        }
        if (usage.activeServicesCount > 0) {
          throw ClusterContainsServices("The Cluster cannot be deleted while Services are active.");
        }
        if (usage.runningTasksCount + usage.pendingTasksCount > 0) {
          throw ClusterContainsTasks("The Cluster cannot be deleted while Tasks are active.");
        }
        const inactive = await deactivateCluster(tx, cluster, ctx.now.getTime());
        return { cluster: await clusterShape(tx, inactive, ALL_FIELDS) };
      });
    },

    async UpdateCluster(raw, ctx) {
      const input = parseInput(UpdateClusterInput, raw, InvalidParameter);
      return store.transaction(async (tx) => {
        const cluster = await activeCluster(tx, scopeOf(ctx), input.cluster);
        const updated: ClusterRecord = {
          ...cluster,
          settings: mergeSettings(cluster.settings, input.settings ?? []),
          updatedAt: ctx.now.getTime(),
        };
        if (input.configuration !== undefined) updated.configuration = input.configuration;
        if (input.serviceConnectDefaults !== undefined)
          updated.serviceConnectDefaults = input.serviceConnectDefaults;
        await saveCluster(tx, updated);
        return { cluster: await clusterShape(tx, updated, ALL_FIELDS) };
      });
    },

    async UpdateClusterSettings(raw, ctx) {
      const input = parseInput(UpdateClusterSettingsInput, raw, InvalidParameter);
      return store.transaction(async (tx) => {
        const cluster = await activeCluster(tx, scopeOf(ctx), input.cluster);
        const updated: ClusterRecord = {
          ...cluster,
          settings: mergeSettings(cluster.settings, input.settings),
          updatedAt: ctx.now.getTime(),
        };
        await saveCluster(tx, updated);
        return { cluster: await clusterShape(tx, updated, ALL_FIELDS) };
      });
    },

    async PutClusterCapacityProviders(raw, ctx) {
      const input = parseInput(PutClusterCapacityProvidersInput, raw, InvalidParameter);
      checkCapacityProviders(input.capacityProviders, input.defaultCapacityProviderStrategy);
      return store.transaction(async (tx) => {
        const cluster = await activeCluster(tx, scopeOf(ctx), input.cluster);
        const removed = cluster.capacityProviders.filter((p) => !input.capacityProviders.includes(p));
        if (removed.length > 0 && (await providersInUse(tx, cluster.arn, removed))) {
          // ECS: "You can only disassociate an existing capacity provider from a cluster if it's
          // not being used by any existing tasks" (nor by a service, until it is INACTIVE).
          throw ResourceInUse("The specified capacity provider is in use and cannot be removed.");
        }
        const updated: ClusterRecord = {
          ...cluster,
          capacityProviders: input.capacityProviders,
          defaultCapacityProviderStrategy: input.defaultCapacityProviderStrategy,
          updatedAt: ctx.now.getTime(),
        };
        await saveCluster(tx, updated);
        return { cluster: await clusterShape(tx, updated, ALL_FIELDS) };
      });
    },
  };
}
