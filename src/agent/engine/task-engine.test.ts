import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import type {
  AssignedContainer,
  ContainerReport,
  TaskAssignment,
  TaskReport,
} from "../../shared/agent-protocol.ts";
import type { PulledImage } from "../image/store.ts";
import { RuntimeError } from "../runtime/errors.ts";
import { CONTAINER_ID_ANNOTATION, type OciSpec } from "../runtime/oci.ts";
import type { ContainerState, ExitStatus, Runtime } from "../runtime/runtime.ts";
import type { TaskLimits } from "../stats/cgroups.ts";
import { TaskStateStore } from "./state.ts";
import { TaskEngine } from "./task-engine.ts";

/**
 * The task engine driven against fakes of what it drives: a runtime, a network, image pulls,
 * and a clock that moves only when the test says, so every interval and timeout is exact.
 */

const T0 = 1_700_000_000_000;

/** Virtual time: sleeps resolve in order of their deadlines as the test advances it. */
class FakeClock {
  now = T0;
  private timers: Array<{ at: number; seq: number; resolve: () => void }> = [];
  private seq = 0;

  sleep = (ms: number, signal: AbortSignal): Promise<void> =>
    new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(signal.reason);
        return;
      }
      const aborted = () => {
        this.timers = this.timers.filter((t) => t !== timer);
        reject(signal.reason);
      };
      const timer = {
        at: this.now + ms,
        seq: this.seq++,
        resolve: () => {
          signal.removeEventListener("abort", aborted);
          resolve();
        },
      };
      this.timers.push(timer);
      signal.addEventListener("abort", aborted, { once: true });
    });

  /** Lets everything that can run without time passing run. */
  async settle(): Promise<void> {
    for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
  }

  private next() {
    return this.timers.reduce<(typeof this.timers)[number] | undefined>(
      (best, t) =>
        best === undefined || t.at < best.at || (t.at === best.at && t.seq < best.seq) ? t : best,
      undefined,
    );
  }

  private async fire(timer: { at: number; resolve: () => void }): Promise<void> {
    this.timers = this.timers.filter((t) => t !== timer);
    this.now = Math.max(this.now, timer.at);
    timer.resolve();
    await this.settle();
  }

  /** Moves time forward by `ms`, firing each timer due meanwhile at its own time. */
  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    await this.settle();
    for (let timer = this.next(); timer !== undefined && timer.at <= end; timer = this.next()) {
      await this.fire(timer);
    }
    this.now = end;
    await this.settle();
  }

  /** Moves time forward, timer by timer, until `predicate` holds (at most `limitMs` of virtual time). */
  async until(predicate: () => boolean, what: string, limitMs = 10 * 60_000): Promise<void> {
    const end = this.now + limitMs;
    await this.settle();
    while (!predicate()) {
      const timer = this.next();
      if (timer === undefined || timer.at > end) assert.fail(`${what}: not within ${limitMs} ms`);
      await this.fire(timer);
    }
  }
}

interface FakeContainer {
  id: string;
  name: string;
  spec: OciSpec;
  exit?: ExitStatus;
  exited: Promise<ExitStatus>;
  finish(code: number, signal?: string): void;
  /** The exit code SIGTERM gives it; undefined: it ignores SIGTERM (busybox sh as PID 1 does). */
  onTerm?: number;
}

/** Health check results, by container name: an exit code, or "hang" to overrun the check's timeout. */
type Probe = number | "hang";

class FakeRuntime implements Runtime {
  readonly containers = new Map<string, FakeContainer>();
  readonly events: string[] = [];
  readonly stops: Array<{ name: string; timeoutMs: number; at: number; exitCode?: number }> = [];
  readonly execs: Array<{ name: string; args: string[]; timeoutMs: number; at: number }> = [];
  /** What the next health checks return, per container; the last one repeats. */
  readonly probes = new Map<string, Probe[]>();
  /** SIGTERM behaviour by container name (see FakeContainer.onTerm); 143 unless told. */
  readonly onTerm = new Map<string, number | undefined>();

  constructor(private readonly clock: FakeClock) {}

  byName(name: string): FakeContainer {
    const found = [...this.containers.values()].find((c) => c.name === name);
    assert.ok(found !== undefined, `container ${name} was started`);
    return found;
  }

