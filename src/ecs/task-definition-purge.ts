import type { Store } from "../store/store.ts";
import type { ServiceRecord } from "./services.ts";
import { removeTaskDefinition } from "./task-definitions.ts";

/** How many revisions one transaction removes at most, to keep it short. */
const PURGE_BATCH = 500;

/**
 * Removes DELETE_IN_PROGRESS task definition revisions that nothing uses any more, as ECS deletes
 * them: no task of the revision is still short of STOPPED, and no service that is not INACTIVE
 * names it (its task definition, a deployment's, or the one a rollback would return to). A
 * revision still in use stays DELETE_IN_PROGRESS and is looked at again on the next pass.
 * Returns how many revisions were removed.
 */
export async function purgeDeletedTaskDefinitions(store: Store): Promise<number> {
  return store.transaction(async (tx) => {
    const candidates = await tx.all<{ arn: string; family: string; revision: number }>(
      "SELECT arn, family, revision FROM ecs_task_definitions WHERE status = 'DELETE_IN_PROGRESS' ORDER BY family, revision",
    );
    if (candidates.length === 0) return 0;
    const used = new Set<string>();
    const services = await tx.all<{ body: string }>(
      "SELECT body FROM ecs_services WHERE status != 'INACTIVE'",
    );
    for (const row of services) {
      const service = JSON.parse(row.body) as Partial<ServiceRecord>;
      if (service.taskDefinition !== undefined) used.add(service.taskDefinition);
      for (const deployment of service.deployments ?? []) used.add(deployment.taskDefinition);
      if (service.lastCompleted !== undefined) used.add(service.lastCompleted.taskDefinition);
    }
    const running = await tx.all<{ arn: string }>(
      "SELECT DISTINCT task_definition_arn AS arn FROM ecs_tasks WHERE last_status != 'STOPPED'",
    );
    for (const { arn } of running) used.add(arn);
    const unused = candidates.filter((candidate) => !used.has(candidate.arn)).slice(0, PURGE_BATCH);
    for (const definition of unused) await removeTaskDefinition(tx, definition);
    return unused.length;
  });
}

/** Purges until no whole batch is left; returns how many revisions were removed. */
export async function purgeAllDeletedTaskDefinitions(store: Store): Promise<number> {
  let total = 0;
  for (;;) {
    const removed = await purgeDeletedTaskDefinitions(store);
    total += removed;
    if (removed < PURGE_BATCH) return total;
  }
}
