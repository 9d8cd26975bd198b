/**
 * A container health check as Docker runs it for ECS: the command (CMD or
 * CMD-SHELL) and the arithmetic of interval, retries and start period. Pure.
 */

import type { AssignedContainer, HealthStatus } from "../../shared/agent-protocol.ts";

export type HealthCheck = NonNullable<AssignedContainer["healthCheck"]>;

/** The process a check runs inside the container: CMD's arguments, or CMD-SHELL's string under /bin/sh -c. */
export function healthCommand(check: HealthCheck): string[] {
  const [kind, ...rest] = check.command;
  // Docker joins CMD-SHELL's arguments with spaces and hands them to the default shell.
  if (kind === "CMD-SHELL") return ["/bin/sh", "-c", rest.join(" ")];
  if (kind === "CMD") return rest;
  return check.command;
}

export interface HealthState {
  status: HealthStatus;
  /** Consecutive failures that counted. */
  failingStreak: number;
}

export const INITIAL_HEALTH: HealthState = { status: "UNKNOWN", failingStreak: 0 };

/**
 * The state after one probe. A pass makes the container HEALTHY. A failure counts unless the
 * container has never passed and the probe began within the start period; `retries`
 * consecutive counted failures make it UNHEALTHY.
 */
export function afterProbe(
  state: HealthState,
  passed: boolean,
  check: HealthCheck,
  probeStartedAt: number,
  containerStartedAt: number,
): HealthState {
  if (passed) return { status: "HEALTHY", failingStreak: 0 };
  const starting = state.status === "UNKNOWN";
  if (starting && probeStartedAt - containerStartedAt < (check.startPeriod ?? 0) * 1000) return state;
  const failingStreak = state.failingStreak + 1;
  return { status: failingStreak >= check.retries ? "UNHEALTHY" : state.status, failingStreak };
}
