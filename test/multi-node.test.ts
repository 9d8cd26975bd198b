import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { AGENT_TIMEOUT_MS, POLL_TIMEOUT_MS } from "../src/ecs/instances.ts";
import { eventually, freeSubnet, pushBusybox } from "./agent-harness.ts";
import { WHARF_BIN } from "./cli.ts";
import { aws, awsEcs, registerTaskDefinitionCli, startTestServer, type TestServer } from "./helpers.ts";

/**
 * Several nodes on one machine: each agent runs as its own `wharf agent`
 * process inside its own network namespace, with its own address on a bridge
 * this test creates, and reaches the server on the bridge's host-side
 * address. Nothing here talks to anything but loopback and those addresses.
 */

const run = randomBytes(3).toString("hex");
const hostBridge = `wmb${run}`;
/** The host side of the nodes' link: x.y.z.1 on the bridge, nodes at .11, .12, … */
const link = freeSubnet().replace(/\.0\/24$/, "");
const hostAddress = `${link}.1`;
const cluster = `nodes-${run}`;

interface Node {
  n: number;
  netns: string;
  hostVeth: string;
  address: string;
  zone: string;
  dataDir: string;
  child?: ChildProcess;
  output: string;
  arn?: string;
}

interface Task {
  taskArn: string;
  lastStatus: string;
  stopCode?: string;
  containerInstanceArn?: string;
  containers: Array<{ runtimeId?: string; networkBindings?: Array<{ hostPort: number }> }>;
}

let server: TestServer;
let image: string;
/** How far the server's clock runs ahead (to let a dead node's silence last without waiting for it). */
let skewMs = 0;
const nodes: Node[] = [];

function sh(command: string, args: string[]): string {
  return execFileSync(command, args, {
    encoding: "utf8",
    timeout: 30_000,
    stdio: ["ignore", "pipe", "pipe"],
  });
}

function quietly(command: string, args: string[]): void {
  try {
    sh(command, args);
  } catch {
    // already gone
  }
}

/** A network namespace with one veth to the host bridge and an address of its own. */
function createNode(n: number, zone: string): Node {
  const node: Node = {
    n,
    netns: `wharf-node-${run}-${n}`,
    hostVeth: `wmv${run}${n}`,
    address: `${link}.${10 + n}`,
    zone,
    dataDir: mkdtempSync(join(tmpdir(), `wharf-node${n}-`)),
    output: "",
  };
  nodes.push(node);
  const peer = `wmp${run}${n}`;
  sh("ip", ["netns", "add", node.netns]);
  sh("ip", ["link", "add", node.hostVeth, "type", "veth", "peer", "name", peer]);
  sh("ip", ["link", "set", peer, "netns", node.netns]);
  sh("ip", ["link", "set", node.hostVeth, "master", hostBridge, "up"]);
  sh("ip", ["-n", node.netns, "link", "set", "lo", "up"]);
  sh("ip", ["-n", node.netns, "link", "set", peer, "name", "eth0"]);
  sh("ip", ["-n", node.netns, "addr", "add", `${node.address}/24`, "dev", "eth0"]);
  sh("ip", ["-n", node.netns, "link", "set", "eth0", "up"]);
  return node;
}

/**
 * `wharf agent` in the node's network namespace. nsenter rather than `ip netns exec`: the latter
 * also gives the agent a private /sys without the cgroup mounts, and runc then cannot start anything.
 */
