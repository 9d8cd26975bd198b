import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { promisify } from "node:util";
import {
  type AssignedContainer,
  statusRank,
  type TaskAssignment,
  type TaskReport,
  type TaskStatus,
} from "../../shared/agent-protocol.ts";
import type { PulledImage } from "../image/store.ts";
import { withExtraHosts, withNameservers } from "../network/files.ts";
import { defaultHostname } from "../network/link.ts";
import type { PortMapping, TaskNetwork } from "../network/node-network.ts";
import type { Runtime } from "../runtime/runc.ts";
import { type BindMount, buildSpec, type ContainerSpecInput } from "../runtime/spec.ts";
import { DEPENDENCY_EXIT_CODE, readiness } from "./dependencies.ts";
import { afterProbe, type HealthState, healthCommand } from "./health.ts";
import { ReportQueue } from "./report-queue.ts";
import { type ContainerState, type TaskState, type TaskStateStore, taskCgroup, taskIdOf } from "./state.ts";

const run = promisify(execFile);

/** What a task engine needs from the node. */
export interface EngineDeps {
  states: TaskStateStore;
  runtime: Runtime;
  /** Pulls a container's image; a ResourceInitializationError when what the pull needs cannot be had. */
  pull(container: AssignedContainer, assignment: TaskAssignment, signal: AbortSignal): Promise<PulledImage>;
  network: {
    setup(
      taskId: string,
      mode: TaskNetwork["mode"],
      ports: PortMapping[],
      hostname: string,
    ): Promise<TaskNetwork>;
    teardown(taskId: string): Promise<void>;
  };
  report(report: TaskReport): Promise<void>;
  /** Whether a failed report is worth sending again (false: the server refused it). */
  reportRetryable(error: unknown): boolean;
  /** Tells the log shipper about a container's output files. */
  watchLogs(state: TaskState, container: ContainerState): void;
  log(message: string, fields?: Record<string, unknown>): void;
  now(): number;
  /** Waits `ms` on the clock `now` reads, rejecting when the signal aborts; real timers unless told. */
  sleep?(ms: number, signal: AbortSignal): Promise<void>;
  /** Mounts and unmounts containers' root filesystems; overlay mounts unless told. */
  rootfs?: RootfsMounter;
}

export interface RootfsMounter {
  /** Mounts the image's root (`lower`) read-only with the container's writes in `dir`; resolves to the root's path. */
  mount(lower: string, dir: string): Promise<string>;
  unmount(target: string): Promise<void>;
}

const DEFAULT_STOP_TIMEOUT_S = 30;
/** ECS's reason for a container the kernel killed at its memory limit. */
const OOM_REASON = "OutOfMemoryError: Container killed due to memory usage";

/**
 * A resource a task needs before its images can be pulled (a secret, registry credentials)
 * cannot be had: ECS stops the task with `ResourceInitializationError: <message>`.
 */
export class ResourceInitializationError extends Error {
  override readonly name = "ResourceInitializationError";
}

/** Mounts an overlay: the image's root read-only below, the container's writes above. */
async function mountOverlay(lower: string, dir: string): Promise<string> {
  const upper = join(dir, "upper");
  const work = join(dir, "work");
  const target = join(dir, "rootfs");
  for (const d of [upper, work, target]) mkdirSync(d, { recursive: true });
  const mounts = readFileSync("/proc/self/mounts", "utf8");
  if (!mounts.includes(` ${target} `)) {
    await run(
      "mount",
      ["-t", "overlay", "overlay", "-o", `lowerdir=${lower},upperdir=${upper},workdir=${work}`, target],
      {
        timeout: 10_000,
      },
    );
  }
  return target;
}

async function unmount(target: string): Promise<void> {
  await run("umount", ["-l", target], { timeout: 10_000 }).catch(() => undefined);
}

const overlays: RootfsMounter = { mount: mountOverlay, unmount };

function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/** The parts of an image's config a container spec uses (registries may send nulls). */
function specImage(image: PulledImage): ContainerSpecInput["image"] {
  const config = image.config.config ?? {};
  const out: ContainerSpecInput["image"] = { Entrypoint: config.Entrypoint ?? null, Cmd: config.Cmd ?? null };
  if (config.Env != null) out.Env = config.Env;
  if (config.WorkingDir != null) out.WorkingDir = config.WorkingDir;
  if (config.User != null) out.User = config.User;
  if (config.StopSignal != null) out.StopSignal = config.StopSignal;
  return out;
}

