import type { FitIndex } from "./fit-index.ts";
import { PlacementSnapshot } from "./placement-snapshot.ts";
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
  /** Host ports taken; read-only, and shared between views (a view with a task more adds its own to copies). */
  ports: { tcp: ReadonlySet<number>; udp: ReadonlySet<number> };
  attributes: Record<string, string>;
  /** Tasks already on the instance (not STOPPED), by task group, for spread and distinctInstance. */
  groups: Map<string, number>;
  /**
   * Those of them whose desired status is RUNNING: ECS's runningTasksCount ("tasks on the
   * container instance that have a desired status of RUNNING"), the query language's subject.
   */
  runningTasks: number;
  /** When the instance registered (ms), for the query language's `registeredAt`. */
  registeredAt?: number;
  /** Its agent's version, for the query language's `agentVersion`. */
  agentVersion?: string;
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
      case "agentVersion":
        return instance.agentVersion;
      case "registeredAt":
        return instance.registeredAt === undefined
          ? undefined
          : new Date(instance.registeredAt).toISOString();
      case "runningTasksCount":
        return String(instance.runningTasks);
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
  /** Each group's members, gathered the first time a group's best must be found again. */
  private members: Map<number, number[]> | undefined;
  /** Each group's best candidate (-1: none), by the id of its value. */
  private readonly bests: Int32Array;
  /** The ids of groups with candidates. */
  private readonly present: number[] = [];
  /**
   * Whether every later spread is over a field no two candidates share (`instanceId`, `host`: the
   * default for services after the zone). Then a task changes the rank of the instance it went
   * to alone, and each group keeps its members in a heap, so finding the group's next best is a
   * step down the heap rather than a pass over the group.
   */
  private readonly distinctLater: boolean;
  /** Each group's members as a binary heap by rank, built the first time it is needed. */
  private heaps: Map<number, number[]> | undefined;
  /** Where each candidate sits in its group's heap. */
  private slots: Int32Array | undefined;

  constructor(
    private readonly spreads: Spread[],
    private readonly order: Int32Array,
    private readonly candidates: readonly number[],
  ) {
    const first = spreads[0] as Spread;
    this.bests = new Int32Array(first.load.length).fill(-1);
    for (const i of candidates) {
      const id = first.ids[i] as number;
      const best = this.bests[id] as number;
      if (best < 0) this.present.push(id);
      if (best < 0 || this.before(i, best)) this.bests[id] = i;
    }
    this.distinctLater =
      spreads.length > 1 &&
      spreads.slice(1).every((spread) => {
        const seen = new Uint8Array(spread.load.length);
        for (const i of candidates) {
          const id = spread.ids[i] as number;
          if (seen[id] === 1) return false;
          seen[id] = 1;
        }
        return true;
      });
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

  private groups(): Map<number, number[]> {
    if (this.members === undefined) {
      const first = this.spreads[0] as Spread;
      this.members = new Map();
      for (const i of this.candidates) {
        const id = first.ids[i] as number;
        let members = this.members.get(id);
        if (members === undefined) {
          members = [];
          this.members.set(id, members);
        }
        members.push(i);
      }
    }
    return this.members;
  }

  /** The group's heap: its members, each ranking before its children. */
  private heap(id: number): number[] {
    this.heaps ??= new Map();
    let heap = this.heaps.get(id);
    if (heap === undefined) {
      heap = [...(this.groups().get(id) ?? [])];
      this.slots ??= new Int32Array(this.order.length);
      for (let at = 0; at < heap.length; at++) this.slots[heap[at] as number] = at;
      for (let at = (heap.length >> 1) - 1; at >= 0; at--) this.down(heap, at);
      this.heaps.set(id, heap);
    }
    return heap;
  }

  private swap(heap: number[], a: number, b: number): void {
    const slots = this.slots as Int32Array;
    const x = heap[a] as number;
    const y = heap[b] as number;
    heap[a] = y;
    heap[b] = x;
    slots[y] = a;
    slots[x] = b;
  }

  /** Moves the member at `at` down while a child ranks before it. */
  private down(heap: number[], at: number): void {
    for (;;) {
      const left = 2 * at + 1;
      if (left >= heap.length) return;
      const right = left + 1;
      const child =
        right < heap.length && this.before(heap[right] as number, heap[left] as number) ? right : left;
      if (!this.before(heap[child] as number, heap[at] as number)) return;
      this.swap(heap, at, child);
      at = child;
    }
  }

  /** Moves the member at `at` up while it ranks before its parent. */
  private up(heap: number[], at: number): void {
    while (at > 0) {
      const parent = (at - 1) >> 1;
      if (!this.before(heap[at] as number, heap[parent] as number)) return;
      this.swap(heap, at, parent);
      at = parent;
    }
  }

  private rescan(id: number): void {
    let best = -1;
    for (const i of this.groups().get(id) ?? []) if (best < 0 || this.before(i, best)) best = i;
    this.bests[id] = best;
  }

  /** The best candidate, or -1 when none is left. */
  best(): number {
    let best = -1;
    for (const id of this.present) {
      const i = this.bests[id] as number;
      if (i >= 0 && (best < 0 || this.before(i, best))) best = i;
    }
    return best;
  }

  /** Candidate `chosen` took a task (the spread loads already count it); `refused` when it no longer fits. */
  placed(chosen: number, refused: boolean): void {
    const first = this.spreads[0] as Spread;
    const home = first.ids[chosen] as number;
    if (this.distinctLater) {
      // Its group's first-spread load rose for every member alike; of the later loads only its
      // own rose, and it is in no other group: only its place in its own group's heap moves.
      const heap = this.heap(home);
      const slots = this.slots as Int32Array;
      if (refused) {
        const last = heap.pop() as number;
        if (last !== chosen) {
          const at = slots[chosen] as number;
          heap[at] = last;
          slots[last] = at;
          this.down(heap, at);
          this.up(heap, at);
        }
      } else {
        this.down(heap, slots[chosen] as number);
      }
      this.bests[home] = heap.length === 0 ? -1 : (heap[0] as number);
      return;
    }
    if (refused) {
      const members = this.groups().get(home) ?? [];
      members.splice(members.indexOf(chosen), 1);
    } else if (this.spreads.length === 1) {
      // Its group's members share its one value, so their loads rose alike: the order among
      // them, and every other group's best, stay as they were.
      return;
    }
    for (const id of this.present) {
      const best = this.bests[id] as number;
      if (best < 0) continue;
      if (id === home || this.spreads.some((spread, k) => k > 0 && spread.ids[best] === spread.ids[chosen])) {
        this.rescan(id);
      }
    }
  }
}

