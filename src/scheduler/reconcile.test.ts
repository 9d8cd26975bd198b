import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type DeploymentState,
  newDeployment,
  newDeploymentId,
  promote,
  rollingBounds,
} from "./deployment.ts";
import type { InstanceView, TaskNeeds } from "./placement.ts";
import { PlacementSnapshot } from "./placement-snapshot.ts";
import { parseQuery } from "./query.ts";
import {
  type DefinitionPlacement,
  type InstanceState,
  isHealthy,
  type PlannedStarts,
  reconcileService,
  type ServicePlan,
  type ServiceState,
  startedMessage,
  stoppedMessage,
  type TaskState,
} from "./reconcile.ts";
import { takeRounds } from "./rounds.ts";

/**
 * A harness with generated instances and one service: `step()` plans a pass
 * and applies it as the controller would; `progress()` plays the agents
 * (PENDING → RUNNING, asked to stop → STOPPED). No I/O, no timers.
 */

function seeded(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 48271) % 2147483647;
    return state / 2147483647;
  };
}

interface InstanceSpec {
  zone: string;
  cpu?: number;
  memory?: number;
  status?: string;
  attributes?: Record<string, string>;
}

class World {
  readonly random = seeded(42);
  now = 1_000_000;
  lostBefore = Number.NEGATIVE_INFINITY;
  instances: Array<InstanceState & { registered: { cpu: number; memory: number } }> = [];
  tasks: TaskState[] = [];
  events: Array<{ message: string; at: number }> = [];
  service: ServiceState;
  placement: Record<string, DefinitionPlacement> = {};
  /** Task definitions whose tasks exit as soon as they start. */
  broken = new Set<string>();
  /** The controller's bound on starts per pass, if any. */
  maxStarts: number | undefined;
  /** The last pass's look-ahead, passed on as the controller does while the same instances are there. */
  planned: { instances: number; planned: PlannedStarts } | undefined;
  private seq = 0;

  constructor(options: Partial<ServiceState> & { instances: InstanceSpec[]; definitions?: string[] }) {
    for (const [i, spec] of options.instances.entries()) this.addInstance(spec, i);
    for (const td of options.definitions ?? ["web:1"]) this.define(td, { cpu: 256, memory: 512 });
    const first = newDeployment(newDeploymentId(this.random), "web:1", options.desiredCount ?? 0, this.now);
    this.service = {
      name: "web",
      status: "ACTIVE",
      schedulingStrategy: "REPLICA",
      desiredCount: 0,
      minimumHealthyPercent: 100,
      maximumPercent: 200,
      circuitBreaker: { enable: false, rollback: false },
      strategies: [
        { type: "spread", field: "attribute:ecs.availability-zone" },
        { type: "spread", field: "instanceId" },
      ],
      healthCheckGracePeriodMs: 0,
      uncheckedHealthyAfterMs: 0,
      deployments: [first],
      ...options,
    };
  }

  addInstance(spec: InstanceSpec, index = this.instances.length): void {
    const arn = `arn:aws:ecs:us-east-1:000000000000:container-instance/c/${String(index).padStart(4, "0")}`;
    const registered = { cpu: spec.cpu ?? 2048, memory: spec.memory ?? 4096 };
    const view: InstanceView = {
      arn,
      instanceId: `i-${index}`,
      status: spec.status ?? "ACTIVE",
      connected: true,
      remaining: { ...registered },
      ports: { tcp: new Set(), udp: new Set() },
      attributes: { "ecs.availability-zone": spec.zone, ...spec.attributes },
      groups: new Map(),
      runningTasks: 0,
    };
    this.instances.push({ view, zone: spec.zone, lastHeartbeat: this.now, registered });
  }

  define(td: string, needs: Partial<TaskNeeds>, constraints: DefinitionPlacement["constraints"] = []): void {
    this.placement[td] = {
      needs: { cpu: 0, memory: 0, ports: { tcp: [], udp: [] }, group: "service:web", ...needs },
      constraints,
    };
  }

  instance(index: number): InstanceState & { registered: { cpu: number; memory: number } } {
    const instance = this.instances[index];
    assert.ok(instance !== undefined);
    return instance;
  }

  /** Instance views as the store would compute them from the tasks. */
  private views(): InstanceState[] {
    return this.instances.map((instance) => {
      const tcp = new Set<number>();
      const view: InstanceView = {
        ...instance.view,
        remaining: { ...instance.registered },
        ports: { tcp, udp: new Set() },
        groups: new Map(),
        runningTasks: 0,
      };
      for (const task of this.tasks) {
        if (task.instanceArn !== view.arn || task.lastStatus === "STOPPED") continue;
        const needs = this.placement[this.deploymentTd(task.deploymentId)]?.needs;
        view.remaining.cpu -= needs?.cpu ?? 0;
        view.remaining.memory -= needs?.memory ?? 0;
        for (const port of needs?.ports.tcp ?? []) tcp.add(port);
        view.groups.set("service:web", (view.groups.get("service:web") ?? 0) + 1);
        if (task.desiredStatus === "RUNNING") view.runningTasks++;
      }
      view.connected = instance.lastHeartbeat >= this.now - 30_000;
      return { ...instance, view };
    });
  }

  private tdOf = new Map<string, string>();
  deploymentTd(id: string): string {
    return this.tdOf.get(id) ?? "web:1";
  }

  /** Set to keep a PlacementSnapshot between passes, updated view by view as the scheduler's state does. */
  kept: PlacementSnapshot | undefined;
  keep = false;

  plan(): ServicePlan {
    for (const d of this.service.deployments) this.tdOf.set(d.id, d.taskDefinition);
    const instances = this.views();
    if (this.keep) {
      if (this.kept === undefined || this.kept.views.length !== instances.length) {
        this.kept = new PlacementSnapshot(instances.map((i) => i.view));
      } else {
        for (const [i, instance] of instances.entries()) this.kept.set(i, instance.view);
      }
    }
    return reconcileService(
      {
        service: this.service,
        tasks: this.tasks.map((t) => ({ ...t })),
        instances,
        ...(this.kept === undefined ? {} : { views: this.kept }),
        placement: this.placement,
        now: this.now,
        lostBefore: this.lostBefore,
        recentEvents: [...this.events].reverse(),
        ...(this.maxStarts === undefined ? {} : { maxStarts: this.maxStarts }),
        ...(this.planned?.instances === this.instances.length ? { planned: this.planned.planned } : {}),
      },
      this.random,
      () => newDeploymentId(this.random),
    );
  }

