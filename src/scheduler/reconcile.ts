import { scaleInByProvider } from "./capacity.ts";
import {
  completed,
  type DeploymentState,
  failed,
  failureThreshold,
  promote,
  retired,
  rollbackDeployment,
  rollingBounds,
  rollingStep,
} from "./deployment.ts";
import {
  type Constraint,
  type InstanceView,
  instanceSubjects,
  type PlacementFailure,
  place,
  type Strategy,
  stillFits,
  type TaskNeeds,
} from "./placement.ts";
import { type PlacementSnapshot, spreadValue } from "./placement-snapshot.ts";
import { evaluate } from "./query.ts";
import { arrangeRounds, PER_INSTANCE, type Rounds, roundsLeft, takeRounds } from "./rounds.ts";
import { chooseVictims, type InstanceState, isHealthy, type TaskState } from "./scale-in.ts";

export { chooseVictims, type InstanceState, isHealthy, type TaskState };

/**
 * One reconcile pass of one service, as a pure function of a snapshot: what
 * should run (desired count, deployments) against what does (tasks,
 * instances) gives tasks to start, tasks to stop, the deployments' new
 * state and the service events to write. The caller applies the plan in one
 * transaction against the state it read. Level-triggered: a pass over the
 * state the previous plan produced plans nothing new.
 */

export interface ServiceState {
  name: string;
  status: "ACTIVE" | "DRAINING";
  schedulingStrategy: "REPLICA" | "DAEMON";
  desiredCount: number;
  minimumHealthyPercent: number;
  maximumPercent: number;
  circuitBreaker: { enable: boolean; rollback: boolean };
  /** Placement strategies for starting and (in reverse) for choosing tasks to stop; already defaulted. */
  strategies: Strategy[];
  healthCheckGracePeriodMs: number;
  /**
   * How long a RUNNING task whose essential containers have no health check runs before it
   * counts toward minimumHealthyPercent (`UNCHECKED_HEALTHY_AFTER_MS` in ECS).
   */
  uncheckedHealthyAfterMs: number;
  /** PRIMARY first. */
  deployments: DeploymentState[];
  /** The last deployment that COMPLETED: what the circuit breaker rolls back to. */
  lastCompleted?: DeploymentState;
}

/** What a task of one task definition needs of an instance. */
export interface DefinitionPlacement {
  needs: TaskNeeds;
  constraints: Constraint[];
}

export interface ServiceSnapshot {
  service: ServiceState;
  /** The service's tasks not yet STOPPED, and the STOPPED ones of deployments IN_PROGRESS. */
  tasks: TaskState[];
  instances: readonly InstanceState[];
  /**
   * The same instances' views, in the same order, as a `PlacementSnapshot` kept between passes
   * (ARN order and spread loads counted already); placement derives them afresh when absent.
   */
  views?: PlacementSnapshot;
  /** The same instances by ARN, kept between passes; derived afresh when absent. */
  byArn?: ReadonlyMap<string, InstanceState>;
  /** By task definition ARN. */
  placement: Record<string, DefinitionPlacement>;
  now: number;
  /** An instance whose last heartbeat is older than this has lost its agent. */
  lostBefore: number;
  /**
   * The service's latest events, newest first: at least those since it last started or stopped
   * tasks (older ones are not looked at).
   */
  recentEvents: Array<{ message: string; at: number }>;
  /**
   * At most this many tasks are started in one pass (unbounded if absent): a large scale-up
   * is applied in several passes, each from the state the previous one left (and from its
   * look-ahead, `planned`, while that holds).
   */
  maxStarts?: number;
  /**
   * The rest of the look-ahead plan the service's last pass made (`ServicePlan.planned`); the
   * caller passes it only while the instances are the ones that pass planned over, as they stood.
   */
  planned?: PlannedStarts;
}

/**
 * What a bounded pass planned beyond the tasks it started: the instances for the tasks still
 * due, arranged in rounds (`arrangeRounds`). The next pass starts from it when the same
 * deployment still wants exactly that many and they still fit.
 */
export interface PlannedStarts {
  deploymentId: string;
  /** How many tasks the deployment still had to start once the planning pass started its part. */
  due: number;
  rounds: Rounds;
}

