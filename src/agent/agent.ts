import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { arch, cpus, totalmem } from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import {
  AGENT_PROTOCOL_VERSION,
  type AssignedContainer,
  INSTANCE_DEREGISTERED,
  type PollResponse,
  type TaskAssignment,
} from "../shared/agent-protocol.ts";
import { ServerClient, ServerError, unreachable, worthRetrying } from "./client.ts";
import type { AgentConfig } from "./config.ts";
import { jittered } from "./engine/report-queue.ts";
import { type TaskState, TaskStateStore } from "./engine/state.ts";
import { ResourceInitializationError, TaskEngine } from "./engine/task-engine.ts";
import { parseEngineAuth, type RegistryAuths, registryCredentials } from "./engine-auth.ts";
import { ImageCleanup } from "./image/cleanup.ts";
import { isLoopbackRegistry, parseReference } from "./image/index.ts";
import { ImageStore } from "./image/store.ts";
import { LogShipper } from "./logs/shipper.ts";
import { NodeNetwork } from "./network/node-network.ts";
import { RuncRuntime } from "./runtime/runc.ts";
import { detectCgroupLayout } from "./stats/cgroups.ts";
import { StatsSampler } from "./stats/sampler.ts";

export interface AgentLogger {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

interface Registration {
  containerInstanceArn: string;
  cluster: string;
}

const AGENT_VERSION = "1.0.0-wharf";
/** How many finished tasks the agent remembers, so that a stale poll cannot start one again. */
const FINISHED_REMEMBERED = 10_000;
/** How long stop() waits for the task engines to let go of their tasks. */
const DETACH_TIMEOUT_MS = 60_000;

/** ECS's name for the machine's architecture. */
function cpuArchitecture(): string {
  return arch() === "x64" ? "x86_64" : arch();
}

/**
 * The node agent: registers the node, long-polls the server for the tasks it
 * should run, hands each to its own TaskEngine, ships logs and stats. Tasks
 * keep running across agent restarts; a restarted agent adopts them.
 */
export class Agent {
  readonly config: AgentConfig;
  private readonly log: AgentLogger;
  private readonly client: ServerClient;
  private readonly states: TaskStateStore;
  private readonly images: ImageStore;
  /** Private registries' credentials from ECS_ENGINE_AUTH_TYPE and ECS_ENGINE_AUTH_DATA. */
  private readonly registryAuths: RegistryAuths;
  private readonly imageCleanup: ImageCleanup;
  private imageCleanupTimer: NodeJS.Timeout | undefined;
  private readonly runtime: RuncRuntime;
  private readonly network: NodeNetwork;
  private readonly shipper: LogShipper;
  private readonly sampler: StatsSampler;
  private readonly engines = new Map<string, TaskEngine>();
  /**
   * Tasks this agent ran, stopped and reported STOPPED, oldest first: never started again, even
   * when a poll answered before the server took the report in still lists one.
   */
  private readonly finished = new Set<string>();
  private readonly stopped = new AbortController();
  private loop: Promise<void> | undefined;
  private onDeregistered: () => void = () => undefined;
  containerInstanceArn: string | undefined;
  /**
   * Settles when the server says this container instance was deregistered.
   * The agent then stops polling (as the ECS agent stops) rather than joining
   * again as a new instance. Wharf stops a deregistered instance's tasks
   * (ECS would leave them orphaned), so the agent stops them first.
   */
  readonly deregistered = new Promise<void>((resolve) => {
    this.onDeregistered = resolve;
  });

  constructor(config: AgentConfig, log: AgentLogger) {
    this.config = config;
    this.log = log;
    // Settings it cannot use stop the agent here, with the reason, rather than fail every pull.
    this.registryAuths = parseEngineAuth(config.engineAuth);
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    this.client = new ServerClient(config.server, config.credentials, config.region, config.ca);
    this.states = new TaskStateStore(config.dataDir);
    this.images = new ImageStore(join(config.dataDir, "images"));
    this.imageCleanup = new ImageCleanup({
      prune: (inUse) => this.images.prune(inUse),
      mountinfo: () => readFileSync("/proc/self/mountinfo", "utf8"),
      now: () => Date.now(),
      minimumAgeMs: config.imageMinimumCleanupAgeMs,
    });
    this.runtime = new RuncRuntime({ root: join(config.dataDir, "runc") });
    this.network = new NodeNetwork({
      bridge: config.bridge,
      subnet: config.subnet,
      stateDir: join(config.dataDir, "network"),
      hostAddresses: [config.address],
    });
    this.shipper = new LogShipper(
      async (batch) => {
        await this.client.logs(batch);
      },
      (task) => this.states.save(task),
      () => Date.now(),
    );
    this.sampler = new StatsSampler(
      () => [...this.engines.values()].map((engine) => engine.state),
      async (batch) => {
        await this.client.stats(batch);
      },
    );
  }

