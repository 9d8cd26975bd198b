/**
 * Waiting for something on disk to change: a probe runs whenever a watched
 * directory changes (fs.watch) and on a polling interval as the fallback
 * (fs.watch misses events on some filesystems and cannot watch a directory
 * that does not exist yet). Every wait has a deadline or a signal.
 */

import { type FSWatcher, watch } from "node:fs";
import { RuntimeError } from "./errors.ts";

export interface WaitOptions {
  /** A directory whose changes trigger the probe early. */
  watchDir?: string;
  /** Fallback polling interval. */
  pollMs: number;
  /** Gives up with a `timeout` error after this long; no deadline when absent. */
  timeoutMs?: number | undefined;
  signal?: AbortSignal | undefined;
  /** Names the wait in timeout and abort messages. */
  what: string;
}

/**
 * Resolves with the first value the probe returns other than undefined.
 * A probe that throws ends the wait with its error.
 */
export function waitUntil<T>(probe: () => Promise<T | undefined>, options: WaitOptions): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    let running = false;
    let again = false;
    let watcher: FSWatcher | undefined;
    let deadline: NodeJS.Timeout | undefined;
    let interval: NodeJS.Timeout | undefined;

    const finish = (error: unknown, value?: T) => {
      if (done) return;
      done = true;
      clearInterval(interval);
      if (deadline !== undefined) clearTimeout(deadline);
      watcher?.close();
      options.signal?.removeEventListener("abort", onAbort);
      if (error === undefined) resolve(value as T);
      else reject(error);
    };

    const run = () => {
      if (done) return;
      if (running) {
        again = true;
        return;
      }
      running = true;
      probe().then(
        (value) => {
          running = false;
          if (value !== undefined) finish(undefined, value);
          else if (again) {
            again = false;
            run();
          }
        },
        (error: unknown) => {
          running = false;
          finish(error);
        },
      );
    };

    const onAbort = () => finish(new RuntimeError("aborted", `${options.what}: aborted`));
    if (options.signal?.aborted === true) {
      onAbort();
      return;
    }
    options.signal?.addEventListener("abort", onAbort, { once: true });
    interval = setInterval(run, options.pollMs);
    if (options.timeoutMs !== undefined) {
      const ms = options.timeoutMs;
      deadline = setTimeout(
        () => finish(new RuntimeError("timeout", `${options.what}: not done after ${ms} ms`)),
        ms,
      );
    }
    if (options.watchDir !== undefined) {
      try {
        watcher = watch(options.watchDir, { persistent: false }, run);
        watcher.on("error", () => {
          // polling goes on without the watcher
          watcher?.close();
          watcher = undefined;
        });
      } catch {
        // no directory yet, or no inotify: polling alone
      }
    }
    run();
  });
}