/**
 * One owner per task: it drives the task from its assignment to RUNNING and
 * back to STOPPED, serially, reporting every transition in ECS's order.
 */
export class TaskEngine {
  readonly state: TaskState;
  private readonly deps: EngineDeps;
  private readonly abort = new AbortController();
  private wake: (() => void) | undefined;
  /** Poked while awake: the next sleep returns at once. */
  private poked = false;
  private stopping = false;
  private readonly clockSleep: (ms: number, signal: AbortSignal) => Promise<void>;
  private readonly mounter: RootfsMounter;
  private readonly images = new Map<string, PulledImage>();
  /** Root filesystems mounted ahead of their container's start, by container name. */
  private readonly rootfs = new Map<string, Promise<string>>();
  private readonly reports: ReportQueue<TaskReport>;
  /** Set by detach(): the engine lets go of the task, reporting nothing more and starting no stop. */
  private detached = false;
  /**
   * Whether every report, the last included, reached the server (or was refused by it); known
   * once `done` settles. False when the engine was detached with one undelivered.
   */
  delivered = false;
  /** Settles once the task is over here (stopped and cleaned up, or detached), reported or not. */
  readonly stoppedHere: Promise<void>;
  /** Settles once the task is over here and its reports have reached the server (or were refused). */
  readonly done: Promise<void>;

  constructor(deps: EngineDeps, assignment: TaskAssignment, recovered?: TaskState) {
    this.deps = deps;
    this.clockSleep = deps.sleep ?? ((ms, signal) => delay(ms, undefined, { signal }));
    this.mounter = deps.rootfs ?? overlays;
    this.state = recovered ?? {
      assignment,
      taskId: taskIdOf(assignment.taskArn),
      status: assignment.networkMode === "awsvpc" ? "PROVISIONING" : "PENDING",
      containers: [],
    };
    this.state.assignment = assignment;
    this.reports = new ReportQueue({
      send: deps.report,
      retryable: deps.reportRetryable,
      failed: (error, _report, retrying) => {
        deps.log(retrying ? "report failed; retrying" : "the server refused the report; dropped", {
          task: assignment.taskArn,
          error: String(error),
        });
      },
    });
    this.stoppedHere = this.drive().catch((error: unknown) => {
      deps.log("task engine failed", { task: assignment.taskArn, error: String(error) });
    });
    this.done = this.stoppedHere
      .then(() => this.reports.flush())
      .then((delivered) => {
        this.delivered = delivered;
      });
  }

  /**
   * Lets go of the task without stopping it (the agent stops; the next one adopts the task):
   * stops watching its containers and sending its reports. `done` settles once what was under
   * way ends (a container being started is still recorded, for the next agent to adopt).
   */
  detach(): void {
    this.detached = true;
    this.reports.close();
    this.abort.abort();
    this.poke();
  }

  /** A newer assignment from the server (e.g. desired STOPPED). */
  update(assignment: TaskAssignment): void {
    this.state.assignment = assignment;
    this.poke();
  }

  private poke(): void {
    const wake = this.wake;
    this.wake = undefined;
    if (wake === undefined) this.poked = true;
    wake?.();
  }

  /** Sleeps on the engine's clock until `ms` pass, the engine is poked, or the task ends. */
  private async sleep(ms: number): Promise<void> {
    if (this.poked) {
      this.poked = false;
      return;
    }
    const woken = new AbortController();
    this.wake = () => woken.abort();
    try {
      await this.clockSleep(ms, AbortSignal.any([woken.signal, this.abort.signal]));
    } catch {
      // woken early
    } finally {
      this.wake = undefined;
      this.poked = false;
    }
  }

  private container(name: string): ContainerState | undefined {
    return this.state.containers.find((c) => c.name === name);
  }

  private definition(name: string): AssignedContainer | undefined {
    return this.state.assignment.containers.find((c) => c.name === name);
  }

