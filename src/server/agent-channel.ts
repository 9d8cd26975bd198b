import type { FastifyInstance } from "fastify";
import { AwsError } from "../aws/errors.ts";
import { RawJson } from "../aws/json-text.ts";
import { verifySigV4 } from "../aws/sigv4.ts";
import { AssignmentCache, type CachedAssignment } from "../ecs/assignment-cache.ts";
import {
  activeCluster,
  type ClusterRecord,
  clusterArn,
  DEFAULT_CLUSTER,
  findCluster,
  saveCluster,
} from "../ecs/clusters.ts";
import { ClusterNotFound, InvalidParameter } from "../ecs/errors.ts";
import { registerInstance } from "../ecs/instance-api.ts";
import {
  AGENT_TIMEOUT_MS,
  FARGATE_CAPACITY_CLUSTER,
  fargateCapacityArn,
  findInstance,
  hashToken,
  type InstanceRecord,
  instanceArnByToken,
  instanceStatus,
  POLL_TIMEOUT_MS,
  saveInstance,
} from "../ecs/instances.ts";
import type { InstanceNotifier } from "../ecs/notifier.ts";
import type { SchedulerState } from "../ecs/scheduler-state.ts";
import { applyReport, findTask, saveTask, type TaskRecord } from "../ecs/tasks.ts";
import {
  INSTANCE_DEREGISTERED,
  type LogBatch,
  MAX_REPORTS_PER_BATCH,
  type PollRequest,
  type RegisterNodeRequest,
  type RegisterNodeResponse,
  type ReportBatch,
  type ReportBatchResponse,
  type StatsBatch,
  statusRank,
  type TaskReport,
} from "../shared/agent-protocol.ts";
import type { Store, Tx } from "../store/store.ts";
import type { AgentRequest, AgentRoutes } from "./agent-http.ts";
import { signedRequest } from "./front-door.ts";

export interface AgentChannelOptions {
  store: Store;
  /** Where heartbeats are kept, and what every task and instance write goes through. */
  state: SchedulerState;
  notifier: InstanceNotifier;
  region: string;
  accountId: string;
  clock: () => Date;
  lookupSecret(accessKeyId: string): string | undefined;
  /** Container output shipped by agents for the awslogs driver. */
  appendLogs(batch: LogBatch): Promise<void>;
  /** CPU and memory samples from agents. */
  recordStats(instanceArn: string, batch: StatsBatch): void;
}

const Unauthorized = (message: string) => new AwsError("UnauthorizedNode", message, { status: 401 });
/** The instance was deregistered: its agent stops (as the ECS agent does) instead of registering again. */
const Deregistered = (message: string) => new AwsError(INSTANCE_DEREGISTERED, message, { status: 401 });

function json<T>(request: AgentRequest): T {
  const body = request.body.toString("utf8");
  let parsed: unknown;
  try {
    parsed = JSON.parse(body === "" ? "{}" : body);
  } catch {
    throw InvalidParameter("The request body is not valid JSON.");
  }
  // Every agent request is an object: `null`, a number or an array would fail later as a 500.
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw InvalidParameter("The request body must be a JSON object.");
  }
  return parsed as T;
}

/** The instance with the host ports a stopped task held taken out of what its agent last reported. */
function releasePorts(instance: InstanceRecord, task: TaskRecord): InstanceRecord {
  const freed = { tcp: new Set(task.reservation.tcp), udp: new Set(task.reservation.udp) };
  for (const container of task.wire.containers) {
    for (const binding of container.networkBindings) {
      (binding.protocol === "udp" ? freed.udp : freed.tcp).add(binding.hostPort);
    }
  }
  return {
    ...instance,
    usedPorts: {
      tcp: instance.usedPorts.tcp.filter((port) => !freed.tcp.has(port)),
      udp: instance.usedPorts.udp.filter((port) => !freed.udp.has(port)),
    },
  };
}

function samePorts(a: InstanceRecord["usedPorts"], b: InstanceRecord["usedPorts"]): boolean {
  const same = (x: number[], y: number[]) => {
    const set = new Set(x);
    return set.size === new Set(y).size && y.every((port) => set.has(port));
  };
  return same(a.tcp, b.tcp) && same(a.udp, b.udp);
}

