import { setTimeout as delay } from "node:timers/promises";

/** How a report queue retries, and how it tells about failures. */
export interface ReportQueueOptions<T> {
  send(report: T): Promise<void>;
  /**
   * Whether a failed send is worth trying again (the server was unreachable or failing). A
   * report the server refused (a task it does not know, or not assigned to this node) is
   * dropped: sending it again would be refused again.
   */
  retryable(error: unknown): boolean;
  /** Called for the first failure of a run of retries, and for a dropped report. */
  failed(error: unknown, report: T, retrying: boolean): void;
  /** Waits before a retry; resolves early when `signal` aborts. */
  sleep?(ms: number, signal: AbortSignal): Promise<void>;
  /** The first retry's delay, doubled after each failure up to `maxBackoffMs`; each wait `jittered`. */
  firstBackoffMs?: number;
  maxBackoffMs?: number;
  /** In [0, 1): where in its range each wait falls. */
  random?: () => number;
}

/**
 * A retry's wait of about `ms`: between half of it and all of it, at random, so the agents of a
 * fleet that lost the server at the same moment do not all come back at the same moment.
 */
export function jittered(ms: number, random: () => number = Math.random): number {
  return Math.round(ms * (0.5 + random() / 2));
}

/** Waits `ms`, or less when `signal` aborts (the queue closes). */
function sleepFor(ms: number, signal: AbortSignal): Promise<void> {
  return delay(ms, undefined, { signal }).catch(() => undefined);
}

/**
 * A task's reports to the server, sent one at a time and in order, without the
 * task engine waiting for them. Every report carries the task's whole state and
 * the server keeps the furthest status it has seen, so while one report is in
 * flight (or waits to be retried) only the newest waiting one is worth sending:
 * older ones are dropped. A report that could not be delivered is tried again,
 * with backoff, until the server acknowledges it, refuses it, or the queue is
 * closed (the agent stops; the task's state on disk says what to send again).
 */
export class ReportQueue<T> {
  private waiting: T | undefined;
  /** A report whose retry the queue was closed before. */
  private unsent: T | undefined;
  private sending: Promise<void> | undefined;
  private readonly closed = new AbortController();
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  private readonly firstBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly random: () => number;

  constructor(private readonly options: ReportQueueOptions<T>) {
    this.sleep = options.sleep ?? sleepFor;
    this.firstBackoffMs = options.firstBackoffMs ?? 500;
    this.maxBackoffMs = options.maxBackoffMs ?? 10_000;
    this.random = options.random ?? Math.random;
  }

  /** Queues the report in place of any not yet sent, and starts sending if idle. */
  push(report: T): void {
    if (this.closed.signal.aborted) {
      this.unsent = report;
      return;
    }
    this.waiting = report;
    this.sending ??= this.drain();
  }

  /**
   * Resolves once every report pushed so far has been acknowledged or refused by the server
   * (true), or the queue was closed with one still undelivered (false).
   */
  async flush(): Promise<boolean> {
    while (this.sending !== undefined) await this.sending;
    return this.unsent === undefined && this.waiting === undefined;
  }

  /** Stops sending and retrying; what was not delivered stays undelivered. */
  close(): void {
    this.closed.abort();
  }

  private async drain(): Promise<void> {
    let backoff = this.firstBackoffMs;
    let failing = false;
    let report = this.take();
    while (report !== undefined) {
      if (this.closed.signal.aborted) {
        this.unsent = report;
        break;
      }
      try {
        await this.options.send(report);
      } catch (error) {
        if (!this.options.retryable(error)) {
          this.options.failed(error, report, false);
          report = this.take();
          continue;
        }
        if (!failing) this.options.failed(error, report, true);
        failing = true;
        await this.sleep(jittered(backoff, this.random), this.closed.signal);
        backoff = Math.min(backoff * 2, this.maxBackoffMs);
        // A newer report carries the whole state: it replaces the one that failed.
        report = this.take() ?? report;
        continue;
      }
      backoff = this.firstBackoffMs;
      failing = false;
      report = this.take();
    }
    this.sending = undefined;
  }

  private take(): T | undefined {
    const report = this.waiting;
    this.waiting = undefined;
    return report;
  }
}
