import { randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import type { RequestContext } from "../aws/service.ts";
import { putTags, type Tag, tagsOf } from "../aws/tags.ts";
import { assignProviders } from "../scheduler/capacity.ts";
import { newDeploymentId } from "../scheduler/deployment.ts";
import type { PlacementSnapshot } from "../scheduler/placement-snapshot.ts";
import {
  type DefinitionPlacement,
  type PlannedStarts,
  reconcileService,
  type ServicePlan,
  type ServiceState,
  startedMessage,
  stoppedMessage,
  type TaskState,
  UNCHECKED_HEALTHY_AFTER_MS,
} from "../scheduler/reconcile.ts";
import type { Store, Tx } from "../store/store.ts";
import { type ClusterRecord, findCluster } from "./clusters.ts";
import { AGENT_TIMEOUT_MS, fargateCapacityArn } from "./instances.ts";
import type { InstanceNotifier } from "./notifier.ts";
import type { SchedulerState } from "./scheduler-state.ts";
import { entryKey, type ServiceTaskEntry, serviceTaskEntry } from "./service-tasks.ts";
import {
  addEvents,
  eventsSinceLastAction,
  findServiceByArn,
  liveServiceArns,
  SERVICE_DEFAULT_STRATEGIES,
  type ServiceRecord,
  saveService,
  serviceArn,
} from "./services.ts";
import {
  assignedContainers,
  constraintsOf,
  FARGATE_STRATEGIES,
  fargateSnapshot,
  type RunnableDefinition,
  reservationOf,
  snapshot,
  strategiesOf,
  TaskMaker,
  type TaskRegistryAccess,
} from "./task-api.ts";
import { findTaskDefinition } from "./task-definitions.ts";
import { findTask, insertTask, requestStop, saveTask, type TaskRecord } from "./tasks.ts";
import { WorkQueue } from "./work-queue.ts";

export interface ServiceControllerOptions {
  store: Store;
  notifier: InstanceNotifier;
  registry: TaskRegistryAccess;
  region: string;
  accountId: string;
  clock: () => Date;
  random?: () => number;
  log?: { warn(fields: object, message: string): void };
  /** How often every service is reconciled whether or not anything was seen to change. */
  resyncMs?: number;
  /** How often changed tasks and instances are looked for. */
  watchMs?: number;
  /** An instance whose agent has been silent this long is lost; its tasks are replaced. */
  agentTimeoutMs?: number;
  /**
   * How long a task with no container health check runs before it counts toward
   * minimumHealthyPercent (ECS's 40 s, `UNCHECKED_HEALTHY_AFTER_MS`, unless told otherwise).
   */
  uncheckedHealthyAfterMs?: number;
  /** The instances and what is on them, in memory; every task write goes through it. */
  state: SchedulerState;
  /**
   * At most this many tasks are started per transaction: a larger scale-up is written in
   * several, each planned afresh, with the event loop free between them.
   */
  startBatch?: number;
}

/** Tasks started per transaction unless told otherwise: ~30 ms of the event loop each. */
export const START_BATCH = 250;

type TaskRow = {
  arn: string;
  version: number;
  last_status: string;
  desired_status: string;
};

/** The key of the entry a row's task would make (`serviceTaskEntry`). */
function rowKey(row: TaskRow): string {
  return entryKey(row.version, row.last_status, row.desired_status);
}

/** Each task's scheduling state as last read, by the row key it was read at. */
type TaskStates = Map<string, ServiceTaskEntry>;

/** A service's tasks as its last pass left them, and when their rows were last read in full. */
interface KnownTasks {
  states: TaskStates;
  readAt: number;
}

/**
 * How long a service's tasks are followed through their writes alone before all their rows are
 * read again: a net under anything that changes rows without a write the scheduler's state sees
 * (the purge of STOPPED tasks an hour old, a deployment's failed tasks among them).
 */
export const FULL_READ_MS = 60_000;

/**
 * The service's tasks not yet STOPPED, and the STOPPED ones of deployments still rolling out.
 * After a pass has read them, the next reads only the tasks written since (`changed`, from the
 * scheduler's state, which sees every task write in the order transactions run): a large
 * scale-up's passes would otherwise each read every row of the service, and parse those whose
 * rows changed. Every FULL_READ_MS, or with nothing known, every row is read; a task whose row
 * did not change since it was last parsed is not parsed again.
 */
async function serviceTasks(
  tx: Tx,
  record: ServiceRecord,
  known: KnownTasks | undefined,
  changed: ReadonlyMap<string, ServiceTaskEntry | undefined>,
  now: number,
): Promise<{ tasks: TaskState[]; known: KnownTasks }> {
  const rolling = new Set(
    record.deployments
      .filter((d) => d.rolloutState === "IN_PROGRESS" && d.status !== "INACTIVE")
      .map((d) => d.id),
  );
  if (known !== undefined && now - known.readAt < FULL_READ_MS) {
    const states = known.states;
    for (const [arn, entry] of changed) {
      if (entry !== undefined) {
        states.set(arn, entry);
        continue;
      }
      const task = await findTask(tx, arn);
      if (task === undefined) states.delete(arn);
      else states.set(arn, serviceTaskEntry(task));
    }
    const tasks: TaskState[] = [];
    // Over the entries alone: a [key, entry] pair for each of a large service's tasks, on every
    // pass, was a tenth of what the scale-up allocates.
    for (const { state } of states.values()) {
      if (state.lastStatus !== "STOPPED" || rolling.has(state.deploymentId)) tasks.push(state);
      // A deployment that no longer rolls out never does again: its STOPPED tasks are done with.
      else states.delete(state.arn);
    }
    return { tasks, known };
  }
  const columns = "arn, version, last_status, desired_status";
  const rows = await tx.all<TaskRow>(
    `SELECT ${columns} FROM ecs_tasks WHERE cluster_arn = ? AND service_name = ? AND last_status != 'STOPPED'`,
    record.clusterArn,
    record.name,
  );
  for (const id of rolling) {
    rows.push(
      ...(await tx.all<TaskRow>(
        `SELECT ${columns} FROM ecs_tasks WHERE started_by = ? AND last_status = 'STOPPED'`,
        id,
      )),
    );
  }
  const states: TaskStates = new Map();
  const tasks: TaskState[] = [];
  for (const row of rows) {
    const key = rowKey(row);
    let entry = known?.states.get(row.arn);
    if (entry?.key !== key) {
      const task = await findTask(tx, row.arn);
      if (task === undefined) continue;
      entry = serviceTaskEntry(task);
    }
    states.set(row.arn, entry);
    tasks.push(entry.state);
  }
  return { tasks, known: { states, readAt: now } };
}

function serviceState(record: ServiceRecord, uncheckedHealthyAfterMs: number): ServiceState {
  const state: ServiceState = {
    name: record.name,
    status: record.status === "DRAINING" ? "DRAINING" : "ACTIVE",
    schedulingStrategy: record.schedulingStrategy,
    desiredCount: record.desiredCount,
    minimumHealthyPercent: record.deploymentConfiguration.minimumHealthyPercent,
    maximumPercent: record.deploymentConfiguration.maximumPercent,
    circuitBreaker: record.deploymentConfiguration.deploymentCircuitBreaker,
    strategies:
      record.launchType === "FARGATE"
        ? FARGATE_STRATEGIES
        : record.placementStrategy.length === 0
          ? SERVICE_DEFAULT_STRATEGIES
          : strategiesOf(record),
    healthCheckGracePeriodMs: (record.healthCheckGracePeriodSeconds ?? 0) * 1000,
    uncheckedHealthyAfterMs,
    deployments: record.deployments,
  };
  if (record.lastCompleted !== undefined) state.lastCompleted = record.lastCompleted;
  return state;
}

/**
 * The capacity provider of each task a plan starts (undefined for a deployment with a launch
 * type): each deployment's strategy shares its new tasks out against the tasks it keeps.
 */
function startProviders(plan: ServicePlan, tasks: readonly TaskState[]): Array<string | undefined> {
  const stopping = new Set(plan.stops.map((order) => order.taskArn));
  const byDeployment = new Map<string, Array<string | undefined>>();
  for (const deployment of plan.deployments) {
    const strategy = deployment.capacityProviderStrategy;
    const count = plan.starts.filter((order) => order.deploymentId === deployment.id).length;
    if (strategy === undefined || count === 0) continue;
    const kept = new Map<string, number>();
    for (const task of tasks) {
      if (task.deploymentId !== deployment.id || task.capacityProvider === undefined) continue;
      if (task.lastStatus === "STOPPED" || task.desiredStatus !== "RUNNING" || stopping.has(task.arn))
        continue;
      kept.set(task.capacityProvider, (kept.get(task.capacityProvider) ?? 0) + 1);
    }
    byDeployment.set(deployment.id, assignProviders(strategy, kept, count));
  }
  return plan.starts.map((order) => byDeployment.get(order.deploymentId)?.shift());
}

/**
 * Keeps every service's tasks what its desired count and deployments say.
 * A keyed work queue of service ARNs, fed by changes to tasks and instances
 * (read from the store, so nothing else needs to call in), by the service
 * API, and by a periodic resync. Each key is reconciled by one worker at a
 * time: one transaction reads the service, its tasks and the cluster, plans
 * with the pure scheduler, and applies the plan to that same fresh state.
 * A pass starts at most `startBatch` tasks; a larger scale-up takes several
 * passes, each its own transaction planned from what the last one left, so
 * no single transaction holds the event loop for long and a controller
 * stopped between them is resumed by the next from the rows.
 */
export class ServiceController {
  private readonly options: ServiceControllerOptions;
  private readonly queue = new WorkQueue();
  private readonly stopping = new AbortController();
  private readonly random: () => number;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly failures = new Map<string, number>();
  private running: Promise<unknown>[] = [];
  private startedAt = 0;
  private instanceMark = 0;
  /** By service: its tasks' scheduling states as its last pass left them. */
  private readonly known = new Map<string, KnownTasks>();
  /** By service: the rest of its last pass's look-ahead, the instances it was planned over, and their generation. */
  private readonly planned = new Map<
    string,
    { views: PlacementSnapshot; generation: number; planned: PlannedStarts }
  >();

  constructor(options: ServiceControllerOptions) {
    this.options = options;
    this.random = options.random ?? Math.random;
  }

  private now(): number {
    return this.options.clock().getTime();
  }

  /** Asks for a service to be reconciled soon. */
  enqueue(arn: string): void {
    this.queue.add(arn);
  }

  start(): void {
    this.startedAt = this.now();
    this.instanceMark = this.startedAt;
    this.running = [
      this.worker(),
      this.every(this.options.watchMs ?? 250, () => this.watch()),
      this.every(this.options.resyncMs ?? 5000, () => this.resync()),
    ];
  }

  /** Stops taking work and waits for the pass in progress. */
  async close(): Promise<void> {
    this.stopping.abort();
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.queue.shutDown();
    await Promise.all(this.running);
  }

  private later(ms: number, fn: () => void): void {
    if (this.stopping.signal.aborted) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
  }

  private async every(ms: number, fn: () => Promise<void>): Promise<void> {
    while (!this.stopping.signal.aborted) {
      try {
        await fn();
      } catch (error) {
        if (!this.stopping.signal.aborted)
          this.options.log?.warn({ error: String(error) }, "service watch failed");
      }
      await delay(ms, undefined, { signal: this.stopping.signal }).catch(() => undefined);
    }
  }

  private async resync(): Promise<void> {
    for (const arn of await this.options.store.read((tx) => liveServiceArns(tx))) this.enqueue(arn);
  }

  /**
   * Queues the services whose tasks were written (every task write goes through the scheduler's
   * state, which keeps them), and every service of a cluster whose instances changed.
   */
  private async watch(): Promise<void> {
    const scope = { region: this.options.region, accountId: this.options.accountId };
    for (const { clusterArn, serviceName } of this.options.state.takeTouchedServices()) {
      this.enqueue(serviceArn(scope, clusterArn, serviceName));
    }
    const found = await this.options.store.read(async (tx) => {
      const instances = await tx.all<{ cluster_arn: string; updated_at: number }>(
        "SELECT cluster_arn, updated_at FROM ecs_container_instances WHERE updated_at > ?",
        this.instanceMark,
      );
      const services = new Set<string>();
      const fargate = fargateCapacityArn(scope);
      for (const cluster of new Set(instances.map((row) => row.cluster_arn))) {
        // Fargate capacity serves every cluster.
        const arns = cluster === fargate ? await liveServiceArns(tx) : await liveServiceArns(tx, cluster);
        for (const arn of arns) services.add(arn);
      }
      return { instances, services };
    });
    for (const row of found.instances) this.instanceMark = Math.max(this.instanceMark, row.updated_at);
    for (const arn of found.services) this.enqueue(arn);
  }

  private async worker(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      try {
        const { changed, more } = await this.pass(key);
        this.failures.delete(key);
        if (more) {
          // A bounded pass left tasks to start: the next batch goes once other work has had a turn.
          this.enqueue(key);
          await new Promise((resolve) => setImmediate(resolve));
        } else if (changed) {
          // A pass that changed something is followed by one that checks where it got to.
          this.later(100, () => this.enqueue(key));
        }
      } catch (error) {
        const attempts = (this.failures.get(key) ?? 0) + 1;
        this.failures.set(key, attempts);
        if (!this.stopping.signal.aborted) {
          this.options.log?.warn({ service: key, error: String(error) }, "service reconcile failed");
          this.later(Math.min(100 * 2 ** attempts, 10_000), () => this.enqueue(key));
        }
      } finally {
        this.queue.done(key);
      }
    }
  }

  /**
   * Reconciles a service until no pass is left with tasks to start (a large scale-up takes
   * several), letting the event loop turn between passes; returns whether anything changed.
   */
  async reconcile(arn: string): Promise<boolean> {
    let changed = false;
    for (;;) {
      const pass = await this.pass(arn);
      changed ||= pass.changed;
      if (!pass.more || this.stopping.signal.aborted) return changed;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /**
   * One pass for one service, in one transaction, starting at most `startBatch` tasks:
   * whether it changed anything, and whether it stopped at that bound (more to start).
   */
  async pass(arn: string): Promise<{ changed: boolean; more: boolean }> {
    const maxStarts = this.options.startBatch ?? START_BATCH;
    const now = this.now();
    const timeout = this.options.agentTimeoutMs ?? AGENT_TIMEOUT_MS;
    // Until the controller itself has run this long, no agent is declared lost (they may not have polled yet).
    const lostBefore = now - this.startedAt > timeout ? now - timeout : Number.NEGATIVE_INFINITY;
    const result = await this.options.store.transaction(async (tx) => {
      const state = this.options.state;
      const record = await findServiceByArn(tx, arn);
      const earlier = this.planned.get(arn);
      this.planned.delete(arn);
      if (record === undefined) {
        this.known.delete(arn);
        return undefined;
      }
      // The service's tasks written since its last pass, taken before anything is read. Once
      // taken they are gone: what the pass knows of its tasks is kept only if it commits, and
      // forgotten whenever the pass ends without planning.
      const changes = state.takeServiceChanges(record.clusterArn, record.name);
      tx.onRollback(() => {
        this.known.delete(arn);
        this.planned.delete(arn);
      });
      const scope = { region: this.options.region, accountId: this.options.accountId };
      const cluster =
        record.status === "INACTIVE" ? undefined : await findCluster(tx, scope, record.clusterArn);
      if (cluster === undefined) {
        this.known.delete(arn);
        return undefined;
      }
      const fargate = record.launchType === "FARGATE";
      const instances = fargate ? fargateSnapshot(state, scope, now) : snapshot(state, cluster, now);
      // The same instances as placement keeps them between calls (RunTask places from it too).
      const capacity = fargate ? "FARGATE" : "EC2";
      const capacityArn = fargate ? fargateCapacityArn(scope) : cluster.arn;
      const views = state.placement(capacityArn, capacity, now);
      const byArn = state.snapshotByArn(capacityArn, capacity, now);
      const read = await serviceTasks(tx, record, this.known.get(arn), changes, now);
      const tasks = read.tasks;
      this.known.set(arn, read.known);
      const definitions = await this.definitions(tx, record);
      const placement: Record<string, DefinitionPlacement> = {};
      for (const [arn, definition] of definitions) {
        const reservation = reservationOf(definition, assignedContainers(definition, undefined), undefined);
        placement[arn] = {
          needs: {
            cpu: reservation.cpu,
            memory: reservation.memory,
            ports: reservation,
            group: `service:${record.name}`,
          },
          constraints: fargate ? [] : constraintsOf(record, definition),
        };
      }
      const events = await eventsSinceLastAction(tx, arn, record.name);
      const plan = reconcileService(
        {
          service: serviceState(record, this.options.uncheckedHealthyAfterMs ?? UNCHECKED_HEALTHY_AFTER_MS),
          tasks,
          instances,
          views,
          byArn,
          placement,
          now,
          lostBefore,
          recentEvents: events.map((e) => ({ message: e.message, at: e.createdAt })),
          maxStarts,
          // A look-ahead holds over the instances it was planned over, as they stood: a new snapshot
          // (some came or went) or an instance whose status, connection or attributes changed ends it.
          ...(earlier?.views === views && earlier.generation === views.generation
            ? { planned: earlier.planned }
            : {}),
        },
        this.random,
        () => newDeploymentId(this.random),
      );
      const applied = await this.apply(tx, { record, cluster, definitions, plan, tasks, now });
      // Kept only if the pass commits (the rollback hook above forgets it).
      if (plan.planned !== undefined) {
        this.planned.set(arn, { views, generation: views.generation, planned: plan.planned });
      }
      return { ...applied, more: plan.starts.length >= maxStarts };
    });
    if (result === undefined) return { changed: false, more: false };
    this.options.notifier.started(result.started);
    for (const instance of result.notify) this.options.notifier.notify(instance);
    return { changed: result.changed, more: result.more };
  }

  private async definitions(tx: Tx, record: ServiceRecord): Promise<Map<string, RunnableDefinition>> {
    const scope = { region: this.options.region, accountId: this.options.accountId };
    const arns = new Set(record.deployments.map((d) => d.taskDefinition));
    if (record.lastCompleted !== undefined) arns.add(record.lastCompleted.taskDefinition);
    const out = new Map<string, RunnableDefinition>();
    for (const arn of arns) {
      // A deregistered revision keeps the services that use it running, as in ECS.
      const definition = (await findTaskDefinition(tx, scope, arn)) as RunnableDefinition | undefined;
      if (definition !== undefined) out.set(arn, definition);
    }
    return out;
  }

  /** The tags a new task gets: ECS-managed ones and those propagated from the service or task definition. */
  private async taskTags(
    tx: Tx,
    record: ServiceRecord,
    cluster: ClusterRecord,
    definition: RunnableDefinition,
  ): Promise<Tag[]> {
    const tags: Tag[] = [];
    if (record.enableECSManagedTags) {
      tags.push(
        { key: "aws:ecs:clusterName", value: cluster.name },
        { key: "aws:ecs:serviceName", value: record.name },
      );
    }
    if (record.propagateTags === "SERVICE") tags.push(...(await tagsOf(tx, record.arn)));
    if (record.propagateTags === "TASK_DEFINITION")
      tags.push(...(await tagsOf(tx, definition.taskDefinitionArn)));
    return tags;
  }

  /** Applies a plan inside the transaction that read the state it was made from. */
  private async apply(
    tx: Tx,
    pass: {
      record: ServiceRecord;
      cluster: ClusterRecord;
      definitions: Map<string, RunnableDefinition>;
      plan: ServicePlan;
      /** The service's tasks the plan was made from. */
      tasks: readonly TaskState[];
      now: number;
    },
  ): Promise<{ notify: Set<string>; started: TaskRecord[]; changed: boolean }> {
    const { record, cluster, plan, now } = pass;
    const notify = new Set<string>();
    const stopped: string[] = [];
    for (const order of plan.stops) {
      const task = await findTask(tx, order.taskArn);
      if (task === undefined) continue;
      if (requestStop(task, order.reason, "ServiceSchedulerInitiated", now, order.immediately)) {
        await saveTask(tx, task, now, this.options.state);
        stopped.push(task.wire.taskArn);
        notify.add(task.wire.containerInstanceArn ?? "");
      }
    }
    const ctx: RequestContext = {
      requestId: randomUUID(),
      region: this.options.region,
      accountId: this.options.accountId,
      identity: { accessKeyId: record.accessKeyId },
      now: new Date(now),
    };
    const started: TaskRecord[] = [];
    const providers = startProviders(plan, pass.tasks);
    // One maker per deployment and capacity provider: its tasks share their definition, tags and containers.
    const makers = new Map<string, { maker: TaskMaker; tags: Tag[] }>();
    for (const [i, order] of plan.starts.entries()) {
      const definition = pass.definitions.get(order.taskDefinition);
      if (definition === undefined) continue;
      const provider = providers[i];
      const key = `${order.deploymentId}\n${order.taskDefinition}\n${provider ?? ""}`;
      let made = makers.get(key);
      if (made === undefined) {
        const tags = await this.taskTags(tx, record, cluster, definition);
        // The deployment's own platform version: a rollback's tasks run on the one it returns to.
        const platformVersion = plan.deployments.find((d) => d.id === order.deploymentId)?.platformVersion;
        const input = {
          taskDefinition: definition.taskDefinitionArn,
          startedBy: order.deploymentId,
          group: `service:${record.name}`,
          launchType: record.launchType,
          enableExecuteCommand: record.enableExecuteCommand,
          tags,
          ...(provider === undefined ? {} : { capacityProviderName: provider }),
          ...(platformVersion === undefined ? {} : { platformVersion }),
        };
        made = {
          maker: new TaskMaker({
            ctx,
            cluster,
            definition,
            registry: this.options.registry,
            input,
            serviceName: record.name,
          }),
          tags,
        };
        makers.set(key, made);
      }
      const { record: task, body } = made.maker.make(
        order.instanceArn,
        this.options.state.zone(order.instanceArn),
      );
      await insertTask(tx, task, now, this.options.state, body);
      await putTags(tx, task.wire.taskArn, made.tags);
      started.push(task);
    }
    const messages = [...plan.notices];
    if (stopped.length > 0) messages.push(stoppedMessage(record.name, stopped));
    if (started.length > 0) {
      messages.push(
        startedMessage(
          record.name,
          started.map((task) => task.wire.taskArn),
        ),
      );
    }
    messages.push(...plan.events);
    await addEvents(tx, record.arn, messages, now);

    const primary = plan.deployments.find((d) => d.status === "PRIMARY");
    const next: ServiceRecord = {
      ...record,
      status: plan.status,
      desiredCount: plan.desiredCount,
      taskDefinition: primary?.taskDefinition ?? record.taskDefinition,
      deployments: plan.deployments,
    };
    if (plan.lastCompleted !== undefined) next.lastCompleted = plan.lastCompleted;
    const recordChanged = JSON.stringify(next) !== JSON.stringify(record);
    if (recordChanged) await saveService(tx, { ...next, updatedAt: now });
    notify.delete("");
    return {
      notify,
      started,
      changed: recordChanged || stopped.length + started.length + messages.length > 0,
    };
  }
}
