import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { arch, cpus, totalmem } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { DescribeContainerInstancesCommand } from "@aws-sdk/client-ecs";
import { AGENT_TIMEOUT_MS } from "../src/ecs/instances.ts";
import {
  cleanupAgent,
  eventually,
  pushBusybox,
  startTestAgent,
  type TestAgent,
  unusedStaticPort,
} from "./agent-harness.ts";
import {
  awsEcs,
  awsEcsFails,
  ecsClient,
  registerTaskDefinitionCli,
  startTestServer,
  type TestServer,
} from "./helpers.ts";

/**
 * Container instances as an ECS user sees them: a real agent registering a
 * node, its resources and attributes, filters, draining, attributes,
 * deregistration, and what happens when the agent goes quiet.
 */

let server: TestServer;
let agent: TestAgent;
let image: string;
/** How far the server's clock runs ahead of the real one (to let an agent's silence last). */
let skewMs = 0;
const run = randomBytes(3).toString("hex");
const cluster = `instances-${run}`;
const apiCluster = `registered-${run}`;

interface Resource {
  name: string;
  integerValue?: number;
  stringSetValue?: string[];
}
interface Instance {
  containerInstanceArn: string;
  ec2InstanceId: string;
  status: string;
  agentConnected: boolean;
  runningTasksCount: number;
  pendingTasksCount: number;
  registeredResources: Resource[];
  remainingResources: Resource[];
  attributes: Array<{ name: string; value?: string }>;
  versionInfo: { agentVersion?: string; agentHash?: string; dockerVersion?: string };
  healthStatus?: { overallStatus: string };
}
interface Task {
  taskArn: string;
  lastStatus: string;
  containerInstanceArn?: string;
  stopCode?: string;
  stoppedReason?: string;
  containers: Array<{ runtimeId?: string; lastStatus: string }>;
}
interface Failure {
  arn: string;
  reason: string;
}

before(async () => {
  server = await startTestServer({ clock: () => new Date(Date.now() + skewMs) });
  image = await pushBusybox(server, `instances-${run}`);
  await ecs(["create-cluster", "--cluster-name", cluster]);
  await ecs(["create-cluster", "--cluster-name", apiCluster]);
  agent = await startTestAgent(server, {
    cluster,
    zone: "us-east-1b",
    attributes: [{ name: "color", value: "blue" }, { name: "stack" }],
  });
});

after(async () => {
  await agent?.stop();
  if (agent !== undefined) await cleanupAgent(agent);
  await server?.stop();
});

const ecs = <T = Record<string, unknown>>(args: string[]) => awsEcs<T>(server, args);
const ecsFails = (args: string[]) => awsEcsFails(server, args);

async function describeInstance(arn: string, clusterName = cluster): Promise<Instance> {
  const out = await ecs<{ containerInstances: Instance[]; failures: Failure[] }>([
    "describe-container-instances",
    "--cluster",
    clusterName,
    "--container-instances",
    arn,
    "--include",
    "CONTAINER_INSTANCE_HEALTH",
  ]);
  assert.deepEqual(out.failures, []);
  const instance = out.containerInstances[0];
  assert.ok(instance !== undefined, "the instance is described");
  return instance;
}

async function listInstances(clusterName: string, extra: string[] = []): Promise<string[]> {
  const out = await ecs<{ containerInstanceArns: string[] }>([
    "list-container-instances",
    "--cluster",
    clusterName,
    ...extra,
  ]);
  return [...out.containerInstanceArns].sort();
}

function resource(resources: Resource[], name: string): Resource {
  const found = resources.find((r) => r.name === name);
  assert.ok(found !== undefined, `${name} is reported`);
  return found;
}

function attribute(instance: Instance, name: string): { name: string; value?: string } | undefined {
  return instance.attributes.find((a) => a.name === name);
}

const registerTaskDefinition = (definition: Record<string, unknown>) =>
  registerTaskDefinitionCli(server, definition);

async function describeTask(taskArn: string): Promise<Task> {
  const out = await ecs<{ tasks: Task[] }>(["describe-tasks", "--cluster", cluster, "--tasks", taskArn]);
  const task = out.tasks[0];
  assert.ok(task !== undefined, "the task is described");
  return task;
}