/** The instance with what one more task takes from it, copied so the caller's snapshot stays as it was. */
function withTask(instance: InstanceView, needs: TaskNeeds, copied: boolean): InstanceView {
  const out = copied
    ? instance
    : { ...instance, remaining: { ...instance.remaining }, groups: new Map(instance.groups) };
  out.remaining.cpu -= needs.cpu;
  out.remaining.memory -= needs.memory;
  // Most tasks take no host port: their views keep the instance's ports, not copies of them.
  if (needs.ports.tcp.length > 0 || needs.ports.udp.length > 0) {
    const tcp = new Set(out.ports.tcp);
    const udp = new Set(out.ports.udp);
    for (const port of needs.ports.tcp) tcp.add(port);
    for (const port of needs.ports.udp) udp.add(port);
    out.ports = { tcp, udp };
  }
  out.groups.set(needs.group, (out.groups.get(needs.group) ?? 0) + 1);
  // A task placed is to run: runningTasksCount counts it from now on.
  out.runningTasks++;
  return out;
}

/**
 * Whether tasks with these needs still fit on the instances a plan made earlier chose for them,
 * a task per entry, taken in order against the instances as they are now.
 */
export function stillFits(
  view: (arn: string) => InstanceView | undefined,
  placements: readonly string[],
  needs: TaskNeeds,
  constraints: Constraint[],
): boolean {
  const taken = new Map<string, InstanceView>();
  for (const arn of placements) {
    const before = taken.get(arn);
    const instance = before ?? view(arn);
    if (instance === undefined || refusal(instance, needs, constraints) !== undefined) return false;
    taken.set(arn, withTask(instance, needs, before !== undefined));
  }
  return true;
}

/**
 * Places `count` tasks with the same needs. Does not modify the snapshot it
 * is given. Only the instance a task goes to changes between tasks, so each
 * instance is checked once, spread loads are taken from the snapshot (a
 * `PlacementSnapshot` kept between calls has them counted already) and kept
 * up to date, and each task takes the best candidate (strategies in order,
 * later ones breaking ties of earlier ones, then the ARN): with only spread
 * strategies, from the best of each group of the first one; otherwise in
 * one pass over the candidates, with no allocation in the inner loop. A
 * failure's reasons are worked out only when a task does not fit.
 */
