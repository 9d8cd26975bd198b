import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { prng } from "../../test/support/prng.ts";
import {
  type Constraint,
  type InstanceView,
  instanceSubjects,
  type PlacementPlan,
  place,
  type Strategy,
  type TaskNeeds,
} from "./placement.ts";
import { evaluate, parseQuery } from "./query.ts";

interface InstanceSpec {
  zone?: string;
  cpu?: number;
  memory?: number;
  status?: string;
  connected?: boolean;
  tcp?: number[];
  udp?: number[];
  attributes?: Record<string, string>;
  groups?: Record<string, number>;
  /** How many of its tasks are to run (desired status RUNNING); all of them unless told. */
  running?: number;
}

function instance(n: number, spec: InstanceSpec = {}): InstanceView {
  const id = String(n).padStart(3, "0");
  return {
    arn: `arn:aws:ecs:us-east-1:000000000000:container-instance/c/${id}`,
    instanceId: `i-${id}`,
    status: spec.status ?? "ACTIVE",
    connected: spec.connected ?? true,
    remaining: { cpu: spec.cpu ?? 2048, memory: spec.memory ?? 4096 },
    ports: { tcp: new Set(spec.tcp ?? [22]), udp: new Set(spec.udp ?? []) },
    attributes: { "ecs.availability-zone": spec.zone ?? "us-east-1a", ...spec.attributes },
    groups: new Map(Object.entries(spec.groups ?? {})),
    runningTasks: spec.running ?? Object.values(spec.groups ?? {}).reduce((a, b) => a + b, 0),
  };
}

function needs(partial: Partial<TaskNeeds> = {}): TaskNeeds {
  return { cpu: 0, memory: 128, ports: { tcp: [], udp: [] }, group: "family:web", ...partial };
}

const SPREAD_ZONES: Strategy[] = [{ type: "spread", field: "attribute:ecs.availability-zone" }];
const never = () => {
  throw new Error("random used by a strategy that should not need it");
};

/** Tasks placed per instance ARN. */
function tally(plan: PlacementPlan): Map<string, number> {
  const counts = new Map<string, number>();
  for (const arn of plan.placements) counts.set(arn, (counts.get(arn) ?? 0) + 1);
  return counts;
}

function byArn(instances: InstanceView[]): Map<string, InstanceView> {
  return new Map(instances.map((i) => [i.arn, i]));
}

/** A generated cluster: instances in 1–4 zones, varied sizes, colours and existing tasks. */
function world(random: () => number, size: number): InstanceView[] {
  const zones = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"].slice(
    0,
    1 + Math.floor(random() * 4),
  );
  const colours = ["blue", "green", "red"];
  return Array.from({ length: size }, (_, n) => {
    const attributes: Record<string, string> = {};
    if (random() < 0.7) attributes.color = colours[Math.floor(random() * colours.length)] ?? "blue";
    if (random() < 0.3) attributes.gpu = "";
    return instance(n, {
      zone: zones[Math.floor(random() * zones.length)] ?? "us-east-1a",
      cpu: 256 * Math.floor(random() * 9),
      memory: 256 * Math.floor(random() * 17),
      tcp: random() < 0.3 ? [22, 80] : [22],
      attributes,
      groups: random() < 0.3 ? { "family:web": Math.floor(random() * 3) } : {},
    });
  });
}

