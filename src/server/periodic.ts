/**
 * A housekeeping job the server runs on a timer: one pass at a time, errors
 * logged and retried on the next tick, stopped (and its pass awaited) before
 * the store closes.
 */
export class Periodic {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly name: string,
    private readonly everyMs: number,
    private readonly pass: () => Promise<unknown>,
    private readonly log: { warn(fields: Record<string, unknown>, message: string): void },
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      this.running = this.running.then(() => this.once());
    }, this.everyMs);
    this.timer.unref();
  }

  /** Runs one pass now; never rejects. */
  async once(): Promise<void> {
    try {
      await this.pass();
    } catch (error) {
      this.log.warn({ error: String(error) }, `${this.name} failed; retrying on the next pass`);
    }
  }

  async close(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.running;
  }
}