export interface StopOrder {
  taskArn: string;
  reason: string;
  /** The task's agent is gone: it is STOPPED at once rather than asked to stop. */
  immediately: boolean;
}

export interface ServicePlan {
  starts: Array<{ deploymentId: string; taskDefinition: string; instanceArn: string }>;
  stops: StopOrder[];
  /** PRIMARY first; replaced ones whose tasks are all gone INACTIVE, and left out once the PRIMARY completes. */
  deployments: DeploymentState[];
  desiredCount: number;
  lastCompleted?: DeploymentState;
  status: "ACTIVE" | "DRAINING" | "INACTIVE";
  /** Events to write before the started/stopped ones (health, circuit breaker). */
  notices: string[];
  /** Events to write after them (placement, deployment completed, steady state); repeats left out. */
  events: string[];
  /** Where the next pass may start its tasks: the rest of this pass's look-ahead, if it made one. */
  planned?: PlannedStarts;
}

export const LOST_AGENT_REASON = "Task stopped because the agent on its container instance is disconnected";
export const HEALTH_CHECK_REASON = "Task failed container health checks";
const REPEAT_AFTER_MS = 6 * 60 * 60_000;
const TROUBLESHOOTING =
  "For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.";

export function scalingReason(deploymentId: string): string {
  return `Scaling activity initiated by (deployment ${deploymentId})`;
}

export function shortId(arn: string): string {
  return arn.slice(arn.lastIndexOf("/") + 1);
}

export function startedMessage(service: string, taskArns: string[]): string {
  const ids = taskArns.map((arn) => `(task ${shortId(arn)})`).join(" ");
  return `(service ${service}) has started ${taskArns.length} tasks: ${ids}.`;
}

export function stoppedMessage(service: string, taskArns: string[]): string {
  const ids = taskArns.map((arn) => `(task ${shortId(arn)})`).join(" ");
  return `(service ${service}) has stopped ${taskArns.length} running tasks: ${ids}.`;
}

const CLOSENESS: Record<PlacementFailure["reason"], number> = {
  INACTIVE: 0,
  DRAINING: 0,
  AGENT: 1,
  ATTRIBUTE: 2,
  "RESOURCE:CPU": 3,
  "RESOURCE:MEMORY": 4,
  "RESOURCE:PORTS": 5,
};
const SHORTFALL: Partial<Record<PlacementFailure["reason"], string>> = {
  AGENT: 'encountered error "AGENT"',
  ATTRIBUTE: "is missing an attribute required by your task",
  "RESOURCE:CPU": "has insufficient CPU units available",
  "RESOURCE:MEMORY": "has insufficient memory available",
  "RESOURCE:PORTS": "is already using a port required by your task",
};

/** ECS's event for a deployment whose minimumHealthyPercent and maximumPercent leave it no step to take. */
function deploymentConfigurationMessage(service: string): string {
  return `(service ${service}) was unable to stop or start tasks during a deployment because of the service deployment configuration. Update the minimumHealthyPercent or maximumPercent value and try again.`;
}

/** ECS's event for a task that fits nowhere, naming the instance that came closest. */
export function placementFailureMessage(service: string, failures: PlacementFailure[]): string {
  const head = `(service ${service}) was unable to place a task because no container instance met all of its requirements.`;
  let closest: PlacementFailure | undefined;
  for (const failure of failures) {
    if (closest === undefined || CLOSENESS[failure.reason] > CLOSENESS[closest.reason]) closest = failure;
  }
  const shortfall = closest === undefined ? undefined : SHORTFALL[closest.reason];
  if (closest === undefined || shortfall === undefined) {
    return `${head} Reason: No Container Instances were found in your cluster. ${TROUBLESHOOTING}`;
  }
  return `${head} The closest matching (container-instance ${shortId(closest.arn)}) ${shortfall}. ${TROUBLESHOOTING}`;
}

/** Working state of one pass. */
interface Pass {
  snapshot: ServiceSnapshot;
  service: string;
  instances: ReadonlyMap<string, InstanceState>;
  views: readonly InstanceView[] | PlacementSnapshot;
  random: () => number;
  starts: ServicePlan["starts"];
  stops: StopOrder[];
  stopped: Set<string>;
  /** Live tasks on an instance that is not ACTIVE (DRAINING): they are replaced elsewhere. */
  leaving: Set<string>;
  notices: string[];
  events: string[];
  planned?: PlannedStarts;
}

