import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { prng } from "../../test/support/prng.ts";
import { type Constraint, type InstanceView, place, type Strategy, type TaskNeeds } from "./placement.ts";
import { parseQuery } from "./query.ts";

/** What a field of a spread strategy makes of an instance. */
function fieldValue(instance: InstanceView, field: string): string {
  if (field === "instanceId" || field === "host") return instance.arn;
  return instance.attributes[field.replace(/^attribute:/, "")] ?? "";
}

/**
 * Placement written the straightforward way, as the reference: for each task,
 * the instances it fits, sorted by the strategies in order (spread: the group's
 * tasks on instances with the same value, over the whole cluster; binpack: what
 * is left), then ARN; take the first.
 */
function reference(
  snapshot: readonly InstanceView[],
  count: number,
  needs: TaskNeeds,
  constraints: Constraint[],
  strategies: Strategy[],
): string[] {
  const world = snapshot.map((instance) => ({
    ...instance,
    remaining: { ...instance.remaining },
    ports: { tcp: new Set(instance.ports.tcp), udp: new Set(instance.ports.udp) },
    groups: new Map(instance.groups),
  }));
  const fits = (instance: InstanceView) =>
    instance.status === "ACTIVE" &&
    instance.connected &&
    !constraints.some((c) => c.type === "distinctInstance" && (instance.groups.get(needs.group) ?? 0) > 0) &&
    // The only memberOf expression generated below.
    !constraints.some((c) => c.type === "memberOf" && instance.attributes.rack === undefined) &&
    instance.remaining.cpu >= needs.cpu &&
    instance.remaining.memory >= needs.memory &&
    !needs.ports.tcp.some((p) => instance.ports.tcp.has(p)) &&
    !needs.ports.udp.some((p) => instance.ports.udp.has(p));
  const load = (instance: InstanceView, field: string) =>
    world
      .filter((other) => fieldValue(other, field) === fieldValue(instance, field))
      .reduce((sum, other) => sum + (other.groups.get(needs.group) ?? 0), 0);
  const keys = (instance: InstanceView) =>
    strategies.map((s) =>
      s.type === "spread"
        ? load(instance, s.field ?? "instanceId")
        : instance.remaining[s.field === "cpu" ? "cpu" : "memory"],
    );
  const out: string[] = [];
  for (let n = 0; n < count; n++) {
    const ranked = world
      .filter(fits)
      .map((instance) => ({ instance, keys: keys(instance) }))
      .sort((a, b) => {
        for (let k = 0; k < a.keys.length; k++) {
          const d = (a.keys[k] as number) - (b.keys[k] as number);
          if (d !== 0) return d;
        }
        return a.instance.arn < b.instance.arn ? -1 : a.instance.arn > b.instance.arn ? 1 : 0;
      });
    const chosen = ranked[0]?.instance;
    if (chosen === undefined) break;
    chosen.remaining.cpu -= needs.cpu;
    chosen.remaining.memory -= needs.memory;
    for (const p of needs.ports.tcp) chosen.ports.tcp.add(p);
    for (const p of needs.ports.udp) chosen.ports.udp.add(p);
    chosen.groups.set(needs.group, (chosen.groups.get(needs.group) ?? 0) + 1);
    out.push(chosen.arn);
  }
  return out;
}

const STRATEGIES: Strategy[][] = [
  [
    { type: "spread", field: "attribute:ecs.availability-zone" },
    { type: "spread", field: "instanceId" },
  ],
  [{ type: "spread", field: "attribute:ecs.availability-zone" }],
  [{ type: "spread", field: "instanceId" }],
  [
    { type: "spread", field: "attribute:rack" },
    { type: "spread", field: "attribute:ecs.availability-zone" },
  ],
  [
    { type: "spread", field: "attribute:ecs.availability-zone" },
    { type: "spread", field: "attribute:rack" },
    { type: "spread", field: "host" },
  ],
  [
    { type: "spread", field: "attribute:ecs.availability-zone" },
    { type: "binpack", field: "memory" },
  ],
  [{ type: "binpack", field: "cpu" }],
  [],
];

describe("place over generated snapshots", () => {
  it("chooses exactly what the straightforward sort-per-task placement chooses", () => {
    const random = prng(2024);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
    for (let world = 0; world < 300; world++) {
      const size = 1 + Math.floor(random() * 40);
      const zones = ["a", "b", "c", "d"].slice(0, 1 + Math.floor(random() * 4));
      const snapshot: InstanceView[] = Array.from({ length: size }, (_, n) => {
        // Not in ARN order, so the ARN tie-break is exercised.
        const id = String(Math.floor(random() * 1000)).padStart(4, "0") + String(n).padStart(3, "0");
        const groups = new Map<string, number>();
        if (random() < 0.5) groups.set("g", Math.floor(random() * 4));
        if (random() < 0.3) groups.set("other", Math.floor(random() * 3));
        return {
          arn: `arn:aws:ecs:us-east-1:000000000000:container-instance/c/${id}`,
          instanceId: `i-${id}`,
          status: random() < 0.9 ? "ACTIVE" : pick(["DRAINING", "INACTIVE"]),
          connected: random() < 0.95,
          remaining: { cpu: Math.floor(random() * 8) * 128, memory: Math.floor(random() * 10) * 256 },
          ports: { tcp: new Set(random() < 0.2 ? [80] : []), udp: new Set<number>() },
          attributes: {
            "ecs.availability-zone": pick(zones),
            ...(random() < 0.8 ? { rack: pick(["r1", "r2", "r3"]) } : {}),
          },
          groups,
          runningTasks: 0,
        };
      });
      const needs: TaskNeeds = {
        cpu: pick([0, 64, 128, 256]),
        memory: pick([128, 256, 512]),
        ports: { tcp: random() < 0.2 ? [80] : [], udp: [] },
        group: "g",
      };
      const constraints: Constraint[] =
        random() < 0.2
          ? [{ type: "distinctInstance" }]
          : random() < 0.1
            ? [{ type: "memberOf", expression: parseQuery("attribute:rack exists") }]
            : [];
      const strategies = pick(STRATEGIES);
      const count = Math.floor(random() * 30);
      const plan = place(snapshot, count, needs, constraints, strategies, Math.random);
      assert.deepEqual(
        plan.placements,
        reference(snapshot, count, needs, constraints, strategies),
        `world ${world}, strategies ${JSON.stringify(strategies)}`,
      );
    }
  });
});