  started(name: string): boolean {
    return [...this.containers.values()].some((c) => c.name === name);
  }

  async start(spec: OciSpec, bundleDir: string) {
    const id = spec.annotations?.[CONTAINER_ID_ANNOTATION] ?? "";
    const name = bundleDir.slice(bundleDir.lastIndexOf("/") + 1);
    let finish: (exit: ExitStatus) => void = () => undefined;
    const exited = new Promise<ExitStatus>((resolve) => {
      finish = resolve;
    });
    const container: FakeContainer = {
      id,
      name,
      spec,
      exited,
      finish: (code, signal) => {
        if (container.exit !== undefined) return;
        container.exit = { exitCode: code, oomKilled: false, finishedAt: new Date(this.clock.now) };
        if (signal !== undefined) container.exit.signal = signal;
        this.events.push(`exit ${name} ${code}`);
        finish(container.exit);
      },
    };
    container.onTerm = this.onTerm.has(name) ? this.onTerm.get(name) : 143;
    this.containers.set(id, container);
    this.events.push(`start ${name}`);
    return { id, bundle: bundleDir };
  }

  private get(id: string): FakeContainer {
    const c = this.containers.get(id);
    if (c === undefined) throw new RuntimeError("not_found", `container ${id} does not exist`);
    return c;
  }

  wait(id: string, _bundleDir: string, signal?: AbortSignal): Promise<ExitStatus> {
    const c = this.get(id);
    return new Promise((resolve, reject) => {
      const aborted = () => reject(signal?.reason);
      void c.exited.then((exit) => {
        signal?.removeEventListener("abort", aborted);
        resolve(exit);
      });
      signal?.addEventListener("abort", aborted, { once: true });
    });
  }

  async state(id: string): Promise<ContainerState> {
    const c = this.containers.get(id);
    if (c === undefined) return { status: "unknown" };
    return c.exit === undefined ? { status: "running" } : { status: "stopped", exit: c.exit };
  }

  async kill(): Promise<void> {}

  /** The runtime's contract: SIGTERM, then SIGKILL once `timeoutMs` pass (runc.test.ts proves runc's). */
  async stop(id: string, _bundleDir: string, timeoutMs: number): Promise<ExitStatus> {
    const c = this.get(id);
    const record: (typeof this.stops)[number] = { name: c.name, timeoutMs, at: this.clock.now };
    this.stops.push(record);
    this.events.push(`stop ${c.name}`);
    if (c.exit === undefined) {
      if (c.onTerm !== undefined) c.finish(c.onTerm, "SIGTERM");
      else {
        await this.clock.sleep(timeoutMs, new AbortController().signal);
        c.finish(137, "SIGKILL");
      }
    }
    const exit = await c.exited;
    record.exitCode = exit.exitCode;
    return exit;
  }

  async exec(id: string, args: string[], opts: { timeoutMs: number }) {
    const c = this.get(id);
    this.execs.push({ name: c.name, args, timeoutMs: opts.timeoutMs, at: this.clock.now });
    const queue = this.probes.get(c.name) ?? [0];
    const probe = (queue.length > 1 ? queue.shift() : queue[0]) ?? 0;
    if (probe === "hang") {
      await this.clock.sleep(opts.timeoutMs, new AbortController().signal);
      throw new RuntimeError("timeout", "exec timed out");
    }
    return { exitCode: probe, output: "" };
  }

  async remove(id: string): Promise<void> {
    this.events.push(`remove ${this.containers.get(id)?.name ?? id}`);
  }

  async list(): Promise<string[]> {
    return [...this.containers.keys()];
  }

  /** Task cgroups made, with their limits and how many containers had started by then. */
  readonly groups = new Map<string, TaskLimits & { startedBefore: number }>();
  /** Task cgroups removed, with the events (starts, stops, removals) up to then. */
  readonly removedGroups: Array<{ path: string; after: string[] }> = [];

  async limitTask(cgroupsPath: string, limits: TaskLimits): Promise<string[]> {
    this.groups.set(cgroupsPath, { ...limits, startedBefore: this.containers.size });
    return [];
  }

  async removeTask(cgroupsPath: string): Promise<void> {
    this.removedGroups.push({ path: cgroupsPath, after: [...this.events] });
  }
}

