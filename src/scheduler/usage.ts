/**
 * What the tasks on each instance hold, kept up to date one task change at
 * a time so that placement never has to sum every task again. Pure: the
 * caller feeds it each task's footprint as it changes (and every task's at
 * start); it answers per instance in O(1).
 */

/** What one task holds on its instance while it is not STOPPED. */
export interface TaskFootprint {
  instanceArn: string;
  cpu: number;
  memory: number;
  tcp: readonly number[];
  udp: readonly number[];
  group: string;
  /** Whether its desired status is RUNNING (it counts in ECS's runningTasksCount). */
  desiredRunning: boolean;
}

/** The sum of the footprints on one instance. Ports count the tasks holding them. */
export interface InstanceTotals {
  cpu: number;
  memory: number;
  tcp: Map<number, number>;
  udp: Map<number, number>;
  groups: Map<string, number>;
  tasks: number;
  /** The tasks whose desired status is RUNNING. */
  desiredRunning: number;
}

function add<K>(counts: Map<K, number>, key: K, by: number): void {
  const next = (counts.get(key) ?? 0) + by;
  if (next === 0) counts.delete(key);
  else counts.set(key, next);
}

export function sameFootprint(a: TaskFootprint | undefined, b: TaskFootprint | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return (
    a.instanceArn === b.instanceArn &&
    a.cpu === b.cpu &&
    a.memory === b.memory &&
    a.group === b.group &&
    a.desiredRunning === b.desiredRunning &&
    a.tcp.length === b.tcp.length &&
    a.udp.length === b.udp.length &&
    a.tcp.every((p, i) => b.tcp[i] === p) &&
    a.udp.every((p, i) => b.udp[i] === p)
  );
}

export class UsageIndex {
  private readonly tasks = new Map<string, TaskFootprint>();
  private readonly totals = new Map<string, InstanceTotals>();

  /** The footprint recorded for a task, if it holds anything. */
  footprint(taskArn: string): TaskFootprint | undefined {
    return this.tasks.get(taskArn);
  }

  /**
   * Records what a task holds now: `undefined` once it holds nothing (STOPPED).
   * Returns the instances whose totals changed.
   */
  set(taskArn: string, footprint: TaskFootprint | undefined): string[] {
    const before = this.tasks.get(taskArn);
    if (sameFootprint(before, footprint)) return [];
    const changed: string[] = [];
    if (before !== undefined) {
      this.apply(before, -1);
      this.tasks.delete(taskArn);
      changed.push(before.instanceArn);
    }
    if (footprint !== undefined) {
      const copy = { ...footprint, tcp: [...footprint.tcp], udp: [...footprint.udp] };
      this.apply(copy, 1);
      this.tasks.set(taskArn, copy);
      if (copy.instanceArn !== before?.instanceArn) changed.push(copy.instanceArn);
    }
    return changed;
  }

  /** The totals of an instance; undefined when nothing is on it. Read-only: the index owns it. */
  of(instanceArn: string): Readonly<InstanceTotals> | undefined {
    return this.totals.get(instanceArn);
  }

  /** Every instance with something on it. */
  instances(): IterableIterator<string> {
    return this.totals.keys();
  }

  private apply(footprint: TaskFootprint, sign: 1 | -1): void {
    let totals = this.totals.get(footprint.instanceArn);
    if (totals === undefined) {
      totals = {
        cpu: 0,
        memory: 0,
        tcp: new Map(),
        udp: new Map(),
        groups: new Map(),
        tasks: 0,
        desiredRunning: 0,
      };
      this.totals.set(footprint.instanceArn, totals);
    }
    totals.cpu += sign * footprint.cpu;
    totals.memory += sign * footprint.memory;
    totals.tasks += sign;
    if (footprint.desiredRunning) totals.desiredRunning += sign;
    for (const port of footprint.tcp) add(totals.tcp, port, sign);
    for (const port of footprint.udp) add(totals.udp, port, sign);
    add(totals.groups, footprint.group, sign);
    if (totals.tasks === 0) this.totals.delete(footprint.instanceArn);
  }
}
