import { principalArn } from "../auth/access-keys.ts";
import { errorType } from "../aws/errors.ts";
import { decodeToken, toPage } from "../aws/pagination.ts";
import type { Operation, RequestContext } from "../aws/service.ts";
import { putTags, removeAllTags, tagsOf } from "../aws/tags.ts";
import { parseInput } from "../aws/validate.ts";
import { newDeployment, newDeploymentId, promote } from "../scheduler/deployment.ts";
import type { Store, Tx } from "../store/store.ts";
import { capacityOf, checkStrategy } from "./capacity.ts";
import { activeCluster, toWireTags } from "./clusters.ts";
import { InvalidParameter, ServiceNotFound } from "./errors.ts";
import {
  CreateServiceInput,
  type CreateServiceInputT,
  DeleteServiceInput,
  DescribeServicesInput,
  ListServicesInput,
  UpdateServiceInput,
  type UpdateServiceInputT,
} from "./service-shapes.ts";
import {
  clearEvents,
  type DeploymentConfigurationT,
  findService,
  findServiceByArn,
  listServiceArns,
  SERVICE_DEFAULT_STRATEGIES,
  type ServiceRecord,
  saveService,
  serviceArn,
  serviceShape,
} from "./services.ts";
import {
  checkInput,
  constraintsOf,
  definitionFor,
  type GivenSettings,
  type RunnableDefinition,
  strategiesOf,
} from "./task-api.ts";
import { findTaskDefinition } from "./task-definitions.ts";

export const ServiceNotActive = errorType("ServiceNotActiveException");

const NAME = /^[a-zA-Z0-9_-]{1,255}$/;
const DAEMON_COUNT =
  "The daemon scheduling strategy does not support a desired count for services. Remove the desired count value and try again";
const DAEMON_STRATEGY =
  "The daemon scheduling strategy does not support placement strategies. Remove the placement strategy and try again";
const DAEMON_PROVIDERS =
  "Specifying a capacity provider strategy is not supported when you create a service using the DAEMON scheduling strategy.";
const STRATEGY_NEEDS_DEPLOYMENT =
  "When switching from launch type to capacity provider strategy on an existing service, or making a change to a capacity provider strategy on a service that is already using one, you must force a new deployment.";
const DAEMON_FARGATE = "The daemon scheduling strategy does not support the FARGATE launch type.";

function scopeOf(ctx: RequestContext) {
  return { region: ctx.region, accountId: ctx.accountId };
}

/** ECS's defaults: 100/200 for REPLICA, 0/100 for DAEMON; the circuit breaker off. */
function deploymentConfiguration(
  strategy: "REPLICA" | "DAEMON",
  given: CreateServiceInputT["deploymentConfiguration"],
  current?: DeploymentConfigurationT,
): DeploymentConfigurationT {
  const config: DeploymentConfigurationT = {
    minimumHealthyPercent:
      given?.minimumHealthyPercent ?? current?.minimumHealthyPercent ?? (strategy === "DAEMON" ? 0 : 100),
    maximumPercent: given?.maximumPercent ?? current?.maximumPercent ?? (strategy === "DAEMON" ? 100 : 200),
    deploymentCircuitBreaker: given?.deploymentCircuitBreaker ??
      current?.deploymentCircuitBreaker ?? { enable: false, rollback: false },
  };
  const alarms = given?.alarms ?? current?.alarms;
  if (alarms !== undefined) config.alarms = alarms;
  if (config.maximumPercent < config.minimumHealthyPercent) {
    throw InvalidParameter("maximumPercent must be greater than or equal to minimumHealthyPercent.");
  }
  return config;
}

/**
 * Checks what a service asks of its task definition (launch type, network, placement); `given`
 * is what the call itself gives, which ECS's limits apply to (see `checkInput`).
 */
function checkAgainst(
  input: Pick<
    CreateServiceInputT,
    "networkConfiguration" | "placementConstraints" | "placementStrategy" | "platformVersion"
  > & {
    tags?: CreateServiceInputT["tags"];
  },
  definition: RunnableDefinition,
  launchType: "EC2" | "FARGATE" | "EXTERNAL",
  given: GivenSettings = input,
): void {
  if (launchType === "EXTERNAL") {
    throw InvalidParameter("The EXTERNAL launch type is not supported by Wharf: use launchType EC2.");
  }
  checkInput(input, definition, launchType, given);
  constraintsOf(input, definition);
  strategiesOf(input, SERVICE_DEFAULT_STRATEGIES);
}

/** The ACTIVE service a request names, or the error ECS answers when there is none. */
async function activeService(
  tx: Tx,
  scope: ReturnType<typeof scopeOf>,
  clusterName: string | undefined,
  service: string,
): Promise<ServiceRecord> {
  const cluster = await activeCluster(tx, scope, clusterName);
  const record = await findService(tx, scope, cluster.arn, service);
  if (record === undefined) throw ServiceNotFound("Service not found.");
  if (record.status !== "ACTIVE") throw ServiceNotActive("Service was not ACTIVE.");
  return record;
}

