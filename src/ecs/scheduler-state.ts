import type { InstanceView } from "../scheduler/placement.ts";
import { PlacementSnapshot } from "../scheduler/placement-snapshot.ts";
import { type TaskFootprint, UsageIndex } from "../scheduler/usage.ts";
import type { Store, Tx } from "../store/store.ts";
import {
  AGENT_TIMEOUT_MS,
  fromRow,
  type InstanceRecord,
  type InstanceRow,
  type InstanceWrites,
  RESERVED_TCP_PORTS,
} from "./instances.ts";
import { type ServiceTaskEntry, serviceTaskEntry } from "./service-tasks.ts";
import { liveTasks, type TaskRecord, type TaskWrites } from "./tasks.ts";

/** One instance as placement sees it, with its zone and its agent's last heartbeat. */
export interface InstanceSnapshot {
  view: InstanceView;
  zone?: string;
  lastHeartbeat: number;
}

const NONE: ReadonlyMap<string, number> = new Map();

interface CachedSnapshot {
  entries: InstanceSnapshot[];
  /** The same entries by ARN. */
  byArn: Map<string, InstanceSnapshot>;
  placement: PlacementSnapshot;
  sweptAt: number;
}

/** How often (in the clock's time) cached snapshots look for agents that went quiet. */
const SWEEP_MS = 1000;

/**
 * How often each heartbeat kept in memory is written to the store, about: a tenth of the
 * instances every tenth of this (`start`), so that thousands of agents cost a small write a second
 * rather than one transaction of thousands of rows that holds the event loop.
 */
export const HEARTBEAT_FLUSH_MS = 10_000;

/** Flushes a period (`HEARTBEAT_FLUSH_MS`) is written in. */
const FLUSH_TICKS = 10;

/** What a task holds on its instance: nothing once STOPPED or when it has no instance. */
export function footprintOf(record: Pick<TaskRecord, "wire" | "reservation">): TaskFootprint | undefined {
  const instanceArn = record.wire.containerInstanceArn;
  if (instanceArn === undefined || record.wire.lastStatus === "STOPPED") return undefined;
  return {
    instanceArn,
    cpu: record.reservation.cpu,
    memory: record.reservation.memory,
    tcp: record.reservation.tcp,
    udp: record.reservation.udp,
    group: record.wire.group ?? "",
    desiredRunning: record.wire.desiredStatus === "RUNNING",
  };
}

/**
 * The scheduler's view of the world kept in memory, as Nomad keeps its state
 * store: every container instance that is not INACTIVE and what the tasks on
 * each hold. Loaded from the store at start; then every task and instance
 * write tells it what changed (`taskSaved`, `instanceSaved`). The change
 * lands at once, as the row does for the writer, and is taken back if the
 * transaction's writes are undone (`onRollback`), so a transaction reads here
 * exactly what it would read from the rows: no placement can rely on
 * capacity another transaction took, committed or not. Each cluster's
 * placement snapshot is kept between calls and only the instances that
 * changed are rebuilt: no query, no parsing.
 *
 * Agent heartbeats live here too: a poll only records the time in memory,
 * and the times are written to the store every HEARTBEAT_FLUSH_MS (the
 * controller declares no agent lost until it has itself run for the agent
 * timeout, so a restart loses nothing that matters).
 *
 * One process owns the store's writes; several servers over one store
 * would each need the other's changes (a change feed), which Wharf has not.
 */
const NO_CHANGES: ReadonlyMap<string, ServiceTaskEntry | undefined> = new Map();

/** The ports of an instance whose tasks and agent hold none, shared by every such view (never changed). */
const RESERVED_ONLY: ReadonlySet<number> = new Set(RESERVED_TCP_PORTS);
const NO_PORTS: ReadonlySet<number> = new Set();

/** Each instance's attributes as views give them, by the record's list (records are replaced, not changed). */
const ATTRIBUTES = new WeakMap<InstanceRecord["attributes"], Record<string, string>>();

function serviceKey(clusterArn: string, serviceName: string): string {
  return `${clusterArn} ${serviceName}`;
}

