/**
 * A task's reports to the server, sent one at a time and in order, without the
 * task engine waiting for them. Every report carries the task's whole state and
 * the server keeps the furthest status it has seen, so while one report is in
 * flight only the newest waiting one is worth sending: older ones are dropped.
 */
export class ReportQueue<T> {
  private waiting: T | undefined;
  private sending: Promise<void> | undefined;

  constructor(
    private readonly send: (report: T) => Promise<void>,
    private readonly failed: (error: unknown, report: T) => void,
  ) {}

  /** Queues the report in place of any not yet sent, and starts sending if idle. */
  push(report: T): void {
    this.waiting = report;
    this.sending ??= this.drain();
  }

  /** Resolves once every report pushed so far has been sent (or has failed). */
  async flush(): Promise<void> {
    while (this.sending !== undefined) await this.sending;
  }

  private async drain(): Promise<void> {
    for (let report = this.take(); report !== undefined; report = this.take()) {
      try {
        await this.send(report);
      } catch (error) {
        this.failed(error, report);
      }
    }
    this.sending = undefined;
  }

  private take(): T | undefined {
    const report = this.waiting;
    this.waiting = undefined;
    return report;
  }
}