function stop(pass: Pass, task: TaskState, reason: string, immediately = false): void {
  if (pass.stopped.has(task.arn)) return;
  pass.stopped.add(task.arn);
  pass.stops.push({ taskArn: task.arn, reason, immediately });
}

function start(pass: Pass, deployment: DeploymentState, instanceArn: string): void {
  pass.starts.push({ deploymentId: deployment.id, taskDefinition: deployment.taskDefinition, instanceArn });
}

/** How many more tasks this pass may start. */
function startsLeft(pass: Pass): number {
  return (pass.snapshot.maxStarts ?? Number.POSITIVE_INFINITY) - pass.starts.length;
}

/** Whether a task's instance has lost its agent, or is gone: its tasks are STOPPED at once. */
function lost(pass: Pass, instance: InstanceState | undefined): instance is undefined {
  return (
    instance === undefined ||
    instance.view.status === "INACTIVE" ||
    instance.lastHeartbeat < pass.snapshot.lostBefore
  );
}

/**
 * How long a RUNNING task whose essential containers have no health check runs before it counts
 * toward minimumHealthyPercent. ECS: "the service scheduler will wait for 40 seconds after a task
 * reaches a RUNNING state before the task is counted towards the minimum healthy percent total."
 */
export const UNCHECKED_HEALTHY_AFTER_MS = 40_000;

/** Whether a task counts toward minimumHealthyPercent now: healthy, and if unchecked, RUNNING a while. */
function countsHealthy(pass: Pass, task: TaskState): boolean {
  const { service, now } = pass.snapshot;
  return (
    isHealthy(task) &&
    (task.checked || (task.startedAt ?? task.createdAt) + service.uncheckedHealthyAfterMs <= now)
  );
}

/** What a strategy reports back: the desired count it worked to, and whether its tasks are all in place. */
interface Outcome {
  desired: number;
  converged: boolean;
}

/**
 * Counts an IN_PROGRESS deployment's consecutive failures; trips the circuit breaker, and rolls
 * back, when they reach its threshold. A task of the deployment that becomes healthy starts the
 * count over (ECS's resetOnHealthyTask, on unless turned off): a pass that finds more of its tasks
 * healthy than the last one did takes the failures so far as the new base, and the base is kept,
 * so failures before it stay uncounted even once that task fails too.
 */
function checkBreaker(
  pass: Pass,
  deployments: DeploymentState[],
  primary: DeploymentState,
  newId: () => string,
): { deployments: DeploymentState[]; primary: DeploymentState } {
  const { service, now, tasks } = pass.snapshot;
  if (primary.rolloutState !== "IN_PROGRESS" || service.status !== "ACTIVE") return { deployments, primary };
  let stoppedFailed = 0;
  let healthy = 0;
  for (const t of tasks) {
    if (t.deploymentId !== primary.id) continue;
    if (t.lastStatus === "STOPPED" && t.failed) stoppedFailed++;
    else if (isHealthy(t) && !pass.stopped.has(t.arn)) healthy++;
  }
  const base = healthy > (primary.healthyTasks ?? 0) ? stoppedFailed : (primary.failuresBeforeReset ?? 0);
  const failures = stoppedFailed - base;
  let updated = primary;
  if (failures !== primary.failedTasks) updated = { ...updated, failedTasks: failures, updatedAt: now };
  if (base !== (primary.failuresBeforeReset ?? 0)) updated = { ...updated, failuresBeforeReset: base };
  if (healthy !== (primary.healthyTasks ?? 0)) updated = { ...updated, healthyTasks: healthy };
  const replace = (list: DeploymentState[]) => list.map((d) => (d.id === primary.id ? updated : d));
  if (service.circuitBreaker.enable && failures >= failureThreshold(service.desiredCount)) {
    const target = service.circuitBreaker.rollback ? service.lastCompleted : undefined;
    const rollback = target?.taskDefinition === primary.taskDefinition ? undefined : target;
    updated = failed(updated, now);
    pass.notices.push(
      `(service ${service.name}) (deployment ${primary.id}) deployment failed: tasks failed to start.`,
    );
    if (rollback !== undefined) {
      const next = rollbackDeployment(newId(), rollback, service.desiredCount, now);
      pass.notices.push(`(service ${service.name}) rolling back to deployment ${rollback.id}.`);
      return { deployments: promote(replace(deployments), next, now), primary: next };
    }
  }
  return { deployments: replace(deployments), primary: updated };
}

