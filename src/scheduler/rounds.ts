/**
 * A look-ahead plan arranged to be started over several bounded passes: each pass takes the
 * next `count` tasks, each group of instances (a zone, say) as many as the plan's sequence of
 * groups gives it at that point, and within a group its instances round by round, up to
 * PER_INSTANCE tasks of each a round. The arrangement is made once, when the plan is; a pass
 * then costs what it takes, however much of the plan is left. Pure: no I/O, no clock.
 */

/**
 * At most this many of an instance's planned tasks go in one round. Two halves the polls a
 * large scale-up costs (an agent takes both tasks in one answer) while no instance runs more
 * than two tasks ahead of the spread at the end of a pass.
 */
export const PER_INSTANCE = 2;

export interface Rounds {
  /** The plan's sequence of groups, each placement's as an index into `queues`. */
  readonly sequence: Int32Array;
  /** Each group's planned instances in round order, a task per entry. */
  readonly queues: ReadonlyArray<readonly string[]>;
  /** Where what is left begins: in `sequence`, and in each group's queue. */
  readonly at: number;
  readonly taken: readonly number[];
}

/**
 * Arranges a plan (an instance per task, in the order placement chose them) for `takeRounds`.
 * `groupOf` gives an instance's group: the values of the spread fields other than
 * instanceId/host. Within a group, round after round gives every instance that still has
 * planned tasks up to `perInstance` of them, instances in the order the plan first chose them.
 */
export function arrangeRounds(
  placements: readonly string[],
  groupOf: (instanceArn: string) => string,
  perInstance = PER_INSTANCE,
): Rounds {
  const groupIndex = new Map<string, number>();
  const instanceGroup = new Map<string, number>();
  const shares: Array<Map<string, number>> = [];
  const sequence = new Int32Array(placements.length);
  for (const [i, arn] of placements.entries()) {
    let group = instanceGroup.get(arn);
    if (group === undefined) {
      const name = groupOf(arn);
      group = groupIndex.get(name);
      if (group === undefined) {
        group = shares.length;
        groupIndex.set(name, group);
        shares.push(new Map());
      }
      instanceGroup.set(arn, group);
    }
    sequence[i] = group;
    const share = shares[group] as Map<string, number>;
    share.set(arn, (share.get(arn) ?? 0) + 1);
  }
  const queues = shares.map((share) => {
    const queue: string[] = [];
    // Each round visits only the instances with tasks left, so arranging costs O(placements).
    let left = [...share];
    while (left.length > 0) {
      const next: Array<[string, number]> = [];
      for (const [arn, count] of left) {
        const n = Math.min(perInstance, count);
        for (let k = 0; k < n; k++) queue.push(arn);
        if (count > n) next.push([arn, count - n]);
      }
      left = next;
    }
    return queue;
  });
  return { sequence, queues, at: 0, taken: queues.map(() => 0) };
}

/** How many planned tasks are left. */
export function roundsLeft(rounds: Rounds): number {
  return rounds.sequence.length - rounds.at;
}

/**
 * The next `count` tasks (fewer if fewer are left), in the plan's sequence of groups, and what
 * is left after them; `rounds` itself is unchanged. Costs O(count + groups).
 */
export function takeRounds(rounds: Rounds, count: number): { chosen: string[]; rest: Rounds } {
  const end = Math.min(rounds.sequence.length, rounds.at + Math.max(0, count));
  const taken = rounds.taken.slice();
  const chosen: string[] = [];
  for (let i = rounds.at; i < end; i++) {
    const group = rounds.sequence[i] as number;
    const at = taken[group] as number;
    chosen.push((rounds.queues[group] as readonly string[])[at] as string);
    taken[group] = at + 1;
  }
  return { chosen, rest: { sequence: rounds.sequence, queues: rounds.queues, at: end, taken } };
}