/** Token hashes kept in memory (an agent each): past this many, the memo starts over. */
const MAX_HASHED_TOKENS = 50_000;

/** Whether a report has the fields every report must have (checked before anything is read). */
function wellFormed(report: TaskReport | undefined): report is TaskReport {
  return (
    typeof report === "object" &&
    report !== null &&
    typeof report.taskArn === "string" &&
    typeof report.lastStatus === "string" &&
    Array.isArray(report.containers)
  );
}

/**
 * How long an idle poll is held: the poll timeout (never past half the time after which an
 * agent counts as lost), less up to a fifth at random, so that a fleet registered at once does
 * not come back all in the same instant every time.
 */
export function idlePollMs(random: () => number = Math.random): number {
  const longest = Math.min(POLL_TIMEOUT_MS, AGENT_TIMEOUT_MS / 2);
  return Math.round(longest * (1 - 0.2 * random()));
}

/** The answer to a poll whose tasks are exactly those it named in `known`. */
const UNCHANGED = new RawJson('{"tasks":[],"unchanged":true}');

/**
 * A following poll whose hold has less than this left answers a change as a poll does, ending
 * it, rather than in an interim answer followed at once by the final one.
 */
const MIN_FOLLOW_MS = 1000;

/** The versions of the tasks a poll answer gives its agent, by task ARN. */
function versionsOf(tasks: readonly CachedAssignment[]): Map<string, number> {
  const versions = new Map<string, number>();
  for (const task of tasks) versions.set(task.taskArn, task.version);
  return versions;
}

/** A `PollResponse` built from assignments kept as JSON, without parsing them again. */
function pollResponse(tasks: readonly CachedAssignment[]): RawJson {
  return new RawJson(`{"tasks":[${tasks.map((task) => task.json).join(",")}]}`);
}

/** What a registration says about the node, as registerInstance takes it. */
function instanceOptions(body: RegisterNodeRequest) {
  return {
    ...(body.containerInstanceArn === undefined ? {} : { arn: body.containerInstanceArn }),
    cpu: body.totalResources.cpu,
    memory: body.totalResources.memory,
    attributes: body.attributes ?? [],
    versionInfo: body.versionInfo ?? { agentVersion: "unknown" },
    hostname: body.hostname ?? "",
    address: body.address ?? "",
  };
}

/**
 * The agent protocol's server end (see src/shared/agent-protocol.ts):
 * registration signed with SigV4, then a node token for polling and reports.
 */