  /** Saves the state and queues its report; the engine goes on while the report travels. */
  private send(status: TaskStatus): void {
    // Detached: what happens now may be the detaching's own doing; the next agent finds out for itself.
    if (this.detached) return;
    this.state.status = status;
    this.deps.states.save(this.state);
    const report: TaskReport = {
      taskArn: this.state.assignment.taskArn,
      lastStatus: status,
      at: this.deps.now(),
      containers: this.state.assignment.containers.map((definition) => {
        const c = this.container(definition.name);
        const bindings = (this.state.network?.bindings ?? []).filter((b) =>
          definition.portMappings.some(
            (p) => p.containerPort === b.containerPort && p.protocol === b.protocol,
          ),
        );
        return {
          name: definition.name,
          lastStatus: c?.status ?? (status === "STOPPED" ? "STOPPED" : "PENDING"),
          ...(c?.exitCode === undefined ? {} : { exitCode: c.exitCode }),
          ...(c?.reason === undefined ? {} : { reason: c.reason }),
          ...(c?.healthStatus === undefined ? {} : { healthStatus: c.healthStatus }),
          // A container that never ran has no runtime id (ECS reports none for it either).
          ...(c?.startedAt === undefined ? {} : { runtimeId: c.id }),
          networkBindings: bindings,
        };
      }),
    };
    if (this.state.network?.ipv4Address !== undefined && this.state.assignment.networkMode === "awsvpc") {
      report.privateIpv4Address = this.state.network.ipv4Address;
      if (this.state.network.macAddress !== undefined) report.macAddress = this.state.network.macAddress;
    }
    if (this.state.stopCode !== undefined) report.stopCode = this.state.stopCode;
    if (this.state.stoppedReason !== undefined) report.stoppedReason = this.state.stoppedReason;
    if (this.state.pullStartedAt !== undefined) report.pullStartedAt = this.state.pullStartedAt;
    if (this.state.pullStoppedAt !== undefined) report.pullStoppedAt = this.state.pullStoppedAt;
    if (this.state.executionStoppedAt !== undefined)
      report.executionStoppedAt = this.state.executionStoppedAt;
    this.reports.push(report);
  }

  private wantsStop(): boolean {
    return this.state.assignment.desiredStatus === "STOPPED" || this.stopping;
  }

  /** Whether the engine should go on driving the task toward RUNNING. */
  private keepsRunning(): boolean {
    return !this.wantsStop() && !this.detached;
  }

  private beginStop(code: NonNullable<TaskState["stopCode"]>, reason: string): void {
    // Once detached, a failure may be the detaching's own doing (a pull it aborted): the next agent judges.
    if (this.stopping || this.detached) return;
    this.stopping = true;
    this.state.stopCode ??= code;
    this.state.stoppedReason ??= reason;
  }

  private async drive(): Promise<void> {
    if (this.state.status === "STOPPED") {
      // An earlier agent stopped the task, and the server may never have heard: say so again.
      this.send("STOPPED");
      return;
    }
    // An earlier agent was stopping the task: it goes on stopping, whatever its assignment says.
    if (statusRank(this.state.status) >= statusRank("DEACTIVATING")) this.stopping = true;
    const startedBefore = this.state.containers.length > 0;
    if (!startedBefore && !this.wantsStop()) {
      // The server gave the task this status itself: nothing to report before something changes.
      this.deps.states.save(this.state);
      await this.prepare();
    }
    if (startedBefore) this.adopt();
    while (this.keepsRunning()) {
      await this.startReady();
      this.checkExits();
      if (!this.keepsRunning()) break;
      const all = this.state.assignment.containers.every((d) => this.container(d.name) !== undefined);
      if (all && this.state.status !== "RUNNING") this.send("RUNNING");
      await this.sleep(1000);
      await this.refresh();
    }
    if (this.detached) return;
    if (this.state.assignment.desiredStatus === "STOPPED") {
      this.beginStop("UserInitiated", this.state.assignment.stopReason ?? "Task stopped by user");
    }
    await this.stopAll();
  }