const scratch = mkdtempSync(join(tmpdir(), "wharf-engine-test-"));
after(() => rmSync(scratch, { recursive: true, force: true }));
let tasks = 0;

function container(name: string, extra: Partial<AssignedContainer> = {}): AssignedContainer {
  return {
    name,
    image: "registry.test/busybox:latest",
    essential: true,
    command: ["sleep", "300"],
    environment: [],
    portMappings: [],
    dependsOn: [],
    mountPoints: [],
    ...extra,
  };
}

function harness(containers: AssignedContainer[], extra: Partial<TaskAssignment> = {}) {
  const taskId = `0123456789abcdef0123456789ab${String(++tasks).padStart(4, "0")}`;
  const dir = join(scratch, taskId);
  const clock = new FakeClock();
  const runtime = new FakeRuntime(clock);
  const reports: TaskReport[] = [];
  const teardowns: number[] = [];
  const mounted: string[] = [];
  const netDir = join(dir, "net");
  mkdirSync(netDir, { recursive: true });
  const imageRoot = join(dir, "image");
  mkdirSync(imageRoot, { recursive: true });
  const image: PulledImage = {
    reference: "registry.test/busybox:latest",
    manifestDigest: "sha256:1",
    configDigest: "sha256:2",
    config: { config: { Cmd: ["sh"] } } as PulledImage["config"],
    rootfs: imageRoot,
  };
  const assignment: TaskAssignment = {
    taskArn: `arn:aws:ecs:us-east-1:000000000000:task/default/${taskId}`,
    version: 1,
    desiredStatus: "RUNNING",
    clusterArn: "arn:aws:ecs:us-east-1:000000000000:cluster/default",
    family: "test",
    revision: 1,
    networkMode: "bridge",
    containers,
    volumes: [],
    wharfRegistry: { host: "registry.test", username: "AWS", password: "x" },
    region: "us-east-1",
    ...extra,
  };
  const engine = new TaskEngine(
    {
      states: new TaskStateStore(join(dir, "data")),
      runtime,
      pull: async () => image,
      network: {
        setup: async (_taskId, mode) => {
          const files = {
            hostsFile: join(netDir, "hosts"),
            resolvConf: join(netDir, "resolv.conf"),
            hostnameFile: join(netDir, "hostname"),
          };
          writeFileSync(files.hostsFile, "127.0.0.1\tlocalhost\n10.1.0.5\tweb\n");
          writeFileSync(files.resolvConf, "nameserver 10.0.0.2\nsearch example.internal\n");
          writeFileSync(files.hostnameFile, "web\n");
          return { mode, bindings: [], netnsPath: "/proc/1/ns/net", ...files };
        },
        teardown: async () => {
          teardowns.push(clock.now);
        },
      },
      report: async (report) => {
        reports.push(structuredClone(report));
      },
      reportRetryable: () => true,
      watchLogs: () => undefined,
      log: () => undefined,
      now: () => clock.now,
      sleep: clock.sleep,
      rootfs: {
        mount: async (_lower, bundle) => {
          const root = join(bundle, "rootfs");
          mkdirSync(root, { recursive: true });
          mounted.push(root);
          return root;
        },
        unmount: async (target) => {
          mounted.splice(mounted.indexOf(target), 1);
        },
      },
    },
    assignment,
  );
  const last = (): TaskReport => {
    const report = reports.at(-1);
    assert.ok(report !== undefined, "the engine reported");
    return report;
  };
  const reported = (name: string): ContainerReport | undefined =>
    last().containers.find((c) => c.name === name);
  const stop = (reason = "Task stopped by user") =>
    engine.update({ ...assignment, version: 2, desiredStatus: "STOPPED", stopReason: reason });
  return { engine, clock, runtime, reports, teardowns, mounted, last, reported, stop };
}

type Harness = ReturnType<typeof harness>;

async function stopped(h: Harness): Promise<TaskReport> {
  await h.clock.until(() => h.engine.state.status === "STOPPED", "the task STOPPED");
  await h.engine.done;
  return h.last();
}

async function stopAndWait(h: Harness): Promise<TaskReport> {
  h.stop();
  return stopped(h);
}

