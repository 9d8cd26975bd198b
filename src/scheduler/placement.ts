import { type Expr, evaluate } from "./query.ts";

/**
 * Task placement as ECS does it, as a pure function of a snapshot: filter the
 * instances a task fits (status, agent, constraints, CPU, memory, ports), rank
 * them by the strategies in order, take the best, account for what it used,
 * repeat for the next task. The caller applies the plan and re-checks it
 * against fresh state when it commits.
 */

export interface InstanceView {
  arn: string;
  /** `ecs.instance-id`-style id; `spread` on instanceId/host uses it. */
  instanceId: string;
  status: string;
  connected: boolean;
  remaining: { cpu: number; memory: number };
  ports: { tcp: Set<number>; udp: Set<number> };
  attributes: Record<string, string>;
  /** Tasks already on the instance, by task group, for spread and distinctInstance. */
  groups: Map<string, number>;
}

export interface TaskNeeds {
  cpu: number;
  memory: number;
  ports: { tcp: number[]; udp: number[] };
  group: string;
}

export interface Constraint {
  type: "distinctInstance" | "memberOf";
  expression?: Expr;
}

export interface Strategy {
  type: "spread" | "binpack" | "random";
  field?: string;
}

export interface PlacementFailure {
  arn: string;
  reason:
    | "AGENT"
    | "ATTRIBUTE"
    | "RESOURCE:CPU"
    | "RESOURCE:MEMORY"
    | "RESOURCE:PORTS"
    | "INACTIVE"
    | "DRAINING";
}

export interface PlacementPlan {
  /** The instance chosen for each task, in order; shorter than `count` when some did not fit. */
  placements: string[];
  /** Why each instance was refused for the first task that did not fit. */
  failures: PlacementFailure[];
}

/** The subjects the cluster query language can ask about an instance. */
export function instanceSubjects(instance: InstanceView): (subject: string) => string | string[] | undefined {
  return (subject) => {
    if (subject.startsWith("attribute:")) return instance.attributes[subject.slice("attribute:".length)];
    switch (subject) {
      case "task:group": {
        // The groups of the tasks the instance runs: `task:group == databases` keeps tasks together.
        const groups = [...instance.groups].filter(([, n]) => n > 0).map(([group]) => group);
        return groups.length === 0 ? undefined : groups;
      }
      case "ec2InstanceId":
        return instance.instanceId;
      case "agentConnected":
        return String(instance.connected);
      case "runningTasksCount":
        return String([...instance.groups.values()].reduce((a, b) => a + b, 0));
      default:
        return instance.attributes[subject];
    }
  };
}

function refusal(
  instance: InstanceView,
  needs: TaskNeeds,
  constraints: Constraint[],
): PlacementFailure["reason"] | undefined {
  if (instance.status === "DRAINING") return "DRAINING";
  if (instance.status !== "ACTIVE") return "INACTIVE";
  if (!instance.connected) return "AGENT";
  for (const constraint of constraints) {
    if (constraint.type === "distinctInstance" && (instance.groups.get(needs.group) ?? 0) > 0)
      return "ATTRIBUTE";
    if (constraint.type === "memberOf" && constraint.expression !== undefined) {
      if (!evaluate(constraint.expression, instanceSubjects(instance))) return "ATTRIBUTE";
    }
  }
  if (instance.remaining.cpu < needs.cpu) return "RESOURCE:CPU";
  if (instance.remaining.memory < needs.memory) return "RESOURCE:MEMORY";
  if (
    needs.ports.tcp.some((p) => instance.ports.tcp.has(p)) ||
    needs.ports.udp.some((p) => instance.ports.udp.has(p))
  ) {
    return "RESOURCE:PORTS";
  }
  return undefined;
}

/** How one strategy ranks an instance; lower ranks first. */
type Ranker =
  | { kind: "spread"; ids: Int32Array; load: Float64Array }
  | { kind: "binpack"; field: "cpu" | "memory" }
  | { kind: "random" };

