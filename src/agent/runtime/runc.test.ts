/**
 * RuncRuntime against real runc: needs root, runc and busybox-static
 * (installed when missing). Containers get an isolated, loopback-only
 * network namespace, so no network is needed.
 */

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { boundingCapabilities } from "./capabilities.ts";
import { RuntimeError } from "./errors.ts";
import type { OciSpec } from "./oci.ts";
import { ContainerFixture, prerequisites } from "./test-fixture.ts";

const skip = await prerequisites();
const TINI = "/usr/bin/tini-static";

/** The parent pid of a process, from /proc. */
function parentOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  assert.ok(ppid > 1, `process ${pid} has a parent`);
  return ppid;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

describe("RuncRuntime with real containers", { skip, timeout: 300_000 }, () => {
  let f: ContainerFixture;
  const startTimes: number[] = [];

  before(async () => {
    f = await ContainerFixture.create();
  });

  after(async () => {
    if (startTimes.length > 0) {
      console.log(
        `# start() latency over ${startTimes.length} containers: median ${median(startTimes).toFixed(1)} ms`,
      );
    }
    await f?.cleanup();
  });

  it("runs a command, appends its output to the log files and reports exit code 3", async () => {
    const c = await f.start("exit3", { command: ["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"] });
    startTimes.push(c.startMs);
    assert.ok(c.pid !== undefined && c.pid > 0);
    const exit = await f.runtime.wait(c.id, c.bundle, AbortSignal.timeout(20_000));
    assert.equal(exit.exitCode, 3);
    assert.equal(exit.signal, undefined);
    assert.equal(exit.oomKilled, false);
    assert.ok(Math.abs(exit.finishedAt.getTime() - Date.now()) < 20_000);
    assert.deepEqual(await f.output(c), { stdout: "to-stdout\n", stderr: "to-stderr\n" });
    const state = await f.runtime.state(c.id, c.bundle);
    assert.equal(state.status, "stopped");
    assert.deepEqual(state.exit, exit);
  });

  it("measures start() latency", async () => {
    for (let i = 0; i < 5; i += 1) {
      const c = await f.start(`lat${i}`, { command: ["true"] });
      startTimes.push(c.startMs);
      assert.equal((await f.runtime.wait(c.id, c.bundle, AbortSignal.timeout(20_000))).exitCode, 0);
      await f.runtime.remove(c.id, c.bundle);
    }
    assert.ok(median(startTimes) < 5000);
  });

  it("reports a container that cannot start, with runc's reason", async () => {
    await assert.rejects(f.start("nostart", { command: ["/no/such/binary"] }), (error: unknown) => {
      assert.ok(error instanceof RuntimeError);
      assert.equal(error.code, "start_failed");
      assert.match(error.message, /no such file|not found/i);
      return true;
    });
  });

  it("runs a long container, execs into it, and stops it with SIGKILL when it ignores SIGTERM", async () => {
    const c = await f.start("stubborn", { command: ["sh", "-c", "trap '' TERM; sleep 300"] });
    const state = await f.runtime.state(c.id, c.bundle);
    assert.equal(state.status, "running");
    assert.equal(state.pid, c.pid);
    assert.ok(existsSync(`/proc/${c.pid}`), "the container's process is visible in the host's /proc");
    assert.ok((await f.runtime.list()).includes(c.id));

    const exec = await f.runtime.exec(c.id, ["sh", "-c", 'echo "in $HOSTNAME $FOO"; exit 7'], {
      timeoutMs: 10_000,
      env: ["FOO=bar"],
    });
    assert.deepEqual(exec, { exitCode: 7, output: "in stubborn bar\n" });

    await assert.rejects(f.runtime.exec(c.id, ["sleep", "77"], { timeoutMs: 300 }), (e: unknown) => {
      return e instanceof RuntimeError && e.code === "timeout";
    });
    const ps = await f.runtime.exec(c.id, ["ps"], { timeoutMs: 10_000 });
    assert.doesNotMatch(ps.output, /sleep 77/, "a timed-out exec leaves no process behind");

    const began = Date.now();
    const exit = await f.runtime.stop(c.id, c.bundle, 500);
    assert.ok(Date.now() - began >= 450, "waited for the grace period");
    assert.equal(exit.signal, "SIGKILL");
    assert.equal(exit.exitCode, 137);
    assert.equal(exit.oomKilled, false);
    assert.equal((await f.runtime.state(c.id, c.bundle)).status, "stopped");
  });

  /** Waits until a container has printed "ready" (it set its traps). */
  async function ready(container: Parameters<typeof f.output>[0]): Promise<void> {
    for (let i = 0; i < 600 && !(await f.output(container)).stdout.includes("ready"); i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  it("stops a cooperative container with SIGTERM, or with the image's stop signal", async () => {
    const term = await f.start("polite", {
      command: ["sh", "-c", 'trap "exit 0" TERM; echo ready; sleep 300 & wait'],
    });
    // The trap must be in place before the signal: a shell as PID 1 ignores SIGTERM without one.
    await ready(term);
    const began = Date.now();
    const exit = await f.runtime.stop(term.id, term.bundle, 20_000);
    assert.equal(exit.exitCode, 0);
    assert.equal(exit.signal, undefined);
    assert.ok(Date.now() - began < 10_000);

    const quit = await f.start(
      "usr1",
      { command: ["sh", "-c", 'trap "exit 5" USR1; echo ready; sleep 300 & wait'] },
      { image: { Cmd: ["sh"], StopSignal: "SIGUSR1" } },
    );
    await ready(quit);
    assert.equal((await f.runtime.stop(quit.id, quit.bundle, 20_000)).exitCode, 5);
  });

  it("reports a container killed past its memory limit as oomKilled", async () => {
    const c = await f.start("oom", {
      memory: 32,
      command: ["sh", "-c", 'x=$(head -c 200000000 /dev/zero | tr "\\0" x); echo survived'],
    });
    const exit = await f.runtime.wait(c.id, c.bundle, AbortSignal.timeout(60_000));
    assert.equal(exit.oomKilled, true);
    assert.equal(exit.signal, "SIGKILL");
    assert.equal((await f.output(c)).stdout, "");
    // The record is kept: asking again gives the same answer without the cgroup.
    assert.deepEqual(await f.runtime.wait(c.id, c.bundle), exit);
  });

  it("lets a fresh runtime (an agent restart) adopt a running container and get its exit code", async () => {
    const c = await f.start("adopt", { command: ["sh", "-c", "sleep 1; exit 42"] });
    const restarted = f.restartedRuntime();
    const state = await restarted.state(c.id, c.bundle);
    assert.equal(state.status, "running");
    assert.equal(state.pid, c.pid);
    assert.ok((await restarted.list()).includes(c.id));
    const exit = await restarted.wait(c.id, c.bundle, AbortSignal.timeout(20_000));
    assert.equal(exit.exitCode, 42);
    assert.equal((await f.restartedRuntime().state(c.id, c.bundle)).exit?.exitCode, 42);
  });

  it("refuses to start a second container under an id in use, leaving the first alone", async () => {
    const c = await f.start("dup", { command: ["sleep", "300"] });
    const spec = JSON.parse(readFileSync(join(c.bundle, "config.json"), "utf8")) as OciSpec;
    await assert.rejects(
      f.runtime.start(spec, c.bundle, { stdout: c.stdout, stderr: c.stderr }),
      /already exists/,
    );
    assert.equal((await f.runtime.state(c.id, c.bundle)).pid, c.pid);
    await f.runtime.remove(c.id, c.bundle);
  });

  it("reports the exit as lost when the supervisor dies before recording it", async () => {
    const c = await f.start("nosuper", { command: ["sleep", "300"] });
    const runcPid = parentOf(c.pid ?? 0);
    process.kill(parentOf(runcPid), "SIGKILL"); // the supervisor shell
    await f.runtime.kill(c.id, "KILL");
    const exit = await f.runtime.wait(c.id, c.bundle, AbortSignal.timeout(20_000));
    assert.equal(exit.exitCode, -1);
    assert.match(exit.lost ?? "", /supervisor/);
  });

  it("does not take runc's own death for the container's exit", async () => {
    const c = await f.start("norunc", { command: ["sleep", "300"] });
    const pid = c.pid ?? 0;
    const waiting = f.runtime.wait(c.id, c.bundle, AbortSignal.timeout(20_000));
    process.kill(parentOf(pid), "SIGKILL"); // runc run: the supervisor records 137 while the container lives
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal((await f.runtime.state(c.id, c.bundle)).status, "running");
    process.kill(pid, "SIGKILL");
    const exit = await waiting;
    assert.equal(exit.exitCode, -1);
    assert.match(exit.lost ?? "", /runc was killed/);
  });

  it("makes a read-only root file system refuse writes, but not its tmpfs", async () => {
    const c = await f.start(
      "readonly",
      {
        command: ["sh", "-c", "touch /scratch/ok || exit 10; touch /forbidden"],
        linuxParameters: { tmpfs: [{ containerPath: "/scratch", size: 4 }] },
      },
      { readonlyRootfs: true },
    );
    const exit = await f.runtime.wait(c.id, c.bundle, AbortSignal.timeout(20_000));
    assert.equal(exit.exitCode, 1);
    assert.match((await f.output(c)).stderr, /read-only file system/i);
    assert.ok(!existsSync(join(f.rootfs, "forbidden")));
  });

  it("drops capabilities: without CAP_CHOWN chown fails", async () => {
    const script = "touch /tmp/f && chown 1:1 /tmp/f";
    const tmpfs = { tmpfs: [{ containerPath: "/tmp", size: 1 }] };
    const allowed = await f.start("chown-ok", { command: ["sh", "-c", script], linuxParameters: tmpfs });
    assert.equal((await f.runtime.wait(allowed.id, allowed.bundle, AbortSignal.timeout(20_000))).exitCode, 0);
    const dropped = await f.start("chown-no", {
      command: ["sh", "-c", script],
      linuxParameters: { ...tmpfs, capabilities: { drop: ["CHOWN"] } },
    });
    assert.equal((await f.runtime.wait(dropped.id, dropped.bundle, AbortSignal.timeout(20_000))).exitCode, 1);
    assert.match((await f.output(dropped)).stderr, /not permitted/i);
  });

  it("applies ulimits and resolves the user by name from the image's /etc/passwd", async () => {
    const c = await f.start("limits", {
      user: "app",
      command: ["sh", "-c", "ulimit -n; ulimit -Hn; id"],
      ulimits: [{ name: "nofile", softLimit: 1234, hardLimit: 2345 }],
    });
    assert.equal((await f.runtime.wait(c.id, c.bundle, AbortSignal.timeout(20_000))).exitCode, 0);
    const [soft, hard, id] = (await f.output(c)).stdout.trim().split("\n");
    assert.equal(soft, "1234");
    assert.equal(hard, "2345");
    assert.match(id ?? "", /^uid=1234\(app\) gid=1234\(app\) groups=.*555\(extra\)/);
  });

  it("runs a privileged container with every capability the agent holds", async () => {
    const available = await boundingCapabilities();
    const c = await f.start(
      "privileged",
      { privileged: true, command: ["sh", "-c", "grep -E 'CapEff|NoNewPrivs' /proc/self/status"] },
      { availableCapabilities: available },
    );
    assert.equal((await f.runtime.wait(c.id, c.bundle, AbortSignal.timeout(20_000))).exitCode, 0);
    const ours = /^CapBnd:\s*(\S+)$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
    assert.match((await f.output(c)).stdout, new RegExp(`CapEff:\\s*${ours}\\nNoNewPrivs:\\s*0`));
  });

  it("runs an init as PID 1 when initProcessEnabled", {
    skip: existsSync(TINI) ? undefined : `no ${TINI}`,
  }, async () => {
    const c = await f.start(
      "init",
      {
        command: ["sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"],
        linuxParameters: { initProcessEnabled: true },
      },
      { initPath: TINI },
    );
    assert.equal((await f.runtime.wait(c.id, c.bundle, AbortSignal.timeout(20_000))).exitCode, 0);
    assert.match((await f.output(c)).stdout, /^\/sbin\/docker-init -- sh -c/);
  });

  it("removes a running container, its cgroup and the files it wrote in the bundle", async () => {
    const c = await f.start("removed", { command: ["sleep", "300"] });
    const memoryDir = f.layout.version === 1 ? f.layout.controllers.memory : f.layout.root;
    const cgroupDir = join(memoryDir ?? "/nonexistent", c.cgroupsPath);
    assert.ok(existsSync(cgroupDir));
    await f.runtime.remove(c.id, c.bundle);
    assert.ok(!(await f.runtime.list()).includes(c.id));
    assert.ok(!existsSync(cgroupDir));
    assert.ok(!existsSync(c.bundle), "the bundle directory is gone");
    assert.ok(readFileSync(c.stdout, "utf8") === "", "the caller's log files stay");
    assert.equal((await f.runtime.state(c.id, c.bundle)).status, "unknown");
    await f.runtime.remove(c.id, c.bundle); // idempotent
    assert.deepEqual(
      (await readdir(join(f.dir, "bundles"))).filter((n) => n === c.id),
      [],
    );
  });

  it("refuses unsafe ids before calling runc", async () => {
    await assert.rejects(
      f.runtime.state("../x", "/tmp"),
      (e: unknown) => e instanceof RuntimeError && e.code === "invalid_id",
    );
    await assert.rejects(
      f.runtime.kill("a b", "TERM"),
      (e: unknown) => e instanceof RuntimeError && e.code === "invalid_id",
    );
  });
});