function untilTask(taskArn: string, status: string): Promise<Task> {
  return eventually(`task ${status}`, async () => {
    const task = await describeTask(taskArn);
    return task.lastStatus === status ? task : undefined;
  });
}

async function runTask(taskDefinition: string): Promise<{ tasks: Task[]; failures: Failure[] }> {
  return ecs(["run-task", "--cluster", cluster, "--task-definition", taskDefinition]);
}

/** A sleeping container that stops quickly, with a given reservation. */
function sleeper(family: string, extra: Record<string, unknown> = {}): Promise<string> {
  return registerTaskDefinition({
    family,
    containerDefinitions: [
      { name: "app", image, cpu: 64, memory: 32, command: ["sleep", "600"], stopTimeout: 2, ...extra },
    ],
  });
}

function agentArn(): string {
  const arn = agent.agent.containerInstanceArn;
  assert.ok(arn !== undefined, "the agent has registered");
  return arn;
}

describe("container instances", () => {
  it("registers the node with its real CPU, memory and attributes, connected and ACTIVE", async () => {
    assert.deepEqual(await listInstances(cluster), [agentArn()]);
    const instance = await describeInstance(agentArn());
    assert.equal(instance.status, "ACTIVE");
    assert.equal(instance.agentConnected, true);
    assert.equal(instance.healthStatus?.overallStatus, "OK");
    assert.equal(instance.runningTasksCount, 0);
    assert.equal(instance.pendingTasksCount, 0);
    assert.match(instance.ec2InstanceId, /^i-[0-9a-f]+$/);
    assert.ok((instance.versionInfo.agentVersion ?? "").length > 0, "an agent version");

    const registered = instance.registeredResources;
    assert.equal(resource(registered, "CPU").integerValue, cpus().length * 1024);
    const totalMiB = Math.floor(totalmem() / 1024 / 1024);
    const memory = resource(registered, "MEMORY").integerValue ?? 0;
    assert.ok(memory <= totalMiB && memory >= totalMiB - 1024, `${memory} MiB of ${totalMiB} MiB`);
    assert.deepEqual(resource(registered, "PORTS").stringSetValue, ["22", "2375", "2376", "51678", "51679"]);
    assert.equal(resource(instance.remainingResources, "CPU").integerValue, cpus().length * 1024);
    assert.equal(resource(instance.remainingResources, "MEMORY").integerValue, memory);

    assert.equal(attribute(instance, "ecs.os-type")?.value, "linux");
    assert.equal(attribute(instance, "ecs.cpu-architecture")?.value, arch() === "x64" ? "x86_64" : arch());
    assert.equal(attribute(instance, "ecs.availability-zone")?.value, "us-east-1b");
    assert.equal(attribute(instance, "color")?.value, "blue");
    assert.deepEqual(attribute(instance, "stack"), { name: "stack" }, "an attribute without a value");

    // The SDK reads the same shape.
    const sdk = await ecsClient(server).send(
      new DescribeContainerInstancesCommand({ cluster, containerInstances: [agentArn()] }),
    );
    assert.equal(sdk.containerInstances?.[0]?.agentConnected, true);
    assert.ok(sdk.containerInstances?.[0]?.registeredAt instanceof Date, "registeredAt is a time");
  });

  it("shows a running task's CPU, memory and static host port taken from the remaining resources", async () => {
    const before = await describeInstance(agentArn());
    const hostPort = await unusedStaticPort();
    const definition = await registerTaskDefinition({
      family: `web-${run}`,
      containerDefinitions: [
        {
          name: "web",
          image,
          cpu: 256,
          memory: 128,
          portMappings: [{ containerPort: 8080, hostPort, protocol: "tcp" }],
          command: ["sh", "-c", "echo served > /index.html; httpd -f -p 8080 -h /"],
          stopTimeout: 2,
        },
      ],
    });
    const started = await runTask(definition);
    assert.deepEqual(started.failures, []);
    const task = started.tasks[0];
    assert.ok(task !== undefined, "task is there");
    assert.equal(task.containerInstanceArn, agentArn());
    await untilTask(task.taskArn, "RUNNING");
    const body = await eventually("the static host port", async () => {
      const response = await fetch(`http://127.0.0.1:${hostPort}/index.html`, {
        signal: AbortSignal.timeout(2000),
      });
      return response.ok ? response.text() : undefined;
    });
    assert.equal(body.trim(), "served");

    const during = await describeInstance(agentArn());
    assert.equal(during.runningTasksCount, 1);
    assert.equal(during.pendingTasksCount, 0);
    const cpu = (r: Resource[]) => resource(r, "CPU").integerValue ?? 0;
    const mem = (r: Resource[]) => resource(r, "MEMORY").integerValue ?? 0;
    assert.equal(cpu(during.remainingResources), cpu(before.remainingResources) - 256);
    assert.equal(mem(during.remainingResources), mem(before.remainingResources) - 128);
    assert.ok(
      resource(during.remainingResources, "PORTS").stringSetValue?.includes(String(hostPort)),
      "the host port is taken",
    );
    assert.ok(
      !resource(during.registeredResources, "PORTS").stringSetValue?.includes(String(hostPort)),
      "registered ports stay as registered",
    );

    await ecs(["stop-task", "--cluster", cluster, "--task", task.taskArn]);
    await untilTask(task.taskArn, "STOPPED");
    const afterStop = await describeInstance(agentArn());
    assert.equal(afterStop.runningTasksCount, 0);
    assert.equal(cpu(afterStop.remainingResources), cpu(before.remainingResources));
    assert.equal(mem(afterStop.remainingResources), mem(before.remainingResources));
    assert.ok(
      !resource(afterStop.remainingResources, "PORTS").stringSetValue?.includes(String(hostPort)),
      "the host port is free again",
    );
  });

  it("puts, lists and deletes custom attributes, and they survive the agent's next poll", async () => {
    const arn = agentArn();
    await ecs([
      "put-attributes",
      "--cluster",
      cluster,
      "--attributes",
      `name=color,value=green,targetType=container-instance,targetId=${arn}`,
      `name=team,value=core,targetType=container-instance,targetId=${arn}`,
    ]);
    // StartTask wakes the agent's long poll at once; its heartbeat must not undo the change.
    const started = await ecs<{ tasks: Task[]; failures: Failure[] }>([
      "start-task",
      "--cluster",
      cluster,
      "--task-definition",
      await sleeper(`attrs-${run}`),
      "--container-instances",
      arn.slice(arn.lastIndexOf("/") + 1),
    ]);
    assert.deepEqual(started.failures, []);
    const task = started.tasks[0];
    assert.ok(task !== undefined, "task is there");
    assert.equal(task.containerInstanceArn, arn);
    await untilTask(task.taskArn, "RUNNING");

    const listed = await ecs<{ attributes: Array<Record<string, string>> }>([
      "list-attributes",
      "--cluster",
      cluster,
      "--target-type",
      "container-instance",
      "--attribute-name",
      "team",
    ]);
    assert.deepEqual(listed.attributes, [
      { name: "team", value: "core", targetType: "container-instance", targetId: arn },
    ]);
    const all = await ecs<{ attributes: Array<Record<string, string>> }>([
      "list-attributes",
      "--cluster",
      cluster,
      "--target-type",
      "container-instance",
    ]);
    assert.equal(all.attributes.find((a) => a.name === "color")?.value, "green");
    assert.ok(
      all.attributes.some((a) => a.name === "ecs.os-type"),
      "the agent's own attributes are listed too",
    );
    assert.deepEqual(await listInstances(cluster, ["--filter", "attribute:color == green"]), [arn]);
    assert.deepEqual(await listInstances(cluster, ["--filter", "attribute:team exists"]), [arn]);

    const unknown = await ecsFails([
      "put-attributes",
      "--cluster",
      cluster,
      "--attributes",
      `name=team,value=x,targetType=container-instance,targetId=${"0".repeat(32)}`,
    ]);
    assert.match(unknown, /TargetNotFoundException/);

    // ECS's rules: back slashes are allowed; a value may not start or end with a space; an
    // instance takes at most 10 custom attributes (with color, team and the path, 8 more are 11),
    // and a call that would pass that writes none of its attributes.
    const put = (attributes: Array<{ name: string; value?: string }>) => [
      "put-attributes",
      "--cluster",
      cluster,
      "--attributes",
      JSON.stringify(attributes.map((a) => ({ ...a, targetType: "container-instance", targetId: arn }))),
    ];
    await ecs(put([{ name: "win\\path", value: "C:\\dir" }]));
    assert.equal(attribute(await describeInstance(arn), "win\\path")?.value, "C:\\dir");
    assert.match(await ecsFails(put([{ name: "padded", value: " x" }])), /InvalidParameterException/);
    const more = Array.from({ length: 8 }, (_, i) => ({ name: `extra-${i}`, value: "1" }));
    assert.match(await ecsFails(put(more)), /AttributeLimitExceededException/);
    assert.equal(attribute(await describeInstance(arn), "extra-0"), undefined, "none of the call's");
    await ecs(["delete-attributes", ...put([{ name: "win\\path" }]).slice(1)]);

    await ecs([
      "delete-attributes",
      "--cluster",
      cluster,
      "--attributes",
      `name=team,targetType=container-instance,targetId=${arn}`,
    ]);
    const gone = await ecs<{ attributes: unknown[] }>([
      "list-attributes",
      "--cluster",
      cluster,
      "--target-type",
      "container-instance",
      "--attribute-name",
      "team",
    ]);
    assert.deepEqual(gone.attributes, []);
    assert.deepEqual(await listInstances(cluster, ["--filter", "attribute:team exists"]), []);
    assert.deepEqual(await listInstances(cluster, ["--filter", "not(attribute:team exists)"]), [arn]);

    await ecs(["stop-task", "--cluster", cluster, "--task", task.taskArn]);
    await untilTask(task.taskArn, "STOPPED");
    assert.equal(attribute(await describeInstance(arn), "color")?.value, "green");
  });

  it("registers instances through the API and lists them by cluster query and status", async () => {
    const register = async (zone: string, extra: string[]) => {
      const out = await ecs<{ containerInstance: Instance }>([
        "register-container-instance",
        "--cluster",
        apiCluster,
        "--total-resources",
        "name=CPU,type=INTEGER,integerValue=4096",
        "name=MEMORY,type=INTEGER,integerValue=8192",
        "--version-info",
        "agentVersion=1.80.0,agentHash=4023248,dockerVersion=20.10.25",
        "--attributes",
        `name=ecs.availability-zone,value=${zone}`,
        ...extra,
      ]);
      return out.containerInstance;
    };
    const blue = await register("us-east-1a", ["name=color,value=blue"]);
    const red = await register("us-east-1c", ["name=color,value=red"]);
    const plain = await register("us-east-1b", []);
    assert.equal(blue.status, "ACTIVE");
    assert.equal(resource(blue.registeredResources, "CPU").integerValue, 4096);
    assert.equal(resource(blue.remainingResources, "MEMORY").integerValue, 8192);
    assert.equal(attribute(blue, "color")?.value, "blue");
    const described = await describeInstance(red.containerInstanceArn, apiCluster);
    assert.deepEqual(described.versionInfo, {
      agentVersion: "1.80.0",
      agentHash: "4023248",
      dockerVersion: "20.10.25",
    });

    const all = [blue, red, plain].map((i) => i.containerInstanceArn).sort();
    const [b, r, p] = [blue, red, plain].map((i) => i.containerInstanceArn);
    assert.deepEqual(await listInstances(apiCluster), all);
    const filtered = async (filter: string) => listInstances(apiCluster, ["--filter", filter]);
    assert.deepEqual(await filtered("attribute:color == blue"), [b]);
    assert.deepEqual(
      await filtered("attribute:ecs.availability-zone in [us-east-1a, us-east-1b]"),
      [b, p].sort(),
    );
    assert.deepEqual(await filtered("not(attribute:color exists)"), [p]);
    assert.deepEqual(
      await filtered("attribute:color in [blue, red] and attribute:ecs.availability-zone != us-east-1a"),
      [r],
    );
    assert.deepEqual(await filtered("attribute:color == red or attribute:color == blue"), [b, r].sort());
    assert.deepEqual(await filtered("attribute:ecs.availability-zone =~ us-east-1.*"), all);
    assert.deepEqual(await filtered(`ec2InstanceId == ${plain.ec2InstanceId}`), [p]);
    assert.match(
      await ecsFails(["list-container-instances", "--cluster", apiCluster, "--filter", "attribute:color =="]),
      /InvalidParameterException/,
    );

    const drained = await ecs<{ containerInstances: Instance[]; failures: Failure[] }>([
      "update-container-instances-state",
      "--cluster",
      apiCluster,
      "--container-instances",
      r ?? "",
      "--status",
      "DRAINING",
    ]);
    assert.equal(drained.containerInstances[0]?.status, "DRAINING");
    assert.deepEqual(await listInstances(apiCluster, ["--status", "DRAINING"]), [r]);
    assert.deepEqual(await listInstances(apiCluster, ["--status", "ACTIVE"]), [b, p].sort());
    assert.deepEqual(await listInstances(apiCluster), all, "without --status: every status but INACTIVE");
    await ecs([
      "update-container-instances-state",
      "--cluster",
      apiCluster,
      "--container-instances",
      r ?? "",
      "--status",
      "ACTIVE",
    ]);
    assert.deepEqual(await listInstances(apiCluster, ["--status", "DRAINING"]), []);

    // Paging through the list.
    const page = await ecs<{ containerInstanceArns: string[]; NextToken?: string }>([
      "list-container-instances",
      "--cluster",
      apiCluster,
      "--max-items",
      "2",
    ]);
    assert.equal(page.containerInstanceArns.length, 2);
    assert.ok(page.NextToken !== undefined, "a token for the rest");

    const gone = await ecs<{ containerInstance: Instance }>([
      "deregister-container-instance",
      "--cluster",
      apiCluster,
      "--container-instance",
      p ?? "",
    ]);
    assert.equal(gone.containerInstance.status, "INACTIVE");
    assert.deepEqual(await listInstances(apiCluster), [b, r].sort());
  });

  it("places no task on a DRAINING instance, and again once it is ACTIVE", async () => {
    const arn = agentArn();
    const definition = await sleeper(`drain-${run}`);
    const running = await runTask(definition);
    const first = running.tasks[0];
    assert.ok(first !== undefined, "first is there");
    await untilTask(first.taskArn, "RUNNING");

    const drained = await ecs<{ containerInstances: Instance[] }>([
      "update-container-instances-state",
      "--cluster",
      cluster,
      "--container-instances",
      arn,
      "--status",
      "DRAINING",
    ]);
    assert.equal(drained.containerInstances[0]?.status, "DRAINING");
    const refused = await runTask(definition);
    assert.deepEqual(refused.tasks, []);
    assert.deepEqual(
      refused.failures.map((f) => f.arn),
      [arn],
    );

    // Stopping the running task wakes the agent's poll; the instance stays DRAINING all the same.
    await ecs(["stop-task", "--cluster", cluster, "--task", first.taskArn]);
    await untilTask(first.taskArn, "STOPPED");
    assert.equal((await describeInstance(arn)).status, "DRAINING");
    assert.deepEqual((await runTask(definition)).tasks, []);
    assert.deepEqual(await listInstances(cluster, ["--status", "DRAINING"]), [arn]);

    await ecs([
      "update-container-instances-state",
      "--cluster",
      cluster,
      "--container-instances",
      arn,
      "--status",
      "ACTIVE",
    ]);
    const placed = await runTask(definition);
    assert.deepEqual(placed.failures, []);
    const again = placed.tasks[0];
    assert.ok(again !== undefined, "again is there");
    assert.equal(again.containerInstanceArn, arn);
    await untilTask(again.taskArn, "RUNNING");
    await ecs(["stop-task", "--cluster", cluster, "--task", again.taskArn]);
    await untilTask(again.taskArn, "STOPPED");
  });

  it("refuses to deregister an instance with running tasks unless forced, then stops them", async () => {
    const arn = agentArn();
    const placed = await runTask(await sleeper(`dereg-${run}`));
    const task = placed.tasks[0];
    assert.ok(task !== undefined, "task is there");
    const running = await untilTask(task.taskArn, "RUNNING");
    const runtimeId = running.containers[0]?.runtimeId ?? "";

    const refusal = await ecsFails([
      "deregister-container-instance",
      "--cluster",
      cluster,
      "--container-instance",
      arn,
    ]);
    assert.match(refusal, /InvalidParameterException/);
    assert.match(refusal, /running tasks/);
    assert.equal((await describeInstance(arn)).status, "ACTIVE");
    assert.equal((await describeTask(task.taskArn)).lastStatus, "RUNNING");

    const forced = await ecs<{ containerInstance: Instance }>([
      "deregister-container-instance",
      "--cluster",
      cluster,
      "--container-instance",
      arn,
      "--force",
    ]);
    assert.equal(forced.containerInstance.status, "INACTIVE");
    const stopped = await describeTask(task.taskArn);
    assert.equal(stopped.lastStatus, "STOPPED");
    assert.ok((stopped.stoppedReason ?? "").length > 0, "a stopped reason");
    assert.ok(!(await listInstances(cluster)).includes(arn), "a deregistered instance is not listed");

    // The node stops the container too.
    await eventually("the container to stop on the node", async () => {
      try {
        const state = JSON.parse(
          execFileSync("runc", ["--root", join(agent.dataDir, "runc"), "state", runtimeId], {
            encoding: "utf8",
            timeout: 10_000,
            stdio: ["ignore", "pipe", "ignore"],
          }),
        ) as { status: string };
        return state.status === "running" ? undefined : true;
      } catch {
        return true; // deleted
      }
    });
    // The agent learns of it on its next poll and stops, as the ECS agent does, rather than
    // joining again on its own: the instance stays deregistered and no other one appears.
    await agent.agent.deregistered;
    assert.equal((await describeInstance(arn)).status, "INACTIVE");
    assert.deepEqual(await listInstances(cluster, ["--status", "ACTIVE"]), []);
    // StartTask onto it says so, as ECS does ("previously deregistered … cannot be used").
    const onto = await ecs<{ tasks: unknown[]; failures: Array<{ arn: string; reason: string }> }>([
      "start-task",
      "--cluster",
      cluster,
      "--task-definition",
      await sleeper(`dereg-${run}`),
      "--container-instances",
      arn,
    ]);
    assert.deepEqual(onto, { tasks: [], failures: [{ arn, reason: "INACTIVE" }] });
    // Started again, the agent registers a new container instance.
    agent = await agent.restart();
    assert.notEqual(agent.agent.containerInstanceArn, arn);
  });

  it("reports agentConnected false once the agent stops polling, and RunTask refuses it with AGENT", async () => {
    // After the deregistration the restarted agent joined again as a new instance.
    const arn = await eventually("the agent's new registration", async () => {
      const listed = await listInstances(cluster, ["--status", "ACTIVE"]);
      return listed.length === 1 && listed[0] === agent.agent.containerInstanceArn ? listed[0] : undefined;
    });
    assert.equal((await describeInstance(arn)).agentConnected, true);

    await agent.stop();
    skewMs += AGENT_TIMEOUT_MS + 5_000;
    const silent = await describeInstance(arn);
    assert.equal(silent.agentConnected, false);
    assert.equal(silent.healthStatus?.overallStatus, "IMPAIRED");
    assert.equal(silent.status, "ACTIVE");
    assert.deepEqual(await listInstances(cluster, ["--filter", "agentConnected == false"]), [arn]);
    assert.deepEqual(await listInstances(cluster, ["--filter", "agentConnected == true"]), []);

    const refused = await runTask(await sleeper(`silent-${run}`));
    assert.deepEqual(refused.tasks, []);
    assert.deepEqual(refused.failures, [{ arn, reason: "AGENT" }]);
  });
});
