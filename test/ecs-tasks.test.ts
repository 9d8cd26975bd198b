import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { cleanupAgent, eventually, pushBusybox, startTestAgent, type TestAgent } from "./agent-harness.ts";
import { aws, startTestServer, type TestServer } from "./helpers.ts";

let server: TestServer;
let agent: TestAgent;
let image: string;
const files = mkdtempSync(join(tmpdir(), "wharf-taskdefs-"));

before(async () => {
  server = await startTestServer();
  image = await pushBusybox(server, "busybox");
  agent = await startTestAgent(server);
});

after(async () => {
  await agent?.stop();
  if (agent !== undefined) await cleanupAgent(agent);
  await server?.stop();
  rmSync(files, { recursive: true, force: true });
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

async function registerTaskDefinition(definition: Record<string, unknown>): Promise<string> {
  const file = join(files, `${String(definition.family)}.json`);
  writeFileSync(file, JSON.stringify(definition));
  const result = await aws(server, ["ecs", "register-task-definition", "--cli-input-json", `file://${file}`]);
  assert.equal(result.code, 0, result.stderr);
  return (result.json as { taskDefinition: { taskDefinitionArn: string } }).taskDefinition.taskDefinitionArn;
}

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

function until(taskArn: string, predicate: (task: Task) => boolean, what: string, timeoutMs = 60_000): Promise<Task> {
  return eventually(what, async () => {
    const task = await describe1(taskArn);
    return predicate(task) ? task : undefined;
  }, timeoutMs);
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
            options: { "awslogs-group": "/ecs/hello", "awslogs-stream-prefix": "web", "awslogs-create-group": "true", "awslogs-region": "us-east-1" },
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
      execFileSync("runc", ["--root", join(agent.dataDir, "runc"), "state", runtimeId], { encoding: "utf8", timeout: 10_000 }),
    ) as { status: string; pid: number };
    assert.equal(state.status, "running");
    assert.match(execFileSync("cat", [`/proc/${state.pid}/cmdline`], { encoding: "utf8" }), /sleep/);

    const taskId = started.taskArn.slice(started.taskArn.lastIndexOf("/") + 1);
    const logs = await eventually("the log line", async () => {
      const result = await aws(server, ["logs", "get-log-events", "--log-group-name", "/ecs/hello", "--log-stream-name", `web/app/${taskId}`]);
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
    assert.equal(typeof stopped.containers[0]?.exitCode, "number");
  });

  it("stops a task whose image does not exist with CannotPullContainerError", async () => {
    const arn = await registerTaskDefinition({
      family: "missing-image",
      containerDefinitions: [{ name: "app", image: `${image.split("/")[0]}/no-such-repo:latest`, memory: 32 }],
    });
    const started = await runTask(arn);
    const stopped = await until(started.taskArn, (t) => t.lastStatus === "STOPPED", "STOPPED");
    assert.equal(stopped.stopCode, "TaskFailedToStart");
    assert.match(stopped.stoppedReason ?? "", /^CannotPullContainerError/);
    assert.match(stopped.containers[0]?.reason ?? "", /^CannotPullContainerError/);
  });
});
