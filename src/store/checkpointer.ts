import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

/**
 * The worker's code, plain CommonJS (a worker does not inherit the tsx hooks
 * the server registers): its own connection to the database, which runs a
 * PASSIVE checkpoint whenever asked and says when it is done. A passive
 * checkpoint copies what the log holds into the database file and syncs both
 * (as SQLite's own checkpoints do) without taking the write lock, so the
 * writer carries on meanwhile; it gives up rather than wait for anyone.
 */
const WORKER = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.module);
const db = new Database(workerData.path);
db.pragma("synchronous = FULL");
parentPort.on("message", (message) => {
  if (message === "close") {
    db.close();
    parentPort.close();
    return;
  }
  try {
    db.pragma("wal_checkpoint(PASSIVE)");
  } catch {
    // Busy (another checkpoint runs): the next request tries again.
  }
  parentPort.postMessage("done");
});
`;

/**
 * How often, at most, the log is checkpointed off the event loop. Each checkpoint copies the
 * pages written since the last one and syncs the log and the database: a service's scale-up
 * rewrites the same index and table pages in every batch, and at one a second instead of ten
 * they are copied and synced a tenth as often (server CPU 11% less over six pairs of the
 * scale-up, 6% less over three of RunTask; docs/benchmarks.md).
 */
const INTERVAL_MS = 1000;

/**
 * Checkpoints the write-ahead log on a worker thread, so that copying the
 * log into the database file (and its two syncs) no longer blocks the event
 * loop inside a COMMIT. The writer keeps SQLite's own automatic checkpoint
 * as a backstop with a larger threshold: it bounds the log if the worker
 * falls behind, and is cheap when it runs, the worker having copied most of
 * the log already.
 */
export class Checkpointer {
  private readonly worker: Worker;
  private running = false;
  private last = 0;
  private closed: Promise<void> | undefined;
  private exited = false;
  private waiting: Array<() => void> = [];

  constructor(path: string) {
    const module = createRequire(import.meta.url).resolve("better-sqlite3");
    this.worker = new Worker(WORKER, { eval: true, workerData: { path, module } });
    const idle = () => {
      this.running = false;
      if (this.closed === undefined) this.worker.unref();
      for (const resolve of this.waiting.splice(0)) resolve();
    };
    this.worker.once("exit", () => {
      this.exited = true;
      idle();
    });
    this.worker.on("message", idle);
    this.worker.on("error", (error) => {
      // The backstop keeps the log bounded without the worker.
      process.emitWarning(`checkpoint worker failed: ${String(error)}`);
    });
    this.worker.unref();
  }

  /** A commit happened: asks for a checkpoint unless one runs or one was asked for lately. */
  committed(now = performance.now()): void {
    if (this.running || this.closed !== undefined || now - this.last < INTERVAL_MS) return;
    this.running = true;
    this.last = now;
    // Referenced while it works, so that a process does not end with a checkpoint half-way.
    this.worker.ref();
    this.worker.postMessage("checkpoint");
  }

  /** Resolves once no checkpoint is running. */
  idle(): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Lets a running checkpoint finish, then closes the worker's connection. */
  close(): Promise<void> {
    this.closed ??= new Promise<void>((resolve) => {
      if (this.exited) return resolve();
      // Kept referenced until it exits, so the process does not end with close() pending.
      this.worker.ref();
      this.worker.once("exit", () => resolve());
      this.worker.postMessage("close");
    });
    return this.closed;
  }
}