  /** Plans one pass and applies it as the controller does. */
  step(): ServicePlan {
    const plan = this.plan();
    this.planned =
      plan.planned === undefined ? undefined : { instances: this.instances.length, planned: plan.planned };
    const stopped: string[] = [];
    for (const order of plan.stops) {
      const task = this.tasks.find((t) => t.arn === order.taskArn);
      if (task === undefined || task.lastStatus === "STOPPED") continue;
      task.desiredStatus = "STOPPED";
      if (order.immediately) {
        task.lastStatus = "STOPPED";
        task.stoppedAt = this.now;
      }
      stopped.push(task.arn);
    }
    const started: string[] = [];
    for (const order of plan.starts) {
      const arn = `arn:aws:ecs:us-east-1:000000000000:task/c/${String(++this.seq).padStart(6, "0")}`;
      this.tdOf.set(order.deploymentId, order.taskDefinition);
      this.tasks.push({
        arn,
        deploymentId: order.deploymentId,
        instanceArn: order.instanceArn,
        lastStatus: "PENDING",
        desiredStatus: "RUNNING",
        health: "UNKNOWN",
        checked: false,
        createdAt: this.now,
        failed: false,
      });
      started.push(arn);
    }
    const messages = [...plan.notices];
    if (stopped.length > 0) messages.push(stoppedMessage("web", stopped));
    if (started.length > 0) messages.push(startedMessage("web", started));
    messages.push(...plan.events);
    for (const message of messages) this.events.push({ message, at: this.now });
    this.service = {
      ...this.service,
      desiredCount: plan.desiredCount,
      deployments: plan.deployments,
      status: plan.status === "INACTIVE" ? "DRAINING" : plan.status,
    };
    if (plan.lastCompleted !== undefined) this.service.lastCompleted = plan.lastCompleted;
    return plan;
  }

  /** The agents move every task one state on (or only some, with `chance` < 1). */
  progress(chance = 1): void {
    this.now += 1000;
    for (const task of this.tasks) {
      if (this.random() > chance || task.lastStatus === "STOPPED") continue;
      if (task.desiredStatus === "STOPPED") {
        task.lastStatus = "STOPPED";
        task.stoppedAt = this.now;
      } else if (task.lastStatus === "PENDING") {
        if (this.broken.has(this.deploymentTd(task.deploymentId))) {
          task.lastStatus = "STOPPED";
          task.desiredStatus = "STOPPED";
          task.stoppedAt = this.now;
          task.failed = true;
        } else {
          task.lastStatus = "RUNNING";
          task.startedAt = this.now;
        }
      }
    }
  }

  /** Steps and progresses until a pass plans nothing, at most `limit` rounds. */
  settle(limit = 50): void {
    for (let round = 0; round < limit; round++) {
      const plan = this.step();
      const idle =
        plan.starts.length === 0 &&
        plan.stops.length === 0 &&
        this.tasks.every((t) => t.lastStatus === "STOPPED" || t.lastStatus === "RUNNING");
      if (idle && JSON.stringify(this.plan()) === JSON.stringify(quiet(this.plan()))) return;
      this.progress();
    }
    assert.fail("the service did not settle");
  }

  live(): TaskState[] {
    return this.tasks.filter((t) => t.lastStatus !== "STOPPED");
  }

  running(): TaskState[] {
    return this.tasks.filter((t) => t.desiredStatus === "RUNNING" && t.lastStatus !== "STOPPED");
  }

  zoneOf(task: TaskState): string {
    return this.instances.find((i) => i.view.arn === task.instanceArn)?.zone ?? "";
  }

  countBy(key: (task: TaskState) => string, tasks = this.running()): Map<string, number> {
    const counts = new Map<string, number>();
    for (const task of tasks) counts.set(key(task), (counts.get(key(task)) ?? 0) + 1);
    return counts;
  }

  lastEvents(n: number): string[] {
    return this.events.slice(-n).map((e) => e.message);
  }
}

/** A plan that changes nothing: what a second pass over converged state must return. */
function quiet(plan: ServicePlan): ServicePlan {
  return { ...plan, starts: [], stops: [], notices: [], events: [] };
}

function spreadWithin(counts: Map<string, number>, keys: string[], bound: number): void {
  const values = keys.map((k) => counts.get(k) ?? 0);
  assert.ok(Math.max(...values) - Math.min(...values) <= bound, `unbalanced: ${JSON.stringify(values)}`);
}

function spreadWithinOne(counts: Map<string, number>, keys: string[]): void {
  spreadWithin(counts, keys, 1);
}

const threeZones = (n: number): InstanceSpec[] =>
  Array.from({ length: n }, (_, i) => ({ zone: `us-east-1${"abc"[i % 3]}` }));