async function startAgent(node: Node): Promise<void> {
  const args = [
    `--net=/run/netns/${node.netns}`,
    process.execPath,
    WHARF_BIN,
    "agent",
    "--server",
    server.endpoint,
    "--cluster",
    cluster,
    "--data-dir",
    node.dataDir,
    "--bridge",
    `wmt${run}${node.n}`,
    "--subnet",
    freeSubnet(),
    "--address",
    node.address,
    "--availability-zone",
    node.zone,
    "--attribute",
    `node=${node.n}`,
  ];
  const child = spawn("nsenter", args, {
    env: {
      PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
      HOME: tmpdir(),
      AWS_ACCESS_KEY_ID: server.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: server.credentials.secretAccessKey,
      AWS_DEFAULT_REGION: "us-east-1",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  node.child = child;
  child.stdout?.on("data", (chunk: Buffer) => {
    node.output += chunk.toString("utf8");
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    node.output += chunk.toString("utf8");
  });
  node.arn = await eventually(
    `node ${node.n}'s agent to register`,
    async () => {
      if (child.exitCode !== null) throw new Error(`the agent exited:\n${node.output}`);
      return /wharf agent: (\S+) in cluster/.exec(node.output)?.[1];
    },
    60_000,
  );
}

async function stopAgent(node: Node, signal: NodeJS.Signals): Promise<void> {
  const child = node.child;
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill(signal);
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 20_000))]);
  if (child.exitCode === null && child.signalCode === null) {
    child.kill("SIGKILL");
    await exited;
  }
}

/**
 * Everything a node leaves: its containers (runc state is in its data dir), its tasks' namespaces
 * and overlay mounts, its own namespace (with its bridge and rules), its veth, its files.
 */
function removeNode(node: Node): void {
  const root = join(node.dataDir, "runc");
  let ids: string[] = [];
  try {
    ids = sh("runc", ["--root", root, "list", "-q"]).split("\n").filter(Boolean);
  } catch {
    // no containers
  }
  for (const id of ids) quietly("runc", ["--root", root, "delete", "--force", id]);
  let taskIds: string[] = [];
  try {
    taskIds = readdirSync(join(node.dataDir, "tasks"));
  } catch {
    // no tasks
  }
  for (const taskId of taskIds) quietly("ip", ["netns", "delete", `wharf-${taskId}`]);
  const mounts = readFileSync("/proc/self/mounts", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[1] ?? "")
    .filter((target) => target.startsWith(`${node.dataDir}/`))
    .sort((a, b) => b.length - a.length);
  for (const target of mounts) quietly("umount", ["-l", target]);
  quietly("ip", ["netns", "delete", node.netns]);
  quietly("ip", ["link", "delete", node.hostVeth]);
  rmSync(node.dataDir, { recursive: true, force: true });
}

before(async () => {
  // A fixed MAC: a bridge otherwise takes its lowest port's, which changes when a node goes away,
  // and the other nodes' ARP entries for the server would point nowhere for a while.
  const mac = `02:${[...randomBytes(5)].map((b) => b.toString(16).padStart(2, "0")).join(":")}`;
  sh("ip", ["link", "add", hostBridge, "address", mac, "type", "bridge"]);
  sh("ip", ["addr", "add", `${hostAddress}/24`, "dev", hostBridge]);
  sh("ip", ["link", "set", hostBridge, "up"]);
  createNode(1, "us-east-1a");
  createNode(2, "us-east-1b");
  server = await startTestServer({ host: hostAddress, clock: () => new Date(Date.now() + skewMs) });
  image = await pushBusybox(server, `nodes-${run}`);
  await ecs(["create-cluster", "--cluster-name", cluster]);
  for (const node of nodes) await startAgent(node);
});

after(async () => {
  // Tasks still running are stopped through the API while their agents can still tear them down.
  if (server !== undefined) {
    const running = await listTasks().catch(() => []);
    for (const arn of running) await aws(server, ["ecs", "stop-task", "--cluster", cluster, "--task", arn]);
    if (running.length > 0) {
      await eventually(
        "the tasks to stop",
        async () =>
          (await describeTasks(running)).every((t) => t.lastStatus === "STOPPED") ? true : undefined,
        60_000,
      ).catch(() => undefined);
    }
  }
  for (const node of nodes) {
    await stopAgent(node, "SIGTERM");
    removeNode(node);
  }
  quietly("ip", ["link", "delete", hostBridge]);
  await server?.stop();
});

const ecs = <T = Record<string, unknown>>(args: string[]) => awsEcs<T>(server, args);
/** Tasks not yet stopped on the server (desired RUNNING, or stopping). */
async function listTasks(): Promise<string[]> {
  const out = await ecs<{ taskArns: string[] }>(["list-tasks", "--cluster", cluster]);
  return out.taskArns;
}

