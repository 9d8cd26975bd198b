import { HEALTH_CHECK_REASON, type TaskState } from "../scheduler/reconcile.ts";
import { checkedEssentials, type TaskRecord } from "./tasks.ts";

const FAILURE_CODES = new Set(["TaskFailedToStart", "EssentialContainerExited"]);

/**
 * A service task as the service controller plans with it, and the key of the row it was read
 * from: the row's version, last and desired status, which every change to the task moves.
 */
export interface ServiceTaskEntry {
  key: string;
  state: TaskState;
}

/** What a task's scheduling state is known by: every change to it moves one of these. */
export function entryKey(version: number, lastStatus: string, desiredStatus: string): string {
  return `${version}:${lastStatus}:${desiredStatus}`;
}

/** The entry of a task as its record is; its row holds the same (`saveTask`). */
export function serviceTaskEntry(record: TaskRecord): ServiceTaskEntry {
  const wire = record.wire;
  const state: TaskState = {
    arn: wire.taskArn,
    deploymentId: wire.startedBy ?? "",
    instanceArn: wire.containerInstanceArn ?? "",
    lastStatus: wire.lastStatus,
    desiredStatus: wire.desiredStatus,
    health:
      wire.healthStatus === "HEALTHY" || wire.healthStatus === "UNHEALTHY" ? wire.healthStatus : "UNKNOWN",
    checked: checkedEssentials(record).length > 0,
    createdAt: wire.createdAt,
    failed:
      wire.lastStatus === "STOPPED" &&
      (FAILURE_CODES.has(wire.stopCode ?? "") || wire.stoppedReason === HEALTH_CHECK_REASON),
  };
  if (wire.startedAt !== undefined) state.startedAt = wire.startedAt;
  if (wire.stoppedAt !== undefined) state.stoppedAt = wire.stoppedAt;
  if (wire.capacityProviderName !== undefined) state.capacityProvider = wire.capacityProviderName;
  return { key: entryKey(wire.version, wire.lastStatus, wire.desiredStatus), state };
}