/** A spread strategy: each instance's value of the field as a number, and the group's tasks per value. */
function spreadOf(instances: InstanceView[], field: string, group: string): Ranker {
  const byInstance = field === "instanceId" || field === "host";
  const attribute = field.replace(/^attribute:/, "");
  const numbers = new Map<string, number>();
  const ids = new Int32Array(instances.length);
  const loads: number[] = [];
  // Every value across the cluster counts, so an empty zone attracts tasks.
  for (let i = 0; i < instances.length; i++) {
    const instance = instances[i] as InstanceView;
    const value = byInstance ? instance.arn : (instance.attributes[attribute] ?? "");
    let id = byInstance ? undefined : numbers.get(value);
    if (id === undefined) {
      id = loads.length;
      if (!byInstance) numbers.set(value, id);
      loads.push(0);
    }
    ids[i] = id;
    if (instance.groups.size > 0) loads[id] = (loads[id] as number) + (instance.groups.get(group) ?? 0);
  }
  return { kind: "spread", ids, load: Float64Array.from(loads) };
}

type Spread = Extract<Ranker, { kind: "spread" }>;

/**
 * The candidates grouped by their value of the first spread strategy (a zone,
 * say), with the best of each group kept: when every strategy is a spread,
 * the best instance is the best of the groups' bests, and placing a task
 * changes only its own group's best and those of groups whose best shares a
 * value of a later strategy with it. So a task costs a look at each group and
 * a rescan of the group it went to, not a pass over every instance. Ranks
 * exactly as the pass does: strategies in order, then the ARN.
 */
class SpreadBuckets {
  private readonly members = new Map<number, number[]>();
  private readonly bests = new Map<number, number>();

  constructor(
    private readonly spreads: Spread[],
    private readonly order: Int32Array,
    candidates: readonly number[],
  ) {
    const first = spreads[0] as Spread;
    for (const i of candidates) {
      const id = first.ids[i] as number;
      let members = this.members.get(id);
      if (members === undefined) {
        members = [];
        this.members.set(id, members);
      }
      members.push(i);
    }
    for (const id of this.members.keys()) this.rescan(id);
  }

  /** Whether candidate `i` ranks before candidate `j`. */
  private before(i: number, j: number): boolean {
    for (const spread of this.spreads) {
      const a = spread.load[spread.ids[i] as number] as number;
      const b = spread.load[spread.ids[j] as number] as number;
      if (a !== b) return a < b;
    }
    return (this.order[i] as number) < (this.order[j] as number);
  }

  private rescan(id: number): void {
    let best = -1;
    for (const i of this.members.get(id) ?? []) if (best < 0 || this.before(i, best)) best = i;
    if (best < 0) {
      this.members.delete(id);
      this.bests.delete(id);
    } else {
      this.bests.set(id, best);
    }
  }

  /** The best candidate, or -1 when none is left. */
  best(): number {
    let best = -1;
    for (const i of this.bests.values()) if (best < 0 || this.before(i, best)) best = i;
    return best;
  }

  /** Candidate `chosen` took a task (the spread loads already count it); `refused` when it no longer fits. */
  placed(chosen: number, refused: boolean): void {
    const first = this.spreads[0] as Spread;
    const home = first.ids[chosen] as number;
    if (refused) {
      const members = this.members.get(home) ?? [];
      members.splice(members.indexOf(chosen), 1);
    }
    for (const [id, best] of this.bests) {
      if (id === home || this.spreads.some((spread, k) => k > 0 && spread.ids[best] === spread.ids[chosen])) {
        this.rescan(id);
      }
    }
  }
}

/** Each instance's position in ARN order, the last tie-breaker (no sorting when already in order). */
function arnOrder(instances: InstanceView[]): Int32Array {
  const order = new Int32Array(instances.length);
  let sorted = true;
  for (let i = 1; i < instances.length && sorted; i++) {
    sorted = (instances[i - 1] as InstanceView).arn <= (instances[i] as InstanceView).arn;
  }
  if (sorted) {
    for (let i = 0; i < order.length; i++) order[i] = i;
    return order;
  }
  const byArn = instances.map((_, i) => i);
  byArn.sort((a, b) => {
    const x = (instances[a] as InstanceView).arn;
    const y = (instances[b] as InstanceView).arn;
    return x < y ? -1 : x > y ? 1 : 0;
  });
  for (const [position, i] of byArn.entries()) order[i] = position;
  return order;
}