export class SchedulerState implements TaskWrites, InstanceWrites {
  private readonly usage = new UsageIndex();
  private readonly records = new Map<string, InstanceRecord>();
  private readonly clusters = new Map<string, Set<string>>();
  /** Each cluster's instance ARNs in order, rebuilt when membership changes. */
  private readonly ordered = new Map<string, string[]>();
  /** Each instance's entry in the cached snapshot of its cluster. */
  private readonly entries = new Map<string, InstanceSnapshot>();
  /** Cached snapshots by capacity and cluster, each with its views as placement reads them. */
  private readonly snapshots = new Map<string, CachedSnapshot>();
  /** Where each instance's entry sits in its cached snapshot's placement views. */
  private readonly positions = new Map<string, { placement: PlacementSnapshot; index: number }>();
  /** Instances whose entries must be rebuilt before the next snapshot is handed out. */
  private readonly stale = new Set<string>();
  private readonly heartbeats = new Map<string, number>();
  /** Agent token hashes of the instances here (not INACTIVE), and each instance's. */
  private readonly tokens = new Map<string, string>();
  private readonly tokenOf = new Map<string, string>();
  /** By instance: each task's version as the agent protocol gives it (its desiredVersion). */
  private readonly assigned = new Map<string, Map<string, number>>();
  /**
   * By service (`serviceKey`): the tasks written since its controller last took them, each with
   * its entry as written, or undefined where a write was taken back (the row must be read).
   */
  private readonly serviceChanges = new Map<string, Map<string, ServiceTaskEntry | undefined>>();
  /** By service (`serviceKey`), its cluster ARN and name: those whose tasks were written since last asked. */
  private touched = new Map<string, { clusterArn: string; serviceName: string }>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  /** Where the last flush stopped among the heartbeats (insertion order), for the next to go on from. */
  private cursor: Iterator<[string, number]> | undefined;

  /** The state of everything the store holds. */
  static async load(store: Store): Promise<SchedulerState> {
    const state = new SchedulerState();
    await store.read(async (tx) => {
      const instances = await tx.all<InstanceRow & { token_hash: string }>(
        "SELECT arn, body, last_heartbeat, status, token_hash FROM ecs_container_instances WHERE status != 'INACTIVE'",
      );
      for (const row of instances) {
        state.putInstance(fromRow(row));
        state.setToken(row.arn, row.token_hash === "" ? undefined : row.token_hash);
      }
      for (const record of await liveTasks(tx)) {
        state.setTask(record.wire.taskArn, footprintOf(record), record.desiredVersion);
      }
    });
    return state;
  }

  taskSaved(tx: Tx, record: TaskRecord): void {
    const arn = record.wire.taskArn;
    const before = this.usage.footprint(arn);
    const version = this.assigned.get(before?.instanceArn ?? "")?.get(arn);
    const footprint = footprintOf(record);
    this.setTask(arn, footprint, record.desiredVersion);
    tx.onRollback(() => this.setTask(arn, before, version));
    if (record.serviceName !== undefined) {
      const key = serviceKey(record.wire.clusterArn, record.serviceName);
      let changes = this.serviceChanges.get(key);
      if (changes === undefined) {
        changes = new Map();
        this.serviceChanges.set(key, changes);
      }
      changes.set(arn, serviceTaskEntry(record));
      if (!this.touched.has(key)) {
        this.touched.set(key, { clusterArn: record.wire.clusterArn, serviceName: record.serviceName });
      }
      // A write taken back leaves its task to be read: it reads as it was.
      tx.onRollback(() => this.serviceChanges.get(key)?.set(arn, undefined));
    }
  }

  /**
   * The service's tasks written (inserted or saved) since the last call, each with its entry as
   * last written (undefined: read the row). Writes land here in the order transactions run, so
   * a transaction that takes them has every write before it, and every later write is in the
   * next call's. Each call starts the next set.
   */
  takeServiceChanges(
    clusterArn: string,
    serviceName: string,
  ): ReadonlyMap<string, ServiceTaskEntry | undefined> {
    const key = serviceKey(clusterArn, serviceName);
    const changes = this.serviceChanges.get(key) ?? NO_CHANGES;
    this.serviceChanges.delete(key);
    return changes;
  }

  /**
   * The services whose tasks were written (inserted or saved) since the last call, each once. A
   * write taken back leaves its service here: one reconcile pass too many is harmless.
   */
  takeTouchedServices(): Iterable<{ clusterArn: string; serviceName: string }> {
    const touched = this.touched;
    this.touched = new Map();
    return touched.values();
  }

