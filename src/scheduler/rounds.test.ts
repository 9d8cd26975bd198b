import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { arrangeRounds, roundsLeft, takeRounds } from "./rounds.ts";

function seeded(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 48271) % 2147483647;
    return state / 2147483647;
  };
}

const oneGroup = () => "";

function tally(list: readonly string[], key: (arn: string) => string = (arn) => arn): Map<string, number> {
  const out = new Map<string, number>();
  for (const arn of list) out.set(key(arn), (out.get(key(arn)) ?? 0) + 1);
  return out;
}

describe("rounds", () => {
  it("takes up to two of each instance's tasks a round, instances in the order the plan first chose them", () => {
    const rounds = arrangeRounds(["a", "b", "a", "b", "c", "a"], oneGroup);
    assert.deepEqual(takeRounds(rounds, 3).chosen, ["a", "a", "b"]);
    assert.deepEqual(takeRounds(rounds, 5).chosen, ["a", "a", "b", "b", "c"]);
    assert.deepEqual(takeRounds(rounds, 10).chosen, ["a", "a", "b", "b", "c", "a"]);
    // Taking leaves the arrangement as it was; the rest goes on where the take ended.
    const { rest } = takeRounds(rounds, 3);
    assert.equal(roundsLeft(rounds), 6);
    assert.equal(roundsLeft(rest), 3);
    assert.deepEqual(takeRounds(rest, 3).chosen, ["b", "c", "a"]);
    assert.equal(roundsLeft(takeRounds(rest, 3).rest), 0);
    // A second round once every instance had its two.
    assert.deepEqual(takeRounds(arrangeRounds(["a", "a", "a", "a", "b"], oneGroup), 4).chosen, [
      "a",
      "a",
      "b",
      "a",
    ]);
    assert.deepEqual(takeRounds(arrangeRounds([], oneGroup), 3).chosen, []);
  });

  it("gives each group its share of the plan at every point of it", () => {
    const groupOf = (arn: string) => arn.slice(0, 1);
    const plan = ["x1", "y1", "z1", "x2", "y1", "z1", "x1", "y2", "z1"];
    const rounds = arrangeRounds(plan, groupOf);
    const first = takeRounds(rounds, 4);
    assert.deepEqual(first.chosen.map(groupOf), ["x", "y", "z", "x"]);
    assert.deepEqual(takeRounds(first.rest, 5).chosen.map(groupOf), ["y", "z", "x", "y", "z"]);
  });

  it("over any sequence of takes: the plan's shares, at most two an instance a round, nothing lost", () => {
    const random = seeded(7);
    for (let round = 0; round < 500; round++) {
      const instances = Array.from({ length: 1 + Math.floor(random() * 12) }, (_, i) => `i${i}`);
      const groupOf = (arn: string) => `g${Number(arn.slice(1)) % 3}`;
      const plan = Array.from(
        { length: Math.floor(random() * 60) },
        () => instances[Math.floor(random() * instances.length)] as string,
      );
      let rounds = arrangeRounds(plan, groupOf);
      const all: string[] = [];
      while (roundsLeft(rounds) > 0) {
        const count = 1 + Math.floor(random() * 20);
        const at = plan.length - roundsLeft(rounds);
        const { chosen, rest } = takeRounds(rounds, count);
        assert.equal(chosen.length, Math.min(count, plan.length - at));
        // Each group exactly as many as the plan gives it over the same stretch.
        assert.deepEqual(
          [...tally(chosen, groupOf)].sort(),
          [...tally(plan.slice(at, at + count), groupOf)].sort(),
        );
        all.push(...chosen);
        rounds = rest;
      }
      // Everything planned is taken once; taken in rounds, no instance gets a task of its
      // group's round r + 1 while another of that group still has some of round r to come.
      assert.deepEqual([...all].sort(), [...plan].sort());
      const share = tally(plan);
      const seen = new Map<string, number>();
      const roundOf = new Map<string, number[]>();
      for (const arn of all) {
        const k = seen.get(arn) ?? 0;
        seen.set(arn, k + 1);
        const group = groupOf(arn);
        const list = roundOf.get(group) ?? [];
        list.push(Math.floor(k / 2));
        roundOf.set(group, list);
      }
      for (const [group, list] of roundOf) {
        for (let i = 1; i < list.length; i++) {
          assert.ok((list[i] as number) >= (list[i - 1] as number), `${group}: rounds in order`);
        }
      }
      assert.deepEqual(seen, share);
    }
  });
});