describe("TaskEngine: dependsOn", () => {
  it("START: starts a container only once the one it depends on has started", async () => {
    // Listed first, so only the dependency can hold it back.
    const h = harness([
      container("web", { dependsOn: [{ containerName: "db", condition: "START" }] }),
      container("db"),
    ]);
    await h.clock.until(() => h.engine.state.status === "RUNNING", "RUNNING");
    assert.deepEqual(h.runtime.events, ["start db", "start web"]);
    assert.equal(h.last().lastStatus, "RUNNING");
    await stopAndWait(h);
  });

  it("COMPLETE: waits for the dependency to exit, with any code", async () => {
    const h = harness([
      container("web", { dependsOn: [{ containerName: "init", condition: "COMPLETE" }] }),
      container("init", { essential: false }),
    ]);
    await h.clock.until(() => h.runtime.started("init"), "init started");
    await h.clock.advance(120_000);
    assert.equal(h.runtime.started("web"), false, "web waits while init runs");
    h.runtime.byName("init").finish(3);
    await h.clock.until(() => h.runtime.started("web"), "web started");
    await h.clock.until(() => h.engine.state.status === "RUNNING", "RUNNING");
    assert.equal(h.reported("init")?.lastStatus, "STOPPED");
    assert.equal(h.reported("init")?.exitCode, 3);
    await stopAndWait(h);
  });

  it("SUCCESS: starts the dependent once the dependency exits 0", async () => {
    const h = harness([
      container("migrate", { essential: false }),
      container("web", { dependsOn: [{ containerName: "migrate", condition: "SUCCESS" }] }),
    ]);
    await h.clock.until(() => h.runtime.started("migrate"), "migrate started");
    await h.clock.advance(30_000);
    assert.equal(h.runtime.started("web"), false);
    h.runtime.byName("migrate").finish(0);
    await h.clock.until(() => h.engine.state.status === "RUNNING", "RUNNING");
    assert.equal(h.reported("web")?.lastStatus, "RUNNING");
    await stopAndWait(h);
  });

  it("SUCCESS: never starts an essential dependent of a container that exited non-zero, and the task stops as ECS's does", async () => {
    const h = harness([
      container("migrate", { essential: false }),
      container("web", { dependsOn: [{ containerName: "migrate", condition: "SUCCESS" }] }),
    ]);
    await h.clock.until(() => h.runtime.started("migrate"), "migrate started");
    h.runtime.byName("migrate").finish(1);
    const report = await stopped(h);
    assert.equal(h.runtime.started("web"), false, "web never started");
    assert.equal(report.stopCode, "EssentialContainerExited");
    assert.equal(report.stoppedReason, "Essential container in task exited");
    const web = report.containers.find((c) => c.name === "web");
    assert.equal(web?.lastStatus, "STOPPED");
    assert.equal(web?.exitCode, 143);
    assert.equal(web?.runtimeId, undefined, "web never ran");
    assert.ok(report.containers.find((c) => c.name === "migrate")?.runtimeId !== undefined);
    assert.equal(
      web?.reason,
      "CannotStartContainerError: dependency graph: failed to resolve container ordering dependency " +
        "[migrate(registry.test/busybox:latest) (STOPPED->RUNNING) - Exit: 1] for target " +
        "[web(registry.test/busybox:latest) (NONE->RUNNING)] as dependency did not exit successfully.",
    );
    assert.equal(report.containers.find((c) => c.name === "migrate")?.exitCode, 1);
  });

  it("SUCCESS: a non-essential dependent given up leaves the task running, and so do its own dependents", async () => {
    const h = harness([
      container("app"),
      container("check", { essential: false, command: ["false"] }),
      container("report", {
        essential: false,
        dependsOn: [{ containerName: "check", condition: "SUCCESS" }],
      }),
      container("upload", { essential: false, dependsOn: [{ containerName: "report", condition: "START" }] }),
    ]);
    await h.clock.until(() => h.runtime.started("check"), "check started");
    h.runtime.byName("check").finish(2);
    await h.clock.until(() => h.engine.state.containers.some((c) => c.name === "upload"), "upload given up");
    await h.clock.advance(60_000);
    assert.equal(h.engine.state.status, "RUNNING");
    assert.equal(h.reported("report")?.exitCode, 143);
    assert.match(h.reported("report")?.reason ?? "", /as dependency did not exit successfully\.$/);
    assert.equal(
      h.reported("upload")?.reason,
      "CannotStartContainerError: dependency graph: failed to resolve container ordering dependency " +
        "[report(registry.test/busybox:latest) (NONE->STOPPED) - Exit: 143] for target " +
        "[upload(registry.test/busybox:latest) (NONE->RUNNING)] because dependency will never start",
    );
    assert.equal(h.runtime.started("report") || h.runtime.started("upload"), false);
    await stopAndWait(h);
  });

  it("HEALTHY: waits through UNHEALTHY and starts the dependent once the dependency passes its check", async () => {
    const h = harness([
      container("db", {
        healthCheck: { command: ["CMD-SHELL", "cat /ready"], interval: 5, timeout: 2, retries: 2 },
      }),
      container("web", { dependsOn: [{ containerName: "db", condition: "HEALTHY" }] }),
    ]);
    h.runtime.probes.set("db", [1, 1, 1, 1, 0]);
    await h.clock.until(
      () => h.engine.state.containers.find((c) => c.name === "db")?.healthStatus === "UNHEALTHY",
      "db UNHEALTHY",
    );
    assert.equal(h.clock.now - T0, 10_000, "the second failed check, 5 s apart, made it UNHEALTHY");
    assert.equal(h.reported("db")?.healthStatus, "UNHEALTHY");
    await h.clock.advance(14_000);
    assert.equal(h.runtime.started("web"), false, "an UNHEALTHY dependency holds its dependent back");
    await h.clock.until(() => h.runtime.started("web"), "web started");
    assert.equal(h.clock.now - T0, 25_000, "web started with the fifth check, the first that passed");
    assert.equal(h.reported("db")?.healthStatus, "HEALTHY");
    await stopAndWait(h);
  });

  it("HEALTHY: gives the dependent up when the dependency exits without passing", async () => {
    const h = harness([
      container("db", {
        essential: false,
        healthCheck: { command: ["CMD", "true"], interval: 5, timeout: 2, retries: 3 },
      }),
      container("web", { dependsOn: [{ containerName: "db", condition: "HEALTHY" }] }),
    ]);
    h.runtime.probes.set("db", [1]);
    await h.clock.until(() => h.runtime.started("db"), "db started");
    h.runtime.byName("db").finish(0);
    const report = await stopped(h);
    assert.equal(h.runtime.started("web"), false);
    assert.equal(report.stoppedReason, "Essential container in task exited");
    assert.match(
      report.containers.find((c) => c.name === "web")?.reason ?? "",
      /stopped before it was healthy\.$/,
    );
  });
});