/** The instance with what one more task takes from it, copied so the caller's snapshot stays as it was. */
function withTask(instance: InstanceView, needs: TaskNeeds, copied: boolean): InstanceView {
  const out = copied
    ? instance
    : {
        ...instance,
        remaining: { ...instance.remaining },
        ports: { tcp: new Set(instance.ports.tcp), udp: new Set(instance.ports.udp) },
        groups: new Map(instance.groups),
      };
  out.remaining.cpu -= needs.cpu;
  out.remaining.memory -= needs.memory;
  for (const port of needs.ports.tcp) out.ports.tcp.add(port);
  for (const port of needs.ports.udp) out.ports.udp.add(port);
  out.groups.set(needs.group, (out.groups.get(needs.group) ?? 0) + 1);
  return out;
}

/**
 * Places `count` tasks with the same needs. Does not modify the snapshot it
 * is given. Only the instance a task goes to changes between tasks, so each
 * instance is checked once, spread loads are counted once and then kept up
 * to date, and each task takes the best candidate in one pass (strategies in
 * order, later ones breaking ties of earlier ones, then the ARN): O(instances)
 * per task, with no allocation in the inner loop.
 */
export function place(
  snapshot: readonly InstanceView[],
  count: number,
  needs: TaskNeeds,
  constraints: Constraint[],
  strategies: Strategy[],
  random: () => number,
): PlacementPlan {
  const instances = snapshot.slice();
  const copied = new Uint8Array(instances.length);
  const reasons: Array<PlacementFailure["reason"] | undefined> = new Array(instances.length);
  let candidates: number[] = [];
  for (let i = 0; i < instances.length; i++) {
    const reason = refusal(instances[i] as InstanceView, needs, constraints);
    reasons[i] = reason;
    if (reason === undefined) candidates.push(i);
  }
  const order = arnOrder(instances);
  const rankers: Ranker[] = strategies.map((strategy) =>
    strategy.type === "spread"
      ? spreadOf(instances, strategy.field ?? "instanceId", needs.group)
      : strategy.type === "binpack"
        ? { kind: "binpack", field: strategy.field === "cpu" ? "cpu" : "memory" }
        : { kind: "random" },
  );
  const keys = new Float64Array(rankers.length);
  const bestKeys = new Float64Array(rankers.length);
  const placements: string[] = [];
  const spreads =
    rankers.length > 0 && rankers.every((ranker) => ranker.kind === "spread")
      ? (rankers as Spread[])
      : undefined;
  const buckets = spreads === undefined ? undefined : new SpreadBuckets(spreads, order, candidates);
  for (let n = 0; n < count; n++) {
    let best = buckets === undefined ? -1 : buckets.best();
    for (const i of buckets === undefined ? candidates : []) {
      let verdict = best < 0 ? -1 : 0;
      for (let k = 0; k < rankers.length; k++) {
        const ranker = rankers[k] as Ranker;
        const key =
          ranker.kind === "spread"
            ? (ranker.load[ranker.ids[i] as number] as number)
            : ranker.kind === "binpack"
              ? (instances[i] as InstanceView).remaining[ranker.field]
              : random();
        keys[k] = key;
        if (verdict === 0 && key !== bestKeys[k]) verdict = key < (bestKeys[k] as number) ? -1 : 1;
      }
      if (verdict < 0 || (verdict === 0 && (order[i] as number) < (order[best] as number))) {
        best = i;
        bestKeys.set(keys);
      }
    }
    if (best < 0) {
      const failures: PlacementFailure[] = [];
      for (const [i, reason] of reasons.entries()) {
        if (reason !== undefined) failures.push({ arn: (instances[i] as InstanceView).arn, reason });
      }
      return { placements, failures };
    }
    const chosen = withTask(instances[best] as InstanceView, needs, copied[best] === 1);
    instances[best] = chosen;
    copied[best] = 1;
    const reason = refusal(chosen, needs, constraints);
    reasons[best] = reason;
    if (reason !== undefined) candidates = candidates.filter((i) => i !== best);
    for (const ranker of rankers) {
      if (ranker.kind !== "spread") continue;
      const id = ranker.ids[best] as number;
      ranker.load[id] = (ranker.load[id] as number) + 1;
    }
    buckets?.placed(best, reason !== undefined);
    placements.push(chosen.arn);
  }
  return { placements, failures: [] };
}
