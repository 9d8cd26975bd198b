import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { NodeNetwork } from "../src/agent/network/node-network.ts";
import { eventually, freeSubnet, pushBusybox } from "./agent-harness.ts";
import { parseExports, runWharf, spawnWharf, WHARF_BIN } from "./cli.ts";
import { awsEcs, registerTaskDefinitionCli } from "./helpers.ts";

/**
 * Restarts of real processes: `wharf server` and `wharf agent` run as children of this test and
 * are SIGKILLed, as a crash or an OOM kill would end them, never stopped gracefully.
 */

const run = randomBytes(3).toString("hex");

interface Server {
  child: ChildProcess;
  endpoint: string;
  port: string;
  dataDir: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
}

interface AgentNode {
  dataDir: string;
  bridge: string;
  subnet: string;
  cluster: string;
  child?: ChildProcess;
  output: string;
}

interface Task {
  taskArn: string;
  lastStatus: string;
  stopCode?: string;
  containerInstanceArn?: string;
  containers: Array<{ name: string; lastStatus: string; exitCode?: number; runtimeId?: string }>;
}

let server: Server;
let image: string;
const nodes: AgentNode[] = [];

async function startServer(dataDir: string, port: string): Promise<Server> {
  const args = ["server", "--port", port, "--data-dir", dataDir, "--log-level", "warn"];
  const started = await spawnWharf(args);
  const env = parseExports((await runWharf(["env", "--data-dir", dataDir])).stdout);
  return {
    child: started.child,
    endpoint: started.endpoint,
    port: new URL(started.endpoint).port,
    dataDir,
    credentials: {
      accessKeyId: env.AWS_ACCESS_KEY_ID ?? "",
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY ?? "",
    },
  };
}

async function kill(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGKILL");
  await exited;
}

