import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { prng } from "../../test/support/prng.ts";
import { type TaskFootprint, UsageIndex } from "./usage.ts";

/** The totals by summing every footprint again: what the index must always equal. */
function recompute(tasks: Map<string, TaskFootprint>) {
  const out = new Map<
    string,
    { cpu: number; memory: number; tcp: number[]; udp: number[]; groups: object; desiredRunning: number }
  >();
  for (const footprint of tasks.values()) {
    const totals = out.get(footprint.instanceArn) ?? {
      cpu: 0,
      memory: 0,
      tcp: [],
      udp: [],
      groups: {},
      desiredRunning: 0,
    };
    if (footprint.desiredRunning) totals.desiredRunning++;
    totals.cpu += footprint.cpu;
    totals.memory += footprint.memory;
    totals.tcp.push(...footprint.tcp);
    totals.udp.push(...footprint.udp);
    const groups = totals.groups as Record<string, number>;
    groups[footprint.group] = (groups[footprint.group] ?? 0) + 1;
    out.set(footprint.instanceArn, totals);
  }
  return out;
}

function expand(counts: ReadonlyMap<number, number>): number[] {
  return [...counts].flatMap(([port, n]) => Array.from({ length: n }, () => port)).sort((a, b) => a - b);
}

describe("UsageIndex", () => {
  it("equals a recomputation after any sequence of starts, changes and stops", () => {
    const random = prng(7);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
    const index = new UsageIndex();
    const truth = new Map<string, TaskFootprint>();
    const instances = ["i-1", "i-2", "i-3", "i-4"];
    for (let step = 0; step < 3000; step++) {
      const arn = `task-${Math.floor(random() * 200)}`;
      const footprint: TaskFootprint | undefined =
        random() < 0.35
          ? undefined
          : {
              instanceArn: pick(instances),
              cpu: pick([0, 64, 256]),
              memory: pick([128, 512]),
              tcp: random() < 0.3 ? [pick([80, 443, 8080])] : [],
              udp: random() < 0.1 ? [53] : [],
              group: pick(["family:a", "service:b", ""]),
              desiredRunning: random() < 0.5,
            };
      index.set(arn, footprint);
      if (footprint === undefined) truth.delete(arn);
      else truth.set(arn, footprint);
      if (step % 100 !== 0) continue;
      const expected = recompute(truth);
      assert.deepEqual(new Set(index.instances()), new Set(expected.keys()));
      for (const [instance, want] of expected) {
        const got = index.of(instance);
        assert.ok(got !== undefined);
        assert.equal(got.cpu, want.cpu);
        assert.equal(got.memory, want.memory);
        assert.deepEqual(
          expand(got.tcp),
          want.tcp.sort((a, b) => a - b),
        );
        assert.deepEqual(
          expand(got.udp),
          want.udp.sort((a, b) => a - b),
        );
        assert.deepEqual(Object.fromEntries(got.groups), want.groups);
        assert.equal(got.desiredRunning, want.desiredRunning);
      }
    }
  });

  it("reports which instances a change touched, and none for a change that holds the same", () => {
    const index = new UsageIndex();
    const on = (instanceArn: string): TaskFootprint => ({
      instanceArn,
      cpu: 10,
      memory: 20,
      tcp: [80],
      udp: [],
      group: "g",
      desiredRunning: false,
    });
    assert.deepEqual(index.set("t", on("a")), ["a"]);
    assert.deepEqual(index.set("t", on("a")), []);
    assert.deepEqual(index.set("t", { ...on("a"), desiredRunning: true }), ["a"], "asked to run");
    assert.equal(index.of("a")?.desiredRunning, 1);
    assert.deepEqual(index.set("t", on("b")), ["a", "b"]);
    assert.deepEqual(index.set("t", undefined), ["b"]);
    assert.equal(index.of("b"), undefined);
    assert.deepEqual(index.set("t", undefined), []);
  });

  it("keeps a port held while any task on the instance still holds it", () => {
    const index = new UsageIndex();
    const web = { instanceArn: "a", cpu: 0, memory: 0, tcp: [80], udp: [], group: "", desiredRunning: true };
    index.set("one", web);
    index.set("two", web);
    index.set("one", undefined);
    assert.deepEqual([...(index.of("a")?.tcp.keys() ?? [])], [80]);
    index.set("two", undefined);
    assert.equal(index.of("a"), undefined);
  });
});
