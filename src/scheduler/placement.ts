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

function spreadValue(instance: InstanceView, field: string): string {
  if (field === "instanceId" || field === "host") return instance.arn;
  return instance.attributes[field.replace(/^attribute:/, "")] ?? "";
}

/** Orders candidates by each strategy in turn (later ones break ties of earlier ones). */
function rank(
  candidates: InstanceView[],
  all: InstanceView[],
  strategies: Strategy[],
  group: string,
  random: () => number,
): InstanceView[] {
  const keys = new Map<InstanceView, number[]>();
  for (const candidate of candidates) keys.set(candidate, []);
  for (const strategy of strategies) {
    if (strategy.type === "random") {
      for (const candidate of candidates) keys.get(candidate)?.push(random());
    } else if (strategy.type === "binpack") {
      const field = strategy.field === "cpu" ? "cpu" : "memory";
      for (const candidate of candidates) keys.get(candidate)?.push(candidate.remaining[field]);
    } else {
      const field = strategy.field ?? "instanceId";
      const load = new Map<string, number>();
      // Every value across the cluster counts, so an empty zone attracts tasks.
      for (const instance of all) {
        const value = spreadValue(instance, field);
        load.set(value, (load.get(value) ?? 0) + (instance.groups.get(group) ?? 0));
      }
      for (const candidate of candidates)
        keys.get(candidate)?.push(load.get(spreadValue(candidate, field)) ?? 0);
    }
  }
  return [...candidates].sort((a, b) => {
    const ka = keys.get(a) ?? [];
    const kb = keys.get(b) ?? [];
    for (let i = 0; i < ka.length; i++) {
      const d = (ka[i] ?? 0) - (kb[i] ?? 0);
      if (d !== 0) return d;
    }
    return a.arn < b.arn ? -1 : a.arn > b.arn ? 1 : 0;
  });
}

/** Places `count` tasks with the same needs. Does not modify the snapshot it is given. */
export function place(
  snapshot: InstanceView[],
  count: number,
  needs: TaskNeeds,
  constraints: Constraint[],
  strategies: Strategy[],
  random: () => number,
): PlacementPlan {
  const instances = snapshot.map((instance) => ({
    ...instance,
    remaining: { ...instance.remaining },
    ports: { tcp: new Set(instance.ports.tcp), udp: new Set(instance.ports.udp) },
    groups: new Map(instance.groups),
  }));
  const placements: string[] = [];
  for (let n = 0; n < count; n++) {
    const failures: PlacementFailure[] = [];
    const candidates: InstanceView[] = [];
    for (const instance of instances) {
      const reason = refusal(instance, needs, constraints);
      if (reason === undefined) candidates.push(instance);
      else failures.push({ arn: instance.arn, reason });
    }
    const [chosen] = rank(candidates, instances, strategies, needs.group, random);
    if (chosen === undefined) return { placements, failures };
    chosen.remaining.cpu -= needs.cpu;
    chosen.remaining.memory -= needs.memory;
    for (const port of needs.ports.tcp) chosen.ports.tcp.add(port);
    for (const port of needs.ports.udp) chosen.ports.udp.add(port);
    chosen.groups.set(needs.group, (chosen.groups.get(needs.group) ?? 0) + 1);
    placements.push(chosen.arn);
  }
  return { placements, failures: [] };
}
