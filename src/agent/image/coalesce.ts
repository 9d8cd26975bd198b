import { ImageError } from "./errors.ts";

interface Operation<T> {
  promise: Promise<T>;
  controller: AbortController;
  waiters: number;
}

/**
 * Runs one operation per key at a time: callers asking for a key already in flight wait for the
 * same promise. Each caller's signal releases only that caller; the operation itself is aborted
 * (and forgotten, so the next caller starts afresh) once every waiter has let go.
 */
export class Coalescer<T> {
  private readonly inFlight = new Map<string, Operation<T>>();

  run(key: string, signal: AbortSignal | undefined, start: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (signal?.aborted) return Promise.reject(aborted(signal));
    let operation = this.inFlight.get(key);
    if (operation === undefined) {
      const controller = new AbortController();
      const created: Operation<T> = {
        controller,
        waiters: 0,
        promise: Promise.resolve()
          .then(() => start(controller.signal))
          .finally(() => {
            if (this.inFlight.get(key) === created) this.inFlight.delete(key);
          }),
      };
      // waiters that let go leave no one to observe a failure
      created.promise.catch(() => {});
      operation = created;
      this.inFlight.set(key, operation);
    }
    const joined = operation;
    joined.waiters++;
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const onAbort = (): void => {
        if (settled) return;
        settled = true;
        joined.waiters--;
        if (joined.waiters === 0) {
          if (this.inFlight.get(key) === joined) this.inFlight.delete(key);
          joined.controller.abort(signal?.reason);
        }
        reject(aborted(signal));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      joined.promise.then(
        (value) => {
          signal?.removeEventListener("abort", onAbort);
          if (settled) return;
          settled = true;
          joined.waiters--;
          resolve(value);
        },
        (error: unknown) => {
          signal?.removeEventListener("abort", onAbort);
          if (settled) return;
          settled = true;
          joined.waiters--;
          reject(error);
        },
      );
    });
  }

  /** Keys of operations in flight. */
  keys(): string[] {
    return [...this.inFlight.keys()];
  }

  get size(): number {
    return this.inFlight.size;
  }
}

function aborted(signal: AbortSignal | undefined): ImageError {
  return new ImageError("ABORTED", "aborted", { cause: signal?.reason });
}
