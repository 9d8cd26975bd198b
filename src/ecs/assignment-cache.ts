import type { Tx } from "../store/store.ts";
import { assignmentOfJson, findTask, type TaskRecord } from "./tasks.ts";

/** A task's assignment as the agent protocol sends it, kept serialized (a string holds far less memory). */
export interface CachedAssignment {
  taskArn: string;
  /** The assignment's version (the task's desiredVersion). */
  version: number;
  /** The `TaskAssignment` as JSON. */
  json: string;
}

/** What says a task's row changed: every write bumps `updated_at`, every change the wire version. */
interface Cached {
  rowVersion: number;
  updatedAt: number;
  desiredStatus: string;
  assignment: CachedAssignment;
}

/**
 * The assignments each agent is given, answered from what was last parsed:
 * a poll reads only the small columns of its instance's tasks and parses the
 * body of those whose row changed since, rather than every task's body on
 * every poll. Reads go through the caller's (committed) read transaction, so
 * an agent never sees a task before it is committed.
 *
 * While a task's desired status is RUNNING its assignment cannot change (what
 * it runs is fixed when it is created, and its desiredVersion grows only when
 * it is asked to stop), so the agent's reports, which rewrite the row, do not
 * make it parsed again; once it is to stop, any change of the row does.
 */
export class AssignmentCache {
  private readonly byInstance = new Map<string, Map<string, Cached>>();

  /** Every task assigned to the instance and not STOPPED, oldest first, as `tasksForInstance` gives them. */
  async read(tx: Tx, instanceArn: string): Promise<CachedAssignment[]> {
    const rows = await tx.all<{ arn: string; version: number; updated_at: number; desired_status: string }>(
      "SELECT arn, version, updated_at, desired_status FROM ecs_tasks WHERE container_instance_arn = ? AND last_status != 'STOPPED' ORDER BY created_at",
      instanceArn,
    );
    const before = this.byInstance.get(instanceArn);
    const after = new Map<string, Cached>();
    const out: CachedAssignment[] = [];
    for (const row of rows) {
      let entry = before?.get(row.arn);
      if (
        entry === undefined ||
        ((entry.rowVersion !== row.version || entry.updatedAt !== row.updated_at) &&
          (entry.desiredStatus !== "RUNNING" || row.desired_status !== "RUNNING"))
      ) {
        const record = await findTask(tx, row.arn);
        if (record === undefined) continue;
        entry = {
          rowVersion: row.version,
          updatedAt: row.updated_at,
          desiredStatus: record.wire.desiredStatus,
          assignment: { taskArn: row.arn, version: record.desiredVersion, json: assignmentOfJson(record) },
        };
      }
      after.set(row.arn, entry);
      out.push(entry.assignment);
    }
    if (after.size === 0) this.byInstance.delete(instanceArn);
    else this.byInstance.set(instanceArn, after);
    return out;
  }

  /**
   * A task just committed (and synced): its assignment is kept as a read would keep it, so the
   * poll it wakes can be answered from memory. Its row is not known: a later read keeps the
   * entry while the task is to run, and parses the row again once it is to stop.
   */
  remember(record: TaskRecord): void {
    const instanceArn = record.wire.containerInstanceArn;
    if (instanceArn === undefined) return;
    let entries = this.byInstance.get(instanceArn);
    if (entries === undefined) {
      entries = new Map();
      this.byInstance.set(instanceArn, entries);
    }
    entries.set(record.wire.taskArn, {
      rowVersion: -1,
      updatedAt: -1,
      desiredStatus: record.wire.desiredStatus,
      assignment: {
        taskArn: record.wire.taskArn,
        version: record.desiredVersion,
        json: assignmentOfJson(record),
      },
    });
  }

  /**
   * The instance's assignments without reading the store, when what is kept says exactly what
   * `read` would: the tasks (and versions) the scheduler's state gives the instance are those
   * kept, every one still to run (its assignment cannot have changed). Undefined otherwise,
   * and then the caller reads. The state runs ahead of commits (a write shows there before it
   * commits), but a task or version not yet committed is never kept here, so it never matches.
   */
  fromMemory(instanceArn: string, versions: ReadonlyMap<string, number>): CachedAssignment[] | undefined {
    const entries = this.byInstance.get(instanceArn);
    if ((entries?.size ?? 0) !== versions.size) return undefined;
    const out: CachedAssignment[] = [];
    for (const [arn, entry] of entries ?? []) {
      if (entry.desiredStatus !== "RUNNING" || versions.get(arn) !== entry.assignment.version)
        return undefined;
      out.push(entry.assignment);
    }
    return out;
  }

  /** The task's assignment may change without its version moving (its agent says it stops): read it again. */
  drop(instanceArn: string, taskArn: string): void {
    this.byInstance.get(instanceArn)?.delete(taskArn);
  }

  forget(instanceArn: string): void {
    this.byInstance.delete(instanceArn);
  }
}
