import type { TaskRecord } from "./tasks.ts";

/**
 * Wakes agents' long polls when something changes for their instance. In
 * memory: a poll that misses a wake-up still times out and re-reads, so
 * nothing depends on a notification arriving (level-triggered).
 */
export class InstanceNotifier {
  private readonly waiters = new Map<string, Set<() => void>>();
  private readonly created: Array<(task: TaskRecord) => void> = [];

  /** Calls `listener` with each task `started` announces (the agent channel keeps its assignment). */
  onStarted(listener: (task: TaskRecord) => void): void {
    this.created.push(listener);
  }

  /** New tasks, committed: listeners learn of each, then their instances' polls wake. */
  started(tasks: readonly TaskRecord[]): void {
    for (const task of tasks) for (const listener of this.created) listener(task);
    for (const task of tasks) this.notify(task.wire.containerInstanceArn ?? "");
  }

  notify(instanceArn: string): void {
    const waiting = this.waiters.get(instanceArn);
    if (waiting === undefined) return;
    this.waiters.delete(instanceArn);
    for (const wake of waiting) wake();
  }

  /**
   * Waits for the next notify for the instance: `done` resolves then, after `timeoutMs`, or at
   * `cancel()`. (Not an AbortSignal: with thousands of polls waiting, each signal and its
   * listener were objects enough to show in the collector's time.)
   */
  wait(instanceArn: string, timeoutMs: number): Wait {
    let set = this.waiters.get(instanceArn);
    if (set === undefined) {
      set = new Set();
      this.waiters.set(instanceArn, set);
    }
    let resolve = () => {};
    const done = new Promise<void>((settle) => {
      resolve = settle;
    });
    const finish = () => {
      clearTimeout(timer);
      this.waiters.get(instanceArn)?.delete(finish);
      resolve();
    };
    const timer = setTimeout(finish, timeoutMs);
    set.add(finish);
    const wait: Wait = {
      done,
      cancelled: false,
      cancel: () => {
        wait.cancelled = true;
        finish();
      },
    };
    return wait;
  }
}

/** A poll's wait for its instance's next change. */
export interface Wait {
  done: Promise<void>;
  cancel(): void;
  /** Whether `cancel` ended it. */
  cancelled: boolean;
}