/** ECS service operations: CreateService, DescribeServices, ListServices, UpdateService, DeleteService. */
export function serviceOperations(
  store: Store,
  onChange: (serviceArn: string) => void,
  random: () => number = Math.random,
): Record<string, Operation> {
  return {
    async CreateService(raw, ctx) {
      const input = parseInput(CreateServiceInput, raw, InvalidParameter);
      if (!NAME.test(input.serviceName)) {
        throw InvalidParameter(
          "Service name must be 1-255 characters long and contain only letters (uppercase and lowercase), numbers, underscores, and hyphens.",
        );
      }
      if (input.deploymentController !== undefined && input.deploymentController.type !== "ECS") {
        throw InvalidParameter("Wharf supports only the ECS deployment controller.");
      }
      const strategy = input.schedulingStrategy ?? "REPLICA";
      if (strategy === "DAEMON" && input.desiredCount !== undefined) throw InvalidParameter(DAEMON_COUNT);
      if (strategy === "DAEMON" && input.placementStrategy !== undefined)
        throw InvalidParameter(DAEMON_STRATEGY);
      if (strategy === "REPLICA" && input.desiredCount === undefined) {
        throw InvalidParameter(
          "The desired count must be specified for a service with the REPLICA scheduling strategy.",
        );
      }
      if (input.taskDefinition === undefined) throw InvalidParameter("A task definition must be specified.");
      const taskDefinition = input.taskDefinition;
      const config = deploymentConfiguration(strategy, input.deploymentConfiguration);
      const now = ctx.now.getTime();
      const scope = scopeOf(ctx);
      const result = await store.transaction(async (tx) => {
        const cluster = await activeCluster(tx, scope, input.cluster);
        const definition = await definitionFor(tx, ctx, taskDefinition);
        const capacity = capacityOf(input, cluster);
        // A DAEMON service runs on the cluster's own instances: no strategy, not even the cluster's default.
        if (strategy === "DAEMON" && capacity.strategy !== undefined)
          throw InvalidParameter(DAEMON_PROVIDERS);
        if (strategy === "DAEMON" && capacity.launchType === "FARGATE")
          throw InvalidParameter(DAEMON_FARGATE);
        const launchType = capacity.launchType;
        checkAgainst(input, definition, launchType);
        const arn = serviceArn(scope, cluster.arn, input.serviceName);
        const existing = await findServiceByArn(tx, arn);
        if (existing?.status === "ACTIVE") {
          // The same clientToken asks again for what already happened.
          if (input.clientToken !== undefined && input.clientToken === existing.clientToken) {
            return { arn, service: await serviceShape(tx, existing, true), created: false };
          }
          throw InvalidParameter("Creation of service was not idempotent.");
        }
        if (existing?.status === "DRAINING")
          throw InvalidParameter("Unable to Start a service that is still Draining.");
        if (existing !== undefined) {
          await clearEvents(tx, arn);
          await removeAllTags(tx, arn);
        }
        const desiredCount = input.desiredCount ?? 0;
        const record: ServiceRecord = {
          arn,
          name: input.serviceName,
          clusterArn: cluster.arn,
          status: "ACTIVE",
          desiredCount,
          launchType: launchType === "FARGATE" ? "FARGATE" : "EC2",
          schedulingStrategy: strategy,
          taskDefinition: definition.taskDefinitionArn,
          deploymentConfiguration: config,
          placementConstraints: input.placementConstraints ?? [],
          placementStrategy: input.placementStrategy ?? [],
          loadBalancers: input.loadBalancers ?? [],
          serviceRegistries: input.serviceRegistries ?? [],
          enableECSManagedTags: input.enableECSManagedTags ?? false,
          propagateTags: input.propagateTags ?? "NONE",
          enableExecuteCommand: input.enableExecuteCommand ?? false,
          deployments: [
            newDeployment(newDeploymentId(random), definition.taskDefinitionArn, desiredCount, now, {
              networkConfiguration: input.networkConfiguration,
              capacityProviderStrategy: capacity.strategy,
              platformVersion: input.platformVersion,
            }),
          ],
          accessKeyId: ctx.identity.accessKeyId,
          createdBy: await principalArn(tx, ctx.identity.accessKeyId, ctx.accountId),
          createdAt: now,
          updatedAt: now,
        };
        if (input.networkConfiguration !== undefined)
          record.networkConfiguration = input.networkConfiguration;
        if (capacity.strategy !== undefined) record.capacityProviderStrategy = capacity.strategy;
        if (input.platformVersion !== undefined) record.platformVersion = input.platformVersion;
        if (input.healthCheckGracePeriodSeconds !== undefined)
          record.healthCheckGracePeriodSeconds = input.healthCheckGracePeriodSeconds;
        if (input.role !== undefined) record.role = input.role;
        if (input.clientToken !== undefined) record.clientToken = input.clientToken;
        await saveService(tx, record);
        await putTags(tx, arn, input.tags ?? []);
        return { arn, service: await serviceShape(tx, record, true), created: true };
      });
      if (result.created) onChange(result.arn);
      return { service: result.service };
    },

    async DescribeServices(raw, ctx) {
      const input = parseInput(DescribeServicesInput, raw, InvalidParameter);
      const scope = scopeOf(ctx);
      const includeTags = input.include?.includes("TAGS") ?? false;
      return store.read(async (tx) => {
        const cluster = await activeCluster(tx, scope, input.cluster);
        const services: Record<string, unknown>[] = [];
        const failures: Array<{ arn: string; reason: string }> = [];
        for (const reference of input.services) {
          const record = await findService(tx, scope, cluster.arn, reference);
          if (record === undefined) {
            const arn = reference.startsWith("arn:") ? reference : serviceArn(scope, cluster.arn, reference);
            failures.push({ arn, reason: "MISSING" });
          } else {
            services.push(await serviceShape(tx, record, includeTags));
          }
        }
        return { services, failures };
      });
    },

    async ListServices(raw, ctx) {
      const input = parseInput(ListServicesInput, raw, InvalidParameter);
      const limit = input.maxResults ?? 10;
      const after = decodeToken(input.nextToken, () => InvalidParameter("Invalid NextToken"));
      const arns = await store.read(async (tx) => {
        const cluster = await activeCluster(tx, scopeOf(ctx), input.cluster);
        return listServiceArns(tx, cluster.arn, after, limit, {
          launchType: input.launchType,
          schedulingStrategy: input.schedulingStrategy,
        });
      });
      const page = toPage(arns, limit, (arn) => arn);
      return page.nextToken === undefined
        ? { serviceArns: page.items }
        : { serviceArns: page.items, nextToken: page.nextToken };
    },

    async UpdateService(raw, ctx) {
      const input = parseInput(UpdateServiceInput, raw, InvalidParameter);
      const now = ctx.now.getTime();
      const scope = scopeOf(ctx);
      const result = await store.transaction(async (tx) => {
        const record = await activeService(tx, scope, input.cluster, input.service);
        const updated = await applyUpdate(tx, ctx, record, input, now, random);
        await saveService(tx, updated);
        return { arn: updated.arn, service: await serviceShape(tx, updated, false) };
      });
      onChange(result.arn);
      return { service: result.service };
    },

    async DeleteService(raw, ctx) {
      const input = parseInput(DeleteServiceInput, raw, InvalidParameter);
      const now = ctx.now.getTime();
      const scope = scopeOf(ctx);
      const result = await store.transaction(async (tx) => {
        const record = await activeService(tx, scope, input.cluster, input.service);
        if (record.schedulingStrategy === "REPLICA" && record.desiredCount > 0 && input.force !== true) {
          throw InvalidParameter("The service cannot be stopped while it is scaled above 0.");
        }
        const draining: ServiceRecord = {
          ...record,
          status: "DRAINING",
          desiredCount: 0,
          deployments: record.deployments.map((d) =>
            d.status === "PRIMARY" ? { ...d, desiredCount: 0 } : d,
          ),
          updatedAt: now,
        };
        await saveService(tx, draining);
        const shape = await serviceShape(tx, draining, false);
        shape.tags = toWireTags(await tagsOf(tx, draining.arn));
        return { arn: draining.arn, service: shape };
      });
      onChange(result.arn);
      return { service: result.service };
    },
  };
}