  private registrationPath(): string {
    return join(this.config.dataDir, "registration.json");
  }

  private async register(): Promise<void> {
    let previous: Registration | undefined;
    try {
      previous = JSON.parse(readFileSync(this.registrationPath(), "utf8")) as Registration;
    } catch {
      previous = undefined;
    }
    const response = await this.client.register({
      cluster: this.config.cluster,
      ...(previous?.cluster === this.config.cluster
        ? { containerInstanceArn: previous.containerInstanceArn }
        : {}),
      hostname: this.config.hostname,
      address: this.config.address,
      totalResources: {
        cpu: this.config.cpu ?? cpus().length * 1024,
        memory: this.config.memory ?? Math.floor(totalmem() / 1024 / 1024) - 256,
      },
      attributes: [
        { name: "ecs.os-type", value: "linux" },
        { name: "ecs.os-family", value: "LINUX" },
        { name: "ecs.cpu-architecture", value: cpuArchitecture() },
        { name: "ecs.availability-zone", value: this.config.availabilityZone },
        { name: "ecs.instance-type", value: "wharf.node" },
        { name: "ecs.capability.task-eni" },
        { name: "ecs.capability.container-health-check" },
        { name: "ecs.capability.container-ordering" },
        { name: "com.amazonaws.ecs.capability.logging-driver.awslogs" },
        { name: "com.amazonaws.ecs.capability.docker-remote-api.1.17" },
        { name: "com.amazonaws.ecs.capability.docker-remote-api.1.18" },
        { name: "com.amazonaws.ecs.capability.docker-remote-api.1.19" },
        { name: "com.amazonaws.ecs.capability.docker-remote-api.1.21" },
        { name: "com.amazonaws.ecs.capability.docker-remote-api.1.22" },
        { name: "com.amazonaws.ecs.capability.docker-remote-api.1.24" },
        { name: "com.amazonaws.ecs.capability.docker-remote-api.1.25" },
        { name: "com.amazonaws.ecs.capability.docker-remote-api.1.29" },
        ...this.config.attributes,
      ],
      versionInfo: { agentVersion: AGENT_VERSION, agentHash: `protocol-${AGENT_PROTOCOL_VERSION}` },
      capacity: this.config.capacity,
    });
    this.containerInstanceArn = response.containerInstanceArn;
    const registration: Registration = {
      containerInstanceArn: response.containerInstanceArn,
      cluster: this.config.cluster,
    };
    const temporary = `${this.registrationPath()}.tmp`;
    writeFileSync(temporary, JSON.stringify(registration), { mode: 0o600 });
    renameSync(temporary, this.registrationPath());
    this.log.info({ containerInstanceArn: response.containerInstanceArn }, "registered container instance");
  }

  /**
   * Registers at start. While the server cannot be reached (not yet up, restarting, answering
   * 5xx) it tries again, waiting longer each time up to 10 s, as the ECS agent keeps at it: a
   * node that starts before its server joins once the server is up, and its containers run on
   * meanwhile. A refusal (credentials the server does not take, a bad request) fails at once.
   */
  private async registerWhenReachable(): Promise<void> {
    for (let waitMs = 500; !this.stopped.signal.aborted; waitMs = Math.min(waitMs * 2, 10_000)) {
      try {
        await this.register();
        return;
      } catch (error) {
        if (!unreachable(error) || this.stopped.signal.aborted) throw error;
        const retryInMs = jittered(waitMs);
        this.log.warn({ error: String(error), retryInMs }, "the server cannot be reached; registering again");
        await delay(retryInMs, undefined, { signal: this.stopped.signal }).catch(() => undefined);
      }
    }
  }