describe("placement: spread", () => {
  it("spreads tasks over availability zones, balanced within one, whatever the zones' sizes", () => {
    // Zone a has four instances, b one, c two: spreading is by zone, not by instance.
    const zones = [
      "us-east-1a",
      "us-east-1a",
      "us-east-1a",
      "us-east-1a",
      "us-east-1b",
      "us-east-1c",
      "us-east-1c",
    ];
    const instances = zones.map((zone, n) => instance(n, { zone, memory: 100_000 }));
    const zoneOf = byArn(instances);
    for (let count = 1; count <= 30; count++) {
      const plan = place(instances, count, needs(), [], SPREAD_ZONES, never);
      assert.equal(plan.placements.length, count);
      const perZone = new Map<string, number>([
        ["us-east-1a", 0],
        ["us-east-1b", 0],
        ["us-east-1c", 0],
      ]);
      for (const arn of plan.placements) {
        const zone = zoneOf.get(arn)?.attributes["ecs.availability-zone"] ?? "";
        perZone.set(zone, (perZone.get(zone) ?? 0) + 1);
      }
      const counts = [...perZone.values()];
      assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, `count ${count}: ${counts.join(",")}`);
    }
  });

  it("evens out zones that already run tasks of the group before adding elsewhere", () => {
    const instances = [
      instance(0, { zone: "us-east-1a", groups: { "family:web": 3 } }),
      instance(1, { zone: "us-east-1b", groups: { "family:web": 1, "family:other": 5 } }),
      instance(2, { zone: "us-east-1c" }),
    ];
    const plan = place(instances, 6, needs(), [], SPREAD_ZONES, never);
    const counts = tally(plan);
    // Only family:web counts: b gets 2 and c gets 3 to reach 3/3/3, then the sixth goes to a.
    assert.equal(counts.get(instances[0]?.arn ?? ""), 1);
    assert.equal(counts.get(instances[1]?.arn ?? ""), 2);
    assert.equal(counts.get(instances[2]?.arn ?? ""), 3);
    assert.deepEqual(plan.failures, []);
  });

  it("spreads over instances (instanceId) one task each before any gets a second", () => {
    const instances = Array.from({ length: 5 }, (_, n) => instance(n));
    const plan = place(instances, 12, needs(), [], [{ type: "spread", field: "instanceId" }], never);
    const counts = [...tally(plan).values()];
    assert.equal(counts.length, 5);
    assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, counts.join(","));
  });

  it("breaks spread ties with binpack when both are given (spread by zone, then binpack memory)", () => {
    const instances = [
      instance(0, { zone: "us-east-1a", memory: 4096 }),
      instance(1, { zone: "us-east-1a", memory: 1024 }),
      instance(2, { zone: "us-east-1b", memory: 8192 }),
      instance(3, { zone: "us-east-1b", memory: 512 }),
    ];
    const plan = place(
      instances,
      2,
      needs({ memory: 256 }),
      [],
      [...SPREAD_ZONES, { type: "binpack", field: "memory" }],
      never,
    );
    assert.deepEqual(new Set(plan.placements), new Set([instances[1]?.arn, instances[3]?.arn]));
  });

  it("stays balanced over generated clusters whenever every zone has room", () => {
    const random = prng(7);
    for (let round = 0; round < 200; round++) {
      const instances = world(random, 2 + Math.floor(random() * 10)).map((i) => ({
        ...i,
        remaining: { cpu: 100_000, memory: 100_000 },
        groups: new Map<string, number>(),
      }));
      const count = 1 + Math.floor(random() * 20);
      const plan = place(instances, count, needs(), [], SPREAD_ZONES, never);
      assert.equal(plan.placements.length, count);
      const zones = new Map<string, number>();
      for (const i of instances) zones.set(i.attributes["ecs.availability-zone"] ?? "", 0);
      const zoneOf = byArn(instances);
      for (const arn of plan.placements) {
        const zone = zoneOf.get(arn)?.attributes["ecs.availability-zone"] ?? "";
        zones.set(zone, (zones.get(zone) ?? 0) + 1);
      }
      const counts = [...zones.values()];
      assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, `round ${round}: ${counts.join(",")}`);
    }
  });
});

describe("placement: binpack", () => {
  it("fills the instance with the least memory left before using another", () => {
    const instances = [
      instance(0, { memory: 2048 }),
      instance(1, { memory: 1024 }),
      instance(2, { memory: 3072 }),
    ];
    const plan = place(
      instances,
      6,
      needs({ memory: 512 }),
      [],
      [{ type: "binpack", field: "memory" }],
      never,
    );
    assert.deepEqual(plan.placements, [
      instances[1]?.arn,
      instances[1]?.arn,
      instances[0]?.arn,
      instances[0]?.arn,
      instances[0]?.arn,
      instances[0]?.arn,
    ]);
  });

  it("binpacks on CPU when asked", () => {
    const instances = [instance(0, { cpu: 1024, memory: 512 }), instance(1, { cpu: 512, memory: 8192 })];
    const plan = place(
      instances,
      3,
      needs({ cpu: 256, memory: 64 }),
      [],
      [{ type: "binpack", field: "cpu" }],
      never,
    );
    assert.deepEqual(plan.placements, [instances[1]?.arn, instances[1]?.arn, instances[0]?.arn]);
  });
});