/**
 * UpdateService's changes. A new task definition, network configuration, load balancers, service
 * registries, platform version, capacity provider strategy or forceNewDeployment start a deployment; placement
 * constraints and strategies do not (ECS: "This parameter doesn't trigger a new service
 * deployment"), and apply to the tasks started from then on.
 */
async function applyUpdate(
  tx: Tx,
  ctx: RequestContext,
  record: ServiceRecord,
  input: UpdateServiceInputT,
  now: number,
  random: () => number,
): Promise<ServiceRecord> {
  const daemon = record.schedulingStrategy === "DAEMON";
  if (daemon && input.desiredCount !== undefined) throw InvalidParameter(DAEMON_COUNT);
  if (daemon && input.placementStrategy !== undefined) throw InvalidParameter(DAEMON_STRATEGY);
  const definition =
    input.taskDefinition === undefined
      ? ((await findTaskDefinition(tx, scopeOf(ctx), record.taskDefinition)) as
          | RunnableDefinition
          | undefined)
      : await definitionFor(tx, ctx, input.taskDefinition);
  if (definition === undefined) throw InvalidParameter("Unable to find task definition.");
  const updated: ServiceRecord = {
    ...record,
    taskDefinition: definition.taskDefinitionArn,
    deploymentConfiguration: deploymentConfiguration(
      record.schedulingStrategy,
      input.deploymentConfiguration,
      record.deploymentConfiguration,
    ),
    accessKeyId: ctx.identity.accessKeyId,
    updatedAt: now,
  };
  if (input.desiredCount !== undefined) updated.desiredCount = input.desiredCount;
  if (input.placementConstraints !== undefined) updated.placementConstraints = input.placementConstraints;
  if (input.placementStrategy !== undefined) updated.placementStrategy = input.placementStrategy;
  if (input.networkConfiguration !== undefined) updated.networkConfiguration = input.networkConfiguration;
  if (input.healthCheckGracePeriodSeconds !== undefined)
    updated.healthCheckGracePeriodSeconds = input.healthCheckGracePeriodSeconds;
  if (input.enableExecuteCommand !== undefined) updated.enableExecuteCommand = input.enableExecuteCommand;
  if (input.enableECSManagedTags !== undefined) updated.enableECSManagedTags = input.enableECSManagedTags;
  if (input.propagateTags !== undefined) updated.propagateTags = input.propagateTags;
  if (input.loadBalancers !== undefined) updated.loadBalancers = input.loadBalancers;
  if (input.serviceRegistries !== undefined) updated.serviceRegistries = input.serviceRegistries;
  if (input.platformVersion !== undefined) updated.platformVersion = input.platformVersion;
  const strategyChanged = await changeStrategy(tx, ctx, updated, input.capacityProviderStrategy);
  if (strategyChanged && input.forceNewDeployment !== true) throw InvalidParameter(STRATEGY_NEEDS_DEPLOYMENT);
  // A configuration given for another network mode went with the definition it was given for.
  if (input.networkConfiguration === undefined && definition.networkMode !== "awsvpc")
    delete updated.networkConfiguration;
  checkAgainst(
    {
      networkConfiguration: updated.networkConfiguration,
      placementConstraints: updated.placementConstraints,
      platformVersion: updated.platformVersion,
      ...(daemon ? {} : { placementStrategy: updated.placementStrategy }),
    },
    definition,
    updated.launchType,
    {
      networkConfiguration: input.networkConfiguration,
      placementConstraints: input.placementConstraints,
      platformVersion: input.platformVersion,
    },
  );
  const redeploy =
    input.forceNewDeployment === true ||
    strategyChanged ||
    definition.taskDefinitionArn !== record.taskDefinition ||
    input.networkConfiguration !== undefined ||
    input.loadBalancers !== undefined ||
    input.serviceRegistries !== undefined ||
    (input.platformVersion !== undefined && input.platformVersion !== (record.platformVersion ?? "LATEST"));
  if (redeploy) {
    // What the service has of these goes with the deployment (newDeployment keeps only those set).
    const next = newDeployment(
      newDeploymentId(random),
      updated.taskDefinition,
      updated.desiredCount,
      now,
      updated,
    );
    updated.deployments = promote(record.deployments, next, now);
  } else {
    updated.deployments = record.deployments.map((d) =>
      d.status === "PRIMARY" && !daemon ? { ...d, desiredCount: updated.desiredCount, updatedAt: now } : d,
    );
  }
  return updated;
}

