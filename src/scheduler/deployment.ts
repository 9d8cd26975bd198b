/**
 * Rolling-deployment arithmetic as Amazon ECS does it, as pure functions:
 * the bounds a deployment keeps (minimumHealthyPercent rounded up,
 * maximumPercent rounded down), how far one step may go, the circuit
 * breaker's threshold, and the PRIMARY/ACTIVE/INACTIVE transitions of a
 * service's deployments. No I/O and no clock: times come in as arguments.
 */

export type RolloutState = "IN_PROGRESS" | "COMPLETED" | "FAILED";

/**
 * A deployment's status: PRIMARY, the newest; ACTIVE, replaced but still running tasks;
 * INACTIVE, completely replaced (its tasks are all gone).
 */
export type DeploymentStatus = "PRIMARY" | "ACTIVE" | "INACTIVE";

/** One deployment of a service, as the scheduler keeps it. */
export interface DeploymentState {
  /** `ecs-svc/` and 19 digits; tasks it starts carry it as `startedBy`. */
  id: string;
  status: DeploymentStatus;
  taskDefinition: string;
  desiredCount: number;
  /** Its tasks that failed since one of them last became healthy (ECS's consecutive failures). */
  failedTasks: number;
  /**
   * How many of its tasks had failed when the count last started over (ECS resets it when a task
   * becomes healthy), and how many were healthy at the last pass: a pass that finds more healthy
   * than that saw one become healthy. Counts, not times, so no clock is compared with an agent's;
   * kept, so that a task that resets the count and fails later counts once. Not in ECS's shape.
   */
  failuresBeforeReset?: number;
  healthyTasks?: number;
  rolloutState: RolloutState;
  rolloutStateReason: string;
  createdAt: number;
  updatedAt: number;
  /** The service's network configuration when the deployment began (opaque here). */
  networkConfiguration?: Record<string, unknown>;
  /** The capacity provider strategy its tasks start with, if the service has one. */
  capacityProviderStrategy?: Array<{ capacityProvider: string; weight: number; base: number }>;
  /** The Fargate platform version its tasks run on, if the service was given one. */
  platformVersion?: string;
}

/** What a deployment takes over from the service when it begins (and a rollback from its target). */
export type DeploymentCarried = Pick<
  DeploymentState,
  "networkConfiguration" | "capacityProviderStrategy" | "platformVersion"
>;

export interface RollingBounds {
  /** Healthy tasks that must stay up: ceil(desired × minimumHealthyPercent / 100). */
  minHealthy: number;
  /** Tasks that may exist at once, running, pending or stopping: floor(desired × maximumPercent / 100). */
  maxTotal: number;
}

export function rollingBounds(
  desired: number,
  minimumHealthyPercent: number,
  maximumPercent: number,
): RollingBounds {
  return {
    minHealthy: Math.ceil((desired * minimumHealthyPercent) / 100),
    maxTotal: Math.floor((desired * maximumPercent) / 100),
  };
}

/**
 * The deployment circuit breaker's failure threshold: half the desired
 * count, rounded up, never below 3 nor above 200.
 */
export function failureThreshold(desired: number): number {
  return Math.min(200, Math.max(3, Math.ceil(desired / 2)));
}

export interface RollingState {
  desired: number;
  /** Tasks of the PRIMARY deployment that stay (desired RUNNING, on an ACTIVE instance). */
  keep: number;
  /** Every task of the service not yet STOPPED: running, pending or being stopped. */
  occupied: number;
  /** Healthy tasks of any deployment that are not being stopped. */
  healthy: number;
}

export interface RollingStep {
  /** PRIMARY tasks to start now. */
  start: number;
  /** Healthy tasks due for replacement that may be stopped now. */
  stopHealthy: number;
}

/** One step of a rolling update: start what `maximumPercent` allows, stop what `minimumHealthyPercent` allows. */
export function rollingStep(state: RollingState, bounds: RollingBounds, frozen: boolean): RollingStep {
  const start = frozen
    ? 0
    : Math.max(0, Math.min(state.desired - state.keep, bounds.maxTotal - state.occupied));
  return { start, stopHealthy: Math.max(0, state.healthy - bounds.minHealthy) };
}

/** A deployment id as ECS writes it: `ecs-svc/` and 19 digits. */
export function newDeploymentId(random: () => number): string {
  let digits = String(1 + Math.floor(random() * 9));
  while (digits.length < 19) digits += String(Math.floor(random() * 10));
  return `ecs-svc/${digits}`;
}

export function inProgressReason(id: string): string {
  return `ECS deployment ${id} in progress.`;
}

export function newDeployment(
  id: string,
  taskDefinition: string,
  desiredCount: number,
  now: number,
  carried: DeploymentCarried = {},
): DeploymentState {
  const deployment: DeploymentState = {
    id,
    status: "PRIMARY",
    taskDefinition,
    desiredCount,
    failedTasks: 0,
    rolloutState: "IN_PROGRESS",
    rolloutStateReason: inProgressReason(id),
    createdAt: now,
    updatedAt: now,
  };
  if (carried.networkConfiguration !== undefined)
    deployment.networkConfiguration = carried.networkConfiguration;
  if (carried.capacityProviderStrategy !== undefined)
    deployment.capacityProviderStrategy = carried.capacityProviderStrategy;
  if (carried.platformVersion !== undefined) deployment.platformVersion = carried.platformVersion;
  return deployment;
}

/**
 * The deployment a circuit breaker's rollback starts: `target`'s task definition and settings
 * again, under a new id, its reason naming the deployment it returns to (as ECS's does).
 */
export function rollbackDeployment(
  id: string,
  target: DeploymentState,
  desiredCount: number,
  now: number,
): DeploymentState {
  return {
    ...newDeployment(id, target.taskDefinition, desiredCount, now, target),
    rolloutStateReason: `ECS deployment circuit breaker: rolling back to deploymentId ${target.id}.`,
  };
}

/** Makes `next` the PRIMARY deployment; the one it replaces becomes ACTIVE until its tasks are gone. */
export function promote(
  deployments: DeploymentState[],
  next: DeploymentState,
  now: number,
): DeploymentState[] {
  const demoted = deployments.map((d) =>
    d.status === "PRIMARY" ? { ...d, status: "ACTIVE" as const, updatedAt: now } : d,
  );
  return [next, ...demoted];
}

/** A replaced deployment whose tasks are all gone: INACTIVE, wanting none. */
export function retired(deployment: DeploymentState, now: number): DeploymentState {
  return { ...deployment, status: "INACTIVE", desiredCount: 0, updatedAt: now };
}

export function completed(deployment: DeploymentState, now: number): DeploymentState {
  return {
    ...deployment,
    rolloutState: "COMPLETED",
    rolloutStateReason: `ECS deployment ${deployment.id} completed.`,
    updatedAt: now,
  };
}

/** The circuit breaker's verdict on a deployment. */
export function failed(deployment: DeploymentState, now: number): DeploymentState {
  return {
    ...deployment,
    rolloutState: "FAILED",
    rolloutStateReason: "ECS deployment circuit breaker: tasks failed to start.",
    updatedAt: now,
  };
}