  /**
   * The version of every task an instance's agent should know about (those on it not yet
   * STOPPED, as the agent protocol's poll returns them), so a poll can tell that nothing changed
   * for its agent without reading the tasks.
   */
  assignedVersions(instanceArn: string): ReadonlyMap<string, number> {
    return this.assigned.get(instanceArn) ?? NONE;
  }

  /** An instance that is not INACTIVE, as last saved (heartbeats aside). Read-only. */
  instance(arn: string): Readonly<InstanceRecord> | undefined {
    return this.records.get(arn);
  }

  instanceSaved(tx: Tx, record: InstanceRecord, tokenHash?: string): void {
    const before = this.records.get(record.arn);
    const beforeToken = this.tokenOf.get(record.arn);
    this.putInstance({ ...record });
    // The row keeps its token unless given a new one; an INACTIVE instance's is looked up in the store.
    this.setToken(record.arn, record.status === "INACTIVE" ? undefined : (tokenHash ?? beforeToken));
    tx.onRollback(() => {
      if (before !== undefined) this.putInstance(before);
      else this.putInstance({ ...record, status: "INACTIVE" });
      this.setToken(record.arn, beforeToken);
    });
  }

  /**
   * The instance (not INACTIVE) whose agent holds the token with this hash, as the rows say;
   * undefined when none here does (the store may still know it: a deregistered instance's).
   */
  instanceByToken(tokenHash: string): string | undefined {
    return this.tokens.get(tokenHash);
  }

  /** Records that an instance's agent was heard from. */
  heartbeat(instanceArn: string, at: number): void {
    if ((this.heartbeats.get(instanceArn) ?? Number.NEGATIVE_INFINITY) >= at) return;
    this.heartbeats.set(instanceArn, at);
    const entry = this.entries.get(instanceArn);
    if (entry === undefined) return;
    entry.lastHeartbeat = Math.max(entry.lastHeartbeat, at);
    // A disconnected instance is connected again from its next snapshot on.
    if (!entry.view.connected) this.stale.add(instanceArn);
  }

  /** The instance's last heartbeat: the stored one, or a later one only memory has yet. */
  lastHeartbeat(record: Pick<InstanceRecord, "arn" | "lastHeartbeat">): number {
    return Math.max(record.lastHeartbeat, this.heartbeats.get(record.arn) ?? Number.NEGATIVE_INFINITY);
  }

  /**
   * The placement snapshot of a cluster's instances of one capacity, in ARN order. Kept between
   * calls: only the instances that changed since are looked at again (and every instance's
   * connection once a second of `now`). The caller must not change it.
   */
  snapshot(clusterArn: string, capacity: "EC2" | "FARGATE", now: number): readonly InstanceSnapshot[] {
    return this.cached(clusterArn, capacity, now).entries;
  }

  /**
   * The same snapshot's views as `place()` takes them, with what placement derives from them
   * (ARN order, spread loads) kept up to date between calls. The caller must not change it.
   */
  placement(clusterArn: string, capacity: "EC2" | "FARGATE", now: number): PlacementSnapshot {
    return this.cached(clusterArn, capacity, now).placement;
  }

  /** The same snapshot's entries by ARN. The caller must not change it. */
  snapshotByArn(
    clusterArn: string,
    capacity: "EC2" | "FARGATE",
    now: number,
  ): ReadonlyMap<string, InstanceSnapshot> {
    return this.cached(clusterArn, capacity, now).byArn;
  }

  /** The availability zone of an instance in a snapshot handed out. */
  zone(instanceArn: string): string | undefined {
    return this.entries.get(instanceArn)?.zone;
  }

  private cached(clusterArn: string, capacity: "EC2" | "FARGATE", now: number): CachedSnapshot {
    const key = `${capacity} ${clusterArn}`;
    let cached = this.snapshots.get(key);
    if (cached === undefined) {
      const entries: InstanceSnapshot[] = [];
      for (const arn of this.instanceArns(clusterArn)) {
        const record = this.records.get(arn);
        if (record === undefined || record.capacity !== capacity) continue;
        const entry = this.entryOf(record, now);
        this.entries.set(arn, entry);
        entries.push(entry);
      }
      const placement = new PlacementSnapshot(entries.map((entry) => entry.view));
      for (const [index, entry] of entries.entries())
        this.positions.set(entry.view.arn, { placement, index });
      const byArn = new Map(entries.map((entry) => [entry.view.arn, entry]));
      cached = { entries, byArn, placement, sweptAt: now };
      this.snapshots.set(key, cached);
      return cached;
    }
    for (const arn of this.stale) {
      const entry = this.entries.get(arn);
      const record = this.records.get(arn);
      if (entry !== undefined && record !== undefined) this.refresh(entry, record, now);
    }
    this.stale.clear();
    if (now - cached.sweptAt >= SWEEP_MS || now < cached.sweptAt) {
      // Agents that went quiet: no event says so, only the clock.
      for (const entry of cached.entries) {
        const connected = now - entry.lastHeartbeat <= AGENT_TIMEOUT_MS;
        const record = this.records.get(entry.view.arn);
        if (connected !== entry.view.connected && record !== undefined) this.refresh(entry, record, now);
      }
      cached.sweptAt = now;
    }
    return cached;
  }