describe("TaskEngine: startTimeout", () => {
  it("gives up a dependent when its dependency has not met the condition within the dependency's startTimeout", async () => {
    const h = harness([
      container("db", {
        startTimeout: 20,
        healthCheck: { command: ["CMD", "pg_isready"], interval: 5, timeout: 2, retries: 3 },
      }),
      container("web", { dependsOn: [{ containerName: "db", condition: "HEALTHY" }] }),
    ]);
    h.runtime.probes.set("db", [1]);
    await h.clock.until(() => h.engine.state.containers.some((c) => c.name === "web"), "web given up");
    const elapsed = h.clock.now - T0;
    assert.ok(elapsed > 20_000 && elapsed <= 21_000, `gave up ${elapsed} ms after db started`);
    const report = await stopped(h);
    assert.equal(h.runtime.started("web"), false);
    assert.equal(report.stoppedReason, "Essential container in task exited");
    const web = report.containers.find((c) => c.name === "web");
    assert.equal(web?.exitCode, 143);
    assert.equal(web?.runtimeId, undefined, "web never ran");
    assert.ok(report.containers.find((c) => c.name === "db")?.runtimeId !== undefined);
    assert.equal(
      web?.reason,
      "CannotStartContainerError: dependency graph: container ordering dependency " +
        "[db(registry.test/busybox:latest) (RUNNING->RUNNING)] for target " +
        "[web(registry.test/busybox:latest) (NONE->RUNNING)] has timed out.",
    );
  });

  it("does not apply to START, nor to a dependency that meets its condition in time", async () => {
    const h = harness([
      container("init", { essential: false, startTimeout: 10 }),
      container("web", { dependsOn: [{ containerName: "init", condition: "SUCCESS" }] }),
      container("side", { essential: false, dependsOn: [{ containerName: "init", condition: "START" }] }),
    ]);
    await h.clock.until(() => h.runtime.started("side"), "side started");
    await h.clock.advance(9_000);
    h.runtime.byName("init").finish(0);
    await h.clock.until(() => h.engine.state.status === "RUNNING", "RUNNING");
    assert.equal(h.runtime.started("web"), true);
    await stopAndWait(h);
  });

  it("waits without limit when the dependency sets no startTimeout", async () => {
    const h = harness([
      container("init", { essential: false }),
      container("web", { dependsOn: [{ containerName: "init", condition: "COMPLETE" }] }),
    ]);
    await h.clock.advance(30 * 60_000);
    assert.equal(
      h.engine.state.containers.some((c) => c.name === "web"),
      false,
    );
    assert.notEqual(h.engine.state.status, "STOPPED");
    await stopAndWait(h);
  });
});

