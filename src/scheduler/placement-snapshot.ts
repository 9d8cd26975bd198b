import { FitIndex } from "./fit-index.ts";
import type { InstanceView } from "./placement.ts";

/**
 * A cluster's instances as placement reads them, with what every `place()`
 * would otherwise derive again from all of them kept between calls: each
 * instance's position in ARN order, and per spread field each instance's
 * value (as a small number) and the tasks of a group per value. The owner
 * replaces an instance's view when it changes (`set`), which keeps those up
 * to date in O(fields + groups), so a placement call no longer counts spread
 * loads over every instance. Pure: no I/O, no clock.
 */
export class PlacementSnapshot {
  private readonly list: InstanceView[];
  /** Each instance's position in ARN order, the last tie-breaker. */
  readonly order: Int32Array;
  private readonly fields = new Map<string, FieldIndex>();
  private changes = 0;

  constructor(views: readonly InstanceView[]) {
    this.list = views.slice();
    this.order = arnOrder(this.list);
  }

  get views(): readonly InstanceView[] {
    return this.list;
  }

  /**
   * How many times an instance's standing (its status, its agent's connection, its attributes)
   * changed since the snapshot was made; what it holds (resources, tasks) does not count. A plan
   * made over the snapshot holds while this is unchanged.
   */
  get generation(): number {
    return this.changes;
  }

  /** Instance `i` is now `view` (the same instance: its ARN is unchanged). */
  set(i: number, view: InstanceView): void {
    const before = this.list[i];
    if (before === undefined || before.arn !== view.arn) throw new Error("set() keeps each instance's place");
    this.list[i] = view;
    if (
      before.status !== view.status ||
      before.connected !== view.connected ||
      !sameAttributes(before.attributes, view.attributes)
    )
      this.changes++;
    for (const [field, index] of this.fields) {
      const id = index.ids[i] as number;
      if (!index.byInstance && (index.values.get(spreadValue(view, field)) ?? -1) !== id) {
        // The instance's value changed (its attributes did): counted again when next asked for.
        this.fields.delete(field);
        continue;
      }
      index.fit?.update(i, view);
      for (const [group, loads] of index.loads) {
        const delta = (view.groups.get(group) ?? 0) - (before.groups.get(group) ?? 0);
        if (delta !== 0) loads[id] = (loads[id] as number) + delta;
      }
    }
  }

  private field(field: string): FieldIndex {
    let index = this.fields.get(field);
    if (index === undefined) {
      index = fieldIndex(this.list, field);
      this.fields.set(field, index);
    }
    return index;
  }

  /**
   * The instances of each value of `field` (not instanceId/host) in ARN order, searchable for
   * the first that fits (see `FitIndex`); built when first asked for, then kept up to date.
   */
  fit(field: string): FitIndex | undefined {
    const index = this.field(field);
    if (index.byInstance) return undefined;
    index.fit ??= new FitIndex(this.list, index.ids, index.size, this.order);
    return index.fit;
  }

  /**
   * A spread strategy over `field` for tasks of `group`: each instance's value as a number, and
   * the group's tasks per value (a copy the caller may change).
   */
  spread(field: string, group: string): { ids: Int32Array; load: Float64Array } {
    const index = this.field(field);
    let loads = index.loads.get(group);
    if (loads === undefined) {
      // Few groups are placed into a cluster at once; the counts of others are dropped, not kept forever.
      if (index.loads.size >= MAX_GROUPS) index.loads.clear();
      loads = new Float64Array(index.size);
      for (let i = 0; i < this.list.length; i++) {
        const groups = (this.list[i] as InstanceView).groups;
        if (groups.size === 0) continue;
        const id = index.ids[i] as number;
        loads[id] = (loads[id] as number) + (groups.get(group) ?? 0);
      }
      index.loads.set(group, loads);
    }
    return { ids: index.ids, load: loads.slice() };
  }
}

function sameAttributes(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  if (a === b) return true;
  let count = 0;
  for (const name in a) {
    if (a[name] !== b[name]) return false;
    count++;
  }
  for (const _name in b) count--;
  return count === 0;
}

/** Groups whose spread loads are kept per field. */
const MAX_GROUPS = 16;

interface FieldIndex {
  /** `instanceId`/`host`: every instance is its own value. */
  byInstance: boolean;
  ids: Int32Array;
  /** Value → id (empty when byInstance). */
  values: Map<string, number>;
  /** How many values (ids) there are. */
  size: number;
  loads: Map<string, Float64Array>;
  /** Built the first time placement asks for it (a single spread strategy over this field). */
  fit?: FitIndex;
}

/** What a spread field makes of an instance: its ARN for instanceId/host, else the attribute ("" if missing). */
export function spreadValue(instance: InstanceView, field: string): string {
  if (field === "instanceId" || field === "host") return instance.arn;
  return instance.attributes[field.replace(/^attribute:/, "")] ?? "";
}

function fieldIndex(instances: readonly InstanceView[], field: string): FieldIndex {
  const byInstance = field === "instanceId" || field === "host";
  const ids = new Int32Array(instances.length);
  const values = new Map<string, number>();
  if (byInstance) {
    for (let i = 0; i < ids.length; i++) ids[i] = i;
    return { byInstance, ids, values, size: ids.length, loads: new Map() };
  }
  // Every value across the cluster counts, so an empty zone attracts tasks.
  for (let i = 0; i < instances.length; i++) {
    const value = spreadValue(instances[i] as InstanceView, field);
    let id = values.get(value);
    if (id === undefined) {
      id = values.size;
      values.set(value, id);
    }
    ids[i] = id;
  }
  return { byInstance, ids, values, size: values.size, loads: new Map() };
}

/** Each instance's position in ARN order (no sorting when already in order). */
function arnOrder(instances: readonly InstanceView[]): Int32Array {
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
