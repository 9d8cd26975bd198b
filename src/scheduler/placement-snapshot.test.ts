import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { prng } from "../../test/support/prng.ts";
import { type InstanceView, place, type Strategy } from "./placement.ts";
import { PlacementSnapshot } from "./placement-snapshot.ts";

const FIELDS = ["attribute:ecs.availability-zone", "attribute:rack", "instanceId", "host", "attribute:none"];
const GROUPS = ["g", "other", "absent"];

describe("PlacementSnapshot", () => {
  it("kept up to date view by view, answers as one built afresh, and place() chooses alike from both", () => {
    const random = prng(77);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
    const view = (arn: string): InstanceView => {
      const groups = new Map<string, number>();
      if (random() < 0.6) groups.set("g", Math.floor(random() * 4));
      if (random() < 0.3) groups.set("other", 1 + Math.floor(random() * 3));
      return {
        arn,
        instanceId: arn.slice(-8),
        status: random() < 0.9 ? "ACTIVE" : "DRAINING",
        connected: random() < 0.95,
        remaining: { cpu: Math.floor(random() * 8) * 128, memory: Math.floor(random() * 10) * 256 },
        ports: { tcp: new Set<number>(), udp: new Set<number>() },
        attributes: {
          "ecs.availability-zone": pick(["a", "b", "c"]),
          ...(random() < 0.8 ? { rack: pick(["r1", "r2"]) } : {}),
        },
        groups,
        runningTasks: 0,
      };
    };
    for (let world = 0; world < 60; world++) {
      const size = 1 + Math.floor(random() * 30);
      // Not in ARN order, so the order is worked out rather than taken as given.
      const arns = Array.from(
        { length: size },
        (_, n) =>
          `arn:aws:ecs:us-east-1:000000000000:container-instance/c/${Math.floor(random() * 1000)}-${n}`,
      );
      const kept = new PlacementSnapshot(arns.map(view));
      for (let step = 0; step < 40; step++) {
        // Ask first, so that what is asked for is kept (and updated by the changes that follow).
        const field = pick(FIELDS);
        const group = pick(GROUPS);
        const fresh = new PlacementSnapshot(kept.views);
        assert.deepEqual(kept.views, fresh.views);
        assert.deepEqual(kept.order, fresh.order);
        const a = kept.spread(field, group);
        const b = fresh.spread(field, group);
        // Ids are numbered in the order values were met, so compare what they mean: instance → load.
        const loads = (s: { ids: Int32Array; load: Float64Array }) => [...s.ids].map((id) => s.load[id]);
        assert.deepEqual(loads(a), loads(b), `world ${world} step ${step}: ${field} ${group}`);
        // Grouping is the same too: two instances share an id in one exactly when they do in the other.
        for (let i = 0; i < size; i++) {
          for (let j = 0; j < size; j++) assert.equal(a.ids[i] === a.ids[j], b.ids[i] === b.ids[j]);
        }
        // The caller may change the loads it is given; the snapshot's stay as they were.
        a.load.fill(99);
        const strategies: Strategy[] = pick([
          [{ type: "spread", field: "attribute:ecs.availability-zone" }],
          [
            { type: "spread", field: "attribute:ecs.availability-zone" },
            { type: "spread", field: "instanceId" },
          ],
          [{ type: "spread", field: "attribute:rack" }],
        ]);
        const needs = { cpu: 128, memory: 256, ports: { tcp: [], udp: [] }, group: pick(GROUPS) };
        const count = Math.floor(random() * 12);
        assert.deepEqual(
          place(kept, count, needs, [], strategies, random),
          place([...kept.views], count, needs, [], strategies, random),
        );
        // Then an instance changes: its tasks, what is left, sometimes its zone.
        const i = Math.floor(random() * size);
        const next = view(arns[i] as string);
        if (random() < 0.7) next.attributes = { ...(kept.views[i] as InstanceView).attributes };
        kept.set(i, next);
      }
    }
  });

  it("refuses to put another instance in an instance's place", () => {
    const views: InstanceView[] = ["a", "b"].map((arn) => ({
      arn,
      instanceId: arn,
      status: "ACTIVE",
      connected: true,
      remaining: { cpu: 1, memory: 1 },
      ports: { tcp: new Set(), udp: new Set() },
      attributes: {},
      groups: new Map(),
      runningTasks: 0,
    }));
    const snapshot = new PlacementSnapshot(views);
    assert.throws(() => snapshot.set(0, views[1] as InstanceView));
  });
});