/**
 * The tasks a scale-in stops from, and how many: any of them, or, for a deployment with a
 * capacity provider strategy, from each provider what keeps the strategy's base and weights.
 */
function scaleIn(keep: TaskState[], desired: number, primary: DeploymentState): Array<[TaskState[], number]> {
  const strategy = primary.capacityProviderStrategy;
  if (keep.length <= desired) return [];
  if (strategy === undefined) return [[keep, keep.length - desired]];
  const byProvider = new Map<string, TaskState[]>();
  for (const task of keep) {
    const provider = task.capacityProvider ?? "";
    const tasks = byProvider.get(provider);
    if (tasks === undefined) byProvider.set(provider, [task]);
    else tasks.push(task);
  }
  const have = new Map([...byProvider].map(([provider, tasks]) => [provider, tasks.length]));
  return [...scaleInByProvider(strategy, have, desired)].map(([provider, count]) => [
    byProvider.get(provider) ?? [],
    count,
  ]);
}

/** A bounded pass plans at most this many tasks ahead. */
export const LOOK_AHEAD = 10_000;

/** The group `arrangeRounds` keeps balanced: an instance's values of the spread fields other than instanceId/host. */
function spreadGroup(pass: Pass): (instanceArn: string) => string {
  const fields = pass.snapshot.service.strategies
    .map((s) => s.field ?? "instanceId")
    .filter((field) => field !== "instanceId" && field !== "host");
  if (fields.length === 0) return () => "";
  return (arn) => {
    const view = pass.instances.get(arn)?.view;
    return view === undefined ? "" : fields.map((field) => spreadValue(view, field)).join("\n");
  };
}

/**
 * How many tasks a pass that may start `wanted` of the `due` ones places: when it may not start
 * them all, and the placement is spread alone with tasks that can share an instance (no
 * distinctInstance, no host ports), the next PER_INSTANCE rounds over every instance, so its
 * tasks can be taken round by round and the rest kept for the passes after it.
 */
function lookAhead(pass: Pass, due: number, wanted: number, placement: DefinitionPlacement): number {
  const { needs, constraints } = placement;
  const shareable =
    pass.snapshot.service.strategies.every((s) => s.type === "spread") &&
    !constraints.some((c) => c.type === "distinctInstance") &&
    needs.ports.tcp.length === 0 &&
    needs.ports.udp.length === 0;
  if (wanted >= due || !shareable) return wanted;
  return Math.min(due, LOOK_AHEAD, Math.max(wanted, pass.snapshot.instances.length * PER_INSTANCE));
}

/**
 * Places the tasks a pass starts. A pass that may start only some of the `due` tasks plans
 * further where that is cheap (`lookAhead`; spread placement costs a few microseconds a task),
 * starts the plan's first tasks round by round (`arrangeRounds`) and keeps the rest for the next
 * pass: an instance gets two tasks of a large scale-up in one poll, and the plan is made once
 * rather than on every pass.
 */
function planStarts(
  pass: Pass,
  primary: DeploymentState,
  due: number,
  wanted: number,
  placement: DefinitionPlacement,
): string[] {
  const { service } = pass.snapshot;
  const ahead = lookAhead(pass, due, wanted, placement);
  const plan = place(
    pass.views,
    ahead,
    placement.needs,
    placement.constraints,
    service.strategies,
    pass.random,
  );
  const { chosen, rest } = takeRounds(arrangeRounds(plan.placements, spreadGroup(pass)), wanted);
  if (chosen.length < wanted) pass.events.push(placementFailureMessage(service.name, plan.failures));
  keepPlanned(pass, primary, due - chosen.length, rest);
  return chosen;
}

