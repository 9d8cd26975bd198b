import type { InstanceView, Strategy } from "./placement.ts";

/**
 * Which of a service's tasks to stop when it has too many, as ECS chooses
 * them: tasks that are not running yet, then unhealthy ones, then by the
 * service's placement strategies read backwards (spread: from the value,
 * zone or instance with the most of the service's tasks; binpack: from the
 * instance with the most of the resource left; random), then from the
 * instance with the most tasks, newest first. Pure.
 */

/** A service task as the scheduler sees it. */
export interface TaskState {
  arn: string;
  /** The deployment that started it (its `startedBy`). */
  deploymentId: string;
  instanceArn: string;
  lastStatus: string;
  desiredStatus: "RUNNING" | "STOPPED";
  /** The task's health as ECS reports it. */
  health: "HEALTHY" | "UNHEALTHY" | "UNKNOWN";
  /** Whether an essential container has a health check (then only HEALTHY counts as healthy). */
  checked: boolean;
  createdAt: number;
  startedAt?: number;
  stoppedAt?: number;
  /** Stopped because it failed: did not start, an essential container exited, or it failed health checks. */
  failed: boolean;
  /** The capacity provider it was started on, for a service with a capacity provider strategy. */
  capacityProvider?: string;
}

/** A container instance as placement sees it, with its zone and its agent's last heartbeat. */
export interface InstanceState {
  view: InstanceView;
  zone?: string;
  lastHeartbeat: number;
}

/** RUNNING, wanted, and HEALTHY where a health check says so. */
export function isHealthy(task: TaskState): boolean {
  return (
    task.desiredStatus === "RUNNING" &&
    task.lastStatus === "RUNNING" &&
    (!task.checked || task.health === "HEALTHY")
  );
}

export interface VictimContext {
  /** Every task of the service still counted where it runs (for spread). */
  tasks: TaskState[];
  instances: ReadonlyMap<string, InstanceState>;
  strategies: Strategy[];
}

function readiness(task: TaskState): number {
  if (task.lastStatus !== "RUNNING") return 0;
  return isHealthy(task) ? 2 : 1;
}

function spreadValue(instance: InstanceState | undefined, instanceArn: string, field: string): string {
  if (field === "instanceId" || field === "host") return instanceArn;
  return instance?.view.attributes[field.replace(/^attribute:/, "")] ?? "";
}

/** `count` of `candidates` to stop, in the order ECS would stop them. */
export function chooseVictims(
  candidates: TaskState[],
  count: number,
  context: VictimContext,
  random: () => number,
): TaskState[] {
  if (count <= 0) return [];
  if (count >= candidates.length) return [...candidates];
  const pool = [...candidates];
  const counted = [...context.tasks];
  const chosen: TaskState[] = [];
  while (chosen.length < count) {
    const perInstance = new Map<string, number>();
    for (const task of counted)
      perInstance.set(task.instanceArn, (perInstance.get(task.instanceArn) ?? 0) + 1);
    const keys = new Map<TaskState, number[]>();
    for (const task of pool) {
      const instance = context.instances.get(task.instanceArn);
      const key = [readiness(task)];
      for (const strategy of context.strategies) {
        if (strategy.type === "random") key.push(random());
        else if (strategy.type === "binpack") {
          const field = strategy.field === "cpu" ? "cpu" : "memory";
          key.push(-(instance?.view.remaining[field] ?? 0));
        } else {
          const field = strategy.field ?? "instanceId";
          const value = spreadValue(instance, task.instanceArn, field);
          const load = counted.filter(
            (t) => spreadValue(context.instances.get(t.instanceArn), t.instanceArn, field) === value,
          ).length;
          key.push(-load);
        }
      }
      key.push(-(perInstance.get(task.instanceArn) ?? 0), -task.createdAt);
      keys.set(task, key);
    }
    pool.sort((a, b) => {
      const ka = keys.get(a) ?? [];
      const kb = keys.get(b) ?? [];
      for (let i = 0; i < ka.length; i++) {
        const d = (ka[i] ?? 0) - (kb[i] ?? 0);
        if (d !== 0) return d;
      }
      return a.arn < b.arn ? -1 : a.arn > b.arn ? 1 : 0;
    });
    const victim = pool.shift();
    if (victim === undefined) break;
    chosen.push(victim);
    const index = counted.indexOf(victim);
    if (index >= 0) counted.splice(index, 1);
  }
  return chosen;
}
