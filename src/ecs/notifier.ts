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

  /** Resolves on the next notify for the instance, after `timeoutMs`, or when `signal` aborts. */
  wait(instanceArn: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      let set = this.waiters.get(instanceArn);
      if (set === undefined) {
        set = new Set();
        this.waiters.set(instanceArn, set);
      }
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        this.waiters.get(instanceArn)?.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal?.addEventListener("abort", done, { once: true });
      set.add(done);
    });
  }
}