export function registerAgentChannel(
  app: FastifyInstance,
  routes: AgentRoutes,
  options: AgentChannelOptions,
): void {
  const { store, notifier, state } = options;
  const scope = { region: options.region, accountId: options.accountId };
  // Polls parse only the tasks whose rows changed since the instance's last poll.
  const cache = new AssignmentCache();
  // A task committed new is kept at once, so the poll it wakes need not read the store.
  notifier.onStarted((task) => cache.remember(task));
  // Polls end when the server closes, before the store does: each waiting one is ended here.
  const waiting = new Set<() => void>();
  let closing = false;
  app.addHook("preClose", async () => {
    closing = true;
    routes.close();
    for (const abort of waiting) abort();
  });

  // Each agent sends its token with every request: its hash is worked out once, not per request.
  const hashes = new Map<string, string>();
  const hashOf = (token: string) => {
    let hash = hashes.get(token);
    if (hash === undefined) {
      if (hashes.size >= MAX_HASHED_TOKENS) hashes.clear();
      hash = hashToken(token);
      hashes.set(token, hash);
    }
    return hash;
  };

  async function node(request: AgentRequest) {
    const header = request.headers.authorization ?? "";
    const token = header.startsWith("Bearer ") ? header.slice(7) : "";
    if (token === "") throw Unauthorized("A node token is required.");
    // The scheduler's state knows the tokens of instances not INACTIVE; the store knows every one.
    const arn =
      state.instanceByToken(hashOf(token)) ?? (await store.read((tx) => instanceArnByToken(tx, token)));
    // The instance as the scheduler's state holds it, so no request parses it again.
    const instance =
      arn === undefined
        ? undefined
        : (state.instance(arn) ?? (await store.read((tx) => findInstance(tx, arn))));
    if (instance === undefined) throw Unauthorized("The node token is not valid; register again.");
    // A deregistered instance's agent is told so (it stops), not asked to register again.
    if (instance.status === "INACTIVE") throw Deregistered("The container instance is deregistered.");
    return instance;
  }

  const route = (path: string, handler: (request: AgentRequest) => Promise<unknown>) =>
    routes.post(path, handler);

  // The cluster Fargate capacity registers in; it has no row, so users never see it.
  const fargateCapacityCluster = (now: number): ClusterRecord => ({
    arn: fargateCapacityArn(scope),
    name: FARGATE_CAPACITY_CLUSTER,
    status: "ACTIVE",
    settings: [],
    capacityProviders: [],
    defaultCapacityProviderStrategy: [],
    createdAt: now,
    updatedAt: now,
  });

  route("/agent/v1/register", async (request) => {
    const now = options.clock();
    // Registration is signed with the agent's access key, as the ECS agent signs RegisterContainerInstance.
    verifySigV4(signedRequest({ method: request.method, raw: request, body: request.body }), {
      region: options.region,
      service: "ecs",
      now,
      lookupSecret: options.lookupSecret,
    });
    const body = json<RegisterNodeRequest>(request);
    if (typeof body.cluster !== "string" || typeof body.totalResources?.cpu !== "number") {
      throw InvalidParameter("cluster and totalResources are required.");
    }
    const capacity = body.capacity === "FARGATE" ? "FARGATE" : "EC2";
    const result = await store.transaction(async (tx) => {
      if (capacity === "FARGATE") {
        // Fargate capacity serves every cluster: it joins Wharf's own, whatever cluster the agent names.
        return registerInstance(
          tx,
          state,
          { ...scope, now: now.getTime() },
          fargateCapacityCluster(now.getTime()),
          {
            ...instanceOptions(body),
            capacity,
          },
        );
      }
      let cluster = await findCluster(tx, scope, body.cluster);
      if ((cluster === undefined || cluster.status !== "ACTIVE") && body.cluster === DEFAULT_CLUSTER) {
        // The ECS agent creates the default cluster when it joins it and it does not exist.
        cluster = {
          arn: clusterArn(scope, DEFAULT_CLUSTER),
          name: DEFAULT_CLUSTER,
          status: "ACTIVE",
          settings: [{ name: "containerInsights", value: "disabled" }],
          capacityProviders: [],
          defaultCapacityProviderStrategy: [],
          createdAt: now.getTime(),
          updatedAt: now.getTime(),
        };
        await saveCluster(tx, cluster);
      }
      if (cluster === undefined || cluster.status !== "ACTIVE") throw ClusterNotFound("Cluster not found.");
      const active = await activeCluster(tx, scope, cluster.name);
      return registerInstance(tx, state, { ...scope, now: now.getTime() }, active, {
        ...instanceOptions(body),
        capacity,
      });
    });
    const response: RegisterNodeResponse = {
      containerInstanceArn: result.record.arn,
      clusterArn: result.record.clusterArn,
      nodeToken: result.token,
      pollTimeoutMs: POLL_TIMEOUT_MS,
    };
    return response;
  });

  route("/agent/v1/poll", async (request) => {
    const instance = await node(request);
    const body = json<PollRequest>(request);
    // The agent's tasks: those it named, then those of each interim answer it was sent.
    const named = body.known ?? {};
    let knownCount = Object.keys(named).length;
    let knownVersion = (taskArn: string): number | undefined => named[taskArn];
    // The instance as it is now: the poll may have waited while its status or attributes changed.
    const current = async (tx: Tx) => {
      const record = await findInstance(tx, instance.arn);
      if (record === undefined || record.status === "INACTIVE") {
        throw Deregistered("The container instance is deregistered.");
      }
      return record;
    };
    const assignments = async () => {
      // What the scheduler's state gives the instance, when every task of it is kept as committed.
      if ((state.instance(instance.arn)?.status ?? "INACTIVE") !== "INACTIVE") {
        const kept = cache.fromMemory(instance.arn, state.assignedVersions(instance.arn));
        if (kept !== undefined) return kept;
      }
      return store.read(async (tx) => {
        const status = await instanceStatus(tx, instance.arn);
        if (status === undefined || status === "INACTIVE") {
          cache.forget(instance.arn);
          throw Deregistered("The container instance is deregistered.");
        }
        return cache.read(tx, instance.arn);
      });
    };
    // A poll's arrival is the heartbeat, kept in memory (the state writes heartbeats out now and
    // then); the end of its wait says nothing of the agent, which may have gone meanwhile without
    // the connection closing. The store is written only when the agent's host ports changed.
    const heartbeat = async () => {
      const ports = body.usedPorts;
      if (ports !== undefined && !samePorts(ports, instance.usedPorts)) {
        await store.transaction(async (tx) => {
          const record = await current(tx);
          record.usedPorts = ports;
          record.lastHeartbeat = options.clock().getTime();
          await saveInstance(tx, record, state);
        });
      }
      const tasks = await assignments();
      state.heartbeat(instance.arn, options.clock().getTime());
      return tasks;
    };
    const differs = (tasks: ReadonlyArray<{ taskArn: string; version: number }>) =>
      tasks.length !== knownCount || tasks.some((t) => knownVersion(t.taskArn) !== t.version);
    // What the agent has is usually what it should have (it follows, or polls again after, each change):
    // the versions in memory say so without reading and parsing its tasks.
    const inMemory = [...state.assignedVersions(instance.arn)].map(([taskArn, version]) => ({
      taskArn,
      version,
    }));
    // A poll that follows (on the channel) is held to the end of its hold whatever changes: each
    // change goes ahead as an interim answer, and the agent does not poll again for it.
    const interim = body.follow === true ? request.interim : undefined;
    const until = performance.now() + idlePollMs();
    // Each wait starts before the tasks are read, so that a change committed while they are read
    // wakes it (the notifier wakes only waits already there). It ends when the agent goes away or
    // the server closes. Not AbortSignal.any, nor a listener on one shared signal: with thousands
    // of polls waiting, each would cost a walk over them all.
    const listen = () => {
      const wait = notifier.wait(instance.arn, Math.max(0, until - performance.now()));
      const stopListening = request.onGone(wait.cancel);
      waiting.add(wait.cancel);
      // The agent may have gone before the listener was there (while the poll read or wrote).
      if (closing || request.gone()) wait.cancel();
      return {
        wait,
        end() {
          wait.cancel();
          waiting.delete(wait.cancel);
          stopListening();
        },
      };
    };
    let listening = listen();
    try {
      let tasks: CachedAssignment[] | undefined = differs(inMemory) ? await heartbeat() : undefined;
      if (tasks === undefined) {
        if (body.usedPorts !== undefined && !samePorts(body.usedPorts, instance.usedPorts))
          tasks = await heartbeat();
        else state.heartbeat(instance.arn, options.clock().getTime());
      }
      for (;;) {
        if (tasks !== undefined && differs(tasks)) {
          if (interim === undefined || until - performance.now() < MIN_FOLLOW_MS) return pollResponse(tasks);
          interim(pollResponse(tasks));
          const versions = versionsOf(tasks);
          knownCount = versions.size;
          knownVersion = (taskArn) => versions.get(taskArn);
        }
        // The hold is over with nothing new: an agent that understands it is told so, rather than
        // sent every task it already has again.
        if (performance.now() >= until) {
          if (body.acceptUnchanged === true) return UNCHANGED;
          return pollResponse(tasks ?? (await assignments()));
        }
        await listening.wait.done;
        if (listening.wait.cancelled) {
          // The agent went, or the server is closing: answered with what is, as at the end of the hold.
          const now = tasks ?? (await assignments());
          return body.acceptUnchanged === true && !differs(now) ? UNCHANGED : pollResponse(now);
        }
        listening.end();
        listening = listen();
        tasks = await assignments();
      }
    } finally {
      listening.end();
    }
  });

  const notAssigned = () => InvalidParameter("The task is not assigned to this container instance.");
  const malformed = () => InvalidParameter("taskArn, lastStatus and containers are required.");

  /**
   * Applies an instance's reports in one transaction, in order, each on its own: a report for a
   * task not assigned to the instance changes nothing and comes back as failed (by its index).
   */
  async function applyReports(
    instance: InstanceRecord,
    reports: readonly TaskReport[],
  ): Promise<Map<number, AwsError>> {
    // A task that stops is to stop from now on, its version unchanged (its agent, which acts on
    // versions only, knows): polls read it again, from before the write until after it commits.
    const stopping = reports.filter((report) => statusRank(report.lastStatus) >= statusRank("DEACTIVATING"));
    for (const report of stopping) cache.drop(instance.arn, report.taskArn);
    const failed = await store.transaction(async (tx) => {
      const failures = new Map<number, AwsError>();
      for (const [i, report] of reports.entries()) {
        const task = await findTask(tx, report.taskArn);
        if (task === undefined || task.wire.containerInstanceArn !== instance.arn) {
          failures.set(i, notAssigned());
          continue;
        }
        const wasStopped = task.wire.lastStatus === "STOPPED";
        if (!applyReport(task, report)) continue;
        await saveTask(tx, task, options.clock().getTime(), state);
        if (!wasStopped && task.wire.lastStatus === "STOPPED") {
          // The agent tears a task's network down before it reports STOPPED: its host ports are free.
          const current = await findInstance(tx, instance.arn);
          if (current !== undefined) await saveInstance(tx, releasePorts(current, task), state);
        }
      }
      return failures;
    });
    for (const report of stopping) cache.drop(instance.arn, report.taskArn);
    return failed;
  }

  route("/agent/v1/report", async (request) => {
    const instance = await node(request);
    const report = json<TaskReport>(request);
    if (!wellFormed(report)) throw malformed();
    const failure = (await applyReports(instance, [report])).get(0);
    if (failure !== undefined) throw failure;
    return {};
  });

  // Every report an agent has waiting, in one request and one transaction.
  route("/agent/v1/reports", async (request) => {
    const instance = await node(request);
    const batch = json<ReportBatch>(request);
    if (!Array.isArray(batch.reports) || batch.reports.length > MAX_REPORTS_PER_BATCH) {
      throw InvalidParameter(`reports is required, with at most ${MAX_REPORTS_PER_BATCH} reports.`);
    }
    const reports = batch.reports.filter(wellFormed);
    const failed = await applyReports(instance, reports);
    const failures: ReportBatchResponse["failures"] = [];
    for (const report of batch.reports as unknown[]) {
      if (!wellFormed(report as TaskReport)) {
        const error = malformed();
        const arn = (report as { taskArn?: unknown } | null)?.taskArn;
        failures.push({
          taskArn: typeof arn === "string" ? arn : "",
          code: error.code,
          message: error.message,
        });
      }
    }
    for (const [i, error] of failed) {
      failures.push({ taskArn: reports[i]?.taskArn ?? "", code: error.code, message: error.message });
    }
    const response: ReportBatchResponse = { failures };
    return response;
  });

  route("/agent/v1/logs", async (request) => {
    await node(request);
    const batch = json<LogBatch>(request);
    if (!Array.isArray(batch.events)) throw InvalidParameter("events is required.");
    await options.appendLogs(batch);
    return {};
  });

  route("/agent/v1/stats", async (request) => {
    const instance = await node(request);
    const batch = json<StatsBatch>(request);
    if (!Array.isArray(batch.samples)) throw InvalidParameter("samples is required.");
    // Only samples of this instance's own tasks: an agent speaks for no other instance.
    const assigned = state.assignedVersions(instance.arn);
    const samples = batch.samples.filter(
      (sample) => typeof sample === "object" && sample !== null && assigned.has(sample.taskArn),
    );
    options.recordStats(instance.arn, { ...batch, samples });
    return {};
  });
}
