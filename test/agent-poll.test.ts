import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import {
  CreateClusterCommand,
  DescribeTasksCommand,
  RegisterTaskDefinitionCommand,
  RunTaskCommand,
  StopTaskCommand,
} from "@aws-sdk/client-ecs";
import { ServerClient, ServerError } from "../src/agent/client.ts";
import { LISTEN_BACKLOG } from "../src/server/server.ts";
import type { PollResponse, TaskReport } from "../src/shared/agent-protocol.ts";
import { ecsClient, startTestServer, type TestServer } from "./helpers.ts";

/** A new cluster with `count` agents registered in it through their own client. */
async function clusterOfAgents(server: TestServer, cluster: string, count: number): Promise<ServerClient[]> {
  await ecsClient(server).send(new CreateClusterCommand({ clusterName: cluster }));
  const clients = Array.from(
    { length: count },
    () => new ServerClient(server.endpoint, server.credentials, "us-east-1"),
  );
  for (const [i, client] of clients.entries()) {
    await client.register({
      cluster,
      hostname: `node-${i}`,
      address: "127.0.0.1",
      totalResources: { cpu: 1024, memory: 1024 },
      attributes: [],
      versionInfo: { agentVersion: "test" },
      capacity: "EC2",
    });
  }
  return clients;
}

/** A cluster with two agents, and a one-container task definition `family`. */
async function clusterOfTwo(server: TestServer, cluster: string, family: string): Promise<ServerClient[]> {
  const clients = await clusterOfAgents(server, cluster, 2);
  await ecsClient(server).send(
    new RegisterTaskDefinitionCommand({
      family,
      containerDefinitions: [{ name: "app", image: "busybox", memory: 64, essential: true }],
    }),
  );
  return clients;
}