describe("placement: random", () => {
  it("uses the random source: placements vary with it and repeat with the same seed", () => {
    const instances = Array.from({ length: 8 }, (_, n) => instance(n, { memory: 100_000 }));
    const random: Strategy[] = [{ type: "random" }];
    const a = place(instances, 40, needs(), [], random, prng(1));
    const again = place(instances, 40, needs(), [], random, prng(1));
    const b = place(instances, 40, needs(), [], random, prng(2));
    assert.deepEqual(a.placements, again.placements);
    assert.notDeepEqual(a.placements, b.placements);
    assert.ok(tally(a).size >= 5, "forty random placements touch most of eight instances");
  });

  it("picks the instance the random source ranks first", () => {
    const instances = [instance(0), instance(1), instance(2)];
    const values = [0.9, 0.1, 0.5];
    let i = 0;
    const plan = place(
      instances,
      1,
      needs(),
      [],
      [{ type: "random" }],
      () => values[i++ % values.length] ?? 0,
    );
    assert.deepEqual(plan.placements, [instances[1]?.arn]);
  });
});

describe("placement: constraints", () => {
  it("memberOf sees an instance's registeredAt, agentVersion, ec2InstanceId and running task count", () => {
    const instances = [
      { ...instance(0), registeredAt: Date.parse("2024-01-10T00:00:00Z"), agentVersion: "1.9.0" },
      { ...instance(1), registeredAt: Date.parse("2025-03-01T12:00:00Z"), agentVersion: "1.20.0" },
      { ...instance(2, { groups: { "family:web": 2 } }), registeredAt: Date.parse("2025-06-01T00:00:00Z") },
    ];
    const target = (expression: string) => {
      const constraints: Constraint[] = [{ type: "memberOf", expression: parseQuery(expression) }];
      const plan = place(instances, 1, needs(), constraints, SPREAD_ZONES, never);
      return plan.placements.map((arn) => arn.slice(-3));
    };
    assert.deepEqual(target("registeredAt < 2025-01-01"), ["000"]);
    assert.deepEqual(target("registeredAt >= 2025-03-01T12:00:00Z and agentVersion exists"), ["001"]);
    assert.deepEqual(target("agentVersion >= 1.10.0"), ["001"]);
    assert.deepEqual(target("not(agentVersion exists)"), ["002"]);
    assert.deepEqual(target("ec2InstanceId == i-002"), ["002"]);
    assert.deepEqual(target("runningTasksCount > 1"), ["002"]);
  });

  it("counts the tasks whose desired status is RUNNING for runningTasksCount, as ECS does", () => {
    const instances = [
      instance(0, { groups: { "family:web": 2 }, running: 0 }),
      instance(1, { groups: { "family:web": 1 }, running: 1 }),
    ];
    const target = (expression: string) =>
      place(
        instances,
        1,
        needs(),
        [{ type: "memberOf", expression: parseQuery(expression) }],
        SPREAD_ZONES,
        never,
      ).placements.map((arn) => arn.slice(-3));
    assert.deepEqual(target("runningTasksCount == 0"), ["000"], "two tasks, both being stopped");
    assert.deepEqual(target("runningTasksCount == 1"), ["001"]);
  });

  it("counts the tasks one call places toward runningTasksCount as it goes", () => {
    const empty = [instance(0), instance(1), instance(2)];
    const plan = place(
      empty,
      3,
      needs(),
      [{ type: "memberOf", expression: parseQuery("runningTasksCount == 0") }],
      [{ type: "binpack", field: "memory" }],
      never,
    );
    assert.deepEqual(
      plan.placements.map((arn) => arn.slice(-3)).sort(),
      ["000", "001", "002"],
      "one to an instance: each is no longer empty once it has one",
    );
  });

  it("distinctInstance puts each task of the group on a different instance", () => {
    const instances = [
      instance(0),
      instance(1, { groups: { "family:web": 1 } }),
      instance(2, { groups: { "family:other": 4 } }),
      instance(3),
    ];
    const constraints: Constraint[] = [{ type: "distinctInstance" }];
    const plan = place(instances, 5, needs(), constraints, SPREAD_ZONES, never);
    assert.equal(plan.placements.length, 3, "three instances run no web task yet");
    assert.equal(new Set(plan.placements).size, 3);
    assert.ok(!plan.placements.includes(instances[1]?.arn ?? ""), "not beside the web task already there");
    assert.deepEqual(
      plan.failures.map((f) => f.reason),
      ["ATTRIBUTE", "ATTRIBUTE", "ATTRIBUTE", "ATTRIBUTE"],
    );
  });

  it("memberOf is never violated, over generated clusters and expressions", () => {
    const expressions = [
      "attribute:color == blue",
      "attribute:color in [green, red]",
      "not(attribute:color exists)",
      "attribute:gpu exists and attribute:ecs.availability-zone != us-east-1a",
      "attribute:ecs.availability-zone =~ 'us-east-1[bc]'",
      "runningTasksCount < 2",
      "task:group == family:web",
    ];
    const random = prng(42);
    let placed = 0;
    let refused = 0;
    for (let round = 0; round < 300; round++) {
      const instances = world(random, 1 + Math.floor(random() * 12));
      const expression = expressions[round % expressions.length] ?? "";
      const constraints: Constraint[] = [{ type: "memberOf", expression: parseQuery(expression) }];
      const strategies: Strategy[] = [
        SPREAD_ZONES,
        [{ type: "binpack", field: "memory" }] as Strategy[],
        [{ type: "random" }] as Strategy[],
      ][round % 3] as Strategy[];
      const plan = place(instances, 1 + Math.floor(random() * 6), needs(), constraints, strategies, random);
      const all = byArn(instances);
      for (const arn of plan.placements) {
        const target = all.get(arn);
        assert.ok(target !== undefined, "a known instance");
        assert.ok(evaluate(parseQuery(expression), instanceSubjects(target)), `${expression} on ${arn}`);
        placed++;
      }
      for (const failure of plan.failures) {
        const target = all.get(failure.arn);
        assert.ok(target !== undefined, "a known instance");
        if (!evaluate(parseQuery(expression), instanceSubjects(target))) {
          assert.equal(failure.reason, "ATTRIBUTE");
          refused++;
        }
      }
    }
    assert.ok(placed > 50 && refused > 50, `the generated cases exercise both sides (${placed}/${refused})`);
  });
});