describe("reconcile: desired count", () => {
  it("places the desired count spread over zones and instances, then reports a steady state once", () => {
    const world = new World({ instances: threeZones(6), desiredCount: 7 });
    const plan = world.step();
    assert.equal(plan.starts.length, 7);
    spreadWithinOne(
      world.countBy((t) => world.zoneOf(t)),
      ["us-east-1a", "us-east-1b", "us-east-1c"],
    );
    spreadWithinOne(
      world.countBy((t) => t.instanceArn),
      world.instances.map((i) => i.view.arn),
    );
    assert.match(
      world.lastEvents(1)[0] ?? "",
      /^\(service web\) has started 7 tasks: (\(task \d+\) ){6}\(task \d+\)\.$/,
    );
    world.progress();
    world.step();
    assert.deepEqual(world.lastEvents(2), [
      `(service web) (deployment ${world.service.deployments[0]?.id}) deployment completed.`,
      "(service web) has reached a steady state.",
    ]);
    assert.equal(world.service.deployments[0]?.rolloutState, "COMPLETED");
    const count = world.events.length;
    const again = world.step();
    assert.deepEqual([again.starts, again.stops, again.events, again.notices], [[], [], [], []]);
    assert.equal(world.events.length, count, "a second pass writes nothing");
  });

  it("bounded starts per pass: a scale-up takes several passes, spread as one would be, with no failure event", () => {
    const world = new World({ instances: threeZones(6), desiredCount: 25 });
    world.maxStarts = 10;
    assert.deepEqual(
      [world.step(), world.step(), world.step(), world.step()].map((p) => p.starts.length),
      [10, 10, 5, 0],
    );
    assert.equal(world.tasks.length, 25);
    spreadWithinOne(
      world.countBy((t) => world.zoneOf(t)),
      ["us-east-1a", "us-east-1b", "us-east-1c"],
    );
    assert.ok(!world.events.some((e) => e.message.includes("unable to place")));
    assert.ok(world.events.every((e) => e.message.startsWith("(service web) has started ")));
    assert.deepEqual(
      world.events.map((e) => Number(e.message.split(" ")[4])),
      [10, 10, 5],
    );
  });

  it("bounded starts per pass: each instance gets two tasks in one pass, from a plan made once", () => {
    const world = new World({ instances: threeZones(6), desiredCount: 12 });
    world.maxStarts = 6;
    const passes = [world.step(), world.step(), world.step()];
    assert.deepEqual(
      passes.map((p) => p.starts.length),
      [6, 6, 0],
    );
    // The first pass planned all twelve; the next one started the rest of that plan.
    assert.deepEqual(
      passes.map((p) => p.planned?.due),
      [6, undefined, undefined],
    );
    const zoneOf = (arn: string) => world.instances.find((i) => i.view.arn === arn)?.zone ?? "";
    assert.deepEqual(
      passes[1]?.starts.map((s) => s.instanceArn),
      passes[0]?.planned === undefined ? [] : takeRounds(passes[0].planned.rounds, 6).chosen,
    );
    for (const [i, pass] of passes.slice(0, 2).entries()) {
      // Three instances, one in each zone, two tasks each.
      const counts = world.countBy(
        (t) => t.instanceArn,
        pass.starts.map((s) => ({ instanceArn: s.instanceArn }) as TaskState),
      );
      assert.deepEqual([...counts.values()], [2, 2, 2], `pass ${i}`);
      assert.deepEqual(new Set([...counts.keys()].map(zoneOf)).size, 3, `pass ${i}`);
    }
    assert.deepEqual([...world.countBy((t) => t.instanceArn).values()], [2, 2, 2, 2, 2, 2]);
  });

  it("keeps zones of different sizes as balanced as the plan does, pass by pass and when cut short", () => {
    const zones = (sizes: number[]): InstanceSpec[] =>
      sizes.flatMap((n, z) => Array.from({ length: n }, () => ({ zone: `us-east-1${"abc"[z]}` })));
    const names = ["us-east-1a", "us-east-1b", "us-east-1c"];
    const uneven = new World({ instances: zones([100, 100, 10]), desiredCount: 1000 });
    uneven.define("web:1", { cpu: 1, memory: 1 });
    uneven.maxStarts = 250;
    for (let pass = 0; pass < 4; pass++) {
      assert.ok(uneven.step().starts.length > 0);
      uneven.progress();
      spreadWithinOne(
        uneven.countBy((t) => uneven.zoneOf(t)),
        names,
      );
    }
    // Nearly equal zones over many passes, each from the plan the first one made.
    const long = new World({ instances: zones([67, 67, 66]), desiredCount: 2000 });
    long.define("web:1", { cpu: 1, memory: 1 });
    long.maxStarts = 50;
    for (let pass = 0; pass < 40; pass++) {
      for (const instance of long.instances) instance.lastHeartbeat = long.now;
      const plan = long.step();
      assert.equal(plan.starts.length, 50);
      long.progress();
      spreadWithinOne(
        long.countBy((t) => long.zoneOf(t)),
        names,
      );
      const perInstance = [...long.countBy((t) => t.instanceArn).values()];
      assert.ok(
        Math.max(...perInstance) - Math.min(...perInstance, ...(perInstance.length < 200 ? [0] : [])) <= 2,
      );
    }
    const small = new World({ instances: zones([10, 10, 1]), desiredCount: 300 });
    small.define("web:1", { cpu: 1, memory: 1 });
    small.maxStarts = 10;
    for (let pass = 0; pass < 2; pass++) {
      assert.equal(small.step().starts.length, 10);
      small.progress();
    }
    small.service = { ...small.service, desiredCount: 20 };
    small.settle();
    spreadWithinOne(
      small.countBy((t) => small.zoneOf(t)),
      names,
    );
  });

  it("plans again when the planned instances no longer take their tasks, or the count due changed", () => {
    const world = new World({ instances: threeZones(6), desiredCount: 12 });
    world.maxStarts = 4;
    const first = world.step();
    // An instance the plan gives some of the next pass's tasks, and that has none yet.
    const planned = first.planned === undefined ? [] : takeRounds(first.planned.rounds, 4).chosen;
    const next = planned.find((arn) => !world.tasks.some((t) => t.instanceArn === arn)) ?? "";
    const drained = world.instances.find((i) => i.view.arn === next);
    assert.ok(drained !== undefined);
    drained.view.status = "DRAINING";
    const second = world.step();
    assert.equal(second.starts.length, 4);
    assert.ok(!second.starts.some((s) => s.instanceArn === next), "nothing started on a DRAINING instance");
    // Planned again as things stand: zone c, behind now, gets tasks on its one ACTIVE instance.
    const zones = second.starts.map((s) => world.instances.find((i) => i.view.arn === s.instanceArn)?.zone);
    assert.ok(zones.includes("us-east-1c"), JSON.stringify(zones));
    assert.equal(second.planned?.due, 4);
    world.service = { ...world.service, desiredCount: 9 };
    const third = world.step();
    assert.equal(third.starts.length, 1);
    assert.equal(third.planned, undefined);
    assert.equal(world.tasks.length, 9);
    assert.ok(!world.tasks.some((t) => t.instanceArn === next));
  });

  it("a scale-up cut short leaves no instance or zone more than two tasks off the spread", () => {
    const world = new World({ instances: threeZones(12), desiredCount: 120 });
    world.define("web:1", { cpu: 1, memory: 1 });
    world.maxStarts = 10;
    const first = world.step();
    assert.ok(first.planned !== undefined, "a plan was made ahead");
    world.progress();
    world.service = { ...world.service, desiredCount: 10 };
    world.settle();
    assert.equal(world.running().length, 10);
    spreadWithin(
      world.countBy((t) => world.zoneOf(t)),
      ["us-east-1a", "us-east-1b", "us-east-1c"],
      2,
    );
    spreadWithin(
      world.countBy((t) => t.instanceArn),
      world.instances.map((i) => i.view.arn),
      2,
    );
  });

  it("does not plan ahead where two rounds over the instances fit in one pass", () => {
    // Three instances, 30 due, 10 a pass: placed as without a plan, and spread within one when cut short.
    const world = new World({ instances: threeZones(3), desiredCount: 30 });
    world.define("web:1", { cpu: 1, memory: 1 });
    world.maxStarts = 10;
    assert.equal(world.step().planned, undefined);
    world.progress();
    world.service = { ...world.service, desiredCount: 10 };
    world.settle();
    spreadWithinOne(
      world.countBy((t) => world.zoneOf(t)),
      ["us-east-1a", "us-east-1b", "us-east-1c"],
    );
  });

  it("does not plan ahead for tasks that cannot share an instance (distinctInstance, host ports)", () => {
    const cases: Array<[Partial<TaskNeeds>, DefinitionPlacement["constraints"]]> = [
      [{}, [{ type: "distinctInstance" }]],
      [{ ports: { tcp: [8080], udp: [] } }, []],
    ];
    for (const [needs, constraints] of cases) {
      const world = new World({ instances: threeZones(30), desiredCount: 30 });
      world.define("web:1", needs, constraints);
      world.maxStarts = 10;
      const plan = world.step();
      assert.equal(plan.starts.length, 10);
      assert.equal(plan.planned, undefined);
      assert.equal(new Set(plan.starts.map((s) => s.instanceArn)).size, 10);
    }
  });

  it("plans alike from a PlacementSnapshot kept between passes and from the instances alone", () => {
    const scenario = (keep: boolean) => {
      const world = new World({ instances: threeZones(9), desiredCount: 40 });
      world.keep = keep;
      world.maxStarts = 7;
      const plans: ServicePlan[] = [];
      for (let round = 0; round < 12; round++) {
        plans.push(world.step());
        world.progress(0.7);
        if (round === 6) world.service = { ...world.service, desiredCount: 12 };
        if (round === 8) world.instance(2).lastHeartbeat = world.now - 60_000;
      }
      return plans;
    };
    const kept = scenario(true);
    assert.ok(kept.some((plan) => plan.starts.length > 0) && kept.some((plan) => plan.stops.length > 0));
    assert.deepEqual(kept, scenario(false));
  });

  it("running a pass twice without anything happening in between changes nothing the second time", () => {
    const world = new World({ instances: threeZones(4), desiredCount: 5 });
    for (let round = 0; round < 6; round++) {
      world.step();
      const before = JSON.stringify([world.tasks, world.service, world.events]);
      const second = world.step();
      assert.deepEqual([second.starts, second.stops, second.events], [[], [], []]);
      assert.equal(JSON.stringify([world.tasks, world.service, world.events]), before);
      world.progress(0.5);
    }
  });

  it("replaces a task that stopped for any reason", () => {
    const world = new World({ instances: threeZones(3), desiredCount: 3 });
    world.settle();
    const victim = world.running()[1];
    assert.ok(victim !== undefined);
    victim.lastStatus = "STOPPED";
    victim.desiredStatus = "STOPPED";
    const plan = world.step();
    assert.equal(plan.starts.length, 1);
    assert.equal(plan.starts[0]?.instanceArn, victim.instanceArn, "the empty instance gets the replacement");
    world.settle();
    assert.equal(world.running().length, 3);
    assert.equal(world.lastEvents(1)[0], "(service web) has reached a steady state.");
  });

  it("scales in from the zone and instance with the most tasks, pending ones first", () => {
    const world = new World({ instances: threeZones(6), desiredCount: 9 });
    world.settle();
    world.service = { ...world.service, desiredCount: 10 };
    world.step(); // one more, left PENDING
    const pending = world.tasks.find((t) => t.lastStatus === "PENDING");
    world.service = { ...world.service, desiredCount: 4 };
    const plan = world.step();
    assert.equal(plan.stops.length, 6);
    assert.equal(plan.stops[0]?.taskArn, pending?.arn, "the task not yet running goes first");
    assert.match(
      plan.stops[0]?.reason ?? "",
      /^Scaling activity initiated by \(deployment ecs-svc\/\d{19}\)$/,
    );
    spreadWithinOne(
      world.countBy((t) => world.zoneOf(t)),
      ["us-east-1a", "us-east-1b", "us-east-1c"],
    );
    world.settle();
    assert.equal(world.running().length, 4);
  });

  it("binpack scales in from the instance with the most memory left", () => {
    const world = new World({
      instances: threeZones(2),
      desiredCount: 3,
      strategies: [{ type: "binpack", field: "memory" }],
    });
    world.settle();
    const perInstance = world.countBy((t) => t.instanceArn);
    assert.deepEqual([...perInstance.values()], [3], "binpack fills one instance first");
    world.addInstance({ zone: "us-east-1c" });
    const busy = world.instance(0).view.arn;
    world.tasks.push({
      ...(world.running()[0] as TaskState),
      arn: "extra",
      instanceArn: world.instance(1).view.arn,
    });
    world.service = { ...world.service, desiredCount: 3 };
    const plan = world.step();
    assert.deepEqual(
      plan.stops.map((s) => s.taskArn),
      ["extra"],
    );
    assert.ok(world.running().every((t) => t.instanceArn === busy));
  });

  it("replaces tasks on a DRAINING instance before stopping them (minimumHealthyPercent 100)", () => {
    const world = new World({ instances: threeZones(3), desiredCount: 3 });
    world.settle();
    const drained = world.instance(0);
    drained.view.status = "DRAINING";
    const first = world.step();
    assert.equal(first.stops.length, 0, "nothing stops before its replacement is healthy");
    assert.equal(first.starts.length, 1);
    assert.notEqual(first.starts[0]?.instanceArn, drained.view.arn);
    world.progress();
    const second = world.step();
    assert.equal(second.stops.length, 1);
    world.settle();
    assert.ok(world.running().every((t) => t.instanceArn !== drained.view.arn));
    assert.equal(world.running().length, 3);
  });

  it("stops the tasks of a lost agent at once and places them elsewhere", () => {
    const world = new World({ instances: threeZones(3), desiredCount: 3 });
    world.settle();
    const lost = world.instance(2);
    world.now += 60_000;
    for (const instance of world.instances) if (instance !== lost) instance.lastHeartbeat = world.now;
    const quietPlan = world.plan();
    assert.equal(quietPlan.stops.length, 0, "not lost before the controller says so");
    world.lostBefore = world.now - 30_000;
    const plan = world.step();
    assert.equal(plan.stops.length, 1);
    assert.equal(plan.stops[0]?.immediately, true);
    assert.equal(plan.starts.length, 1);
    assert.notEqual(plan.starts[0]?.instanceArn, lost.view.arn);
    world.settle();
    assert.equal(world.running().length, 3);
  });

  it("says which instance came closest when a task fits nowhere, once", () => {
    const world = new World({
      instances: [
        { zone: "us-east-1a", memory: 600 },
        { zone: "us-east-1b", cpu: 100 },
      ],
      desiredCount: 3,
    });
    world.step();
    assert.equal(world.running().length, 1);
    // Short of CPU fails an earlier check than short of memory: the memory one came closer.
    assert.equal(
      world.lastEvents(1)[0],
      `(service web) was unable to place a task because no container instance met all of its requirements. The closest matching (container-instance ${world
        .instance(0)
        .view.arn.split("/")
        .pop()}) has insufficient memory available. For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.`,
    );
    world.progress();
    const count = world.events.length;
    world.step();
    world.step();
    assert.equal(world.events.length, count, "the same failure is not repeated");
  });

  it("names an instance whose agent is disconnected as the closest, with ECS's AGENT error", () => {
    const world = new World({ instances: [{ zone: "a" }], desiredCount: 1 });
    world.lostBefore = world.now - 30_000;
    world.instance(0).lastHeartbeat = world.now - 60_000;
    const plan = world.step();
    assert.deepEqual(plan.starts, []);
    assert.equal(plan.events.length, 1);
    assert.match(
      plan.events[0] ?? "",
      /^\(service web\) was unable to place a task because no container instance met all of its requirements\. The closest matching \(container-instance 0000\) encountered error "AGENT"\. /,
    );
  });

  it("says no instance was found when the cluster has none", () => {
    const world = new World({ instances: [], desiredCount: 1 });
    world.step();
    assert.match(world.lastEvents(1)[0] ?? "", /Reason: No Container Instances were found in your cluster\./);
  });

  it("keeps memberOf constraints when placing replicas", () => {
    const world = new World({
      instances: [
        { zone: "us-east-1a", attributes: { color: "blue" } },
        { zone: "us-east-1b", attributes: { color: "green" } },
        { zone: "us-east-1c", attributes: { color: "blue" } },
      ],
      desiredCount: 4,
    });
    world.define("web:1", { cpu: 256, memory: 512 }, [
      { type: "memberOf", expression: parseQuery("attribute:color == blue") },
    ]);
    world.settle();
    assert.ok(world.running().every((t) => t.instanceArn !== world.instance(1).view.arn));
    assert.equal(world.running().length, 4);
  });

  it("never places a static host port twice on one instance", () => {
    const world = new World({ instances: threeZones(2), desiredCount: 3 });
    world.define("web:1", { cpu: 256, memory: 512, ports: { tcp: [8080], udp: [] } });
    world.step();
    assert.equal(world.running().length, 2);
    assert.equal(new Set(world.running().map((t) => t.instanceArn)).size, 2);
    assert.match(world.lastEvents(1)[0] ?? "", /is already using a port required by your task\./);
  });

  it("drains a deleted service and marks it INACTIVE once its tasks are gone", () => {
    const world = new World({ instances: threeZones(3), desiredCount: 3 });
    world.settle();
    world.service = { ...world.service, status: "DRAINING", desiredCount: 0 };
    const plan = world.step();
    assert.equal(plan.stops.length, 3);
    assert.equal(plan.status, "DRAINING");
    world.progress();
    assert.equal(world.plan().status, "INACTIVE");
  });

  it("replaces a task that fails its health checks after the grace period", () => {
    const world = new World({ instances: threeZones(2), desiredCount: 2, healthCheckGracePeriodMs: 10_000 });
    world.settle();
    const sick = world.running()[0] as TaskState;
    sick.health = "UNHEALTHY";
    sick.checked = true;
    assert.equal(world.plan().stops.length, 0, "within the grace period");
    world.now += 10_000;
    const plan = world.step();
    assert.deepEqual(
      plan.stops.map((s) => [s.taskArn, s.reason]),
      [[sick.arn, "Task failed container health checks"]],
    );
    assert.deepEqual(plan.notices, [
      `(service web) (task ${sick.arn.split("/").pop()}) failed container health checks.`,
    ]);
    assert.equal(plan.starts.length, 1);
  });
});