describe("TaskEngine: health checks", () => {
  it("runs CMD as given and CMD-SHELL under /bin/sh -c, every interval, each with its timeout", async () => {
    const h = harness([
      container("a", {
        healthCheck: {
          command: ["CMD", "wget", "-q", "-O-", "localhost:8080"],
          interval: 7,
          timeout: 3,
          retries: 3,
        },
      }),
      container("b", {
        healthCheck: {
          command: ["CMD-SHELL", "cat /ready || exit 1"],
          interval: 30,
          timeout: 5,
          retries: 3,
          startPeriod: 0,
        },
      }),
    ]);
    await h.clock.advance(61_000);
    const a = h.runtime.execs.filter((e) => e.name === "a");
    const b = h.runtime.execs.filter((e) => e.name === "b");
    assert.deepEqual(a[0]?.args, ["wget", "-q", "-O-", "localhost:8080"]);
    assert.deepEqual(b[0]?.args, ["/bin/sh", "-c", "cat /ready || exit 1"]);
    assert.deepEqual(
      a.map((e) => [e.at - T0, e.timeoutMs]),
      [7, 14, 21, 28, 35, 42, 49, 56].map((s) => [s * 1000, 3000]),
    );
    assert.deepEqual(
      b.map((e) => [e.at - T0, e.timeoutMs]),
      [
        [30_000, 5000],
        [60_000, 5000],
      ],
    );
    assert.equal(h.reported("a")?.healthStatus, "HEALTHY");
    await stopAndWait(h);
  });

  it("counts failures only after the start period, and `retries` in a row make it UNHEALTHY", async () => {
    const h = harness([
      container("app", {
        healthCheck: { command: ["CMD", "check"], interval: 5, timeout: 2, retries: 2, startPeriod: 20 },
      }),
    ]);
    h.runtime.probes.set("app", [1]);
    await h.clock.advance(24_000);
    // Checks at 5, 10, 15 s failed inside the start period; the one at 20 s is the first that counts.
    assert.equal(h.engine.state.containers[0]?.healthStatus, "UNKNOWN");
    await h.clock.advance(1_000);
    assert.equal(h.engine.state.containers[0]?.healthStatus, "UNHEALTHY");
    assert.equal(h.reported("app")?.healthStatus, "UNHEALTHY");
    await stopAndWait(h);
  });

  it("ends the start period with the first pass: later failures count at once", async () => {
    const h = harness([
      container("app", {
        healthCheck: { command: ["CMD", "check"], interval: 5, timeout: 2, retries: 2, startPeriod: 60 },
      }),
    ]);
    h.runtime.probes.set("app", [1, 0, 1, 1]);
    await h.clock.advance(10_000);
    assert.equal(h.engine.state.containers[0]?.healthStatus, "HEALTHY");
    await h.clock.advance(10_000);
    assert.equal(
      h.engine.state.containers[0]?.healthStatus,
      "UNHEALTHY",
      "two failures after a pass, inside 60 s",
    );
    await stopAndWait(h);
  });

  it("takes a check that overruns its timeout for a failure, and a pass resets the count", async () => {
    const h = harness([
      container("app", {
        healthCheck: { command: ["CMD", "check"], interval: 5, timeout: 2, retries: 3 },
      }),
    ]);
    h.runtime.probes.set("app", ["hang", "hang", 0, "hang", "hang", "hang"]);
    await h.clock.until(() => h.engine.state.containers[0]?.healthStatus === "HEALTHY", "HEALTHY");
    await h.clock.until(() => h.engine.state.containers[0]?.healthStatus === "UNHEALTHY", "UNHEALTHY");
    assert.equal(
      h.runtime.execs.filter((e) => e.name === "app").length,
      6,
      "three failures in a row after the pass",
    );
    await stopAndWait(h);
  });
});