  /**
   * Network and images, side by side: the images are pulled (and the root filesystems
   * of containers that wait for no other mounted) while the network is set up. A
   * failure stops the task as ECS reports it, a network failure first.
   */
  private async prepare(): Promise<void> {
    const pullsAbort = new AbortController();
    this.state.pullStartedAt = this.deps.now();
    const pulls = this.pullAll(AbortSignal.any([this.abort.signal, pullsAbort.signal]));
    try {
      this.state.network = await this.setupNetwork();
      const { cpu, memory } = this.state.assignment;
      const skipped = await this.deps.runtime.limitTask(taskCgroup(this.state.taskId), {
        ...(cpu === undefined ? {} : { cpuUnits: cpu }),
        ...(memory === undefined ? {} : { memoryMiB: memory }),
      });
      if (skipped.length > 0)
        this.deps.log("task-level limits left out: this host's cgroups lack their controllers", {
          task: this.state.taskId,
          skipped,
        });
    } catch (error) {
      pullsAbort.abort();
      await pulls;
      this.beginStop("TaskFailedToStart", `ResourceInitializationError: ${(error as Error).message}`);
      return;
    }
    if (this.state.status === "PROVISIONING") this.send("PENDING");
    const failure = await pulls;
    if (failure !== undefined) {
      this.state.containers.push(this.placeholder(failure.container, failure.reason));
      this.beginStop("TaskFailedToStart", failure.reason);
      return;
    }
    if (this.wantsStop()) return;
    this.send("PENDING");
  }

  private async setupNetwork(): Promise<NonNullable<TaskState["network"]>> {
    const { assignment } = this.state;
    const ports: PortMapping[] = assignment.containers.flatMap((c) =>
      c.portMappings.map((p) => ({
        containerPort: p.containerPort,
        protocol: p.protocol,
        ...(p.hostPort === undefined ? {} : { hostPort: p.hostPort }),
      })),
    );
    const hostname =
      assignment.containers.find((c) => c.hostname !== undefined)?.hostname ??
      defaultHostname(this.state.taskId);
    const network = await this.deps.network.setup(this.state.taskId, assignment.networkMode, ports, hostname);
    return {
      bindings: network.bindings,
      hostsFile: network.hostsFile,
      resolvConf: network.resolvConf,
      hostnameFile: network.hostnameFile,
      ...(network.netnsPath === undefined ? {} : { netnsPath: network.netnsPath }),
      ...(network.ipv4Address === undefined ? {} : { ipv4Address: network.ipv4Address }),
      ...(network.macAddress === undefined ? {} : { macAddress: network.macAddress }),
    };
  }

  /** Pulls every container's image in order; the first failure ends it, with its reason. */
  private async pullAll(
    signal: AbortSignal,
  ): Promise<{ container: AssignedContainer; reason: string } | undefined> {
    for (const container of this.state.assignment.containers) {
      if (this.wantsStop() || signal.aborted) return undefined;
      try {
        const image = await this.deps.pull(container, this.state.assignment, signal);
        this.images.set(container.name, image);
        if (container.dependsOn.length === 0) this.mountAhead(container, image);
      } catch (error) {
        const kind =
          error instanceof ResourceInitializationError
            ? "ResourceInitializationError"
            : "CannotPullContainerError";
        return { container, reason: `${kind}: ${(error as Error).message}` };
      }
    }
    this.state.pullStoppedAt = this.deps.now();
    return undefined;
  }

  /** Starts mounting a container's root filesystem now; its start awaits the mount. */
  private mountAhead(definition: AssignedContainer, image: PulledImage): void {
    const bundle = join(this.deps.states.taskDir(this.state.taskId), definition.name);
    const mounted = (async () => {
      mkdirSync(bundle, { recursive: true });
      return await this.mounter.mount(image.rootfs, bundle);
    })();
    // A failure surfaces when the container starts.
    mounted.catch(() => undefined);
    this.rootfs.set(definition.name, mounted);
  }

  private placeholder(definition: AssignedContainer, reason: string): ContainerState {
    const dir = join(this.deps.states.taskDir(this.state.taskId), definition.name);
    return {
      name: definition.name,
      id: `${this.state.taskId}-${definition.name}`.slice(0, 120),
      bundle: dir,
      rootfs: join(dir, "rootfs"),
      status: "STOPPED",
      reason,
      stdout: join(dir, "stdout.log"),
      stderr: join(dir, "stderr.log"),
      logOffsets: { stdout: 0, stderr: 0 },
    };
  }

  /** Marks a container stopped; the first essential one to stop is when the task's execution stopped. */
  private markStopped(container: ContainerState): void {
    container.status = "STOPPED";
    if (this.definition(container.name)?.essential === true) {
      this.state.executionStoppedAt ??= this.deps.now();
    }
  }