  private entryOf(record: InstanceRecord, now: number): InstanceSnapshot {
    const lastHeartbeat = this.lastHeartbeat(record);
    const view = this.viewOf(record, now - lastHeartbeat <= AGENT_TIMEOUT_MS);
    const zone = view.attributes["ecs.availability-zone"];
    return zone === undefined ? { view, lastHeartbeat } : { view, zone, lastHeartbeat };
  }

  private refresh(entry: InstanceSnapshot, record: InstanceRecord, now: number): void {
    const fresh = this.entryOf(record, now);
    entry.view = fresh.view;
    const position = this.positions.get(record.arn);
    position?.placement.set(position.index, fresh.view);
    entry.lastHeartbeat = fresh.lastHeartbeat;
    if (fresh.zone === undefined) delete entry.zone;
    else entry.zone = fresh.zone;
  }

  /** What the tasks on an instance hold (for tests and diagnostics). */
  totals(instanceArn: string) {
    return this.usage.of(instanceArn);
  }

  /**
   * Writes heartbeats kept in memory to the store: every `intervalMs / FLUSH_TICKS`, those of the
   * next tenth of the instances in turn, so each is written about once every `intervalMs` (up to
   * twice that while the fleet grows: new instances join the round ahead of those not yet
   * reached). A tick that finds the last write still running leaves its share to the next.
   */
  start(store: Store, intervalMs = HEARTBEAT_FLUSH_MS): void {
    let ticks = 0;
    this.timer = setInterval(() => {
      ticks++;
      if (this.flushing !== undefined) return;
      const limit = Math.ceil((this.heartbeats.size * ticks) / FLUSH_TICKS);
      ticks = 0;
      this.flushing = this.flush(store, limit)
        // The next round writes them: a failed write must not end the process.
        .catch((error: unknown) => process.emitWarning(`heartbeat flush failed: ${String(error)}`))
        .finally(() => {
          this.flushing = undefined;
        });
    }, intervalMs / FLUSH_TICKS);
    this.timer.unref();
  }

  /** Stops the flushes and writes what is left. */
  async close(store: Store): Promise<void> {
    clearInterval(this.timer);
    await this.flushing;
    await this.flush(store);
  }

  /**
   * Writes heartbeats newer than what the store holds, in one transaction: every one, or the next
   * `limit` of them in turn from where the last flush stopped (the heartbeats looked at, written
   * or not, count toward `limit`).
   */
  async flush(store: Store, limit = Number.POSITIVE_INFINITY): Promise<void> {
    const due: Array<[string, number]> = [];
    const take = (arn: string, at: number) => {
      const record = this.records.get(arn);
      if (record !== undefined && at > record.lastHeartbeat) due.push([arn, at]);
    };
    if (limit >= this.heartbeats.size) {
      for (const [arn, at] of this.heartbeats) take(arn, at);
    } else {
      for (let looked = 0; looked < limit; looked++) {
        let next = this.cursor?.next();
        if (next === undefined || next.done === true) {
          this.cursor = this.heartbeats.entries();
          next = this.cursor.next();
          if (next.done === true) break;
        }
        take(...next.value);
      }
    }
    if (due.length === 0) return;
    await store.transaction(async (tx) => {
      for (const [arn, at] of due) {
        await tx.run(
          "UPDATE ecs_container_instances SET last_heartbeat = ? WHERE arn = ? AND last_heartbeat < ?",
          at,
          arn,
          at,
        );
      }
      tx.afterCommit(() => {
        for (const [arn, at] of due) {
          const record = this.records.get(arn);
          if (record !== undefined && record.lastHeartbeat < at) record.lastHeartbeat = at;
        }
      });
    });
  }

