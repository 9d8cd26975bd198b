// Tasks whose images live on a private registry that is not Wharf's: Debian's docker-registry
// (CNCF distribution) with htpasswd Basic auth on a loopback port. The agent pulls with the
// credentials its operator gave it in ECS_ENGINE_AUTH_TYPE / ECS_ENGINE_AUTH_DATA, as the ECS agent does.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { cleanupAgent, eventually, startTestAgent, type TestAgent } from "./agent-harness.ts";
import { runWharf } from "./cli.ts";
import { aws, registerTaskDefinitionCli, startTestServer, type TestServer } from "./helpers.ts";
import { skopeo, writeMultiPlatformLayout } from "./support/oci.ts";
import { HTPASSWD_USER, type PeerRegistry, startDockerRegistry } from "./support/registry.ts";

interface Task {
  taskArn: string;
  lastStatus: string;
  stopCode?: string;
  stoppedReason?: string;
  containers: Array<{ name: string; lastStatus: string; reason?: string }>;
}

let server: TestServer;
let peer: PeerRegistry;
let image: string;
const agents: TestAgent[] = [];
const suffix = Math.random().toString(36).slice(2, 8);
const WITH = `private-with-${suffix}`;
const WITHOUT = `private-without-${suffix}`;

before(async () => {
  peer = await startDockerRegistry({ htpasswd: true });
  const layout = mkdtempSync(join(tmpdir(), "wharf-private-layout-"));
  try {
    await writeMultiPlatformLayout(layout, "hello from a private registry\n");
    image = `${peer.host}/team/busybox:v1`;
    const copied = await skopeo([
      "copy",
      "--all",
      `oci:${layout}:latest`,
      `docker://${image}`,
      "--dest-tls-verify=false",
      "--dest-creds",
      `${HTPASSWD_USER.username}:${HTPASSWD_USER.password}`,
    ]);
    assert.equal(copied.code, 0, copied.stderr);
  } finally {
    rmSync(layout, { recursive: true, force: true });
  }
  server = await startTestServer();
  for (const cluster of [WITH, WITHOUT]) {
    const created = await aws(server, ["ecs", "create-cluster", "--cluster-name", cluster]);
    assert.equal(created.code, 0, created.stderr);
  }
  // The dockercfg form, as `docker login` once wrote ~/.dockercfg: a scheme and /v1/ on the key.
  const auth = Buffer.from(`${HTPASSWD_USER.username}:${HTPASSWD_USER.password}`).toString("base64");
  agents.push(
    await startTestAgent(server, {
      cluster: WITH,
      config: {
        engineAuth: {
          type: "dockercfg",
          data: JSON.stringify({ [`http://${peer.host}/v1/`]: { auth, email: "ops@example.com" } }),
        },
      },
    }),
  );
  agents.push(await startTestAgent(server, { cluster: WITHOUT }));
});

after(async () => {
  for (const agent of agents) {
    await agent.stop();
    await cleanupAgent(agent);
  }
  await server?.stop();
  await peer?.stop();
});

async function runTask(cluster: string, definition: Record<string, unknown>): Promise<string> {
  const arn = await registerTaskDefinitionCli(server, definition);
  const result = await aws(server, ["ecs", "run-task", "--cluster", cluster, "--task-definition", arn]);
  assert.equal(result.code, 0, result.stderr);
  const body = result.json as { tasks: Task[]; failures: unknown[] };
  assert.deepEqual(body.failures, []);
  return body.tasks[0]?.taskArn ?? "";
}

function until(cluster: string, taskArn: string, status: string): Promise<Task> {
  return eventually(status, async () => {
    const result = await aws(server, ["ecs", "describe-tasks", "--cluster", cluster, "--tasks", taskArn]);
    const task = (result.json as { tasks: Task[] } | undefined)?.tasks[0];
    return task?.lastStatus === status ? task : undefined;
  });
}

const container = (extra: Record<string, unknown> = {}) => ({
  name: "app",
  image,
  memory: 64,
  command: ["sh", "-c", "cat /hello.txt; sleep 300"],
  stopTimeout: 2,
  ...extra,
});

describe("images on a private registry", () => {
  it("the registry refuses anonymous pulls", async () => {
    const response = await fetch(`${peer.url}/v2/team/busybox/manifests/v1`);
    await response.arrayBuffer();
    assert.equal(response.status, 401);
  });

  it("runs a task through an agent given the registry's credentials in ECS_ENGINE_AUTH_DATA", async () => {
    const taskArn = await runTask(WITH, { family: `private-${suffix}`, containerDefinitions: [container()] });
    const running = await until(WITH, taskArn, "RUNNING");
    assert.equal(running.containers[0]?.lastStatus, "RUNNING");
    const stop = await aws(server, ["ecs", "stop-task", "--cluster", WITH, "--task", taskArn]);
    assert.equal(stop.code, 0, stop.stderr);
    await until(WITH, taskArn, "STOPPED");
  });

  it("stops the task with CannotPullContainerError on an agent without them", async () => {
    const taskArn = await runTask(WITHOUT, {
      family: `private-anon-${suffix}`,
      containerDefinitions: [container()],
    });
    const stopped = await until(WITHOUT, taskArn, "STOPPED");
    assert.equal(stopped.stopCode, "TaskFailedToStart");
    assert.match(stopped.stoppedReason ?? "", /^CannotPullContainerError: .*wants a username and password/);
    assert.match(stopped.containers[0]?.reason ?? "", /^CannotPullContainerError/);
  });

  it("stops a task whose container names a Secrets Manager secret, rather than pull without it", async () => {
    const secret = "arn:aws:secretsmanager:us-east-1:000000000000:secret:registry-creds-AbCdEf";
    // On the agent that holds working credentials: they must not stand in for the named secret.
    const taskArn = await runTask(WITH, {
      family: `private-secret-${suffix}`,
      containerDefinitions: [container({ repositoryCredentials: { credentialsParameter: secret } })],
    });
    const stopped = await until(WITH, taskArn, "STOPPED");
    assert.equal(stopped.stopCode, "TaskFailedToStart");
    assert.match(
      stopped.stoppedReason ?? "",
      /^ResourceInitializationError: unable to pull secrets or registry auth: .*unable to retrieve secret from asm/,
    );
    assert.ok(stopped.stoppedReason?.includes(secret), stopped.stoppedReason);
  });

  it("wharf agent refuses ECS_ENGINE_AUTH settings it cannot use, and says which", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "wharf-agent-auth-"));
    try {
      const result = await runWharf(["agent", "--server", server.endpoint, "--data-dir", dataDir], {
        ...process.env,
        AWS_ACCESS_KEY_ID: server.credentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: server.credentials.secretAccessKey,
        ECS_ENGINE_AUTH_TYPE: "docker",
        ECS_ENGINE_AUTH_DATA: JSON.stringify({ [peer.host]: { username: "wharf" } }),
      });
      assert.equal(result.code, 1);
      assert.match(result.stderr, /ECS_ENGINE_AUTH_DATA: the entry for "127\.0\.0\.1:\d+" needs a username/);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