const registerTaskDefinition = (definition: Record<string, unknown>) =>
  registerTaskDefinitionCli(server, definition);

async function describeTasks(taskArns: string[]): Promise<Task[]> {
  const out = await ecs<{ tasks: Task[] }>(["describe-tasks", "--cluster", cluster, "--tasks", ...taskArns]);
  return out.tasks;
}

async function allRunning(taskArns: string[]): Promise<Task[]> {
  let last: Task[] = [];
  try {
    return await eventually(
      "the tasks to run",
      async () => {
        last = await describeTasks(taskArns);
        return last.length === taskArns.length && last.every((t) => t.lastStatus === "RUNNING")
          ? last
          : undefined;
      },
      90_000,
    );
  } catch (error) {
    const agents = nodes.map((n) => `node ${n.n}:\n${n.output.split("\n").slice(-15).join("\n")}`).join("\n");
    throw new Error(`${String(error)}\n${JSON.stringify(last, null, 1).slice(0, 3000)}\n${agents}`);
  }
}

async function runTask(args: string[]): Promise<Task[]> {
  const out = await ecs<{ tasks: Task[]; failures: unknown[] }>(["run-task", "--cluster", cluster, ...args]);
  assert.deepEqual(out.failures, []);
  return out.tasks;
}

function nodeOf(arn: string | undefined): Node {
  const node = nodes.find((n) => n.arn === arn);
  assert.ok(node !== undefined, `${arn} is one of the nodes`);
  return node;
}

/** The container's state in its node's runtime (the processes share this machine's PID namespace). */
function containerState(node: Node, runtimeId: string): string {
  const state = JSON.parse(sh("runc", ["--root", join(node.dataDir, "runc"), "state", runtimeId])) as {
    status: string;
  };
  return state.status;
}

interface Instance {
  containerInstanceArn: string;
  agentConnected: boolean;
  status: string;
  attributes: Array<{ name: string; value?: string }>;
  registeredResources: Array<{ name: string; integerValue?: number }>;
  runningTasksCount: number;
}

async function describeInstances(): Promise<Instance[]> {
  const out = await ecs<{ containerInstances: Instance[] }>([
    "describe-container-instances",
    "--cluster",
    cluster,
    "--container-instances",
    ...nodes.map((n) => n.arn ?? ""),
  ]);
  return out.containerInstances;
}