describe("TaskEngine: exits and stops", () => {
  it("stops the task when an essential container exits, with its exit code", async () => {
    const h = harness([container("app"), container("side", { essential: false })]);
    await h.clock.until(() => h.engine.state.status === "RUNNING", "RUNNING");
    h.runtime.byName("app").finish(2);
    const report = await stopped(h);
    assert.equal(report.stopCode, "EssentialContainerExited");
    assert.equal(report.stoppedReason, "Essential container in task exited");
    assert.equal(report.containers.find((c) => c.name === "app")?.exitCode, 2);
    assert.equal(report.containers.find((c) => c.name === "side")?.exitCode, 143, "stopped with SIGTERM");
    assert.deepEqual(h.mounted, [], "every root filesystem unmounted");
    assert.equal(h.teardowns.length, 1);
  });

  it("puts the task-level cpu and memory on the task's cgroup, the parent of its containers', and removes it", async () => {
    const h = harness([container("app"), container("side", { essential: false })], { cpu: 256, memory: 512 });
    await h.clock.until(() => h.engine.state.status === "RUNNING", "RUNNING");
    const group = `/wharf/${h.engine.state.taskId}`;
    assert.deepEqual([...h.runtime.groups], [[group, { cpuUnits: 256, memoryMiB: 512, startedBefore: 0 }]]);
    for (const name of ["app", "side"])
      assert.equal(h.runtime.byName(name).spec.linux?.cgroupsPath, `${group}/${name}`);
    await stopAndWait(h);
    assert.deepEqual(
      h.runtime.removedGroups.map((r) => r.path),
      [group],
    );
    const after = h.runtime.removedGroups[0]?.after ?? [];
    assert.ok(after.includes("remove app") && after.includes("remove side"), "after its containers");
  });

  it("makes no task cgroup limits without task-level cpu and memory", async () => {
    const h = harness([container("app")]);
    await h.clock.until(() => h.engine.state.status === "RUNNING", "RUNNING");
    assert.deepEqual([...h.runtime.groups.values()], [{ startedBefore: 0 }]);
    await stopAndWait(h);
    assert.equal(h.runtime.removedGroups.length, 1, "the parent runc made still goes");
  });

  it("keeps the task running when a non-essential container exits, and reports its exit code", async () => {
    const h = harness([container("app"), container("once", { essential: false })]);
    await h.clock.until(() => h.engine.state.status === "RUNNING", "RUNNING");
    h.runtime.byName("once").finish(0);
    await h.clock.advance(60_000);
    assert.equal(h.last().lastStatus, "RUNNING");
    assert.equal(h.reported("once")?.lastStatus, "STOPPED");
    assert.equal(h.reported("once")?.exitCode, 0);
    await stopAndWait(h);
  });

  it("stops dependents before their dependencies, each with SIGTERM then SIGKILL after its stopTimeout", async () => {
    const h = harness([
      container("db", { stopTimeout: 5 }),
      container("api", { dependsOn: [{ containerName: "db", condition: "START" }] }),
      container("web", { dependsOn: [{ containerName: "api", condition: "START" }], stopTimeout: 2 }),
      container("metrics", { essential: false, stopTimeout: 10 }),
    ]);
    // web exits on SIGTERM; the others ignore it.
    for (const name of ["db", "api", "metrics"]) h.runtime.onTerm.set(name, undefined);
    await h.clock.until(() => h.engine.state.status === "RUNNING", "RUNNING");
    const began = h.clock.now;
    const report = await stopAndWait(h);
    const at = (name: string) => h.runtime.stops.find((s) => s.name === name);
    assert.deepEqual(
      ["web", "metrics", "api", "db"].map((name) => [name, (at(name)?.at ?? 0) - began, at(name)?.timeoutMs]),
      [
        ["web", 0, 2000],
        ["metrics", 0, 10_000],
        ["api", 0, 30_000],
        ["db", 30_000, 5000],
      ],
      "web and metrics side by side; api once web exited; db once api was killed, 30 s on",
    );
    const exits = Object.fromEntries(report.containers.map((c) => [c.name, c.exitCode]));
    assert.deepEqual(exits, { db: 137, api: 137, web: 143, metrics: 137 });
    assert.equal(report.stopCode, "UserInitiated");
    assert.equal(report.stoppedReason, "Task stopped by user");
  });

  it("reports executionStoppedAt as when the first essential container stopped, before the network went", async () => {
    const h = harness([container("app", { stopTimeout: 10 }), container("side", { essential: false })]);
    h.runtime.onTerm.set("app", undefined);
    await h.clock.until(() => h.engine.state.status === "RUNNING", "RUNNING");
    const began = h.clock.now;
    const report = await stopAndWait(h);
    assert.equal(report.executionStoppedAt, began + 10_000, "app was killed 10 s after the stop began");
    assert.equal(report.lastStatus, "STOPPED");
    assert.ok((h.teardowns[0] ?? 0) >= began + 10_000);
  });
});