/**
 * UpdateService's capacity provider strategy: checked against the cluster as CreateService's
 * is, and taken in place of the service's launch type or strategy; an empty list takes a
 * service with a strategy back to its launch type, as ECS does since June 2025. Wharf's providers
 * are all Fargate capacity, so a service on its cluster's own instances (EC2) cannot take one,
 * and the launch type a strategy goes back to is FARGATE. Whether the strategy changed (a new
 * deployment) is returned.
 */
async function changeStrategy(
  tx: Tx,
  ctx: RequestContext,
  updated: ServiceRecord,
  strategy: UpdateServiceInputT["capacityProviderStrategy"],
): Promise<boolean> {
  if (strategy === undefined) return false;
  if (strategy.length === 0) {
    if (updated.capacityProviderStrategy === undefined) return false;
    delete updated.capacityProviderStrategy;
    return true;
  }
  if (updated.schedulingStrategy === "DAEMON") throw InvalidParameter(DAEMON_PROVIDERS);
  const cluster = await activeCluster(tx, scopeOf(ctx), updated.clusterArn);
  checkStrategy(strategy, cluster);
  if (updated.launchType !== "FARGATE") {
    throw InvalidParameter("Wharf cannot change the launch type of a service: create a new service.");
  }
  const changed = JSON.stringify(strategy) !== JSON.stringify(updated.capacityProviderStrategy);
  updated.capacityProviderStrategy = strategy.map((item) => ({ ...item }));
  return changed;
}
