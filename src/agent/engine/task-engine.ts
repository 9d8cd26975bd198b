import { execFile } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  type AssignedContainer,
  statusRank,
  type TaskAssignment,
  type TaskReport,
  type TaskStatus,
} from "../../shared/agent-protocol.ts";
import type { PulledImage } from "../image/store.ts";
import { defaultHostname } from "../network/link.ts";
import type { PortMapping, TaskNetwork } from "../network/node-network.ts";
import type { Runtime } from "../runtime/runc.ts";
import { type BindMount, buildSpec, type ContainerSpecInput } from "../runtime/spec.ts";
import { ReportQueue } from "./report-queue.ts";
import { type ContainerState, type TaskState, type TaskStateStore, taskIdOf } from "./state.ts";

const run = promisify(execFile);

/** What a task engine needs from the node. */
export interface EngineDeps {
  states: TaskStateStore;
  runtime: Runtime;
  pull(image: string, assignment: TaskAssignment, signal: AbortSignal): Promise<PulledImage>;
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
}

const DEFAULT_STOP_TIMEOUT_S = 30;

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
  private stopping = false;
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
  readonly done: Promise<void>;

  constructor(deps: EngineDeps, assignment: TaskAssignment, recovered?: TaskState) {
    this.deps = deps;
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
    this.done = this.drive()
      .catch((error: unknown) => {
        deps.log("task engine failed", { task: assignment.taskArn, error: String(error) });
      })
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
    wake?.();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
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
          ...(c === undefined ? {} : { runtimeId: c.id }),
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
        const image = await this.deps.pull(container.image, this.state.assignment, signal);
        this.images.set(container.name, image);
        if (container.dependsOn.length === 0) this.mountAhead(container, image);
      } catch (error) {
        return { container, reason: `CannotPullContainerError: ${(error as Error).message}` };
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
      return await mountOverlay(image.rootfs, bundle);
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

  /** Whether a container's dependencies allow it to start now (ECS's dependsOn conditions). */
  private dependenciesMet(definition: AssignedContainer): boolean | "never" {
    for (const dependency of definition.dependsOn) {
      const target = this.container(dependency.containerName);
      if (target === undefined) return false;
      switch (dependency.condition) {
        case "START":
          break;
        case "COMPLETE":
          if (target.status !== "STOPPED") return false;
          break;
        case "SUCCESS":
          if (target.status !== "STOPPED") return false;
          if (target.exitCode !== 0) return "never";
          break;
        case "HEALTHY":
          if (target.healthStatus === "UNHEALTHY" || target.status === "STOPPED") return "never";
          if (target.healthStatus !== "HEALTHY") return false;
          break;
      }
    }
    return true;
  }

  private async startReady(): Promise<void> {
    for (const definition of this.state.assignment.containers) {
      if (this.wantsStop() || this.container(definition.name) !== undefined) continue;
      const ready = this.dependenciesMet(definition);
      if (ready === "never") {
        const reason = `Dependency condition not met for container ${definition.name}`;
        this.state.containers.push(this.placeholder(definition, reason));
        this.beginStop("TaskFailedToStart", reason);
        return;
      }
      if (ready) await this.startContainer(definition);
    }
  }

  private async imageFor(definition: AssignedContainer): Promise<PulledImage | undefined> {
    const known = this.images.get(definition.name);
    if (known !== undefined) return known;
    // After an agent restart: the layers are cached, so this is quick.
    const pulled = await this.deps
      .pull(definition.image, this.state.assignment, this.abort.signal)
      .catch(() => undefined);
    if (pulled !== undefined) this.images.set(definition.name, pulled);
    return pulled;
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
      container.rootfs = await (ahead ?? mountOverlay(image.rootfs, container.bundle));
      const network = this.state.network;
      const mounts: BindMount[] =
        network === undefined
          ? []
          : [
              { source: network.hostsFile, destination: "/etc/hosts" },
              { source: network.resolvConf, destination: "/etc/resolv.conf" },
              { source: network.hostnameFile, destination: "/etc/hostname" },
            ];
      for (const point of definition.mountPoints) {
        const volume = this.state.assignment.volumes.find((v) => v.name === point.sourceVolume);
        const source =
          volume?.host?.sourcePath ??
          join(this.deps.states.taskDir(this.state.taskId), "volumes", point.sourceVolume);
        mkdirSync(source, { recursive: true });
        mounts.push({ source, destination: point.containerPath, readonly: point.readOnly === true });
      }
      const input: ContainerSpecInput = {
        id: container.id,
        rootfs: container.rootfs,
        readonlyRootfs: definition.readonlyRootFilesystem === true,
        image: specImage(image),
        container: definition,
        hostname: definition.hostname ?? defaultHostname(this.state.taskId),
        mounts,
        cgroupsPath: `/wharf/${this.state.taskId}/${definition.name}`,
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
      container.status = "STOPPED";
      container.exitCode = exit.exitCode;
      if (exit.oomKilled) container.reason = "OutOfMemoryError: Container killed due to memory usage";
      // The server hears of it even when the task goes on (a container that is not essential).
      this.send(this.state.status);
      this.poke();
    } catch (error) {
      if (!this.abort.signal.aborted)
        this.deps.log("wait failed", { container: container.id, error: String(error) });
    }
  }

  /** Runs the container's health check inside it: CMD or CMD-SHELL, with ECS's interval, timeout, retries, start period. */
  private async healthLoop(container: ContainerState, definition: AssignedContainer): Promise<void> {
    const check = definition.healthCheck;
    if (check === undefined) return;
    const [kind, ...rest] = check.command;
    const args =
      kind === "CMD-SHELL" ? ["/bin/sh", "-c", rest.join(" ")] : kind === "CMD" ? rest : check.command;
    let failures = 0;
    const started = this.deps.now();
    while (container.status === "RUNNING" && !this.abort.signal.aborted) {
      await new Promise((resolve) => setTimeout(resolve, (check.interval ?? 30) * 1000));
      if (container.status !== "RUNNING") return;
      let healthy = false;
      try {
        healthy =
          (await this.deps.runtime.exec(container.id, args, { timeoutMs: (check.timeout ?? 5) * 1000 }))
            .exitCode === 0;
      } catch {
        healthy = false;
      }
      const inStartPeriod = this.deps.now() - started < (check.startPeriod ?? 0) * 1000;
      const before = container.healthStatus;
      if (healthy) {
        failures = 0;
        container.healthStatus = "HEALTHY";
      } else if (!inStartPeriod && ++failures >= (check.retries ?? 3)) {
        container.healthStatus = "UNHEALTHY";
      }
      if (container.healthStatus !== before) {
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
        container.status = "STOPPED";
        if (state.exit !== undefined) {
          container.exitCode = state.exit.exitCode;
          if (state.exit.oomKilled)
            container.reason = "OutOfMemoryError: Container killed due to memory usage";
        }
        changed = true;
      }
    }
    if (changed) this.send(this.state.status === "STOPPED" ? "STOPPED" : this.state.status);
  }

  /** Stops containers in reverse dependency order, tears the network down, reports STOPPED. */
  private async stopAll(): Promise<void> {
    const networked = this.state.assignment.networkMode === "awsvpc";
    if (networked) this.send("DEACTIVATING");
    this.send("STOPPING");
    const order = [...this.state.containers].reverse();
    for (const container of order) {
      // Detached: the next agent, reading STOPPING, goes on from here.
      if (this.detached) return;
      if (container.status === "RUNNING") {
        const definition = this.definition(container.name);
        try {
          const exit = await this.deps.runtime.stop(
            container.id,
            container.bundle,
            (definition?.stopTimeout ?? DEFAULT_STOP_TIMEOUT_S) * 1000,
          );
          container.exitCode = exit.exitCode;
        } catch (error) {
          this.deps.log("stop failed", { container: container.id, error: String(error) });
        }
        container.status = "STOPPED";
      }
    }
    if (this.detached) return;
    this.abort.abort();
    for (const container of this.state.containers) {
      await this.deps.runtime.remove(container.id, container.bundle).catch(() => undefined);
      await unmount(container.rootfs);
    }
    // Root filesystems mounted ahead for containers that never started.
    for (const [name, mounted] of this.rootfs) {
      if (this.container(name) !== undefined) continue;
      const target = await mounted.catch(() => undefined);
      if (target !== undefined) await unmount(target);
    }
    if (networked) this.send("DEPROVISIONING");
    await this.deps.network.teardown(this.state.taskId).catch((error: unknown) => {
      this.deps.log("network teardown failed", { task: this.state.taskId, error: String(error) });
    });
    this.send("STOPPED");
  }
}
