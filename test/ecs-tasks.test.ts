import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { cgroupDirs, detectCgroupLayout } from "../src/agent/stats/cgroups.ts";
import { cleanupAgent, eventually, pushBusybox, startTestAgent, type TestAgent } from "./agent-harness.ts";
import { aws, registerTaskDefinitionCli, startTestServer, type TestServer } from "./helpers.ts";

let server: TestServer;
let agent: TestAgent;
let image: string;

before(async () => {
  server = await startTestServer();
  image = await pushBusybox(server, "busybox");
  agent = await startTestAgent(server);
});

after(async () => {
  await agent?.stop();
  if (agent !== undefined) await cleanupAgent(agent);
  await server?.stop();
});

interface Task {
  taskArn: string;
  lastStatus: string;
  desiredStatus: string;
  stopCode?: string;
  stoppedReason?: string;
  healthStatus?: string;
  containers: Array<{
    name: string;
    lastStatus: string;
    exitCode?: number;
    reason?: string;
    healthStatus?: string;
    runtimeId?: string;
    networkBindings?: Array<{ hostPort: number; containerPort: number; bindIP: string }>;
    networkInterfaces?: Array<{ privateIpv4Address: string }>;
  }>;
}

const registerTaskDefinition = (definition: Record<string, unknown>) =>
  registerTaskDefinitionCli(server, definition);

async function runTask(taskDefinition: string, extra: string[] = []): Promise<Task> {
  const result = await aws(server, ["ecs", "run-task", "--task-definition", taskDefinition, ...extra]);
  assert.equal(result.code, 0, result.stderr);
  const body = result.json as { tasks: Task[]; failures: unknown[] };
  assert.deepEqual(body.failures, []);
  assert.equal(body.tasks.length, 1);
  return body.tasks[0] as Task;
}

async function describe1(taskArn: string): Promise<Task> {
  const result = await aws(server, ["ecs", "describe-tasks", "--tasks", taskArn]);
  assert.equal(result.code, 0, result.stderr);
  return (result.json as { tasks: Task[] }).tasks[0] as Task;
}

function until(
  taskArn: string,
  predicate: (task: Task) => boolean,
  what: string,
  timeoutMs = 60_000,
): Promise<Task> {
  return eventually(
    what,
    async () => {
      const task = await describe1(taskArn);
      return predicate(task) ? task : undefined;
    },
    timeoutMs,
  );
}

/** Runs a command inside a running container with runc, as `docker exec` would. */
function execIn(runtimeId: string | undefined, args: string[]): { status: number | null; stdout: string } {
  const result = spawnSync(
    "runc",
    ["--root", join(agent.dataDir, "runc"), "exec", runtimeId ?? "", ...args],
    {
      encoding: "utf8",
      timeout: 10_000,
    },
  );
  return { status: result.status, stdout: result.stdout };
}

