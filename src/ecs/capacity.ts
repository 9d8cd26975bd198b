import type { StrategyItem } from "../scheduler/capacity.ts";
import type { ClusterRecord } from "./clusters.ts";
import { InvalidParameter } from "./errors.ts";

/**
 * What a RunTask or CreateService call runs its tasks on: a launch type, or a capacity
 * provider strategy, its own or else the cluster's default one. Wharf's only capacity
 * providers are FARGATE and FARGATE_SPOT, both Wharf's Fargate capacity: a strategy always
 * means the FARGATE launch type, and its providers only name the tasks' `capacityProviderName`.
 */
export type Capacity =
  | { launchType: "EC2" | "FARGATE" | "EXTERNAL"; strategy?: undefined }
  | { launchType: "FARGATE"; strategy: StrategyItem[] };

export const BOTH_GIVEN =
  "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.";
export const NOT_ASSOCIATED =
  "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster. Associate the capacity provider with the cluster or specify a valid capacity provider and try again.";

/** ECS's checks of a strategy against the cluster it is used in. */
export function checkStrategy(
  strategy: readonly StrategyItem[],
  cluster: Pick<ClusterRecord, "capacityProviders">,
): void {
  const seen = new Set<string>();
  for (const item of strategy) {
    if (!cluster.capacityProviders.includes(item.capacityProvider)) throw InvalidParameter(NOT_ASSOCIATED);
    if (seen.has(item.capacityProvider)) {
      throw InvalidParameter(
        "The specified capacity provider strategy contains duplicate capacity providers.",
      );
    }
    seen.add(item.capacityProvider);
  }
  if (strategy.filter((item) => item.base > 0).length > 1) {
    throw InvalidParameter(
      "The specified capacity provider strategy can have a base defined for only one capacity provider.",
    );
  }
  if (strategy.length > 1 && strategy.every((item) => item.weight === 0)) {
    throw InvalidParameter(
      "The specified capacity provider strategy must have at least one capacity provider with a weight greater than zero.",
    );
  }
}

/** The capacity a call asks for; an empty strategy counts as none given. */
export function capacityOf(
  input: {
    launchType?: "EC2" | "FARGATE" | "EXTERNAL" | undefined;
    capacityProviderStrategy?: StrategyItem[] | undefined;
  },
  cluster: Pick<ClusterRecord, "capacityProviders" | "defaultCapacityProviderStrategy">,
): Capacity {
  const given = input.capacityProviderStrategy?.length ? input.capacityProviderStrategy : undefined;
  if (input.launchType !== undefined && given !== undefined) throw InvalidParameter(BOTH_GIVEN);
  if (input.launchType !== undefined) return { launchType: input.launchType };
  const strategy = given ?? cluster.defaultCapacityProviderStrategy;
  if (strategy.length === 0) return { launchType: "EC2" };
  checkStrategy(strategy, cluster);
  return { launchType: "FARGATE", strategy: strategy.map((item) => ({ ...item })) };
}