describe("placement: resources", () => {
  it("never books a static host port twice on an instance, per protocol", () => {
    const instances = [instance(0), instance(1, { tcp: [22, 8080] }), instance(2, { udp: [8080] })];
    const tcp = place(
      instances,
      4,
      needs({ ports: { tcp: [8080], udp: [] } }),
      [],
      [{ type: "binpack", field: "memory" }],
      never,
    );
    assert.deepEqual(new Set(tcp.placements), new Set([instances[0]?.arn, instances[2]?.arn]));
    assert.equal(tcp.placements.length, 2);
    assert.deepEqual(
      tcp.failures.map((f) => f.reason),
      ["RESOURCE:PORTS", "RESOURCE:PORTS", "RESOURCE:PORTS"],
    );
    const udp = place(instances, 3, needs({ ports: { tcp: [], udp: [8080] } }), [], SPREAD_ZONES, never);
    assert.deepEqual(new Set(udp.placements), new Set([instances[0]?.arn, instances[1]?.arn]));
  });

  it("never overcommits CPU, memory or ports over generated clusters", () => {
    const random = prng(1234);
    for (let round = 0; round < 300; round++) {
      const instances = world(random, 1 + Math.floor(random() * 8));
      const task = needs({
        cpu: 128 * Math.floor(random() * 5),
        memory: 128 * (1 + Math.floor(random() * 8)),
        ports: { tcp: random() < 0.4 ? [80] : [], udp: [] },
      });
      const strategies = [[{ type: "random" }], [{ type: "binpack", field: "cpu" }], SPREAD_ZONES][
        round % 3
      ] as Strategy[];
      const plan = place(instances, 1 + Math.floor(random() * 10), task, [], strategies, random);
      const all = byArn(instances);
      for (const [arn, n] of tally(plan)) {
        const target = all.get(arn);
        assert.ok(target !== undefined, "a known instance");
        assert.ok(n * task.cpu <= target.remaining.cpu, `cpu on ${arn}`);
        assert.ok(n * task.memory <= target.remaining.memory, `memory on ${arn}`);
        if (task.ports.tcp.length > 0) {
          assert.equal(n, 1, `port 80 booked once on ${arn}`);
          assert.ok(!target.ports.tcp.has(80), `port 80 was free on ${arn}`);
        }
      }
    }
  });

  it("does not change the snapshot it is given", () => {
    const instances = [instance(0, { groups: { "family:web": 1 } }), instance(1)];
    const before = JSON.stringify(instances, (_k, v: unknown) =>
      v instanceof Set || v instanceof Map ? [...v] : v,
    );
    place(instances, 3, needs({ cpu: 256, ports: { tcp: [80], udp: [] } }), [], SPREAD_ZONES, never);
    const after = JSON.stringify(instances, (_k, v: unknown) =>
      v instanceof Set || v instanceof Map ? [...v] : v,
    );
    assert.equal(after, before);
  });
});