export function place(
  snapshot: readonly InstanceView[] | PlacementSnapshot,
  count: number,
  needs: TaskNeeds,
  constraints: Constraint[],
  strategies: Strategy[],
  random: () => number,
): PlacementPlan {
  const kept = snapshot instanceof PlacementSnapshot;
  const prepared = kept ? snapshot : new PlacementSnapshot(snapshot);
  // Without constraints or host ports (the usual task), what refusal() asks comes down to this.
  const plain = constraints.length === 0 && needs.ports.tcp.length === 0 && needs.ports.udp.length === 0;
  const [only] = strategies;
  if (kept && plain && strategies.length === 1 && only?.type === "spread") {
    const fit = prepared.fit(only.field ?? "instanceId");
    if (fit !== undefined) return placeFirstFit(prepared, fit, only.field ?? "instanceId", count, needs);
  }
  const instances = prepared.views.slice();
  const copied = new Uint8Array(instances.length);
  let candidates: number[] = [];
  for (let i = 0; i < instances.length; i++) {
    const instance = instances[i] as InstanceView;
    const fits = plain
      ? instance.status === "ACTIVE" &&
        instance.connected &&
        instance.remaining.cpu >= needs.cpu &&
        instance.remaining.memory >= needs.memory
      : refusal(instance, needs, constraints) === undefined;
    if (fits) candidates.push(i);
  }
  const order = prepared.order;
  const rankers: Ranker[] = strategies.map((strategy) =>
    strategy.type === "spread"
      ? { kind: "spread", ...prepared.spread(strategy.field ?? "instanceId", needs.group) }
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
      // Only the instances chosen changed since each was first checked: checking every one again
      // now gives the reasons as they stand.
      const failures: PlacementFailure[] = [];
      for (const instance of instances) {
        const reason = refusal(instance, needs, constraints);
        if (reason !== undefined) failures.push({ arn: instance.arn, reason });
      }
      return { placements, failures };
    }
    const chosen = withTask(instances[best] as InstanceView, needs, copied[best] === 1);
    instances[best] = chosen;
    copied[best] = 1;
    const reason = refusal(chosen, needs, constraints);
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

/**
 * `place()` with one spread strategy over a field with few values (a zone) and a plain task (no
 * constraints, no host ports), from a kept snapshot: the tasks of a value share its load, so the
 * best instance of each value is its first in ARN order that fits, which the snapshot's
 * `FitIndex` finds without a pass over every instance. Each task goes to the least loaded
 * value's first fit; that instance stays its value's best while the task still fits on it (its
 * load rose with its value's), and the next one after it in ARN order is found when it is full.
 * Chooses exactly what the pass does (tested against it).
 */
function placeFirstFit(
  prepared: PlacementSnapshot,
  fit: FitIndex,
  field: string,
  count: number,
  needs: TaskNeeds,
): PlacementPlan {
  const { ids, load } = prepared.spread(field, needs.group);
  const order = prepared.order;
  const bests = new Int32Array(load.length);
  for (let id = 0; id < bests.length; id++) bests[id] = fit.first(id, needs.cpu, needs.memory);
  // The instances tasks went to, with what the tasks take; the snapshot's views stay as they are.
  const changed = new Map<number, InstanceView>();
  const placements: string[] = [];
  for (let n = 0; n < count; n++) {
    let best = -1;
    for (let id = 0; id < bests.length; id++) {
      const i = bests[id] as number;
      if (i < 0) continue;
      if (best < 0) {
        best = i;
        continue;
      }
      const a = load[id] as number;
      const b = load[ids[best] as number] as number;
      if (a < b || (a === b && (order[i] as number) < (order[best] as number))) best = i;
    }
    if (best < 0) {
      const failures: PlacementFailure[] = [];
      prepared.views.forEach((view, i) => {
        const reason = refusal(changed.get(i) ?? view, needs, []);
        if (reason !== undefined) failures.push({ arn: view.arn, reason });
      });
      return { placements, failures };
    }
    const before = changed.get(best);
    const chosen = withTask(before ?? (prepared.views[best] as InstanceView), needs, before !== undefined);
    changed.set(best, chosen);
    const id = ids[best] as number;
    load[id] = (load[id] as number) + 1;
    if (refusal(chosen, needs, []) !== undefined) bests[id] = fit.first(id, needs.cpu, needs.memory, best);
    placements.push(chosen.arn);
  }
  return { placements, failures: [] };
}