/** The tasks a pass starts from the last pass's look-ahead, when it holds: undefined when it does not. */
function fromPlanned(
  pass: Pass,
  primary: DeploymentState,
  due: number,
  wanted: number,
  placement: DefinitionPlacement,
): string[] | undefined {
  const planned = pass.snapshot.planned;
  if (planned === undefined || planned.deploymentId !== primary.id || planned.due !== due) return undefined;
  if (roundsLeft(planned.rounds) < wanted) return undefined;
  const { chosen, rest } = takeRounds(planned.rounds, wanted);
  const view = (arn: string) => pass.instances.get(arn)?.view;
  if (!stillFits(view, chosen, placement.needs, placement.constraints)) return undefined;
  keepPlanned(pass, primary, due - wanted, rest);
  return chosen;
}

function keepPlanned(pass: Pass, primary: DeploymentState, due: number, rounds: Rounds): void {
  if (roundsLeft(rounds) > 0) pass.planned = { deploymentId: primary.id, due, rounds };
}

function planReplica(
  pass: Pass,
  primary: DeploymentState,
  live: TaskState[],
  remaining: TaskState[],
): Outcome {
  const { service } = pass.snapshot;
  const desired = service.status === "DRAINING" ? 0 : service.desiredCount;
  const frozen = service.status === "ACTIVE" && primary.rolloutState === "FAILED";
  const reason = scalingReason(primary.id);
  // The PRIMARY's tasks on ACTIVE instances stay; the rest are replaced.
  const keep: TaskState[] = [];
  const retire: TaskState[] = [];
  for (const task of remaining) {
    const stays = task.deploymentId === primary.id && !pass.leaving.has(task.arn);
    (stays ? keep : retire).push(task);
  }
  const victimContext = { tasks: live, instances: pass.instances, strategies: service.strategies };
  for (const [group, count] of scaleIn(keep, desired, primary)) {
    for (const victim of chooseVictims(group, count, victimContext, pass.random)) stop(pass, victim, reason);
  }
  const kept = pass.stopped.size === 0 ? keep : keep.filter((t) => !pass.stopped.has(t.arn));
  let healthy = 0;
  for (const task of remaining) if (countsHealthy(pass, task) && !pass.stopped.has(task.arn)) healthy++;
  const bounds = rollingBounds(desired, service.minimumHealthyPercent, service.maximumPercent);
  const step = rollingStep({ desired, keep: kept.length, occupied: live.length, healthy }, bounds, frozen);
  if (!frozen) {
    for (const task of retire) if (!isHealthy(task)) stop(pass, task, reason);
    const healthyRetire = retire.filter(isHealthy);
    const count = Math.min(step.stopHealthy, healthyRetire.length);
    for (const victim of chooseVictims(healthyRetire, count, victimContext, pass.random)) {
      stop(pass, victim, reason);
    }
    // Bounds that allow neither a task more nor a healthy one fewer than desired: the tasks to
    // replace stay, and ECS says why.
    if (
      healthyRetire.length > count &&
      step.start === 0 &&
      bounds.maxTotal <= desired &&
      bounds.minHealthy >= desired
    ) {
      pass.events.push(deploymentConfigurationMessage(service.name));
    }
  }
  const placement = pass.snapshot.placement[primary.taskDefinition];
  const wanted = Math.min(step.start, startsLeft(pass));
  if (wanted > 0 && placement !== undefined) {
    const chosen =
      fromPlanned(pass, primary, step.start, wanted, placement) ??
      planStarts(pass, primary, step.start, wanted, placement);
    for (const instanceArn of chosen) start(pass, primary, instanceArn);
  }
  return {
    desired,
    converged: retire.length === 0 && kept.length === desired && kept.every(isHealthy),
  };
}

