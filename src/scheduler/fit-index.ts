import type { InstanceView } from "./placement.ts";

/**
 * For one spread field (a zone, say), each value's instances in ARN order with the most CPU and
 * the most memory left among them kept in a tree, so that "the first instance of this zone, in
 * ARN order, that is ACTIVE, connected and has this much CPU and memory left" is found by a
 * descent rather than a pass over every instance. Kept up to date one instance at a time
 * (`update`) by the `PlacementSnapshot` that owns it. Pure: no I/O.
 */
export class FitIndex {
  /** Per value id: its instances (indexes into the snapshot) in ARN order. */
  private readonly members: Int32Array[];
  /** Per instance: its position among its value's members. */
  private readonly position: Int32Array;
  /** Per value id: leaf count (a power of two) and the tree's maxima, node 1 the root. */
  private readonly sizes: number[];
  private readonly cpu: Float64Array[];
  private readonly memory: Float64Array[];

  constructor(
    views: readonly InstanceView[],
    /** Each instance's value id. */
    private readonly ids: Int32Array,
    values: number,
    order: Int32Array,
  ) {
    const lists: number[][] = Array.from({ length: values }, () => []);
    for (let i = 0; i < views.length; i++) lists[ids[i] as number]?.push(i);
    this.position = new Int32Array(views.length);
    this.members = [];
    this.sizes = [];
    this.cpu = [];
    this.memory = [];
    for (const list of lists) {
      list.sort((a, b) => (order[a] as number) - (order[b] as number));
      for (const [k, i] of list.entries()) this.position[i] = k;
      let size = 1;
      while (size < list.length) size *= 2;
      this.members.push(Int32Array.from(list));
      this.sizes.push(size);
      this.cpu.push(new Float64Array(2 * size).fill(Number.NEGATIVE_INFINITY));
      this.memory.push(new Float64Array(2 * size).fill(Number.NEGATIVE_INFINITY));
    }
    for (let i = 0; i < views.length; i++) this.update(i, views[i] as InstanceView);
  }

  /** Instance `i` is now `view` (its value unchanged). */
  update(i: number, view: InstanceView): void {
    const id = this.ids[i] as number;
    const cpu = this.cpu[id] as Float64Array;
    const memory = this.memory[id] as Float64Array;
    const eligible = view.status === "ACTIVE" && view.connected;
    let node = (this.sizes[id] as number) + (this.position[i] as number);
    cpu[node] = eligible ? view.remaining.cpu : Number.NEGATIVE_INFINITY;
    memory[node] = eligible ? view.remaining.memory : Number.NEGATIVE_INFINITY;
    for (node >>= 1; node >= 1; node >>= 1) {
      cpu[node] = Math.max(cpu[2 * node] as number, cpu[2 * node + 1] as number);
      memory[node] = Math.max(memory[2 * node] as number, memory[2 * node + 1] as number);
    }
  }

  /**
   * The first instance of value `id`, in ARN order and after the one at `after` (-1: from the
   * start), that is ACTIVE, connected and has `cpu` and `memory` left; -1 when none.
   */
  first(id: number, cpu: number, memory: number, after = -1): number {
    const members = this.members[id];
    if (members === undefined || members.length === 0) return -1;
    const from = after < 0 ? 0 : (this.position[after] as number) + 1;
    const found = this.descend(id, 1, 0, this.sizes[id] as number, from, cpu, memory);
    return found < 0 ? -1 : (members[found] as number);
  }

  private descend(
    id: number,
    node: number,
    lo: number,
    hi: number,
    from: number,
    cpu: number,
    memory: number,
  ): number {
    if (hi <= from) return -1;
    if (((this.cpu[id] as Float64Array)[node] as number) < cpu) return -1;
    if (((this.memory[id] as Float64Array)[node] as number) < memory) return -1;
    if (hi - lo === 1) return lo;
    const mid = (lo + hi) >> 1;
    const left = this.descend(id, 2 * node, lo, mid, from, cpu, memory);
    return left >= 0 ? left : this.descend(id, 2 * node + 1, mid, hi, from, cpu, memory);
  }
}
