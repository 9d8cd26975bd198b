import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { assignProviders, type StrategyItem, scaleInByProvider } from "./capacity.ts";

const tally = (providers: string[]) =>
  Object.fromEntries([...new Set(providers)].sort().map((p) => [p, providers.filter((q) => q === p).length]));

describe("capacity provider strategy: sharing tasks", () => {
  it("fills the base first, then shares the rest by weight", () => {
    const strategy: StrategyItem[] = [
      { capacityProvider: "FARGATE", base: 2, weight: 1 },
      { capacityProvider: "FARGATE_SPOT", base: 0, weight: 3 },
    ];
    const providers = assignProviders(strategy, new Map(), 10);
    assert.deepEqual(providers.slice(0, 2), ["FARGATE", "FARGATE"], "the base comes first");
    assert.deepEqual(tally(providers), { FARGATE: 4, FARGATE_SPOT: 6 }, "2 + 8 shared 1:3 is 2 and 6");
    assert.deepEqual(tally(assignProviders(strategy, new Map(), 1)), { FARGATE: 1 });
  });

  it("keeps every prefix of a scale-up as close to the ratio as it can be", () => {
    const strategy: StrategyItem[] = [
      { capacityProvider: "A", base: 0, weight: 1 },
      { capacityProvider: "B", base: 0, weight: 1 },
    ];
    const providers = assignProviders(strategy, new Map(), 6);
    for (let n = 1; n <= providers.length; n++) {
      const counts = tally(providers.slice(0, n));
      assert.ok(Math.abs((counts.A ?? 0) - (counts.B ?? 0)) <= 1, `balanced after ${n}`);
    }
    assert.equal(providers[0], "A", "a tie goes to the provider named first");
  });

  it("counts the tasks each provider has already", () => {
    const strategy: StrategyItem[] = [
      { capacityProvider: "FARGATE", base: 1, weight: 1 },
      { capacityProvider: "FARGATE_SPOT", base: 0, weight: 1 },
    ];
    const current = new Map([["FARGATE_SPOT", 3]]);
    assert.deepEqual(assignProviders(strategy, current, 3), ["FARGATE", "FARGATE", "FARGATE"]);
    assert.deepEqual(assignProviders(strategy, new Map([["FARGATE", 5]]), 2), [
      "FARGATE_SPOT",
      "FARGATE_SPOT",
    ]);
  });

  it("gives a provider of weight 0 its base only, unless it is the only one", () => {
    const strategy: StrategyItem[] = [
      { capacityProvider: "FARGATE", base: 1, weight: 0 },
      { capacityProvider: "FARGATE_SPOT", base: 0, weight: 1 },
    ];
    assert.deepEqual(tally(assignProviders(strategy, new Map(), 5)), { FARGATE: 1, FARGATE_SPOT: 4 });
    const alone: StrategyItem[] = [{ capacityProvider: "FARGATE_SPOT", base: 0, weight: 0 }];
    assert.deepEqual(assignProviders(alone, new Map(), 2), ["FARGATE_SPOT", "FARGATE_SPOT"]);
  });

  it("scales in from the providers above their share, keeping the base", () => {
    const strategy: StrategyItem[] = [
      { capacityProvider: "FARGATE", base: 2, weight: 1 },
      { capacityProvider: "FARGATE_SPOT", base: 0, weight: 1 },
    ];
    const have = new Map([
      ["FARGATE", 2],
      ["FARGATE_SPOT", 6],
    ]);
    assert.deepEqual([...scaleInByProvider(strategy, have, 4)], [["FARGATE_SPOT", 4]]);
    const even = new Map([
      ["FARGATE", 4],
      ["FARGATE_SPOT", 4],
    ]);
    // 6 tasks: the base of 2, then 4 shared 1:1.
    assert.deepEqual(Object.fromEntries(scaleInByProvider(strategy, even, 6)), { FARGATE_SPOT: 2 });
    // Tasks on no provider (started before the strategy) go first.
    const mixed = new Map([
      ["", 2],
      ["FARGATE", 3],
    ]);
    assert.deepEqual(Object.fromEntries(scaleInByProvider(strategy, mixed, 3)), { "": 2 });
    assert.deepEqual([...scaleInByProvider(strategy, have, 8)], [], "nothing to stop");
  });
});