/** One task on every ACTIVE, connected instance that meets the constraints and fits. */
function planDaemon(
  pass: Pass,
  primary: DeploymentState,
  live: TaskState[],
  remaining: TaskState[],
): Outcome {
  const { service } = pass.snapshot;
  const draining = service.status === "DRAINING";
  const frozen = !draining && primary.rolloutState === "FAILED";
  const reason = scalingReason(primary.id);
  const placement = pass.snapshot.placement[primary.taskDefinition];
  const byInstance = new Map<string, TaskState[]>();
  for (const task of remaining)
    byInstance.set(task.instanceArn, [...(byInstance.get(task.instanceArn) ?? []), task]);
  const busy = new Set(
    live.filter((t) => t.desiredStatus === "STOPPED" || pass.stopped.has(t.arn)).map((t) => t.instanceArn),
  );
  const member = (view: InstanceView) =>
    (placement?.constraints ?? []).every(
      (c) =>
        c.type !== "memberOf" || c.expression === undefined || evaluate(c.expression, instanceSubjects(view)),
    );
  const targets: InstanceState[] = [];
  for (const instance of pass.snapshot.instances) {
    const tasks = byInstance.get(instance.view.arn) ?? [];
    if (draining || instance.view.status !== "ACTIVE" || !member(instance.view)) {
      for (const task of tasks) stop(pass, task, reason);
    } else if (instance.view.connected) {
      targets.push(instance);
    }
  }
  const bounds = rollingBounds(targets.length, service.minimumHealthyPercent, service.maximumPercent);
  let allowance =
    remaining.filter((t) => countsHealthy(pass, t) && !pass.stopped.has(t.arn)).length - bounds.minHealthy;
  let desired = 0;
  let converged = true;
  const failures: PlacementFailure[] = [];
  for (const { view } of targets) {
    const tasks = byInstance.get(view.arn) ?? [];
    const current = tasks
      .filter((t) => t.deploymentId === primary.id)
      .sort((a, b) => Number(isHealthy(b)) - Number(isHealthy(a)) || a.createdAt - b.createdAt);
    const old = tasks.filter((t) => t.deploymentId !== primary.id);
    const [first, ...extras] = current;
    if (first !== undefined) {
      desired++;
      for (const extra of extras) stop(pass, extra, reason);
      if (!frozen) for (const task of old) stop(pass, task, reason);
      if (!isHealthy(first) || old.length > 0 || extras.length > 0) converged = false;
      continue;
    }
    if (old.length > 0 || busy.has(view.arn)) {
      desired++;
      converged = false;
      if (frozen) continue;
      for (const task of old) {
        if (isHealthy(task)) {
          if (allowance <= 0) continue;
          allowance--;
        }
        stop(pass, task, reason);
      }
      continue;
    }
    if (placement === undefined) continue;
    const plan = place([view], 1, placement.needs, placement.constraints, [], pass.random);
    if (plan.placements.length === 0) {
      failures.push(...plan.failures);
      continue;
    }
    desired++;
    converged = false;
    // Past the pass's cap the instance still counts as a target; a later pass starts its task.
    if (!frozen && startsLeft(pass) > 0) start(pass, primary, view.arn);
  }
  if (failures.length > 0) pass.events.push(placementFailureMessage(service.name, failures));
  return { desired, converged };
}

/** Messages already written since the service last started or stopped tasks are not written again (for six hours). */
function withoutRepeats(pass: Pass, messages: string[], acted: boolean): string[] {
  const { service, now, recentEvents } = pass.snapshot;
  const seen = new Set<string>();
  if (!acted) {
    for (const event of recentEvents) {
      if (
        event.message.startsWith(`(service ${service.name}) has started `) ||
        event.message.startsWith(`(service ${service.name}) has stopped `)
      ) {
        break;
      }
      if (now - event.at < REPEAT_AFTER_MS) seen.add(event.message);
    }
  }
  return messages.filter((message) => {
    if (seen.has(message)) return false;
    seen.add(message);
    return true;
  });
}

/**
 * How many of `tasks` each deployment has, leaving out those in `skip`. A service's tasks are
 * nearly all of one deployment: runs of them are counted without a lookup each.
 */
function countByDeployment(tasks: readonly TaskState[], skip?: ReadonlySet<string>): Map<string, number> {
  const counts = new Map<string, number>();
  let id: string | undefined;
  let run = 0;
  for (const task of tasks) {
    if (skip !== undefined && skip.size > 0 && skip.has(task.arn)) continue;
    if (task.deploymentId !== id) {
      if (id !== undefined) counts.set(id, (counts.get(id) ?? 0) + run);
      id = task.deploymentId;
      run = 0;
    }
    run++;
  }
  if (id !== undefined) counts.set(id, (counts.get(id) ?? 0) + run);
  return counts;
}