describe("placement: failure reasons", () => {
  it("says why each instance was refused for the first task that did not fit", () => {
    const instances = [
      instance(0, { status: "DRAINING" }),
      instance(1, { status: "INACTIVE" }),
      instance(2, { connected: false }),
      instance(3, { attributes: { color: "red" } }),
      instance(4, { attributes: { color: "blue" }, cpu: 128 }),
      instance(5, { attributes: { color: "blue" }, memory: 64 }),
      instance(6, { attributes: { color: "blue" }, tcp: [22, 80] }),
    ];
    const plan = place(
      instances,
      1,
      needs({ cpu: 256, memory: 128, ports: { tcp: [80], udp: [] } }),
      [{ type: "memberOf", expression: parseQuery("attribute:color == blue") }],
      SPREAD_ZONES,
      never,
    );
    assert.deepEqual(plan.placements, []);
    assert.deepEqual(
      plan.failures.map((f) => [f.arn.slice(-3), f.reason]),
      [
        ["000", "DRAINING"],
        ["001", "INACTIVE"],
        ["002", "AGENT"],
        ["003", "ATTRIBUTE"],
        ["004", "RESOURCE:CPU"],
        ["005", "RESOURCE:MEMORY"],
        ["006", "RESOURCE:PORTS"],
      ],
    );
  });

  it("places what fits and reports the failures of the first task that did not", () => {
    const instances = [instance(0, { memory: 1024 }), instance(1, { memory: 512 })];
    const plan = place(instances, 5, needs({ memory: 512 }), [], SPREAD_ZONES, never);
    assert.equal(plan.placements.length, 3);
    assert.deepEqual(
      plan.failures.map((f) => f.reason),
      ["RESOURCE:MEMORY", "RESOURCE:MEMORY"],
    );
  });

  it("reports no failures when every task was placed, and none placed for count 0", () => {
    assert.deepEqual(place([instance(0)], 2, needs(), [], SPREAD_ZONES, never).failures, []);
    assert.deepEqual(place([instance(0)], 0, needs(), [], SPREAD_ZONES, never), {
      placements: [],
      failures: [],
    });
    assert.deepEqual(place([], 1, needs(), [], SPREAD_ZONES, never), { placements: [], failures: [] });
  });
});