describe("reconcile: DAEMON", () => {
  it("runs one task on every ACTIVE connected instance that fits and follows instances as they join", () => {
    const world = new World({
      schedulingStrategy: "DAEMON",
      minimumHealthyPercent: 0,
      maximumPercent: 100,
      instances: [
        { zone: "us-east-1a" },
        { zone: "us-east-1b" },
        { zone: "us-east-1c", memory: 100 },
        { zone: "us-east-1a", status: "DRAINING" },
      ],
    });
    const plan = world.step();
    assert.deepEqual(
      plan.starts.map((s) => s.instanceArn).sort(),
      [world.instance(0).view.arn, world.instance(1).view.arn].sort(),
    );
    assert.equal(plan.desiredCount, 2);
    assert.match(world.lastEvents(1)[0] ?? "", /has insufficient memory available/);
    world.settle();
    assert.equal(world.lastEvents(1)[0], "(service web) has reached a steady state.");
    world.addInstance({ zone: "us-east-1c" });
    const joined = world.step();
    assert.deepEqual(
      joined.starts.map((s) => s.instanceArn),
      [world.instance(4).view.arn],
    );
    assert.equal(joined.desiredCount, 3);
    world.settle();
    world.instance(0).view.status = "DRAINING";
    const drained = world.step();
    assert.equal(drained.stops.length, 1);
    assert.equal(drained.desiredCount, 2);
    // A second task on one instance is one too many.
    world.settle();
    world.tasks.push({ ...(world.running()[0] as TaskState), arn: "twin", createdAt: world.now + 1 });
    assert.deepEqual(
      world.step().stops.map((s) => s.taskArn),
      ["twin"],
    );
  });

  it("bounded starts per pass still count every target instance in the desired count", () => {
    const world = new World({
      schedulingStrategy: "DAEMON",
      minimumHealthyPercent: 0,
      maximumPercent: 100,
      instances: threeZones(7),
    });
    world.maxStarts = 3;
    const first = world.step();
    assert.equal(first.starts.length, 3);
    assert.equal(first.desiredCount, 7);
    assert.deepEqual(
      [world.step(), world.step(), world.step()].map((p) => p.starts.length),
      [3, 1, 0],
    );
    assert.equal(new Set(world.tasks.map((t) => t.instanceArn)).size, 7);
    assert.equal(world.tasks.length, 7);
  });

  it("replaces daemon tasks one instance at a time within minimumHealthyPercent", () => {
    const world = new World({
      schedulingStrategy: "DAEMON",
      minimumHealthyPercent: 50,
      maximumPercent: 100,
      instances: threeZones(4),
      definitions: ["web:1", "web:2"],
    });
    world.settle();
    const next = newDeployment(newDeploymentId(world.random), "web:2", 4, world.now);
    world.service = { ...world.service, deployments: promote(world.service.deployments, next, world.now) };
    for (let round = 0; round < 40; round++) {
      world.step();
      const healthy = world.tasks.filter(isHealthy).length;
      assert.ok(healthy >= 2, `healthy ${healthy} < 2`);
      const perInstance = world.countBy((t) => t.instanceArn, world.live());
      assert.ok(
        [...perInstance.values()].every((n) => n <= 1),
        "never two tasks on one instance",
      );
      world.progress(0.5);
    }
    assert.equal(world.service.deployments.length, 1);
    assert.equal(world.service.deployments[0]?.taskDefinition, "web:2");
    assert.equal(world.service.deployments[0]?.rolloutState, "COMPLETED");
  });
});

