import type { Store } from "../store/store.ts";

/**
 * When images were last pulled (ECR's lastRecordedPullTime) and blobs last
 * touched (read or stated, which keeps an unreferenced blob from garbage
 * collection for the grace period), kept in memory and written to the store in
 * one transaction every `intervalMs` and on `close()`, instead of one fsynced
 * write transaction per GET or HEAD.
 *
 * Readers see both: `pulledAt` and `touchedAt` answer from memory what is not
 * written yet. A crash loses at most one interval of these times; ECR
 * documents the pull time as approximate, and garbage collection only ever
 * takes blobs that nothing references.
 */
export class AccessTimes {
  private readonly store: Store;
  private pulls = new Map<string, { repo: string; digest: string; at: number }>();
  private touches = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();

  constructor(store: Store, intervalMs = 5_000) {
    this.store = store;
    this.timer = setInterval(() => void this.flush().catch(() => undefined), intervalMs);
    this.timer.unref();
  }

  recordPull(repo: string, digest: string, at: number): void {
    const key = `${repo}\n${digest}`;
    const known = this.pulls.get(key);
    if (known === undefined || known.at < at) this.pulls.set(key, { repo, digest, at });
  }

  touch(digest: string, at: number): void {
    if ((this.touches.get(digest) ?? 0) < at) this.touches.set(digest, at);
  }

  /** A pull time not yet written, or the stored one. */
  pulledAt(repo: string, digest: string, stored: number | null): number | null {
    const pending = this.pulls.get(`${repo}\n${digest}`)?.at ?? null;
    return pending !== null && (stored === null || pending > stored) ? pending : stored;
  }

  /** The last touch not yet written, if any. */
  touchedAt(digest: string): number | undefined {
    return this.touches.get(digest);
  }

  /** Writes what is pending in one transaction; what fails to be written stays pending. */
  flush(): Promise<void> {
    const write = () => this.write();
    const run = this.flushing.then(write, write);
    this.flushing = run.catch(() => undefined);
    return run;
  }

  private async write(): Promise<void> {
    if (this.pulls.size === 0 && this.touches.size === 0) return;
    let pulls = new Map<string, { repo: string; digest: string; at: number }>();
    let touches = new Map<string, number>();
    try {
      await this.store.transaction(async (tx) => {
        // Taken inside the transaction: another one (a collection) that reads the store runs
        // either before it, seeing them here, or after it, seeing them written.
        pulls = this.pulls;
        touches = this.touches;
        this.pulls = new Map();
        this.touches = new Map();
        for (const { repo, digest, at } of pulls.values()) {
          await tx.run(
            "UPDATE registry_manifests SET last_pulled_at = ? WHERE repo = ? AND digest = ? AND (last_pulled_at IS NULL OR last_pulled_at < ?)",
            at,
            repo,
            digest,
            at,
          );
        }
        for (const [digest, at] of touches) {
          await tx.run(
            "UPDATE registry_blobs SET touched_at = ? WHERE digest = ? AND touched_at < ?",
            at,
            digest,
            at,
          );
        }
      });
    } catch (error) {
      for (const { repo, digest, at } of pulls.values()) this.recordPull(repo, digest, at);
      for (const [digest, at] of touches) this.touch(digest, at);
      throw error;
    }
  }

  /** Stops the timer and writes what is pending. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
