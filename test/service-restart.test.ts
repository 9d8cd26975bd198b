import assert from "node:assert/strict";
import { type ChildProcess, execFileSync } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { cleanupAgent, eventually, pushBusybox, startTestAgent, type TestAgent } from "./agent-harness.ts";
import { parseExports, runWharf, spawnWharf } from "./cli.ts";
import { awsEcs, registerTaskDefinitionCli } from "./helpers.ts";

/**
 * The service controller killed mid-deployment: `wharf server` runs as a child process on a data
 * directory and port of its own, a real agent runs the service's containers, and the server is
 * SIGKILLed while a rolling deployment is under way, then started again on the same directory and
 * port. The deployment must finish from where it was, with no slot given a second task.
 */

const dataDir = mkdtempSync(join(tmpdir(), "wharf-svc-restart-"));
let port = 0;
let server: { child: ChildProcess; endpoint: string };
let target: { endpoint: string; credentials: { accessKeyId: string; secretAccessKey: string } };
let agent: TestAgent | undefined;
let image = "";

/** The container's process sleeps until asked to stop, then exits at once. */
const SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"];

interface Task {
  taskArn: string;
  lastStatus: string;
  desiredStatus: string;
  taskDefinitionArn: string;
  startedBy?: string;
  containers: Array<{ runtimeId?: string }>;
}

interface Service {
  runningCount: number;
  taskDefinition: string;
  deployments: Array<{ id: string; taskDefinition: string; rolloutState: string }>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen({ port: 0, host: "127.0.0.1" }, () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0));
    });
  });
}

function startServer() {
  return spawnWharf(["server", "--port", String(port), "--data-dir", dataDir, "--log-level", "warn"]);
}

async function killServer(): Promise<void> {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return;
  server.child.kill("SIGKILL");
  await once(server.child, "exit");
}

const cli = <T>(args: string[]) => awsEcs<T>(target, args);

/** Every task of the service, wanted RUNNING or STOPPED, described. */
async function allTasks(service: string): Promise<Task[]> {
  const arns: string[] = [];
  for (const status of ["RUNNING", "STOPPED"]) {
    const listed = await cli<{ taskArns: string[] }>([
      "list-tasks",
      "--service-name",
      service,
      "--desired-status",
      status,
    ]);
    arns.push(...listed.taskArns);
  }
  if (arns.length === 0) return [];
  const tasks: Task[] = [];
  for (let i = 0; i < arns.length; i += 100) {
    const described = await cli<{ tasks: Task[] }>(["describe-tasks", "--tasks", ...arns.slice(i, i + 100)]);
    tasks.push(...described.tasks);
  }
  return tasks;
}

async function describeService(name: string): Promise<Service> {
  const body = await cli<{ services: Service[] }>(["describe-services", "--services", name]);
  const service = body.services[0];
  assert.ok(service !== undefined);
  return service;
}

/** The ids of the containers runc is running for the agent. */
function runcContainers(dataDir: string): string[] {
  const out = execFileSync("runc", ["--root", join(dataDir, "runc"), "list", "--format", "json"], {
    encoding: "utf8",
    timeout: 10_000,
  });
  const list = JSON.parse(out === "" ? "null" : out) as Array<{ id: string; status: string }> | null;
  return (list ?? []).filter((c) => c.status === "running").map((c) => c.id);
}

before(async () => {
  port = await freePort();
  server = await startServer();
  const env = parseExports((await runWharf(["env", "--data-dir", dataDir])).stdout);
  target = {
    endpoint: server.endpoint,
    credentials: {
      accessKeyId: env.AWS_ACCESS_KEY_ID ?? "",
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY ?? "",
    },
  };
  image = await pushBusybox(target, "restart-busybox");
  agent = await startTestAgent(target);
});

after(async () => {
  if (agent !== undefined) {
    await agent.stop();
    await cleanupAgent(agent);
  }
  await killServer().catch(() => undefined);
  rmSync(dataDir, { recursive: true, force: true });
});

describe("a service controller killed mid-deployment", () => {
  it("resumes the deployment after a restart and starts no task twice for one slot", async () => {
    const definition = (extra: Record<string, unknown>) => ({
      family: "resume",
      containerDefinitions: [{ name: "app", image, memory: 32, command: SLEEPER, ...extra }],
    });
    const v1 = await registerTaskDefinitionCli(target, definition({}));
    await cli([
      "create-service",
      "--service-name",
      "resume",
      "--task-definition",
      v1,
      "--desired-count",
      "4",
      "--deployment-configuration",
      "minimumHealthyPercent=50,maximumPercent=100",
    ]);
    await eventually(
      "4 tasks of the first revision running",
      async () => {
        const s = await describeService("resume");
        return s.runningCount === 4 && s.deployments.length === 1 ? s : undefined;
      },
      90_000,
    );

    // The new revision is healthy only after its first check, 5 s after start: the rollout takes
    // two rounds of two tasks, each waiting for health, and the server dies during the first.
    const v2 = await registerTaskDefinitionCli(
      target,
      definition({ healthCheck: { command: ["CMD-SHELL", "true"], interval: 5, timeout: 2, retries: 2 } }),
    );
    await cli(["update-service", "--service", "resume", "--task-definition", v2]);
    const before = await eventually(
      "the first tasks of the new revision",
      async () => {
        const tasks = (await allTasks("resume")).filter((t) => t.taskDefinitionArn === v2);
        return tasks.length > 0 ? tasks : undefined;
      },
      60_000,
    );
    await killServer();
    // While the server is down the agent goes on: the new tasks start and their checks pass.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    server = await startServer();
    target.endpoint = server.endpoint;

    let seen = "";
    const done = await eventually(
      "the deployment to complete after the restart",
      async () => {
        const s = await describeService("resume");
        const tasks = await allTasks("resume");
        seen = JSON.stringify({
          deployments: s.deployments,
          runningCount: s.runningCount,
          tasks: tasks.map((t) => [t.taskDefinitionArn.split(":").pop(), t.lastStatus, t.desiredStatus]),
        });
        const only = s.deployments[0];
        return s.deployments.length === 1 && only?.rolloutState === "COMPLETED" && s.runningCount === 4
          ? s
          : undefined;
      },
      120_000,
    ).catch((error: unknown) => {
      throw new Error(`${String(error)}; last seen: ${seen}`);
    });
    assert.equal(done.taskDefinition, v2);

    const tasks = await allTasks("resume");
    const newer = tasks.filter((t) => t.taskDefinitionArn === v2);
    const older = tasks.filter((t) => t.taskDefinitionArn === v1);
    // Four slots, four tasks of the new revision: none started twice, none lost and replaced.
    assert.equal(newer.length, 4, `tasks of the new revision: ${newer.map((t) => t.lastStatus).join(", ")}`);
    for (const task of newer) assert.equal(task.lastStatus, "RUNNING");
    for (const task of before)
      assert.ok(
        newer.some((t) => t.taskArn === task.taskArn),
        "kept its first tasks",
      );
    assert.equal(older.length, 4);
    for (const task of older) assert.equal(task.lastStatus, "STOPPED");
    // The node runs exactly those four containers.
    const ids = runcContainers(agent?.dataDir ?? "").sort();
    const expected = newer.flatMap((t) => t.containers.map((c) => c.runtimeId ?? "")).sort();
    assert.deepEqual(ids, expected);
  });
});