describe("reconcile: rolling deployments", () => {
  for (const [desired, min, max] of [
    [4, 100, 200],
    [4, 50, 100],
    [3, 0, 100],
    [5, 50, 150],
    [3, 100, 150],
    [6, 75, 125],
  ] as const) {
    it(`stays within ${min}%..${max}% of ${desired} tasks while replacing every one`, () => {
      const world = new World({
        instances: threeZones(6),
        desiredCount: desired,
        minimumHealthyPercent: min,
        maximumPercent: max,
        definitions: ["web:1", "web:2"],
      });
      world.settle();
      const bounds = rollingBounds(desired, min, max);
      const next = newDeployment(newDeploymentId(world.random), "web:2", desired, world.now);
      world.service = { ...world.service, deployments: promote(world.service.deployments, next, world.now) };
      let completedAt = -1;
      for (let round = 0; round < 80 && completedAt < 0; round++) {
        world.step();
        const occupied = world.live().length;
        const running = world.tasks.filter((t) => t.lastStatus === "RUNNING").length;
        assert.ok(occupied <= bounds.maxTotal, `round ${round}: ${occupied} tasks > ${bounds.maxTotal}`);
        assert.ok(running >= bounds.minHealthy, `round ${round}: ${running} running < ${bounds.minHealthy}`);
        if (world.service.deployments[0]?.rolloutState === "COMPLETED") completedAt = round;
        world.progress(0.6);
      }
      assert.ok(completedAt >= 0, "the deployment completed");
      assert.deepEqual(
        world.service.deployments.map((d: DeploymentState) => [d.taskDefinition, d.status]),
        [["web:2", "PRIMARY"]],
      );
      assert.equal(world.service.lastCompleted?.id, next.id);
      assert.equal(world.running().length, desired);
      assert.ok(world.running().every((t) => t.deploymentId === next.id));
    });
  }

  it("scales in a deployment with a capacity provider strategy so that its base and weights hold", () => {
    const world = new World({ instances: threeZones(3), desiredCount: 4 });
    const strategy = [
      { capacityProvider: "FARGATE", weight: 1, base: 1 },
      { capacityProvider: "FARGATE_SPOT", weight: 1, base: 0 },
    ];
    world.service = {
      ...world.service,
      deployments: world.service.deployments.map((d) => ({ ...d, capacityProviderStrategy: strategy })),
    };
    world.settle();
    // As the controller names them, say: two on each.
    for (const [i, task] of world.tasks.entries()) task.capacityProvider = i < 2 ? "FARGATE" : "FARGATE_SPOT";
    world.service = { ...world.service, desiredCount: 2 };
    const plan = world.step();
    const stopped = plan.stops.map(
      (order) => world.tasks.find((t) => t.arn === order.taskArn)?.capacityProvider,
    );
    // Two tasks: the base on FARGATE, the next to FARGATE as the first named of equal weights.
    assert.deepEqual(stopped, ["FARGATE_SPOT", "FARGATE_SPOT"]);
  });

  it("marks a replaced deployment INACTIVE once its tasks are gone, until the PRIMARY one completes", () => {
    const world = new World({
      instances: threeZones(3),
      desiredCount: 2,
      minimumHealthyPercent: 0,
      maximumPercent: 100,
      definitions: ["web:1", "web:2", "web:3"],
    });
    world.settle();
    const [first] = world.service.deployments;
    assert.ok(first !== undefined);
    // Replaced twice before the second started a task: the second has nothing to drain.
    const second = newDeployment(newDeploymentId(world.random), "web:2", 2, world.now);
    const third = newDeployment(newDeploymentId(world.random), "web:3", 2, world.now);
    world.service = {
      ...world.service,
      deployments: promote(promote(world.service.deployments, second, world.now), third, world.now),
    };
    const status = () => world.service.deployments.map((d) => [d.id, d.status, d.desiredCount]);
    world.step();
    assert.deepEqual(status(), [
      [third.id, "PRIMARY", 2],
      [second.id, "INACTIVE", 0],
      [first.id, "ACTIVE", 0],
    ]);
    // minimumHealthyPercent 0: the first deployment's tasks stop before the third's start.
    world.progress();
    world.step();
    assert.deepEqual(status(), [
      [third.id, "PRIMARY", 2],
      [second.id, "INACTIVE", 0],
      [first.id, "INACTIVE", 0],
    ]);
    assert.equal(world.service.deployments[0]?.rolloutState, "IN_PROGRESS");
    const retiredAt = world.service.deployments[2]?.updatedAt;
    world.step();
    assert.equal(world.service.deployments[2]?.updatedAt, retiredAt, "INACTIVE stays as it was");
    world.settle();
    assert.deepEqual(status(), [[third.id, "PRIMARY", 2]], "gone once the PRIMARY completed");
    assert.equal(world.service.deployments[0]?.rolloutState, "COMPLETED");
  });

  it("trips the circuit breaker after the threshold of failed tasks and rolls back to the last completed deployment", () => {
    const world = new World({
      instances: threeZones(3),
      desiredCount: 2,
      circuitBreaker: { enable: true, rollback: true },
      definitions: ["web:1", "bad:1"],
    });
    world.settle();
    const completedFirst = world.service.lastCompleted;
    assert.ok(completedFirst !== undefined);
    world.broken.add("bad:1");
    const bad = newDeployment(newDeploymentId(world.random), "bad:1", 2, world.now);
    world.service = { ...world.service, deployments: promote(world.service.deployments, bad, world.now) };
    let rolledBack = false;
    for (let round = 0; round < 20 && !rolledBack; round++) {
      world.step();
      rolledBack = world.service.deployments[0]?.id !== bad.id;
      world.progress();
    }
    assert.ok(rolledBack, "rolled back");
    const [primary, failedOne] = world.service.deployments;
    assert.equal(primary?.taskDefinition, "web:1");
    assert.equal(primary?.status, "PRIMARY");
    assert.equal(failedOne?.id, bad.id);
    assert.equal(failedOne?.rolloutState, "FAILED");
    assert.ok((failedOne?.failedTasks ?? 0) >= 3);
    // The failed deployment says why it failed; the one rolling back says where it returns to.
    assert.equal(failedOne?.rolloutStateReason, "ECS deployment circuit breaker: tasks failed to start.");
    assert.equal(primary?.rolloutState, "IN_PROGRESS");
    assert.equal(
      primary?.rolloutStateReason,
      `ECS deployment circuit breaker: rolling back to deploymentId ${completedFirst.id}.`,
    );
    assert.ok(
      world.events.some(
        (e) => e.message === `(service web) (deployment ${bad.id}) deployment failed: tasks failed to start.`,
      ),
    );
    world.settle();
    assert.deepEqual(
      world.service.deployments.map((d) => [d.taskDefinition, d.rolloutState]),
      [["web:1", "COMPLETED"]],
    );
    assert.equal(world.running().length, 2);
  });

  it("without rollback, a failed deployment stops launching tasks and keeps the old ones", () => {
    const world = new World({
      instances: threeZones(3),
      desiredCount: 2,
      circuitBreaker: { enable: true, rollback: false },
      definitions: ["web:1", "bad:1"],
    });
    world.settle();
    world.broken.add("bad:1");
    const bad = newDeployment(newDeploymentId(world.random), "bad:1", 2, world.now);
    world.service = { ...world.service, deployments: promote(world.service.deployments, bad, world.now) };
    for (let round = 0; round < 20; round++) {
      world.step();
      world.progress();
    }
    assert.equal(world.service.deployments[0]?.rolloutState, "FAILED");
    assert.equal(
      world.service.deployments[0]?.rolloutStateReason,
      "ECS deployment circuit breaker: tasks failed to start.",
    );
    assert.ok((world.service.deployments[0]?.failedTasks ?? 0) >= 3);
    const plan = world.step();
    assert.deepEqual([plan.starts, plan.stops], [[], []]);
    assert.equal(world.running().length, 2, "the old tasks keep running");
  });
});