/** Plans one reconcile pass of a service. `newId` names a deployment the circuit breaker rolls back with. */
export function reconcileService(
  snapshot: ServiceSnapshot,
  random: () => number,
  newId: () => string,
): ServicePlan {
  const { service, now } = snapshot;
  const pass: Pass = {
    snapshot,
    service: service.name,
    instances: snapshot.byArn ?? new Map(snapshot.instances.map((i) => [i.view.arn, i])),
    views: snapshot.views ?? snapshot.instances.map((i) => i.view),
    random,
    starts: [],
    stops: [],
    stopped: new Set(),
    leaving: new Set(),
    notices: [],
    events: [],
  };
  // Each task's instance is looked up once a pass (a large service's passes each go over all of them).
  const live: TaskState[] = [];
  for (const task of snapshot.tasks) {
    if (task.lastStatus === "STOPPED") continue;
    const instance = pass.instances.get(task.instanceArn);
    if (lost(pass, instance)) {
      stop(pass, task, LOST_AGENT_REASON, true);
      continue;
    }
    live.push(task);
    if (instance.view.status !== "ACTIVE") pass.leaving.add(task.arn);
  }
  const initial = service.deployments.find((d) => d.status === "PRIMARY");
  const base: ServicePlan = {
    starts: pass.starts,
    stops: pass.stops,
    deployments: service.deployments,
    desiredCount: service.desiredCount,
    status: service.status,
    notices: [],
    events: [],
  };
  if (service.lastCompleted !== undefined) base.lastCompleted = service.lastCompleted;
  if (initial === undefined) return base;

  let { deployments, primary } = checkBreaker(pass, service.deployments, initial, newId);
  // The tasks meant to run, less those that failed their health checks.
  const remaining: TaskState[] = [];
  for (const task of live) {
    if (task.desiredStatus !== "RUNNING") continue;
    const since = (task.startedAt ?? task.createdAt) + service.healthCheckGracePeriodMs;
    if (task.health === "UNHEALTHY" && since <= now) {
      stop(pass, task, HEALTH_CHECK_REASON);
      pass.notices.push(
        `(service ${service.name}) (task ${shortId(task.arn)}) failed container health checks.`,
      );
    } else {
      remaining.push(task);
    }
  }
  const outcome =
    service.schedulingStrategy === "DAEMON"
      ? planDaemon(pass, primary, live, remaining)
      : planReplica(pass, primary, live, remaining);

  // Deployments: the PRIMARY wants the desired count; the others shrink and go once their tasks are gone.
  const liveBy = countByDeployment(live);
  const runningBy = countByDeployment(remaining, pass.stopped);
  deployments = deployments.map((d) => {
    if (d.status === "INACTIVE") return d;
    // A replaced deployment whose tasks are all gone is INACTIVE, in sight until a PRIMARY one completes.
    if (d.status === "ACTIVE" && (liveBy.get(d.id) ?? 0) === 0) return retired(d, now);
    const count = d.status === "PRIMARY" ? outcome.desired : (runningBy.get(d.id) ?? 0);
    return d.desiredCount === count ? d : { ...d, desiredCount: count, updatedAt: now };
  });
  primary = deployments.find((d) => d.id === primary.id) ?? primary;
  const settled =
    pass.starts.length === 0 &&
    pass.stops.length === 0 &&
    live.every((t) => t.desiredStatus === "RUNNING" && t.deploymentId === primary.id) &&
    deployments.every((d) => d.status === "PRIMARY" || (liveBy.get(d.id) ?? 0) === 0);
  const plan: ServicePlan = {
    ...base,
    deployments,
    desiredCount: service.schedulingStrategy === "DAEMON" ? outcome.desired : service.desiredCount,
    notices: pass.notices,
  };
  if (service.status === "ACTIVE" && settled && outcome.converged) {
    if (primary.rolloutState === "IN_PROGRESS") {
      primary = completed(primary, now);
      plan.deployments = [primary];
      plan.lastCompleted = primary;
      pass.events.push(`(service ${service.name}) (deployment ${primary.id}) deployment completed.`);
    }
    if (primary.rolloutState === "COMPLETED" && plan.deployments.length === 1)
      pass.events.push(`(service ${service.name}) has reached a steady state.`);
  }
  if (pass.planned !== undefined) plan.planned = pass.planned;
  if (service.status === "DRAINING" && live.length === 0) plan.status = "INACTIVE";
  const acted = pass.starts.length > 0 || pass.stops.length > 0 || pass.notices.length > 0;
  plan.events = withoutRepeats(pass, pass.events, acted);
  return plan;
}