describe("PlacementSnapshot.generation", () => {
  it("moves when an instance's status, connection or attributes change, not what it holds", () => {
    const base: InstanceView = {
      arn: "arn:aws:ecs:us-east-1:000000000000:container-instance/c/1",
      instanceId: "i-1",
      status: "ACTIVE",
      connected: true,
      remaining: { cpu: 1024, memory: 2048 },
      ports: { tcp: new Set(), udp: new Set() },
      attributes: { "ecs.availability-zone": "a", rack: "r1" },
      groups: new Map(),
      runningTasks: 0,
    };
    const kept = new PlacementSnapshot([base]);
    const next = (change: Partial<InstanceView>): number => {
      const before = kept.views[0] as InstanceView;
      // A view is built afresh each time, attributes included, as the scheduler's state builds it.
      kept.set(0, { ...before, attributes: { ...before.attributes }, ...change });
      return kept.generation;
    };
    assert.equal(kept.generation, 0);
    assert.equal(next({ remaining: { cpu: 768, memory: 1536 }, groups: new Map([["g", 1]]) }), 0);
    assert.equal(next({ ports: { tcp: new Set([80]), udp: new Set() } }), 0);
    assert.equal(next({ connected: false }), 1);
    assert.equal(next({ connected: true }), 2);
    assert.equal(next({ status: "DRAINING" }), 3);
    assert.equal(next({ attributes: { "ecs.availability-zone": "b", rack: "r1" } }), 4);
    assert.equal(next({ attributes: { "ecs.availability-zone": "b" } }), 5);
    assert.equal(next({ attributes: { "ecs.availability-zone": "b", color: "blue" } }), 6);
    assert.equal(next({}), 6);
  });
});

describe("place() from a kept snapshot with one spread over zones", () => {
  it("chooses what the pass over every instance chooses, as instances fill, leave, lose their agent and change zone", () => {
    const random = prng(505);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
    const view = (arn: string, zones: string[]): InstanceView => {
      const groups = new Map<string, number>();
      if (random() < 0.5) groups.set("g", Math.floor(random() * 3));
      return {
        arn,
        instanceId: arn.slice(-8),
        status: random() < 0.9 ? "ACTIVE" : pick(["DRAINING", "INACTIVE"]),
        connected: random() < 0.9,
        // Room for 0-4 tasks of the sizes below, CPU and memory not alike, so either can run out first.
        remaining: { cpu: Math.floor(random() * 5) * 128, memory: Math.floor(random() * 5) * 256 },
        ports: { tcp: new Set<number>(), udp: new Set<number>() },
        attributes: random() < 0.9 ? { "ecs.availability-zone": pick(zones) } : {},
        groups,
        runningTasks: 0,
      };
    };
    let firstFit = 0;
    for (let world = 0; world < 80; world++) {
      const zones = ["a", "b", "c", "d"].slice(0, 1 + Math.floor(random() * 4));
      const size = 1 + Math.floor(random() * 200);
      const arns = Array.from(
        { length: size },
        (_, n) =>
          `arn:aws:ecs:us-east-1:000000000000:container-instance/c/${Math.floor(random() * 1e6)}-${n}`,
      );
      const kept = new PlacementSnapshot(arns.map((arn) => view(arn, zones)));
      for (let step = 0; step < 30; step++) {
        const strategies: Strategy[] = [
          { type: "spread", field: pick(["attribute:ecs.availability-zone", "attribute:none"]) },
        ];
        const needs = {
          cpu: pick([0, 64, 128]),
          memory: pick([128, 256]),
          ports: { tcp: [], udp: [] },
          group: pick(["g", "other"]),
        };
        const count = Math.floor(random() * 40);
        const expected = place([...kept.views], count, needs, [], strategies, random);
        assert.deepEqual(
          place(kept, count, needs, [], strategies, random),
          expected,
          `world ${world} step ${step}`,
        );
        if (expected.failures.length === 0 && count > 0) firstFit++;
        // Then some instances change as the scheduler's state would change them.
        for (let k = Math.floor(random() * 4); k > 0; k--) {
          const i = Math.floor(random() * size);
          const next = view(arns[i] as string, zones);
          if (random() < 0.8) next.attributes = { ...(kept.views[i] as InstanceView).attributes };
          kept.set(i, next);
        }
      }
    }
    // Most calls placed every task (the rest ran out of room and compared their failures).
    assert.ok(firstFit > 1000, `${firstFit}`);
  });
});