  /** Registers, adopts what an earlier agent left running, and starts polling. */
  async start(): Promise<void> {
    // Fail at once, with the reason, rather than at the first task.
    await detectCgroupLayout();
    await this.network.init();
    await this.registerWhenReachable();
    // Stopped while it waited for the server: nothing was adopted, nothing is left to stop.
    if (this.stopped.signal.aborted) return;
    for (const state of this.states.loadAll()) {
      // A stopped task is kept until the server has its STOPPED report: its engine sends it again.
      this.log.info(
        { task: state.assignment.taskArn, status: state.status },
        state.status === "STOPPED" ? "reporting a stopped task again" : "adopting task",
      );
      this.engines.set(state.assignment.taskArn, this.engine(state.assignment, state));
    }
    this.shipper.start();
    this.sampler.start(this.config.statsIntervalMs);
    this.imageCleanupTimer = setInterval(() => void this.cleanImages(), this.config.imageCleanupIntervalMs);
    this.imageCleanupTimer.unref();
    this.loop = this.pollLoop();
  }

  private engine(assignment: TaskAssignment, recovered?: TaskState): TaskEngine {
    const engine = new TaskEngine(
      {
        states: this.states,
        runtime: this.runtime,
        pull: (container, task, signal) => this.pull(container, task, signal),
        network: this.network,
        report: async (report) => {
          await this.client.report(report);
        },
        reportRetryable: worthRetrying,
        watchLogs: (state, container) => this.shipper.watch(state, container),
        log: (message, fields) => this.log.warn(fields ?? {}, message),
        now: () => Date.now(),
      },
      assignment,
      recovered,
    );
    void engine.done.then(async () => {
      await this.shipper.flush();
      // Until the server has the STOPPED report, the task's state stays (on disk too, for the next
      // agent) and its engine stays listed, so that polls cannot start the task again.
      if (engine.state.status === "STOPPED" && engine.delivered) {
        this.engines.delete(assignment.taskArn);
        this.remember(assignment.taskArn);
        this.states.remove(engine.state.taskId);
      }
    });
    return engine;
  }

  private remember(taskArn: string): void {
    this.finished.add(taskArn);
    if (this.finished.size > FINISHED_REMEMBERED) {
      const oldest = this.finished.values().next().value;
      if (oldest !== undefined) this.finished.delete(oldest);
    }
  }

  /**
   * Pulls a container's image. Images on Wharf's own registry come from this agent's server with
   * the task's credentials; other registries get the agent's ECS_ENGINE_AUTH_DATA credentials for
   * them, or none. A container's `repositoryCredentials` names a Secrets Manager secret, which
   * Wharf does not have: the task stops as ECS stops it when it cannot read that secret, rather
   * than pull anonymously.
   */
  private pull(container: AssignedContainer, task: TaskAssignment, signal: AbortSignal) {
    const secret = container.repositoryCredentials?.credentialsParameter;
    if (secret !== undefined) {
      return Promise.reject(
        new ResourceInitializationError(
          "unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve " +
            `secret from asm: Wharf has no Secrets Manager to read ${secret} (repositoryCredentials of ` +
            `container ${container.name}); give the agent the registry's credentials in ECS_ENGINE_AUTH_DATA instead`,
        ),
      );
    }
    const wharf = task.wharfRegistry;
    const server = new URL(this.config.server);
    const image = container.image;
    let reference = image;
    if (image.startsWith(`${wharf.host}/`))
      reference = `${server.host}/${image.slice(wharf.host.length + 1)}`;
    return this.imageCleanup.pull(() =>
      this.images.pull(reference, {
        platform: { os: "linux", architecture: arch() === "x64" ? "amd64" : arch() },
        credentials: async (registry) => {
          if (registry === server.host) return { username: wharf.username, password: wharf.password };
          return registryCredentials(this.registryAuths, registry, parseReference(reference).repository);
        },
        // Wharf's server as configured; other registries on this machine over plain HTTP, as
        // Docker reaches loopback registries that serve no TLS.
        insecure: (registry) =>
          registry === server.host ? server.protocol === "http:" : isLoopbackRegistry(registry),
        // Wharf's registry takes the task's credentials as Basic on every request: no 401, no token round trip.
        basicFirst: (registry) => registry === server.host,
        ...(this.config.ca === undefined ? {} : { ca: this.config.ca }),
        signal,
        timeoutMs: 5 * 60_000,
      }),
    );
  }