describe("TaskEngine: dnsServers, extraHosts, volumesFrom", () => {
  const mount = (spec: OciSpec, destination: string) =>
    spec.mounts?.find((m) => m.destination === destination);

  it("gives a container its own /etc/hosts and /etc/resolv.conf when it sets extraHosts or dnsServers", async () => {
    const h = harness([
      container("app", {
        extraHosts: [{ hostname: "db.internal", ipAddress: "10.9.8.7" }],
        dnsServers: ["1.1.1.1", "9.9.9.9"],
      }),
      container("plain"),
    ]);
    await h.clock.until(() => h.engine.state.status === "RUNNING", "RUNNING");
    const app = h.runtime.byName("app").spec;
    const plain = h.runtime.byName("plain").spec;
    assert.equal(
      readFileSync(mount(app, "/etc/hosts")?.source ?? "", "utf8"),
      "127.0.0.1\tlocalhost\n10.1.0.5\tweb\n10.9.8.7\tdb.internal\n",
    );
    assert.equal(
      readFileSync(mount(app, "/etc/resolv.conf")?.source ?? "", "utf8"),
      "nameserver 1.1.1.1\nnameserver 9.9.9.9\nsearch example.internal\n",
    );
    assert.equal(
      readFileSync(mount(plain, "/etc/hosts")?.source ?? "", "utf8"),
      "127.0.0.1\tlocalhost\n10.1.0.5\tweb\n",
    );
    assert.equal(
      readFileSync(mount(plain, "/etc/resolv.conf")?.source ?? "", "utf8"),
      "nameserver 10.0.0.2\nsearch example.internal\n",
    );
    await stopAndWait(h);
  });

  it("mounts the volumes of the containers named in volumesFrom, read-only where asked", async () => {
    const h = harness(
      [
        container("data", {
          mountPoints: [
            { sourceVolume: "shared", containerPath: "/data" },
            { sourceVolume: "config", containerPath: "/etc/app", readOnly: true },
          ],
        }),
        container("reader", { volumesFrom: [{ sourceContainer: "data", readOnly: true }] }),
        container("writer", {
          volumesFrom: [{ sourceContainer: "data" }],
          mountPoints: [{ sourceVolume: "scratch", containerPath: "/data" }],
        }),
      ],
      { volumes: [{ name: "shared" }, { name: "config" }, { name: "scratch" }] },
    );
    await h.clock.until(() => h.engine.state.status === "RUNNING", "RUNNING");
    const data = h.runtime.byName("data").spec;
    const reader = h.runtime.byName("reader").spec;
    const writer = h.runtime.byName("writer").spec;
    const ro = (m: ReturnType<typeof mount>) => m?.options?.includes("ro") === true;
    assert.equal(mount(reader, "/data")?.source, mount(data, "/data")?.source);
    assert.equal(ro(mount(reader, "/data")), true);
    assert.equal(ro(mount(reader, "/etc/app")), true);
    assert.equal(mount(writer, "/etc/app")?.source, mount(data, "/etc/app")?.source);
    assert.equal(ro(mount(writer, "/etc/app")), true, "read-only as the source mounts it");
    assert.notEqual(mount(writer, "/data")?.source, mount(data, "/data")?.source, "its own mount point wins");
    assert.equal(ro(mount(writer, "/data")), false);
    await stopAndWait(h);
  });
});