describe("tasks on real containers", () => {
  it("runs a task from Wharf's registry, logs to CloudWatch Logs, and stops it as ECS does", async () => {
    const arn = await registerTaskDefinition({
      family: "hello",
      containerDefinitions: [
        {
          name: "app",
          image,
          memory: 64,
          command: ["sh", "-c", "echo hello; sleep 300"],
          stopTimeout: 2,
          logConfiguration: {
            logDriver: "awslogs",
            options: {
              "awslogs-group": "/ecs/hello",
              "awslogs-stream-prefix": "web",
              "awslogs-create-group": "true",
              "awslogs-region": "us-east-1",
            },
          },
        },
      ],
    });
    const started = await runTask(arn);
    assert.equal(started.desiredStatus, "RUNNING");
    const running = await until(started.taskArn, (t) => t.lastStatus === "RUNNING", "RUNNING");
    const container = running.containers[0];
    assert.equal(container?.lastStatus, "RUNNING");
    // The process runs on the host under runc.
    const runtimeId = container?.runtimeId ?? "";
    const state = JSON.parse(
      execFileSync("runc", ["--root", join(agent.dataDir, "runc"), "state", runtimeId], {
        encoding: "utf8",
        timeout: 10_000,
      }),
    ) as { status: string; pid: number };
    assert.equal(state.status, "running");
    assert.match(execFileSync("cat", [`/proc/${state.pid}/cmdline`], { encoding: "utf8" }), /sleep/);

    const taskId = started.taskArn.slice(started.taskArn.lastIndexOf("/") + 1);
    const logs = await eventually("the log line", async () => {
      const result = await aws(server, [
        "logs",
        "get-log-events",
        "--log-group-name",
        "/ecs/hello",
        "--log-stream-name",
        `web/app/${taskId}`,
      ]);
      const events = (result.json as { events?: Array<{ message: string }> } | undefined)?.events ?? [];
      return events.length > 0 ? events : undefined;
    });
    assert.equal(logs[0]?.message, "hello");

    const stop = await aws(server, ["ecs", "stop-task", "--task", started.taskArn]);
    assert.equal(stop.code, 0, stop.stderr);
    const stopped = await until(started.taskArn, (t) => t.lastStatus === "STOPPED", "STOPPED");
    assert.equal(stopped.stopCode, "UserInitiated");
    assert.equal(stopped.stoppedReason, "Task stopped by user");
    assert.equal(stopped.containers[0]?.lastStatus, "STOPPED");
    // sh as PID 1 ignores SIGTERM: SIGKILL after the stopTimeout, as Docker reports it.
    assert.equal(stopped.containers[0]?.exitCode, 137);
  });

  it("stops a task whose image does not exist with CannotPullContainerError", async () => {
    const arn = await registerTaskDefinition({
      family: "missing-image",
      containerDefinitions: [
        { name: "app", image: `${image.split("/")[0]}/no-such-repo:latest`, memory: 32 },
      ],
    });
    const started = await runTask(arn);
    const stopped = await until(started.taskArn, (t) => t.lastStatus === "STOPPED", "STOPPED");
    assert.equal(stopped.stopCode, "TaskFailedToStart");
    assert.match(stopped.stoppedReason ?? "", /^CannotPullContainerError/);
    assert.match(stopped.containers[0]?.reason ?? "", /^CannotPullContainerError/);
  });

  it("honours dependsOn HEALTHY, keeps running when a non-essential container exits, and stops when an essential one does", async () => {
    const arn = await registerTaskDefinition({
      family: "ordered",
      containerDefinitions: [
        {
          name: "db",
          image,
          memory: 32,
          essential: true,
          command: ["sh", "-c", "sleep 2; echo ok > /ready; sleep 300"],
          healthCheck: {
            command: ["CMD-SHELL", "cat /ready"],
            interval: 5,
            timeout: 2,
            retries: 3,
            startPeriod: 0,
          },
          stopTimeout: 2,
        },
        {
          name: "migrate",
          image,
          memory: 16,
          essential: false,
          command: ["sh", "-c", "exit 0"],
          dependsOn: [{ containerName: "db", condition: "HEALTHY" }],
        },
        {
          name: "web",
          image,
          memory: 32,
          essential: true,
          command: ["sh", "-c", "sleep 8; exit 7"],
          dependsOn: [{ containerName: "migrate", condition: "SUCCESS" }],
          stopTimeout: 2,
        },
      ],
    });
    const started = await runTask(arn);
    // web starts only after db is healthy and migrate succeeded.
    const running = await until(
      started.taskArn,
      (t) => t.containers.find((c) => c.name === "web")?.lastStatus === "RUNNING",
      "web RUNNING",
      90_000,
    );
    assert.equal(running.containers.find((c) => c.name === "db")?.healthStatus, "HEALTHY");
    const migrate = running.containers.find((c) => c.name === "migrate");
    assert.equal(migrate?.lastStatus, "STOPPED");
    assert.equal(migrate?.exitCode, 0);
    assert.notEqual(
      running.lastStatus,
      "STOPPED",
      "a non-essential container's exit leaves the task running",
    );
    const stopped = await until(started.taskArn, (t) => t.lastStatus === "STOPPED", "STOPPED", 90_000);
    assert.equal(stopped.stopCode, "EssentialContainerExited");
    assert.equal(stopped.stoppedReason, "Essential container in task exited");
    assert.equal(stopped.containers.find((c) => c.name === "web")?.exitCode, 7);
  });

  it("gives up a container whose dependency exited non-zero or timed out, as the ECS agent does", async () => {
    const failed = await registerTaskDefinition({
      family: "failed-init",
      containerDefinitions: [
        { name: "init", image, memory: 16, essential: false, command: ["sh", "-c", "exit 3"] },
        {
          name: "app",
          image,
          memory: 16,
          command: ["sleep", "300"],
          dependsOn: [{ containerName: "init", condition: "SUCCESS" }],
        },
      ],
    });
    const slow = await registerTaskDefinition({
      family: "slow-db",
      containerDefinitions: [
        {
          name: "db",
          image,
          memory: 16,
          command: ["sleep", "300"],
          startTimeout: 3,
          stopTimeout: 2,
          healthCheck: { command: ["CMD", "false"], interval: 5, timeout: 2, retries: 1 },
        },
        {
          name: "app",
          image,
          memory: 16,
          command: ["sleep", "300"],
          dependsOn: [{ containerName: "db", condition: "HEALTHY" }],
        },
      ],
    });
    const [a, b] = await Promise.all([runTask(failed), runTask(slow)]);
    const [first, second] = await Promise.all([
      until(a?.taskArn ?? "", (t) => t.lastStatus === "STOPPED", "STOPPED"),
      until(b?.taskArn ?? "", (t) => t.lastStatus === "STOPPED", "STOPPED"),
    ]);
    for (const task of [first, second]) {
      assert.equal(task.stopCode, "EssentialContainerExited");
      assert.equal(task.stoppedReason, "Essential container in task exited");
      const app = task.containers.find((c) => c.name === "app");
      assert.equal(app?.exitCode, 143);
      assert.equal(app?.runtimeId, undefined, "app never ran");
    }
    assert.equal(first.containers.find((c) => c.name === "init")?.exitCode, 3);
    assert.equal(
      first.containers.find((c) => c.name === "app")?.reason,
      "CannotStartContainerError: dependency graph: failed to resolve container ordering dependency " +
        `[init(${image}) (STOPPED->RUNNING) - Exit: 3] for target [app(${image}) (NONE->RUNNING)] ` +
        "as dependency did not exit successfully.",
    );
    assert.match(
      second.containers.find((c) => c.name === "app")?.reason ?? "",
      /^CannotStartContainerError: dependency graph: container ordering dependency \[db\(.*\) \(RUNNING->RUNNING\)\] for target \[app\(.*\) \(NONE->RUNNING\)\] has timed out\.$/,
    );
  });

  it("publishes a bridge task's dynamic host port on 127.0.0.1 and reports it in networkBindings", async () => {
    const arn = await registerTaskDefinition({
      family: "bridge-web",
      networkMode: "bridge",
      volumes: [{ name: "site" }],
      containerDefinitions: [
        {
          name: "web",
          image,
          memory: 32,
          portMappings: [{ containerPort: 8080, hostPort: 0, protocol: "tcp" }],
          mountPoints: [{ sourceVolume: "site", containerPath: "/site" }],
          command: ["sh", "-c", "echo bridged > /site/index.html; httpd -f -p 8080 -h /site"],
          stopTimeout: 2,
        },
        {
          name: "reader",
          image,
          memory: 16,
          essential: false,
          volumesFrom: [{ sourceContainer: "web", readOnly: true }],
          extraHosts: [{ hostname: "db.internal", ipAddress: "10.9.8.7" }],
          dnsServers: ["192.0.2.53"],
          // A range of container ports, each published on a host port of its own.
          portMappings: [{ containerPortRange: "9000-9001", protocol: "tcp" }],
          command: ["sh", "-c", "httpd -p 9001 -h /site && sleep 300"],
          stopTimeout: 2,
        },
      ],
    });
    const started = await runTask(arn);
    const running = await until(started.taskArn, (t) => t.lastStatus === "RUNNING", "RUNNING");
    const binding = running.containers[0]?.networkBindings?.[0];
    assert.ok(binding !== undefined && binding.hostPort > 0, "a host port was chosen");
    assert.equal(binding.containerPort, 8080);
    const body = await eventually("the published port", async () => {
      const response = await fetch(`http://127.0.0.1:${binding.hostPort}/index.html`, {
        signal: AbortSignal.timeout(2000),
      });
      return response.ok ? response.text() : undefined;
    });
    assert.equal(body.trim(), "bridged");

    const ranged = running.containers.find((c) => c.name === "reader")?.networkBindings ?? [];
    assert.deepEqual(
      ranged.map((b) => b.containerPort),
      [9000, 9001],
    );
    assert.ok(ranged.every((b) => b.hostPort > 0) && ranged[0]?.hostPort !== ranged[1]?.hostPort);
    const fromRange = await eventually("a port of the range", async () => {
      const response = await fetch(`http://127.0.0.1:${ranged[1]?.hostPort}/index.html`, {
        signal: AbortSignal.timeout(2000),
      });
      return response.ok ? response.text() : undefined;
    });
    assert.equal(fromRange.trim(), "bridged");

    // reader mounts web's volume read-only, and has its own hosts and resolver.
    const reader = running.containers.find((c) => c.name === "reader")?.runtimeId;
    assert.equal(execIn(reader, ["cat", "/site/index.html"]).stdout, "bridged\n");
    assert.notEqual(execIn(reader, ["touch", "/site/other"]).status, 0, "read-only");
    assert.match(execIn(reader, ["cat", "/etc/hosts"]).stdout, /^10\.9\.8\.7\tdb\.internal$/m);
    const resolv = execIn(reader, ["cat", "/etc/resolv.conf"]).stdout;
    assert.deepEqual(
      resolv.split("\n").filter((line) => line.startsWith("nameserver")),
      ["nameserver 192.0.2.53"],
    );
    const web = running.containers.find((c) => c.name === "web")?.runtimeId;
    assert.doesNotMatch(execIn(web, ["cat", "/etc/hosts"]).stdout, /db\.internal/, "only reader's");
    await aws(server, ["ecs", "stop-task", "--task", started.taskArn]);
    await until(started.taskArn, (t) => t.lastStatus === "STOPPED", "STOPPED");
  });

  it("gives an awsvpc task its own address, reachable from the node", async () => {
    const arn = await registerTaskDefinition({
      family: "vpc-web",
      networkMode: "awsvpc",
      containerDefinitions: [
        {
          name: "web",
          image,
          memory: 32,
          portMappings: [{ containerPort: 8080, protocol: "tcp" }],
          command: ["sh", "-c", "echo vpc > /index.html; httpd -f -p 8080 -h /"],
          stopTimeout: 2,
        },
        {
          name: "sidecar",
          image,
          memory: 16,
          command: ["sh", "-c", "sleep 2; wget -q -O /got http://127.0.0.1:8080/index.html; sleep 300"],
          stopTimeout: 2,
        },
      ],
    });
    const started = await runTask(arn, [
      "--network-configuration",
      "awsvpcConfiguration={subnets=[subnet-wharf]}",
    ]);
    assert.equal(started.lastStatus, "PROVISIONING");
    const running = await until(started.taskArn, (t) => t.lastStatus === "RUNNING", "RUNNING");
    const address = running.containers[0]?.networkInterfaces?.[0]?.privateIpv4Address;
    assert.ok(address !== undefined && address.length > 0, "the task has an address");
    const body = await eventually("the task's address", async () => {
      const response = await fetch(`http://${address}:8080/index.html`, {
        signal: AbortSignal.timeout(2000),
      });
      return response.ok ? response.text() : undefined;
    });
    assert.equal(body.trim(), "vpc");
    // The sidecar reached the web container over the task's shared loopback.
    const sidecar = running.containers.find((c) => c.name === "sidecar");
    const got = await eventually("the sidecar's copy", async () => {
      const read = execIn(sidecar?.runtimeId, ["cat", "/got"]);
      return read.status === 0 ? read.stdout : undefined;
    });
    assert.equal(got, "vpc\n");
    await aws(server, ["ecs", "stop-task", "--task", started.taskArn, "--reason", "done here"]);
    const stopped = await until(started.taskArn, (t) => t.lastStatus === "STOPPED", "STOPPED");
    assert.equal(stopped.stoppedReason, "done here");
  });

  it("OOM-kills a container that allocates past its memory limit and says so", async () => {
    const arn = await registerTaskDefinition({
      family: "hog",
      containerDefinitions: [
        {
          name: "hog",
          image,
          memory: 16,
          command: ["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' x); echo survived"],
        },
      ],
    });
    const started = await runTask(arn);
    const stopped = await until(started.taskArn, (t) => t.lastStatus === "STOPPED", "STOPPED", 90_000);
    const hog = stopped.containers[0];
    assert.equal(hog?.reason, "OutOfMemoryError: Container killed due to memory usage");
    assert.equal(hog?.exitCode, 137);
    assert.equal(stopped.stopCode, "EssentialContainerExited");
  });

  it("puts the task-level cpu and memory on the task's cgroup as hard limits, and removes it when the task stops", async () => {
    const arn = await registerTaskDefinition({
      family: "sized",
      cpu: "256",
      memory: "128",
      containerDefinitions: [
        { name: "app", image, command: ["sleep", "300"], stopTimeout: 2 },
        { name: "side", image, command: ["sleep", "300"], essential: false, stopTimeout: 2 },
      ],
    });
    const started = await runTask(arn);
    await until(started.taskArn, (t) => t.lastStatus === "RUNNING", "RUNNING");
    const layout = await detectCgroupLayout();
    const group = `/wharf/${started.taskArn.split("/").pop()}`;
    const file = (controller: "cpu" | "memory", name: string) =>
      layout.version === 1
        ? join(layout.controllers[controller] ?? "", group, name)
        : join(layout.root, group, name);
    const read = (controller: "cpu" | "memory", v1: string, v2: string) =>
      readFileSync(file(controller, layout.version === 1 ? v1 : v2), "utf8").trim();
    // 256 units are a quarter of a CPU: 25 ms of every 100 ms, for both containers together.
    assert.equal(read("cpu", "cpu.cfs_quota_us", "cpu.max").split(" ")[0], "25000");
    assert.equal(Number(read("memory", "memory.limit_in_bytes", "memory.max")), 128 * 1024 * 1024);
    assert.ok(existsSync(file("cpu", "app")), "the containers' cgroups are inside it");
    assert.equal((await aws(server, ["ecs", "stop-task", "--task", started.taskArn])).code, 0);
    await until(started.taskArn, (t) => t.lastStatus === "STOPPED", "STOPPED");
    for (const dir of cgroupDirs(layout, group)) assert.ok(!existsSync(dir), `${dir} is removed`);
  });

  it("keeps tasks running across an agent restart and reports a container that died meanwhile", async () => {
    const arn = await registerTaskDefinition({
      family: "survivor",
      containerDefinitions: [{ name: "app", image, memory: 32, command: ["sleep", "300"], stopTimeout: 2 }],
    });
    const keep = await runTask(arn);
    const doomed = await runTask(arn);
    const [keepRunning, doomedRunning] = await Promise.all([
      until(keep.taskArn, (t) => t.lastStatus === "RUNNING", "RUNNING"),
      until(doomed.taskArn, (t) => t.lastStatus === "RUNNING", "RUNNING"),
    ]);
    await agent.stop();
    // While the agent is down, one container is killed from the host.
    const runcRoot = join(agent.dataDir, "runc");
    execFileSync("runc", ["--root", runcRoot, "kill", doomedRunning.containers[0]?.runtimeId ?? "", "KILL"], {
      timeout: 10_000,
    });
    agent = await agent.restart();
    const stillRunning = await describe1(keep.taskArn);
    assert.equal(stillRunning.lastStatus, "RUNNING");
    assert.equal(
      stillRunning.containers[0]?.runtimeId,
      keepRunning.containers[0]?.runtimeId,
      "the same container, adopted",
    );
    const state = JSON.parse(
      execFileSync("runc", ["--root", runcRoot, "state", keepRunning.containers[0]?.runtimeId ?? ""], {
        encoding: "utf8",
        timeout: 10_000,
      }),
    ) as { status: string };
    assert.equal(state.status, "running");
    const died = await until(doomed.taskArn, (t) => t.lastStatus === "STOPPED", "STOPPED");
    assert.equal(died.containers[0]?.exitCode, 137);
    assert.equal(died.stopCode, "EssentialContainerExited");
    await aws(server, ["ecs", "stop-task", "--task", keep.taskArn]);
    await until(keep.taskArn, (t) => t.lastStatus === "STOPPED", "STOPPED");
  });
});
