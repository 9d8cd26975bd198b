import { removeAllTags } from "../aws/tags.ts";
import type { Store } from "../store/store.ts";
import type { ServiceRecord } from "./services.ts";

/** How long a STOPPED task stays describable; ECS keeps them for at least an hour. */
export const STOPPED_TASK_RETENTION_MS = 60 * 60_000;
/** How many tasks one transaction removes at most, to keep it short. */
const PURGE_BATCH = 500;

/**
 * Removes STOPPED tasks (and their tags) once they have been STOPPED for
 * longer than the retention, as ECS forgets stopped tasks. A task started by
 * a deployment still rolling out is kept: the circuit breaker counts it.
 * Returns how many tasks were removed.
 */
export async function purgeStoppedTasks(store: Store, now: number, retentionMs: number): Promise<number> {
  return store.transaction(async (tx) => {
    const rolling = new Set<string>();
    const services = await tx.all<{ body: string }>(
      "SELECT body FROM ecs_services WHERE status != 'INACTIVE'",
    );
    for (const row of services) {
      const service = JSON.parse(row.body) as ServiceRecord;
      for (const d of service.deployments) if (d.rolloutState === "IN_PROGRESS") rolling.add(d.id);
    }
    // updated_at is indexed and is never earlier than a STOPPED task's stoppedAt.
    const purgeable = await tx.all<{ arn: string }>(
      `SELECT arn FROM ecs_tasks
       WHERE updated_at < ? AND last_status = 'STOPPED'
         AND (started_by IS NULL OR started_by NOT IN (SELECT value FROM json_each(?)))
       ORDER BY updated_at LIMIT ?`,
      now - retentionMs,
      JSON.stringify([...rolling]),
      PURGE_BATCH,
    );
    for (const { arn } of purgeable) {
      await tx.run("DELETE FROM ecs_tasks WHERE arn = ?", arn);
      await removeAllTags(tx, arn);
    }
    return purgeable.length;
  });
}

/** Purges until no whole batch is left (a backlog after a long downtime); returns how many. */
export async function purgeAllStoppedTasks(
  store: Store,
  now: number,
  retentionMs = STOPPED_TASK_RETENTION_MS,
): Promise<number> {
  let total = 0;
  for (;;) {
    const removed = await purgeStoppedTasks(store, now, retentionMs);
    total += removed;
    if (removed < PURGE_BATCH) return total;
  }
}