describe("reconcile: the circuit breaker's count", () => {
  /** A service of 10 (threshold 5) rolling from web:1 to bad:1, the breaker on with rollback. */
  function rolling() {
    const world = new World({
      instances: threeZones(3),
      desiredCount: 10,
      circuitBreaker: { enable: true, rollback: true },
      definitions: ["web:1", "bad:1"],
    });
    world.settle();
    const bad = newDeployment(newDeploymentId(world.random), "bad:1", 10, world.now);
    world.service = { ...world.service, deployments: promote(world.service.deployments, bad, world.now) };
    const task = (overrides: Partial<TaskState>): TaskState => ({
      arn: `arn:aws:ecs:us-east-1:000000000000:task/c/b${world.tasks.length}`,
      deploymentId: bad.id,
      instanceArn: world.instance(0).view.arn,
      lastStatus: "STOPPED",
      desiredStatus: "STOPPED",
      health: "UNKNOWN",
      checked: false,
      createdAt: world.now,
      failed: true,
      ...overrides,
    });
    const fail = (n: number) => {
      for (let i = 0; i < n; i++) {
        world.now += 1000;
        world.tasks.push(task({ startedAt: world.now, stoppedAt: world.now }));
      }
    };
    /** A task of the deployment that starts and runs (healthy: it has no health check). */
    const healthy = () => {
      world.now += 1000;
      const good = task({
        lastStatus: "RUNNING",
        desiredStatus: "RUNNING",
        failed: false,
        startedAt: world.now,
      });
      world.tasks.push(good);
      return good;
    };
    const primary = () => world.service.deployments.find((d) => d.id === bad.id);
    return { world, task, fail, healthy, primary };
  }

  it("counts failures since a task of the deployment last became healthy, as failedTasks says", () => {
    const { world, fail, healthy, primary } = rolling();
    fail(4);
    world.step();
    assert.equal(primary()?.failedTasks, 4);
    healthy();
    world.step();
    assert.equal(primary()?.failedTasks, 0, "a healthy task starts the count over");
    assert.equal(primary()?.rolloutState, "IN_PROGRESS");
  });

  it("starts over for each task that becomes healthy, however long after it started", () => {
    const { world, task, fail, primary } = rolling();
    // Three tasks with a health check start together and turn HEALTHY one after another, with
    // failures in between: each that turns healthy starts the count over.
    world.now += 1000;
    const checked = [0, 1, 2].map(() =>
      task({
        lastStatus: "RUNNING",
        desiredStatus: "RUNNING",
        failed: false,
        checked: true,
        startedAt: world.now,
      }),
    );
    world.tasks.push(...checked);
    for (const [i, t] of checked.entries()) {
      world.now += 30_000;
      t.health = "HEALTHY";
      world.step();
      fail(i < 2 ? 1 : 3);
      world.step();
    }
    assert.equal(primary()?.failedTasks, 3, "the 3 since the last task turned healthy");
    assert.equal(primary()?.rolloutState, "IN_PROGRESS", "5 failures in all, but never 5 in a row");
  });

  it("keeps the reset when the task that made it fails later: only what failed since counts", () => {
    const { world, fail, healthy, primary } = rolling();
    fail(4);
    const good = healthy();
    world.step();
    world.now += 60_000;
    Object.assign(good, {
      lastStatus: "STOPPED",
      desiredStatus: "STOPPED",
      failed: true,
      stoppedAt: world.now,
    });
    world.step();
    assert.equal(primary()?.failedTasks, 1);
    assert.equal(primary()?.rolloutState, "IN_PROGRESS", "1 failure since the reset, not 5");
    fail(4);
    world.step();
    assert.equal(primary()?.rolloutState, "FAILED", "5 since the reset trip it");
    assert.equal(primary()?.failedTasks, 5);
  });
});