  private setToken(instanceArn: string, tokenHash: string | undefined): void {
    const previous = this.tokenOf.get(instanceArn);
    if (previous !== undefined && this.tokens.get(previous) === instanceArn) this.tokens.delete(previous);
    if (tokenHash === undefined) {
      this.tokenOf.delete(instanceArn);
      return;
    }
    this.tokenOf.set(instanceArn, tokenHash);
    this.tokens.set(tokenHash, instanceArn);
  }

  private setTask(arn: string, footprint: TaskFootprint | undefined, version: number | undefined): void {
    const previous = this.usage.footprint(arn);
    if (previous !== undefined) {
      const versions = this.assigned.get(previous.instanceArn);
      versions?.delete(arn);
      if (versions?.size === 0) this.assigned.delete(previous.instanceArn);
    }
    if (footprint !== undefined && version !== undefined) {
      let versions = this.assigned.get(footprint.instanceArn);
      if (versions === undefined) {
        versions = new Map();
        this.assigned.set(footprint.instanceArn, versions);
      }
      versions.set(arn, version);
    }
    for (const instance of this.usage.set(arn, footprint)) this.stale.add(instance);
  }

  private instanceArns(clusterArn: string): string[] {
    let arns = this.ordered.get(clusterArn);
    if (arns === undefined) {
      arns = [...(this.clusters.get(clusterArn) ?? [])].sort();
      this.ordered.set(clusterArn, arns);
    }
    return arns;
  }

  private putInstance(record: InstanceRecord): void {
    const previous = this.records.get(record.arn);
    this.stale.add(record.arn);
    if (previous !== undefined && previous.capacity !== record.capacity) this.leave(previous);
    if (previous !== undefined && previous.clusterArn !== record.clusterArn) this.leave(previous);
    if (record.status === "INACTIVE") {
      if (previous !== undefined) this.leave(previous);
      this.records.delete(record.arn);
      return;
    }
    this.records.set(record.arn, record);
    let members = this.clusters.get(record.clusterArn);
    if (members === undefined) {
      members = new Set();
      this.clusters.set(record.clusterArn, members);
    }
    if (!members.has(record.arn) || previous?.capacity !== record.capacity) {
      members.add(record.arn);
      this.changed(record.clusterArn);
    }
  }

  private leave(record: InstanceRecord): void {
    this.clusters.get(record.clusterArn)?.delete(record.arn);
    this.entries.delete(record.arn);
    this.positions.delete(record.arn);
    this.changed(record.clusterArn);
  }

  /** The cluster's members changed: its snapshots are built again when next asked for. */
  private changed(clusterArn: string): void {
    this.ordered.delete(clusterArn);
    this.snapshots.delete(`EC2 ${clusterArn}`);
    this.snapshots.delete(`FARGATE ${clusterArn}`);
  }

  private viewOf(record: InstanceRecord, connected: boolean): InstanceView {
    const totals = this.usage.of(record.arn);
    // Views are rebuilt whenever a task lands on their instance: what did not change with it (the
    // attributes, and the ports when none is taken) is shared rather than made again.
    let attributes = ATTRIBUTES.get(record.attributes);
    if (attributes === undefined) {
      attributes = {};
      for (const attribute of record.attributes) attributes[attribute.name] = attribute.value ?? "";
      ATTRIBUTES.set(record.attributes, attributes);
    }
    const tcp =
      (totals?.tcp.size ?? 0) === 0 && record.usedPorts.tcp.length === 0
        ? RESERVED_ONLY
        : new Set([...RESERVED_TCP_PORTS, ...(totals?.tcp.keys() ?? []), ...record.usedPorts.tcp]);
    const udp =
      (totals?.udp.size ?? 0) === 0 && record.usedPorts.udp.length === 0
        ? NO_PORTS
        : new Set([...(totals?.udp.keys() ?? []), ...record.usedPorts.udp]);
    return {
      arn: record.arn,
      instanceId: record.instanceId,
      status: record.status,
      connected,
      remaining: {
        cpu: record.registered.cpu - (totals?.cpu ?? 0),
        memory: record.registered.memory - (totals?.memory ?? 0),
      },
      ports: { tcp, udp },
      attributes,
      groups: new Map(totals?.groups ?? []),
      runningTasks: totals?.desiredRunning ?? 0,
      registeredAt: record.registeredAt,
      agentVersion: record.versionInfo.agentVersion,
    };
  }
}
