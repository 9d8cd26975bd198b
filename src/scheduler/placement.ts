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

/** What a spread strategy ranks by: each instance's value of the field, and the group's tasks per value. */
interface Spread {
  values: string[];
  load: Map<string, number>;
}

function spreadOf(instances: InstanceView[], field: string, group: string): Spread {
  const byInstance = field === "instanceId" || field === "host";
  const attribute = field.replace(/^attribute:/, "");
  const values: string[] = [];
  const load = new Map<string, number>();
  // Every value across the cluster counts, so an empty zone attracts tasks.
  for (const instance of instances) {
    const value = byInstance ? instance.arn : (instance.attributes[attribute] ?? "");
    values.push(value);
    load.set(value, (load.get(value) ?? 0) + (instance.groups.get(group) ?? 0));
  }
  return { values, load };
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
 * per task.
 */
export function place(
  snapshot: InstanceView[],
  count: number,
  needs: TaskNeeds,
  constraints: Constraint[],
  strategies: Strategy[],
  random: () => number,
): PlacementPlan {
  const instances = snapshot.slice();
  const copied = new Uint8Array(instances.length);
  const reasons = instances.map((instance) => refusal(instance, needs, constraints));
  const spreads = strategies.map((strategy) =>
    strategy.type === "spread" ? spreadOf(instances, strategy.field ?? "instanceId", needs.group) : undefined,
  );
  const binpack = strategies.map((strategy) => (strategy.field === "cpu" ? "cpu" : "memory"));
  let keys: number[] = [];
  let bestKeys: number[] = [];
  const placements: string[] = [];
  for (let n = 0; n < count; n++) {
    let best = -1;
    for (let i = 0; i < instances.length; i++) {
      if (reasons[i] !== undefined) continue;
      const instance = instances[i] as InstanceView;
      for (let k = 0; k < strategies.length; k++) {
        const spread = spreads[k];
        const type = (strategies[k] as Strategy).type;
        keys[k] =
          spread !== undefined
            ? (spread.load.get(spread.values[i] as string) ?? 0)
            : type === "random"
              ? random()
              : instance.remaining[binpack[k] as "cpu" | "memory"];
      }
      if (best < 0 || before(keys, instance.arn, bestKeys, (instances[best] as InstanceView).arn)) {
        best = i;
        [keys, bestKeys] = [bestKeys, keys];
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
    reasons[best] = refusal(chosen, needs, constraints);
    for (const spread of spreads) {
      if (spread === undefined) continue;
      const value = spread.values[best] as string;
      spread.load.set(value, (spread.load.get(value) ?? 0) + 1);
    }
    placements.push(chosen.arn);
  }
  return { placements, failures: [] };
}

/** Whether a candidate ranks before the best so far: lower keys first, then the lower ARN. */
function before(keys: number[], arn: string, best: number[], bestArn: string): boolean {
  for (let k = 0; k < keys.length; k++) {
    const d = (keys[k] as number) - (best[k] as number);
    if (d !== 0) return d < 0;
  }
  return arn < bestArn;
}