  /** Starts every container whose dependencies are met; gives up those whose dependencies never will be. */
  private async startReady(): Promise<void> {
    for (const definition of this.state.assignment.containers) {
      if (this.wantsStop() || this.container(definition.name) !== undefined) continue;
      const started = new Map(this.state.containers.map((c) => [c.name, c]));
      const ready = readiness(definition, this.state.assignment.containers, started, this.deps.now());
      if (ready.kind === "never") {
        // As the ECS agent does: the container stops without starting, with the exit code of a SIGTERM.
        const container = this.placeholder(definition, ready.reason);
        container.exitCode = DEPENDENCY_EXIT_CODE;
        this.markStopped(container);
        this.state.containers.push(container);
        this.send(this.state.status);
        continue;
      }
      if (ready.kind === "ready") await this.startContainer(definition);
    }
  }

  private async imageFor(definition: AssignedContainer): Promise<PulledImage | undefined> {
    const known = this.images.get(definition.name);
    if (known !== undefined) return known;
    // After an agent restart: the layers are cached, so this is quick.
    const pulled = await this.deps
      .pull(definition, this.state.assignment, this.abort.signal)
      .catch(() => undefined);
    if (pulled !== undefined) this.images.set(definition.name, pulled);
    return pulled;
  }

  /**
   * /etc/hosts, /etc/resolv.conf and /etc/hostname: the task's, or the container's own copies
   * when it sets `extraHosts` or `dnsServers` (as Docker writes a container's).
   */
  private networkMounts(definition: AssignedContainer, bundle: string): BindMount[] {
    const network = this.state.network;
    if (network === undefined) return [];
    let hosts = network.hostsFile;
    let resolvConf = network.resolvConf;
    if ((definition.extraHosts ?? []).length > 0) {
      hosts = join(bundle, "hosts");
      writeFileSync(
        hosts,
        withExtraHosts(readFileSync(network.hostsFile, "utf8"), definition.extraHosts ?? []),
      );
    }
    if ((definition.dnsServers ?? []).length > 0) {
      resolvConf = join(bundle, "resolv.conf");
      writeFileSync(
        resolvConf,
        withNameservers(readFileSync(network.resolvConf, "utf8"), definition.dnsServers ?? []),
      );
    }
    return [
      { source: hosts, destination: "/etc/hosts" },
      { source: resolvConf, destination: "/etc/resolv.conf" },
      { source: network.hostnameFile, destination: "/etc/hostname" },
    ];
  }

  private volumeSource(name: string): string {
    const volume = this.state.assignment.volumes.find((v) => v.name === name);
    const source =
      volume?.host?.sourcePath ?? join(this.deps.states.taskDir(this.state.taskId), "volumes", name);
    mkdirSync(source, { recursive: true });
    return source;
  }

  /**
   * The container's mount points, then those of the containers it takes `volumesFrom` (and theirs),
   * read-only where the source mounts them so or `readOnly` says; a path mounted already keeps its first.
   */
  private volumeMounts(definition: AssignedContainer, seen = new Set([definition.name])): BindMount[] {
    const mounts: BindMount[] = definition.mountPoints.map((point) => ({
      source: this.volumeSource(point.sourceVolume),
      destination: point.containerPath,
      readonly: point.readOnly === true,
    }));
    for (const from of definition.volumesFrom ?? []) {
      const source = from.sourceContainer === undefined ? undefined : this.definition(from.sourceContainer);
      if (source === undefined || seen.has(source.name)) continue;
      seen.add(source.name);
      for (const mount of this.volumeMounts(source, seen)) {
        if (mounts.some((m) => m.destination === mount.destination)) continue;
        mounts.push({ ...mount, readonly: from.readOnly === true || mount.readonly === true });
      }
    }
    return mounts;
  }