/** `wharf agent` as its own process on this machine, with the node's data dir, bridge and subnet. */
async function startAgent(node: AgentNode): Promise<string> {
  const child = spawn(
    process.execPath,
    [
      WHARF_BIN,
      "agent",
      "--server",
      server.endpoint,
      "--cluster",
      node.cluster,
      "--data-dir",
      node.dataDir,
      "--bridge",
      node.bridge,
      "--subnet",
      node.subnet,
    ],
    {
      env: {
        PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
        HOME: tmpdir(),
        AWS_ACCESS_KEY_ID: server.credentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: server.credentials.secretAccessKey,
        AWS_DEFAULT_REGION: "us-east-1",
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  node.child = child;
  node.output = "";
  const append = (chunk: Buffer) => {
    node.output += chunk.toString("utf8");
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  return eventually(
    "the agent to register",
    async () => {
      if (child.exitCode !== null) throw new Error(`the agent exited:\n${node.output}`);
      return /wharf agent: (\S+) in cluster/.exec(node.output)?.[1];
    },
    60_000,
  );
}

async function newNode(name: string): Promise<AgentNode> {
  const node: AgentNode = {
    dataDir: mkdtempSync(join(tmpdir(), "wharf-restart-agent-")),
    bridge: `wr${run}${name}`,
    subnet: freeSubnet(),
    cluster: `restart-${run}-${name}`,
    output: "",
  };
  nodes.push(node);
  await awsEcs(server, ["create-cluster", "--cluster-name", node.cluster]);
  return node;
}

/** Everything a node leaves: its containers, overlay mounts, task namespaces, bridge and files. */
async function removeNode(node: AgentNode): Promise<void> {
  await kill(node.child);
  const root = join(node.dataDir, "runc");
  let ids: string[] = [];
  try {
    ids = execFileSync("runc", ["--root", root, "list", "-q"], { encoding: "utf8", timeout: 10_000 })
      .split("\n")
      .filter(Boolean);
  } catch {
    // no containers
  }
  for (const id of ids) {
    try {
      execFileSync("runc", ["--root", root, "delete", "--force", id], { timeout: 10_000, stdio: "ignore" });
    } catch {
      // already gone
    }
  }
  const mounts = readFileSync("/proc/self/mounts", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[1] ?? "")
    .filter((target) => target.startsWith(`${node.dataDir}/`))
    .sort((a, b) => b.length - a.length);
  for (const target of mounts) {
    try {
      execFileSync("umount", ["-l", target], { timeout: 10_000, stdio: "ignore" });
    } catch {
      // already gone
    }
  }
  await new NodeNetwork({ bridge: node.bridge, subnet: node.subnet, stateDir: join(node.dataDir, "network") })
    .destroy()
    .catch(() => undefined);
  rmSync(node.dataDir, { recursive: true, force: true });
}

before(async () => {
  server = await startServer(mkdtempSync(join(tmpdir(), "wharf-restart-server-")), "0");
  image = await pushBusybox(server, `restart-${run}`);
});

after(async () => {
  for (const node of nodes) await removeNode(node);
  await kill(server?.child);
  if (server !== undefined) rmSync(server.dataDir, { recursive: true, force: true });
});

async function runTask(node: AgentNode, family: string, definition: Record<string, unknown>): Promise<Task> {
  const arn = await registerTaskDefinitionCli(server, { family, ...definition });
  const out = await awsEcs<{ tasks: Task[]; failures: unknown[] }>(server, [
    "run-task",
    "--cluster",
    node.cluster,
    "--task-definition",
    arn,
  ]);
  assert.deepEqual(out.failures, []);
  const task = out.tasks[0];
  assert.ok(task !== undefined);
  return task;
}

async function describeTask(node: AgentNode, taskArn: string): Promise<Task> {
  const out = await awsEcs<{ tasks: Task[] }>(server, [
    "describe-tasks",
    "--cluster",
    node.cluster,
    "--tasks",
    taskArn,
  ]);
  const task = out.tasks[0];
  assert.ok(task !== undefined);
  return task;
}

function until(node: AgentNode, taskArn: string, what: string, predicate: (task: Task) => boolean) {
  return eventually(
    `${what} (agent output:\n${node.output})`,
    async () => {
      const task = await describeTask(node, taskArn);
      return predicate(task) ? task : undefined;
    },
    90_000,
  );
}

function container(task: Task, name: string) {
  const found = task.containers.find((c) => c.name === name);
  assert.ok(found !== undefined, `container ${name} of ${task.taskArn}`);
  return found;
}

/** What runc says of a container of the node: its status and the pid of its process. */
function runcState(node: AgentNode, runtimeId: string | undefined): { status: string; pid: number } {
  return JSON.parse(
    execFileSync("runc", ["--root", join(node.dataDir, "runc"), "state", runtimeId ?? ""], {
      encoding: "utf8",
      timeout: 10_000,
    }),
  ) as { status: string; pid: number };
}

/** The task's status in the agent's own state file, or "forgotten" when it has none. */
function agentSays(node: AgentNode, task: Task): string {
  const id = task.taskArn.slice(task.taskArn.lastIndexOf("/") + 1);
  try {
    const state = readFileSync(join(node.dataDir, "tasks", id, "task.json"), "utf8");
    return (JSON.parse(state) as { status: string }).status;
  } catch {
    return "forgotten";
  }
}

/** A task that writes a line to `<shared>/starts` each time it starts, and exits 3 once `<shared>/exit` appears. */
function exitingTask(node: AgentNode, shared: string): Promise<Task> {
  return runTask(node, `exits-${run}`, {
    volumes: [{ name: "shared", host: { sourcePath: shared } }],
    containerDefinitions: [
      {
        name: "app",
        image,
        memory: 32,
        mountPoints: [{ sourceVolume: "shared", containerPath: "/shared" }],
        command: [
          "sh",
          "-c",
          "echo started >> /shared/starts; until cat /shared/exit >/dev/null 2>&1; do sleep 0.2; done; exit 3",
        ],
      },
    ],
  });
}

describe("restarts of real processes", () => {
  it("a SIGKILLed agent, restarted, adopts its running tasks and reports the containers killed meanwhile", async () => {
    const node = await newNode("a");
    const instance = await startAgent(node);
    const keep = await runTask(node, `keep-${run}`, {
      containerDefinitions: [
        { name: "app", image, memory: 32, command: ["sleep", "600"], stopTimeout: 2 },
        { name: "sidecar", image, memory: 32, essential: false, command: ["sleep", "600"], stopTimeout: 2 },
      ],
    });
    const doomed = await runTask(node, `doomed-${run}`, {
      containerDefinitions: [{ name: "app", image, memory: 32, command: ["sleep", "600"], stopTimeout: 2 }],
    });
    const [keepRunning, doomedRunning] = await Promise.all([
      until(node, keep.taskArn, "keep RUNNING", (t) => t.lastStatus === "RUNNING"),
      until(node, doomed.taskArn, "doomed RUNNING", (t) => t.lastStatus === "RUNNING"),
    ]);
    const app = runcState(node, container(keepRunning, "app").runtimeId);
    const sidecar = runcState(node, container(keepRunning, "sidecar").runtimeId);
    const doomedApp = runcState(node, container(doomedRunning, "app").runtimeId);

    await kill(node.child);
    // While no agent runs, two containers' processes are killed from the host.
    process.kill(sidecar.pid, "SIGKILL");
    process.kill(doomedApp.pid, "SIGKILL");
    await eventually("the killed containers to stop", async () =>
      runcState(node, container(keepRunning, "sidecar").runtimeId).status === "stopped" &&
      runcState(node, container(doomedRunning, "app").runtimeId).status === "stopped"
        ? true
        : undefined,
    );

    assert.equal(await startAgent(node), instance, "the restarted agent is the same container instance");
    const died = await until(node, doomed.taskArn, "doomed STOPPED", (t) => t.lastStatus === "STOPPED");
    assert.equal(container(died, "app").exitCode, 137);
    assert.equal(died.stopCode, "EssentialContainerExited");
    const kept = await until(
      node,
      keep.taskArn,
      "the sidecar STOPPED",
      (t) => container(t, "sidecar").lastStatus === "STOPPED",
    );
    assert.equal(container(kept, "sidecar").exitCode, 137);
    assert.equal(kept.lastStatus, "RUNNING", "a container that is not essential leaves its task running");
    assert.equal(container(kept, "app").lastStatus, "RUNNING");
    assert.equal(container(kept, "app").runtimeId, container(keepRunning, "app").runtimeId);
    const appNow = runcState(node, container(kept, "app").runtimeId);
    assert.equal(appNow.status, "running");
    assert.equal(appNow.pid, app.pid, "the same process, untouched");

    // The restarted agent is the task's owner now: it stops it.
    await awsEcs(server, ["stop-task", "--cluster", node.cluster, "--task", keep.taskArn]);
    const stopped = await until(node, keep.taskArn, "keep STOPPED", (t) => t.lastStatus === "STOPPED");
    assert.equal(stopped.stopCode, "UserInitiated");
  });

  it("a SIGKILLed server, restarted, learns what its tasks did meanwhile, and no stopped task starts again", async () => {
    const node = await newNode("b");
    await startAgent(node);
    const shared = mkdtempSync(join(tmpdir(), "wharf-restart-volume-"));
    try {
      const volumes = [{ name: "shared", host: { sourcePath: shared } }];
      const mountPoints = [{ sourceVolume: "shared", containerPath: "/shared" }];
      const steady = await runTask(node, `steady-${run}`, {
        containerDefinitions: [{ name: "app", image, memory: 32, command: ["sleep", "600"], stopTimeout: 2 }],
      });
      const exits = await exitingTask(node, shared);
      // RUNNING only once its init container completes, which waits for /shared/late.
      const late = await runTask(node, `late-${run}`, {
        volumes,
        containerDefinitions: [
          {
            name: "init",
            image,
            memory: 32,
            essential: false,
            mountPoints,
            command: [
              "sh",
              "-c",
              "echo waiting > /shared/late-waiting; until cat /shared/late >/dev/null 2>&1; do sleep 0.2; done",
            ],
          },
          {
            name: "app",
            image,
            memory: 32,
            command: ["sleep", "600"],
            stopTimeout: 2,
            dependsOn: [{ containerName: "init", condition: "COMPLETE" }],
          },
        ],
      });
      const [steadyRunning] = await Promise.all([
        until(node, steady.taskArn, "steady RUNNING", (t) => t.lastStatus === "RUNNING"),
        until(node, exits.taskArn, "exits RUNNING", (t) => t.lastStatus === "RUNNING"),
        until(node, late.taskArn, "late PENDING", (t) => t.lastStatus === "PENDING"),
      ]);
      await eventually("late's init container to wait", async () =>
        readFileSync(join(shared, "late-waiting"), "utf8") === "waiting\n" ? true : undefined,
      );
      const steadyApp = runcState(node, container(steadyRunning, "app").runtimeId);

      await kill(server.child);
      // While the server is down, one task's container exits and another task starts its app.
      writeFileSync(join(shared, "exit"), "");
      writeFileSync(join(shared, "late"), "");
      // The agent's own record of its tasks says when it has done so (its reports cannot get through).
      await eventually("the agent to stop exits and run late", async () =>
        ["STOPPED", "forgotten"].includes(agentSays(node, exits)) && agentSays(node, late) === "RUNNING"
          ? true
          : undefined,
      );

      server = await startServer(server.dataDir, server.port);
      const stopped = await until(node, exits.taskArn, "exits STOPPED", (t) => t.lastStatus === "STOPPED");
      assert.equal(container(stopped, "app").exitCode, 3);
      assert.equal(stopped.stopCode, "EssentialContainerExited");
      assert.equal(
        readFileSync(join(shared, "starts"), "utf8"),
        "started\n",
        "the stopped task never ran again",
      );
      const lateRunning = await until(node, late.taskArn, "late RUNNING", (t) => t.lastStatus === "RUNNING");
      assert.equal(container(lateRunning, "init").exitCode, 0);
      assert.equal(container(lateRunning, "app").lastStatus, "RUNNING");

      const steadyNow = await describeTask(node, steady.taskArn);
      assert.equal(steadyNow.lastStatus, "RUNNING");
      assert.equal(container(steadyNow, "app").runtimeId, container(steadyRunning, "app").runtimeId);
      assert.equal(runcState(node, container(steadyNow, "app").runtimeId).pid, steadyApp.pid);
      // The agent forgets the stopped task once the server has its STOPPED report, and starts nothing for it.
      await eventually("the agent to forget exits", async () =>
        agentSays(node, exits) === "forgotten" ? true : undefined,
      );
      assert.equal(readFileSync(join(shared, "starts"), "utf8"), "started\n");

      for (const task of [steady, late]) {
        await awsEcs(server, ["stop-task", "--cluster", node.cluster, "--task", task.taskArn]);
        await until(node, task.taskArn, "STOPPED", (t) => t.lastStatus === "STOPPED");
      }
    } finally {
      rmSync(shared, { recursive: true, force: true });
    }
  });

  it("a task stopped while the server was down is reported by the next agent after a SIGKILL, not started again, and that agent waits for the server", async () => {
    const node = await newNode("c");
    const instance = await startAgent(node);
    const shared = mkdtempSync(join(tmpdir(), "wharf-restart-volume-"));
    try {
      const exits = await exitingTask(node, shared);
      await until(node, exits.taskArn, "exits RUNNING", (t) => t.lastStatus === "RUNNING");
      await kill(server.child);
      writeFileSync(join(shared, "exit"), "");
      await eventually("the agent to stop exits", async () =>
        ["STOPPED", "forgotten"].includes(agentSays(node, exits)) ? true : undefined,
      );
      // The agent dies before the server could hear that the task stopped; both come back, the
      // agent first: it waits for the server, trying again until it can register.
      await kill(node.child);
      const back = startAgent(node);
      await eventually("the agent to wait for the server", async () =>
        /the server cannot be reached; registering again/.test(node.output) ? true : undefined,
      );
      server = await startServer(server.dataDir, server.port);
      assert.equal(await back, instance);
      const stopped = await until(node, exits.taskArn, "exits STOPPED", (t) => t.lastStatus === "STOPPED");
      assert.equal(container(stopped, "app").exitCode, 3);
      assert.equal(stopped.stopCode, "EssentialContainerExited");
      await eventually("the agent to forget exits", async () =>
        agentSays(node, exits) === "forgotten" ? true : undefined,
      );
      assert.equal(
        readFileSync(join(shared, "starts"), "utf8"),
        "started\n",
        "the stopped task never ran again",
      );
    } finally {
      rmSync(shared, { recursive: true, force: true });
    }
  });
});