/** An agent's long poll as the server holds it, through the agent's own client. */
describe("agent long poll", () => {
  it("has the server queue thousands of agents' connections at once, not Node's default 511", async () => {
    const server = await startTestServer();
    try {
      const port = new URL(server.endpoint).port;
      // For a listening socket `ss` shows the accept queue's length as Send-Q; the kernel caps it
      // at net.core.somaxconn.
      const listening = execFileSync("ss", ["-Hltn", `sport = :${port}`], { encoding: "utf8" });
      const queue = Number(listening.trim().split(/\s+/)[2]);
      const cap = Number(readFileSync("/proc/sys/net/core/somaxconn", "utf8"));
      assert.equal(queue, Math.min(LISTEN_BACKLOG, cap));
      assert.ok(queue > 511 || cap <= 511, `the accept queue is ${queue}`);
    } finally {
      await server.stop();
    }
  });

  it("is answered, not cut off, when the server closes while it waits; and a second poll then finds no server", async () => {
    const server = await startTestServer();
    let stopped = false;
    try {
      const clients = await clusterOfAgents(server, "polls", 3);
      // Nothing to run and nothing known: each poll waits (up to the poll timeout, ~15 s).
      const polls = clients.map((client) => client.poll({ known: {} }, 60_000));
      // Let the polls reach the server and start waiting.
      await new Promise((done) => setTimeout(done, 1000));
      await server.stop();
      stopped = true;
      // Each was answered with the (empty) set of tasks, rather than its connection closed.
      for (const answer of await Promise.all(polls)) assert.deepEqual(answer, { tasks: [] });
      await assert.rejects(clients[0]?.poll({ known: {} }, 5_000) ?? Promise.resolve());
    } finally {
      if (!stopped) await server.stop();
    }
  });

  it("applies each report an agent sends together on its own: one for another instance's task fails alone", async () => {
    const server = await startTestServer();
    try {
      const ecs = ecsClient(server);
      const clients = await clusterOfTwo(server, "reports", "reported");
      // Spread over the two instances (by instance): each gets two.
      const run = await ecs.send(
        new RunTaskCommand({
          cluster: "reports",
          taskDefinition: "reported",
          count: 4,
          placementStrategy: [{ type: "spread", field: "instanceId" }],
        }),
      );
      assert.equal(run.tasks?.length, 4);
      const [mine, theirs] = await Promise.all(clients.map((c) => c.poll({ known: {} }, 30_000)));
      assert.equal(mine?.tasks.length, 2);
      assert.equal(theirs?.tasks.length, 2);
      const running = (taskArn: string): TaskReport => ({
        taskArn,
        lastStatus: "RUNNING",
        containers: [{ name: "app", lastStatus: "RUNNING" }],
        at: Date.now(),
      });
      const first = clients[0] as ServerClient;
      const [a, b] = (mine?.tasks ?? []).map((t) => t.taskArn);
      const other = theirs?.tasks[0]?.taskArn ?? "";
      const outcomes = await Promise.allSettled([
        first.report(running(a ?? "")),
        first.report(running(other)),
        first.report(running(b ?? "")),
      ]);
      assert.deepEqual(
        outcomes.map((o) =>
          o.status === "rejected" && o.reason instanceof ServerError ? o.reason.code : o.status,
        ),
        ["fulfilled", "InvalidParameterException", "fulfilled"],
      );
      const described = await ecs.send(
        new DescribeTasksCommand({ cluster: "reports", tasks: [a ?? "", b ?? "", other] }),
      );
      const status = new Map(described.tasks?.map((t) => [t.taskArn, t.lastStatus]));
      assert.equal(status.get(a), "RUNNING");
      assert.equal(status.get(b), "RUNNING");
      assert.equal(status.get(other), "PENDING");

      // Stats likewise: an agent's samples of another instance's task are not taken.
      const sample = (taskArn: string) => ({
        taskArn,
        container: "app",
        cpuUtilization: 12.5,
        memoryBytes: 1 << 20,
        at: Date.now(),
      });
      await first.stats({ samples: [sample(a ?? ""), sample(other)] });
      assert.equal(server.stats.ofTask(a ?? "").length, 1);
      assert.deepEqual(
        server.stats.ofTask(other),
        [],
        "another instance's task is not this agent's to report",
      );
    } finally {
      await server.stop();
    }
  });

  it("answers a poll whose wait ends with nothing new 'unchanged' when the agent accepts it, and with every task when not", async () => {
    const server = await startTestServer();
    try {
      const ecs = ecsClient(server);
      const clients = await clusterOfTwo(server, "unchanged", "kept");
      await ecs.send(
        new RunTaskCommand({
          cluster: "unchanged",
          taskDefinition: "kept",
          count: 4,
          placementStrategy: [{ type: "spread", field: "instanceId" }],
        }),
      );
      const first = await Promise.all(clients.map((c) => c.poll({ known: {} }, 30_000)));
      const known = first.map((answer) =>
        Object.fromEntries(answer.tasks.map((t) => [t.taskArn, t.version])),
      );
      assert.deepEqual(
        known.map((k) => Object.keys(k).length),
        [2, 2],
      );
      // Both wait until the poll times out (~15 s): nothing changes meanwhile.
      const [accepting, other] = clients as [ServerClient, ServerClient];
      const [quiet, full] = await Promise.all([
        accepting.poll({ known: known[0] ?? {}, acceptUnchanged: true }, 60_000),
        other.poll({ known: known[1] ?? {} }, 60_000),
      ]);
      assert.deepEqual(quiet, { tasks: [], unchanged: true });
      assert.equal(full.unchanged, undefined);
      assert.deepEqual(Object.fromEntries(full.tasks.map((t) => [t.taskArn, t.version])), known[1]);
    } finally {
      await server.stop();
    }
  });

  it("sends a following poll each change as it happens and ends it after its hold, 'unchanged' meaning as the last change", async () => {
    const server = await startTestServer();
    try {
      const ecs = ecsClient(server);
      const [client] = (await clusterOfAgents(server, "follow", 1)) as [ServerClient];
      await ecs.send(
        new RegisterTaskDefinitionCommand({
          family: "followed",
          containerDefinitions: [{ name: "app", image: "busybox", memory: 64, essential: true }],
        }),
      );
      const changes: PollResponse[] = [];
      let ended = false;
      const started = Date.now();
      const poll = client
        .poll({ known: {}, acceptUnchanged: true }, 60_000, undefined, (change) => changes.push(change))
        .finally(() => {
          ended = true;
        });
      const changed = async (count: number) => {
        for (let waited = 0; changes.length < count; waited += 20) {
          if (waited > 10_000) assert.fail(`${count} changes not sent in 10 s (${changes.length})`);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        return changes[count - 1] as PollResponse;
      };
      const run = async () => {
        const answer = await ecs.send(new RunTaskCommand({ cluster: "follow", taskDefinition: "followed" }));
        return answer.tasks?.[0]?.taskArn ?? "";
      };
      const first = await run();
      assert.deepEqual(
        (await changed(1)).tasks.map((t) => [t.taskArn, t.desiredStatus]),
        [[first, "RUNNING"]],
      );
      const second = await run();
      assert.deepEqual(
        (await changed(2)).tasks.map((t) => t.taskArn),
        [first, second],
      );
      const before = changes[1]?.tasks[0]?.version ?? 0;
      await ecs.send(new StopTaskCommand({ cluster: "follow", task: first }));
      const stopping = (await changed(3)).tasks.find((t) => t.taskArn === first);
      assert.equal(stopping?.desiredStatus, "STOPPED");
      assert.ok((stopping?.version ?? 0) > before, "a stop is a new version of the task");
      assert.equal(ended, false, "every change came while the poll was held");
      // Nothing changes after: the poll ends with its hold (~12-15 s), and what the agent has (the
      // last change) is what it should have.
      assert.deepEqual(await poll, { tasks: [], unchanged: true });
      assert.equal(changes.length, 3);
      assert.ok(Date.now() - started >= 10_000, `the poll was held ${Date.now() - started} ms`);
    } finally {
      await server.stop();
    }
  });

  it("answers an agent request whose body is JSON but not an object with InvalidParameterException, not a 500", async () => {
    const server = await startTestServer();
    try {
      await ecsClient(server).send(new CreateClusterCommand({ clusterName: "bodies" }));
      const client = new ServerClient(server.endpoint, server.credentials, "us-east-1");
      const { nodeToken } = await client.register({
        cluster: "bodies",
        hostname: "node-0",
        address: "127.0.0.1",
        totalResources: { cpu: 1024, memory: 1024 },
        attributes: [],
        versionInfo: { agentVersion: "test" },
        capacity: "EC2",
      });
      for (const path of ["/agent/v1/reports", "/agent/v1/report", "/agent/v1/logs", "/agent/v1/poll"]) {
        for (const body of ["null", "7", "[]", '"text"']) {
          const response = await fetch(`${server.endpoint}${path}`, {
            method: "POST",
            headers: { authorization: `Bearer ${nodeToken}`, "content-type": "application/json" },
            body,
          });
          assert.equal(response.status, 400, `${path} ${body}`);
          const error = (await response.json()) as { __type: string; message: string };
          assert.equal(error.__type, "InvalidParameterException", `${path} ${body}`);
          assert.equal(error.message, "The request body must be a JSON object.");
        }
      }
    } finally {
      await server.stop();
    }
  });
});
