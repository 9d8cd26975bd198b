/**
 * A keyed work queue in the manner of Kubernetes' client-go workqueue: a key
 * added many times before a worker takes it is processed once; a key added
 * while it is being processed is queued again when the worker is done, so
 * one key is never processed by two workers at once and no change is lost.
 */
export class WorkQueue {
  private readonly order: string[] = [];
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private waiting: Array<(key: string | undefined) => void> = [];
  private closed = false;

  add(key: string): void {
    if (this.closed || this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return;
    const waiter = this.waiting.shift();
    if (waiter !== undefined) {
      this.take(key);
      waiter(key);
    } else {
      this.order.push(key);
    }
  }

  private take(key: string): void {
    this.dirty.delete(key);
    this.processing.add(key);
  }

  /** The next key to process, or undefined once the queue is shut down. */
  get(): Promise<string | undefined> {
    if (this.closed) return Promise.resolve(undefined);
    const key = this.order.shift();
    if (key !== undefined) {
      this.take(key);
      return Promise.resolve(key);
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Marks a key processed; if it was added meanwhile, it is queued again. */
  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key) && !this.closed) {
      const waiter = this.waiting.shift();
      if (waiter !== undefined) {
        this.take(key);
        waiter(key);
      } else {
        this.order.push(key);
      }
    }
  }

  get length(): number {
    return this.order.length;
  }

  /** Wakes every waiting worker with undefined; later adds are ignored. */
  shutDown(): void {
    this.closed = true;
    for (const waiter of this.waiting) waiter(undefined);
    this.waiting = [];
  }
}
