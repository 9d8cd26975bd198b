/**
 * How a capacity provider strategy shares a service's (or a RunTask call's) tasks between its
 * providers, as ECS does it: `base` tasks go to the provider that names one first, and every
 * task beyond the bases goes where it keeps the providers closest to their `weight` ratio (ties
 * to the provider named first). A provider of weight 0 gets only its base, unless it is the only
 * provider. Pure.
 */

export interface StrategyItem {
  capacityProvider: string;
  weight: number;
  base: number;
}

/** The providers of `count` new tasks, in order, given how many tasks each provider has already. */
export function assignProviders(
  strategy: readonly StrategyItem[],
  current: ReadonlyMap<string, number>,
  count: number,
): string[] {
  const counts = new Map(current);
  const has = (item: StrategyItem) => counts.get(item.capacityProvider) ?? 0;
  const weighted = strategy.filter((item) => item.weight > 0);
  const pool = weighted.length > 0 ? weighted : strategy.slice(0, 1);
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    let chosen = strategy.find((item) => has(item) < item.base);
    if (chosen === undefined) {
      // The provider whose share beyond its base, with this task, is smallest against its weight.
      for (const item of pool) {
        if (chosen === undefined) {
          chosen = item;
          continue;
        }
        const mine = (Math.max(0, has(item) - item.base) + 1) * Math.max(1, chosen.weight);
        const best = (Math.max(0, has(chosen) - chosen.base) + 1) * Math.max(1, item.weight);
        if (mine < best) chosen = item;
      }
    }
    if (chosen === undefined) break;
    counts.set(chosen.capacityProvider, has(chosen) + 1);
    out.push(chosen.capacityProvider);
  }
  return out;
}

/**
 * How many tasks to stop on each provider when `have` tasks (by provider; "" for tasks on none)
 * shrink to `desired`: from the providers furthest above what the strategy gives `desired`
 * tasks, so that those that stay keep the base and the weights.
 */
export function scaleInByProvider(
  strategy: readonly StrategyItem[],
  have: ReadonlyMap<string, number>,
  desired: number,
): Map<string, number> {
  const target = new Map<string, number>();
  for (const provider of assignProviders(strategy, new Map(), desired))
    target.set(provider, (target.get(provider) ?? 0) + 1);
  let left = [...have.values()].reduce((a, b) => a + b, 0) - desired;
  const over = [...have]
    .map(([provider, n]) => ({ provider, excess: n - (target.get(provider) ?? 0) }))
    .filter((entry) => entry.excess > 0)
    .sort((a, b) => b.excess - a.excess);
  const out = new Map<string, number>();
  for (const { provider, excess } of over) {
    if (left <= 0) break;
    const n = Math.min(excess, left);
    out.set(provider, n);
    left -= n;
  }
  return out;
}