describe("reconcile: tasks without a health check", () => {
  /** A settled service of 2 on web:1 with ECS's 40 s, and a new deployment of web:2 begun. */
  function rollingOut() {
    const world = new World({
      instances: threeZones(3),
      desiredCount: 2,
      uncheckedHealthyAfterMs: 40_000,
      definitions: ["web:1", "web:2"],
    });
    world.settle();
    // A minute on: the old tasks have run long enough to count, and the agents are still there.
    world.now += 60_000;
    for (const instance of world.instances) instance.lastHeartbeat = world.now;
    const old = world.running().map((t) => t.arn);
    const next = newDeployment(newDeploymentId(world.random), "web:2", 2, world.now);
    world.service = { ...world.service, deployments: promote(world.service.deployments, next, world.now) };
    /** Steps until an old task is asked to stop; the time then. */
    const firstStop = (healthChecked: boolean) => {
      for (let round = 0; round < 100; round++) {
        const plan = world.step();
        if (plan.stops.some((order) => old.includes(order.taskArn))) return world.now;
        world.progress();
        if (!healthChecked) continue;
        for (const task of world.tasks) {
          if (task.deploymentId !== next.id || task.lastStatus !== "RUNNING") continue;
          Object.assign(task, { checked: true, health: "HEALTHY" });
        }
      }
      return assert.fail("no old task was stopped");
    };
    const startedAt = () =>
      Math.max(...world.tasks.filter((t) => t.deploymentId === next.id).map((t) => t.startedAt ?? 0));
    return { world, firstStop, startedAt };
  }

  it("counts a new task toward minimumHealthyPercent only once it has run 40 s", () => {
    const { firstStop, startedAt } = rollingOut();
    const stoppedAt = firstStop(false);
    assert.ok(startedAt() > 0);
    assert.equal(stoppedAt, startedAt() + 40_000, "the old tasks stay until the new ones ran 40 s");
  });

  it("counts a task with a health check as soon as it is HEALTHY", () => {
    const { firstStop, startedAt } = rollingOut();
    assert.equal(firstStop(true), startedAt());
  });
});

describe("reconcile: deployments that cannot move", () => {
  it("says the deployment configuration leaves no step when it allows neither a task more nor one fewer", () => {
    const world = new World({
      instances: threeZones(3),
      desiredCount: 3,
      minimumHealthyPercent: 75,
      maximumPercent: 125,
      definitions: ["web:1", "web:2"],
    });
    world.settle();
    const next = newDeployment(newDeploymentId(world.random), "web:2", 3, world.now);
    world.service = { ...world.service, deployments: promote(world.service.deployments, next, world.now) };
    const plan = world.step();
    assert.deepEqual([plan.starts, plan.stops], [[], []], "ceil(3 × 75%) = 3 = floor(3 × 125%)");
    assert.deepEqual(plan.events, [
      "(service web) was unable to stop or start tasks during a deployment because of the service deployment configuration. Update the minimumHealthyPercent or maximumPercent value and try again.",
    ]);
    world.progress();
    assert.deepEqual(world.step().events, [], "said once, not on every pass");
  });

  it("says nothing of the configuration while a step is possible", () => {
    const world = new World({ instances: threeZones(3), desiredCount: 3, definitions: ["web:1", "web:2"] });
    world.settle();
    const next = newDeployment(newDeploymentId(world.random), "web:2", 3, world.now);
    world.service = { ...world.service, deployments: promote(world.service.deployments, next, world.now) };
    for (let round = 0; round < 20; round++) {
      const plan = world.step();
      assert.ok(!plan.events.some((e) => e.includes("deployment configuration")));
      world.progress();
    }
    assert.equal(world.service.deployments[0]?.rolloutState, "COMPLETED");
  });
});