describe("several nodes on one machine", () => {
  it("registers each node as its own container instance, with its own zone", async () => {
    const listed = await ecs<{ containerInstanceArns: string[] }>([
      "list-container-instances",
      "--cluster",
      cluster,
    ]);
    assert.deepEqual([...listed.containerInstanceArns].sort(), nodes.map((n) => n.arn).sort());
    for (const instance of await describeInstances()) {
      const node = nodeOf(instance.containerInstanceArn);
      assert.equal(instance.agentConnected, true);
      assert.equal(instance.status, "ACTIVE");
      const attributes = new Map(instance.attributes.map((a) => [a.name, a.value]));
      assert.equal(attributes.get("ecs.availability-zone"), node.zone);
      assert.equal(attributes.get("node"), String(node.n));
      assert.equal(
        instance.registeredResources.find((r) => r.name === "CPU")?.integerValue,
        cpus().length * 1024,
      );
    }
  });

  it("spreads run-task --count 4 over the zones two and two, and runs the tasks on both nodes", async () => {
    const definition = await registerTaskDefinition({
      family: `spread-${run}`,
      containerDefinitions: [{ name: "app", image, memory: 32, command: ["sleep", "600"], stopTimeout: 2 }],
    });
    const tasks = await runTask(["--task-definition", definition, "--count", "4"]);
    assert.equal(tasks.length, 4);
    const perNode = new Map<string | undefined, number>();
    for (const task of tasks)
      perNode.set(task.containerInstanceArn, (perNode.get(task.containerInstanceArn) ?? 0) + 1);
    assert.deepEqual(
      nodes.map((n) => perNode.get(n.arn)),
      [2, 2],
    );
    for (const task of await allRunning(tasks.map((t) => t.taskArn))) {
      const node = nodeOf(task.containerInstanceArn);
      assert.equal(containerState(node, task.containers[0]?.runtimeId ?? ""), "running");
    }
    const counts = await describeInstances();
    assert.deepEqual(
      counts.map((i) => i.runningTasksCount),
      [2, 2],
    );
  });

  it("publishes the same static port on each node's own address", async () => {
    const definition = await registerTaskDefinition({
      family: `web-${run}`,
      containerDefinitions: [
        {
          name: "web",
          image,
          memory: 32,
          portMappings: [{ containerPort: 8080, hostPort: 8080, protocol: "tcp" }],
          command: ["sh", "-c", "hostname > /index.html; httpd -f -p 8080 -h /"],
          stopTimeout: 2,
        },
      ],
    });
    // Port 8080 fits once per node: two tasks need both nodes.
    const tasks = await runTask(["--task-definition", definition, "--count", "2"]);
    assert.deepEqual(new Set(tasks.map((t) => t.containerInstanceArn)), new Set(nodes.map((n) => n.arn)));
    for (const task of await allRunning(tasks.map((t) => t.taskArn))) {
      const node = nodeOf(task.containerInstanceArn);
      const taskId = task.taskArn.slice(task.taskArn.lastIndexOf("/") + 1);
      const body = await eventually(`node ${node.n}'s published port`, async () => {
        const response = await fetch(`http://${node.address}:8080/index.html`, {
          signal: AbortSignal.timeout(2000),
        });
        return response.ok ? response.text() : undefined;
      });
      assert.equal(body.trim(), taskId.slice(-12), `node ${node.n} serves its own task`);
    }
  });

  it("keeps working on the other node when one is removed", async () => {
    const [gone, kept] = nodes;
    assert.ok(gone !== undefined && kept !== undefined, "two nodes");
    const before = await describeTasks(await listTasks());
    const onKept = before.filter((t) => t.containerInstanceArn === kept.arn).map((t) => t.taskArn);
    assert.ok(onKept.length > 0, "the kept node runs tasks");
    // A service with a task on each node (spread over the zones).
    await ecs([
      "create-service",
      "--cluster",
      cluster,
      "--service-name",
      `survivor-${run}`,
      "--task-definition",
      `spread-${run}`,
      "--desired-count",
      "2",
    ]);
    const serviceTasks = async () => {
      const listed = await ecs<{ taskArns: string[] }>([
        "list-tasks",
        "--cluster",
        cluster,
        "--service-name",
        `survivor-${run}`,
      ]);
      return listed.taskArns.length === 0 ? [] : describeTasks(listed.taskArns);
    };
    const placed = await eventually("the service's task on each node", async () => {
      const tasks = await serviceTasks();
      return tasks.length === 2 &&
        tasks.every((t) => t.lastStatus === "RUNNING") &&
        new Set(tasks.map((t) => t.containerInstanceArn)).size === 2
        ? tasks
        : undefined;
    });
    const stranded = placed.find((t) => t.containerInstanceArn === gone.arn);
    assert.ok(stranded !== undefined, "a service task runs on the node that dies");

    // The node dies: its agent is killed, its containers and its namespace go.
    await stopAgent(gone, "SIGKILL");
    removeNode(gone);
    // Past the agent timeout (the server's clock runs ahead rather than the test waiting).
    skewMs += AGENT_TIMEOUT_MS + 5_000;
    // Any poll the dead agent left open ends within the server's poll wait, and is no sign of life.
    await new Promise((resolve) =>
      setTimeout(resolve, Math.min(POLL_TIMEOUT_MS, AGENT_TIMEOUT_MS / 2) + 2_000),
    );
    await eventually("the live node to show connected", async () => {
      const live = (await describeInstances()).find((i) => i.containerInstanceArn === kept.arn);
      return live?.agentConnected === true ? true : undefined;
    });
    const dead = (await describeInstances()).find((i) => i.containerInstanceArn === gone.arn);
    assert.equal(dead?.agentConnected, false, "the dead node is disconnected");
    // The service's task on the lost node is stopped and replaced on the live one.
    const moved = await eventually("the service's lost task replaced on the live node", async () => {
      const tasks = await serviceTasks();
      return tasks.length === 2 &&
        tasks.every((t) => t.lastStatus === "RUNNING" && t.containerInstanceArn === kept.arn)
        ? tasks
        : undefined;
    });
    assert.ok(!moved.some((t) => t.taskArn === stranded.taskArn), "the lost task is not counted");
    const [lost] = await describeTasks([stranded.taskArn]);
    assert.equal(lost?.lastStatus, "STOPPED");
    assert.equal(lost?.stopCode, "ServiceSchedulerInitiated");
    await ecs(["delete-service", "--cluster", cluster, "--service", `survivor-${run}`, "--force"]);
    await eventually("the service's tasks to stop", async () =>
      (await serviceTasks()).length === 0 ? true : undefined,
    );
    const pinned = await ecs<{ tasks: Task[]; failures: Array<{ arn: string; reason: string }> }>([
      "run-task",
      "--cluster",
      cluster,
      "--task-definition",
      `spread-${run}`,
      "--placement-constraints",
      JSON.stringify([{ type: "memberOf", expression: `attribute:node == ${gone.n}` }]),
    ]);
    assert.deepEqual(pinned.tasks, []);
    assert.deepEqual(
      pinned.failures.find((f) => f.arn === gone.arn),
      { arn: gone.arn, reason: "AGENT" },
    );

    const definition = await registerTaskDefinition({
      family: `after-${run}`,
      containerDefinitions: [{ name: "app", image, memory: 32, command: ["sleep", "600"], stopTimeout: 2 }],
    });
    const out = await ecs<{ tasks: Task[]; failures: Array<{ arn: string; reason: string }> }>([
      "run-task",
      "--cluster",
      cluster,
      "--task-definition",
      definition,
      "--count",
      "2",
    ]);
    assert.deepEqual(out.failures, []);
    assert.deepEqual(
      out.tasks.map((t) => t.containerInstanceArn),
      [kept.arn, kept.arn],
    );
    await allRunning([...onKept, ...out.tasks.map((t) => t.taskArn)]);

    // The operator removes the dead node: its tasks are stopped.
    await ecs([
      "deregister-container-instance",
      "--cluster",
      cluster,
      "--container-instance",
      gone.arn ?? "",
      "--force",
    ]);
    const listed = await ecs<{ containerInstanceArns: string[] }>([
      "list-container-instances",
      "--cluster",
      cluster,
    ]);
    assert.deepEqual(listed.containerInstanceArns, [kept.arn]);
    const remaining = await describeTasks(await listTasks());
    assert.ok(
      remaining.every((t) => t.containerInstanceArn === kept.arn && t.lastStatus === "RUNNING"),
      "only the live node's tasks remain, running",
    );
  });

  it("stops a node's `wharf agent` (exit 5) and its tasks when its instance is deregistered", async () => {
    const kept = nodes.find((node) => node.child?.exitCode === null && node.child.signalCode === null);
    assert.ok(kept?.child !== undefined && kept.arn !== undefined, "a node whose agent still runs");
    const child = kept.child;
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const before = await listTasks();
    assert.ok(before.length > 0, "the node runs tasks");
    await ecs([
      "deregister-container-instance",
      "--cluster",
      cluster,
      "--container-instance",
      kept.arn,
      "--force",
    ]);
    const code = await Promise.race([
      exited,
      new Promise<string>((r) => setTimeout(() => r("still running"), 60_000)),
    ]);
    assert.equal(code, 5, kept.output);
    assert.match(kept.output, /the container instance was deregistered/);
    // It did not join again as a new instance, and what it ran is stopped on the node.
    const listed = await ecs<{ containerInstanceArns: string[] }>([
      "list-container-instances",
      "--cluster",
      cluster,
    ]);
    assert.deepEqual(listed.containerInstanceArns, []);
    assert.deepEqual(await listTasks(), []);
    const root = join(kept.dataDir, "runc");
    const running = sh("runc", ["--root", root, "list", "-q"]).split("\n").filter(Boolean);
    assert.deepEqual(running, [], "no container left on the node");
  });
});