  private async startContainer(definition: AssignedContainer): Promise<void> {
    const image = await this.imageFor(definition);
    const container = this.placeholder(definition, "");
    delete container.reason;
    container.status = "PENDING";
    if (image === undefined) {
      container.status = "STOPPED";
      container.reason = "CannotPullContainerError: image not available";
      this.state.containers.push(container);
      this.beginStop("TaskFailedToStart", container.reason);
      return;
    }
    try {
      const ahead = this.rootfs.get(definition.name);
      mkdirSync(container.bundle, { recursive: true });
      container.rootfs = await (ahead ?? this.mounter.mount(image.rootfs, container.bundle));
      const network = this.state.network;
      const mounts = [...this.networkMounts(definition, container.bundle), ...this.volumeMounts(definition)];
      const input: ContainerSpecInput = {
        id: container.id,
        rootfs: container.rootfs,
        readonlyRootfs: definition.readonlyRootFilesystem === true,
        image: specImage(image),
        container: definition,
        hostname: definition.hostname ?? defaultHostname(this.state.taskId),
        mounts,
        cgroupsPath: `${taskCgroup(this.state.taskId)}/${definition.name}`,
      };
      // User names resolve in the image's own /etc/passwd and /etc/group.
      const passwd = readIfExists(join(image.rootfs, "etc/passwd"));
      const group = readIfExists(join(image.rootfs, "etc/group"));
      if (passwd !== undefined) input.passwd = passwd;
      if (group !== undefined) input.group = group;
      if (network?.netnsPath !== undefined) input.netnsPath = network.netnsPath;
      if (this.state.assignment.memory !== undefined) input.taskMemoryLimitMiB = this.state.assignment.memory;
      const spec = buildSpec(input);
      await this.deps.runtime.start(spec, container.bundle, {
        stdout: container.stdout,
        stderr: container.stderr,
      });
      container.status = "RUNNING";
      container.startedAt = this.deps.now();
      if (definition.healthCheck !== undefined) container.healthStatus = "UNKNOWN";
    } catch (error) {
      container.status = "STOPPED";
      container.reason = `CannotStartContainerError: ${(error as Error).message}`;
      this.state.containers.push(container);
      this.beginStop("TaskFailedToStart", container.reason);
      return;
    }
    this.state.containers.push(container);
    this.deps.states.save(this.state);
    this.deps.watchLogs(this.state, container);
    if (definition.healthCheck !== undefined) void this.healthLoop(container, definition);
    void this.watchExit(container);
  }

  /** After an agent restart: watch the containers an earlier agent started, as if we had. */
  private adopt(): void {
    for (const container of this.state.containers) {
      if (container.status !== "RUNNING") continue;
      this.deps.watchLogs(this.state, container);
      const definition = this.definition(container.name);
      if (definition?.healthCheck !== undefined) void this.healthLoop(container, definition);
      void this.watchExit(container);
    }
  }

  private async watchExit(container: ContainerState): Promise<void> {
    try {
      const exit = await this.deps.runtime.wait(container.id, container.bundle, this.abort.signal);
      if (container.status === "STOPPED") return;
      this.markStopped(container);
      container.exitCode = exit.exitCode;
      if (exit.oomKilled) container.reason = OOM_REASON;
      // The server hears of it even when the task goes on (a container that is not essential).
      this.send(this.state.status);
      this.poke();
    } catch (error) {
      if (!this.abort.signal.aborted)
        this.deps.log("wait failed", { container: container.id, error: String(error) });
    }
  }

  /**
   * Runs the container's health check inside it every `interval` (CMD, or CMD-SHELL under
   * /bin/sh -c), each run given `timeout`; reports each change of its health status.
   */
  private async healthLoop(container: ContainerState, definition: AssignedContainer): Promise<void> {
    const check = definition.healthCheck;
    if (check === undefined) return;
    const args = healthCommand(check);
    const startedAt = container.startedAt ?? this.deps.now();
    let health: HealthState = { status: container.healthStatus ?? "UNKNOWN", failingStreak: 0 };
    while (container.status === "RUNNING" && !this.abort.signal.aborted) {
      try {
        await this.clockSleep(check.interval * 1000, this.abort.signal);
      } catch {
        return;
      }
      if (container.status !== "RUNNING") return;
      const probeStartedAt = this.deps.now();
      let passed = false;
      try {
        const result = await this.deps.runtime.exec(container.id, args, {
          timeoutMs: check.timeout * 1000,
          signal: this.abort.signal,
        });
        passed = result.exitCode === 0;
      } catch {
        // a check that overran its timeout, or could not run, failed
      }
      if (container.status !== "RUNNING" || this.abort.signal.aborted) return;
      health = afterProbe(health, passed, check, probeStartedAt, startedAt);
      if (health.status !== container.healthStatus) {
        container.healthStatus = health.status;
        this.send(this.state.status);
        this.poke();
      }
    }
  }