  /**
   * Removes cached images that no container uses and no task pulled within
   * the minimum cleanup age (run on a timer; false when skipped for pulls in flight).
   */
  async cleanImages(): Promise<boolean> {
    try {
      return await this.imageCleanup.prune();
    } catch (error) {
      this.log.warn({ error: String(error) }, "image cleanup failed; retrying on the next pass");
      return false;
    }
  }

  private async pollLoop(): Promise<void> {
    let backoff = 500;
    while (!this.stopped.signal.aborted) {
      try {
        const known: Record<string, number> = {};
        for (const [arn, engine] of this.engines) known[arn] = engine.state.assignment.version;
        const usedPorts = await this.network.usedPorts().catch(() => ({ tcp: [], udp: [] }));
        // Unchanged: the server's tasks are exactly those known (the engines may have moved on
        // meanwhile, and the next poll says so). Changes while the poll is held come as they happen.
        const apply = (response: PollResponse) => {
          if (response.unchanged !== true) this.apply(response.tasks);
        };
        apply(
          await this.client.poll(
            { known, usedPorts, acceptUnchanged: true },
            60_000,
            this.stopped.signal,
            apply,
          ),
        );
        backoff = 500;
      } catch (error) {
        if (this.stopped.signal.aborted) return;
        if (error instanceof ServerError && error.code === INSTANCE_DEREGISTERED) {
          this.log.error(
            { containerInstanceArn: this.containerInstanceArn },
            "the container instance was deregistered; the agent stops (start it again to register a new instance)",
          );
          // Deregistering stopped this instance's tasks on the server: stop them here too (their
          // STOPPED reports cannot be delivered to a deregistered instance: not waited for).
          this.apply([]);
          await this.stoppedHere();
          this.onDeregistered();
          return;
        }
        if (error instanceof ServerError && error.status === 401) {
          await this.register().catch((e: unknown) =>
            this.log.error({ error: String(e) }, "re-registration failed"),
          );
        } else {
          this.log.warn({ error: String(error) }, "poll failed; retrying");
        }
        await new Promise((resolve) => setTimeout(resolve, jittered(backoff)));
        backoff = Math.min(backoff * 2, 10_000);
      }
    }
  }

  private apply(tasks: TaskAssignment[]): void {
    const listed = new Set(tasks.map((t) => t.taskArn));
    for (const assignment of tasks) {
      const engine = this.engines.get(assignment.taskArn);
      if (engine === undefined) {
        if (this.finished.has(assignment.taskArn)) continue;
        this.engines.set(assignment.taskArn, this.engine(assignment));
      } else if (engine.state.assignment.version !== assignment.version) {
        engine.update(assignment);
      }
    }
    // A task the server no longer lists is stopped there: stop it here too.
    for (const [arn, engine] of this.engines) {
      if (!listed.has(arn) && engine.state.assignment.desiredStatus !== "STOPPED") {
        engine.update({
          ...engine.state.assignment,
          desiredStatus: "STOPPED",
          version: engine.state.assignment.version + 1,
        });
      }
    }
  }

  /**
   * Stops polling, shipping and the task engines; running tasks keep running, and what was not
   * reported yet stays in their state on disk (the next start adopts them and reports again).
   */
  async stop(): Promise<void> {
    this.stopped.abort();
    clearInterval(this.imageCleanupTimer);
    await this.loop;
    for (const engine of this.engines.values()) engine.detach();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.idle(),
      new Promise((resolve) => {
        timer = setTimeout(resolve, DETACH_TIMEOUT_MS);
      }),
    ]);
    clearTimeout(timer);
    this.sampler.stop();
    await this.shipper.stop();
    this.client.close();
  }

  /** Removes this node's bridge, task namespaces and rules (when a node is retired, and in tests). */
  async destroyNetwork(): Promise<void> {
    await this.network.destroy();
  }

  /** Until every task's containers are stopped and cleaned up here, whether or not the server has heard. */
  private async stoppedHere(): Promise<void> {
    await Promise.all([...this.engines.values()].map((engine) => engine.stoppedHere));
  }

  /** Waits until every task engine has finished, its reports delivered (tests). */
  async idle(): Promise<void> {
    await Promise.all([...this.engines.values()].map((engine) => engine.done));
  }
}