describe("reconcile: generated services under churn", () => {
  /** Every non-STOPPED task fits its instance, and no instance has a static host port twice. */
  function assertFits(world: World, where: string): void {
    for (const instance of world.instances) {
      const on = world.live().filter((t) => t.instanceArn === instance.view.arn);
      let cpu = 0;
      let memory = 0;
      const ports = new Set<number>();
      for (const task of on) {
        const needs = world.placement[world.deploymentTd(task.deploymentId)]?.needs;
        assert.ok(needs !== undefined, `${where}: the task's definition is known`);
        cpu += needs.cpu;
        memory += needs.memory;
        for (const port of needs.ports.tcp) {
          assert.ok(!ports.has(port), `${where}: port ${port} twice on ${instance.view.arn}`);
          ports.add(port);
        }
      }
      assert.ok(cpu <= instance.registered.cpu, `${where}: ${cpu} CPU on ${instance.view.arn}`);
      assert.ok(memory <= instance.registered.memory, `${where}: ${memory} MiB on ${instance.view.arn}`);
    }
  }

  for (let seed = 1; seed <= 40; seed++) {
    it(`seed ${seed}: keeps tasks within their instances and the rollout bounds, and converges`, () => {
      const random = seeded(seed * 7919);
      const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
      const zones = ["us-east-1a", "us-east-1b", "us-east-1c"].slice(0, 1 + Math.floor(random() * 3));
      const instances = Array.from({ length: 3 + Math.floor(random() * 8) }, (_, i) => ({
        zone: zones[i % zones.length] ?? "us-east-1a",
        cpu: pick([1024, 2048, 4096]),
        memory: pick([2048, 4096, 8192]),
      }));
      const [min, max] = pick([
        [100, 200],
        [50, 100],
        [50, 150],
        [0, 100],
        [75, 125],
        [100, 150],
      ] as const);
      const world = new World({
        instances,
        desiredCount: Math.floor(random() * 8),
        minimumHealthyPercent: min,
        maximumPercent: max,
        definitions: [],
      });
      // Task definitions of random sizes; one with a static host port, so an instance takes one at most.
      const sizes = ["web:1", "web:2", "web:3", "web:4"];
      for (const td of sizes) {
        const ports = random() < 0.25 ? [8080] : [];
        world.define(td, {
          cpu: pick([128, 256, 512]),
          memory: pick([128, 256, 512]),
          ports: { tcp: ports, udp: [] },
        });
      }
      world.maxStarts = pick([undefined, 2, 5]);
      const lost = new Set<number>();
      /** The agents move on, and every instance not lost heartbeats. */
      const progress = () => {
        world.progress(0.7);
        for (const [i, instance] of world.instances.entries())
          if (!lost.has(i)) instance.lastHeartbeat = world.now;
        world.lostBefore = world.now - 30_000;
      };
      const usable = () =>
        world.instances.filter((inst, i) => inst.view.status === "ACTIVE" && !lost.has(i)).length;
      let revision = 1;
      /** Where the events stood at the last change to the service or its instances. */
      let changedAt = 0;

      for (let event = 0; event < 8; event++) {
        const kind = pick(["scale", "deploy", "kill", "drain", "lose", "join", "deploy"] as const);
        changedAt = world.events.length;
        if (kind === "scale") world.service = { ...world.service, desiredCount: Math.floor(random() * 10) };
        if (kind === "deploy" && revision < 4) {
          revision++;
          const next = newDeployment(
            newDeploymentId(world.random),
            `web:${revision}`,
            world.service.desiredCount,
            world.now,
          );
          world.service = {
            ...world.service,
            deployments: promote(world.service.deployments, next, world.now),
          };
        }
        if (kind === "kill") {
          const victim = pick(world.running());
          if (victim !== undefined) {
            victim.lastStatus = "STOPPED";
            victim.desiredStatus = "STOPPED";
            victim.stoppedAt = world.now;
          }
        }
        if ((kind === "drain" || kind === "lose") && usable() > 3) {
          const i = Math.floor(random() * world.instances.length);
          if (kind === "drain") world.instance(i).view.status = "DRAINING";
          else lost.add(i);
        }
        if (kind === "join") world.addInstance({ zone: pick(zones), cpu: 4096, memory: 8192 });
        // A few passes with the agents lagging behind.
        for (let round = 0; round < 1 + Math.floor(random() * 4); round++) {
          world.step();
          assertFits(world, `seed ${seed}, event ${event} (${kind}), round ${round}`);
          progress();
        }
      }

      // From a quiet state, a rollout stays within its bounds where the instances leave room to.
      for (let round = 0; round < 60; round++) {
        world.step();
        progress();
      }
      const desired = world.service.desiredCount;
      const steadyNow = world.running().length === desired && world.service.deployments.length === 1;
      if (steadyNow && revision < 4) {
        revision++;
        const bounds = rollingBounds(desired, min, max);
        const next = newDeployment(newDeploymentId(world.random), `web:${revision}`, desired, world.now);
        world.service = {
          ...world.service,
          deployments: promote(world.service.deployments, next, world.now),
        };
        for (let round = 0; round < 80; round++) {
          world.step();
          assertFits(world, `seed ${seed}, last rollout, round ${round}`);
          const occupied = world.live().length;
          const running = world.tasks.filter((t) => t.lastStatus === "RUNNING").length;
          assert.ok(occupied <= bounds.maxTotal, `seed ${seed}: ${occupied} tasks alive`);
          assert.ok(running >= bounds.minHealthy, `seed ${seed}: ${running} running < ${bounds.minHealthy}`);
          progress();
        }
      }

      // Whatever happened, the service ends with its desired count running, on usable instances,
      // all of the PRIMARY deployment, where the instances have room for them.
      world.settle(200);
      assertFits(world, `seed ${seed}, settled`);
      const primary = world.service.deployments[0];
      assert.ok(primary !== undefined);
      const running = world.running();
      // Where the instances had no room (a static port on fewer instances than tasks), or the
      // bounds leave none (1 task at 75%..125%), the old deployment's tasks rightly stay, as in
      // ECS; otherwise everything is the PRIMARY's.
      const final = rollingBounds(world.service.desiredCount, min, max);
      const stuck =
        (world.service.desiredCount > 0 && final.maxTotal <= final.minHealthy) ||
        world.events.slice(changedAt).some((e) => e.message.includes("was unable to place a task"));
      if (!stuck) {
        assert.equal(running.length, world.service.desiredCount, `seed ${seed}: desired count running`);
        assert.deepEqual(
          world.service.deployments.map((d) => [d.status, d.rolloutState]),
          [["PRIMARY", "COMPLETED"]],
        );
      }
      for (const task of running) {
        if (!stuck) assert.equal(task.deploymentId, primary.id, `seed ${seed}: every task is the PRIMARY's`);
        const i = world.instances.findIndex((inst) => inst.view.arn === task.instanceArn);
        assert.ok(!lost.has(i), `seed ${seed}: no task on a lost instance`);
        if (!stuck)
          assert.equal(
            world.instance(i).view.status,
            "ACTIVE",
            `seed ${seed}: no task on a DRAINING instance`,
          );
      }
    });
  }
});