  /** An essential container that exited stops the task; others just stop. */
  private checkExits(): void {
    for (const container of this.state.containers) {
      if (container.status !== "STOPPED") continue;
      if (this.definition(container.name)?.essential === true) {
        this.beginStop("EssentialContainerExited", "Essential container in task exited");
        return;
      }
    }
  }

  /** Re-reads container states from the runtime (after a restart, or to catch a missed exit). */
  private async refresh(): Promise<void> {
    let changed = false;
    for (const container of this.state.containers) {
      if (container.status !== "RUNNING") continue;
      const state = await this.deps.runtime.state(container.id, container.bundle).catch(() => undefined);
      if (state?.status === "stopped" || state?.status === "unknown") {
        this.markStopped(container);
        if (state.exit !== undefined) {
          container.exitCode = state.exit.exitCode;
          if (state.exit.oomKilled) container.reason = OOM_REASON;
        }
        changed = true;
      }
    }
    if (changed) this.send(this.state.status === "STOPPED" ? "STOPPED" : this.state.status);
  }

  /** Stops one running container: its stop signal, then SIGKILL after its `stopTimeout` (30 s unless told). */
  private async stopContainer(container: ContainerState): Promise<void> {
    if (container.status !== "RUNNING" || this.detached) return;
    const definition = this.definition(container.name);
    try {
      const exit = await this.deps.runtime.stop(
        container.id,
        container.bundle,
        (definition?.stopTimeout ?? DEFAULT_STOP_TIMEOUT_S) * 1000,
      );
      container.exitCode = exit.exitCode;
      if (exit.oomKilled) container.reason = OOM_REASON;
    } catch (error) {
      this.deps.log("stop failed", { container: container.id, error: String(error) });
    }
    this.markStopped(container);
  }

  /**
   * Stops the containers as ECS does, the reverse of their start order: each once every
   * container that depends on it has stopped, the others side by side.
   */
  private async stopContainers(): Promise<void> {
    const stops = new Map<string, Promise<void>>();
    const stop = (container: ContainerState): Promise<void> => {
      let stopped = stops.get(container.name);
      if (stopped === undefined) {
        // Deferred a tick, so the map knows this container before its dependents are asked.
        stopped = Promise.resolve().then(async () => {
          const dependents = this.state.containers.filter((c) =>
            this.definition(c.name)?.dependsOn.some((d) => d.containerName === container.name),
          );
          await Promise.all(dependents.map(stop));
          await this.stopContainer(container);
        });
        stops.set(container.name, stopped);
      }
      return stopped;
    };
    await Promise.all(this.state.containers.map(stop));
  }

  /** Stops the containers, tears the network down, reports STOPPED. */
  private async stopAll(): Promise<void> {
    const networked = this.state.assignment.networkMode === "awsvpc";
    if (networked) this.send("DEACTIVATING");
    this.send("STOPPING");
    await this.stopContainers();
    // Detached: the next agent, reading STOPPING, goes on from here.
    if (this.detached) return;
    // Essential containers that never ran stop now, before the network goes.
    this.state.executionStoppedAt ??= this.deps.now();
    this.abort.abort();
    for (const container of this.state.containers) {
      await this.deps.runtime.remove(container.id, container.bundle).catch(() => undefined);
      await this.mounter.unmount(container.rootfs);
    }
    // Root filesystems mounted ahead for containers that never started.
    for (const [name, mounted] of this.rootfs) {
      if (this.container(name) !== undefined) continue;
      const target = await mounted.catch(() => undefined);
      if (target !== undefined) await this.mounter.unmount(target);
    }
    await this.deps.runtime.removeTask(taskCgroup(this.state.taskId)).catch((error: unknown) => {
      this.deps.log("task cgroup removal failed", { task: this.state.taskId, error: String(error) });
    });
    if (networked) this.send("DEPROVISIONING");
    await this.deps.network.teardown(this.state.taskId).catch((error: unknown) => {
      this.deps.log("network teardown failed", { task: this.state.taskId, error: String(error) });
    });
    this.send("STOPPED");
  }
}
