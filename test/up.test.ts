import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { deleteOwned } from "../src/agent/network/iptables.ts";
import { eventually, freeSubnet, pushBusybox } from "./agent-harness.ts";
import { parseExports, runWharf, spawnWharf } from "./cli.ts";
import { aws, type TestServer } from "./helpers.ts";

const dataDir = mkdtempSync(join(tmpdir(), "wharf-up-"));
const bridge = `wu${randomBytes(4).toString("hex")}`;
const fargateBridges: string[] = [];
/** Every bridge the agents of this file use: their iptables rules go in `after`. */
const agentBridges: string[] = [];

/** Environment for `wharf up` whose local agents use bridges and subnets of their own. */
function agentEnv(ec2Bridge: string): NodeJS.ProcessEnv {
  const fargateBridge = `wf${randomBytes(4).toString("hex")}`;
  fargateBridges.push(fargateBridge);
  agentBridges.push(ec2Bridge, fargateBridge);
  return {
    ...process.env,
    WHARF_AGENT_BRIDGE: ec2Bridge,
    WHARF_AGENT_SUBNET: freeSubnet(),
    WHARF_FARGATE_BRIDGE: fargateBridge,
    WHARF_FARGATE_SUBNET: freeSubnet(),
  };
}

after(async () => {
  // The bridges' own rules (NAT, forwarding) outlive `ip link delete`: remove them too.
  const owners = agentBridges.map((name) => `wharf:${name}`);
  await deleteOwned((comment) => owners.some((o) => comment === o || comment.startsWith(`${o}:`))).catch(
    () => undefined,
  );
  for (const name of fargateBridges) {
    try {
      execFileSync("ip", ["link", "delete", name], { timeout: 10_000, stdio: "ignore" });
    } catch {
      // already gone
    }
  }
  for (const runcRoot of [join(dataDir, "agent", "runc"), join(dataDir, "fargate", "runc")]) {
    try {
      for (const id of execFileSync("runc", ["--root", runcRoot, "list", "-q"], {
        encoding: "utf8",
        timeout: 10_000,
      }).split("\n")) {
        if (id !== "")
          execFileSync("runc", ["--root", runcRoot, "delete", "--force", id], {
            timeout: 10_000,
            stdio: "ignore",
          });
      }
    } catch {
      // none left
    }
  }
  try {
    execFileSync("ip", ["link", "delete", bridge], { timeout: 10_000, stdio: "ignore" });
  } catch {
    // already gone
  }
  rmSync(dataDir, { recursive: true, force: true });
});

describe("wharf up", () => {
  it("serves the APIs and runs tasks on its local agent, as the README's quick start promises", async () => {
    const env = agentEnv(bridge);
    const up = await spawnWharf(["up", "--port", "0", "--data-dir", dataDir, "--log-level", "warn"], env);
    try {
      const exports = parseExports((await runWharf(["env", "--data-dir", dataDir])).stdout);
      const server = {
        endpoint: up.endpoint,
        credentials: {
          accessKeyId: exports.AWS_ACCESS_KEY_ID ?? "",
          secretAccessKey: exports.AWS_SECRET_ACCESS_KEY ?? "",
        },
      } as TestServer;
      // The local agent joins the default cluster, creating it as the ECS agent does.
      const instances = await eventually("the local container instance", async () => {
        const listed = await aws(server, ["ecs", "list-container-instances", "--cluster", "default"]);
        const arns =
          (listed.json as { containerInstanceArns?: string[] } | undefined)?.containerInstanceArns ?? [];
        return arns.length > 0 ? arns : undefined;
      });
      assert.equal(instances.length, 1);

      const image = await pushBusybox(server, "quickstart");
      const file = join(dataDir, "taskdef.json");
      writeFileSync(
        file,
        JSON.stringify({
          family: "quickstart",
          containerDefinitions: [
            { name: "app", image, memory: 32, command: ["sleep", "300"], stopTimeout: 2 },
          ],
        }),
      );
      assert.equal(
        (await aws(server, ["ecs", "register-task-definition", "--cli-input-json", `file://${file}`])).code,
        0,
      );
      const run = await aws(server, ["ecs", "run-task", "--task-definition", "quickstart"]);
      assert.equal(run.code, 0, run.stderr);
      const taskArn = (run.json as { tasks: Array<{ taskArn: string }> }).tasks[0]?.taskArn ?? "";
      await eventually("RUNNING", async () => {
        const described = await aws(server, ["ecs", "describe-tasks", "--tasks", taskArn]);
        const task = (described.json as { tasks: Array<{ lastStatus: string }> }).tasks[0];
        return task?.lastStatus === "RUNNING" ? task : undefined;
      });
      assert.equal((await aws(server, ["ecs", "stop-task", "--task", taskArn])).code, 0);
      await eventually("STOPPED", async () => {
        const described = await aws(server, ["ecs", "describe-tasks", "--tasks", taskArn]);
        const task = (described.json as { tasks: Array<{ lastStatus: string }> }).tasks[0];
        return task?.lastStatus === "STOPPED" ? task : undefined;
      });

      // FARGATE in a cluster with no instances: `wharf up`'s own Fargate capacity runs it.
      const fargateFile = join(dataDir, "fargate.json");
      writeFileSync(
        fargateFile,
        JSON.stringify({
          family: "quickstart-fargate",
          requiresCompatibilities: ["FARGATE"],
          networkMode: "awsvpc",
          cpu: "256",
          memory: "512",
          containerDefinitions: [{ name: "app", image, command: ["sleep", "300"], stopTimeout: 2 }],
        }),
      );
      assert.equal(
        (await aws(server, ["ecs", "register-task-definition", "--cli-input-json", `file://${fargateFile}`]))
          .code,
        0,
      );
      assert.equal((await aws(server, ["ecs", "create-cluster", "--cluster-name", "serverless"])).code, 0);
      const fargate = await aws(server, [
        "ecs",
        "run-task",
        "--cluster",
        "serverless",
        "--launch-type",
        "FARGATE",
        "--task-definition",
        "quickstart-fargate",
        "--network-configuration",
        "awsvpcConfiguration={subnets=[subnet-local]}",
      ]);
      assert.equal(fargate.code, 0, fargate.stderr);
      const fargateArn = (fargate.json as { tasks: Array<{ taskArn: string }> }).tasks[0]?.taskArn ?? "";
      type Described = {
        lastStatus: string;
        launchType: string;
        containerInstanceArn?: string;
        attachments?: Array<{ type: string; details: Array<{ name: string; value: string }> }>;
      };
      const fargateIn = (status: string) =>
        eventually(`the FARGATE task ${status}`, async () => {
          const described = await aws(server, [
            "ecs",
            "describe-tasks",
            "--cluster",
            "serverless",
            "--tasks",
            fargateArn,
          ]);
          const task = (described.json as { tasks: Described[] }).tasks[0];
          return task?.lastStatus === status ? task : undefined;
        });
      const running = await fargateIn("RUNNING");
      assert.equal(running.launchType, "FARGATE");
      const eni = running.attachments?.find((a) => a.type === "ElasticNetworkInterface");
      assert.match(
        eni?.details.find((d) => d.name === "privateIPv4Address")?.value ?? "",
        /^\d+\.\d+\.\d+\.\d+$/,
      );
      const listed = await aws(server, ["ecs", "list-container-instances", "--cluster", "serverless"]);
      assert.deepEqual((listed.json as { containerInstanceArns: string[] }).containerInstanceArns, []);
      assert.equal(
        (await aws(server, ["ecs", "stop-task", "--cluster", "serverless", "--task", fargateArn])).code,
        0,
      );
      await fargateIn("STOPPED");
    } finally {
      up.child.kill("SIGINT");
    }
    const [code] = await once(up.child, "exit");
    assert.equal(code, 0, up.output());
  });

  it("with --tls, its local agent trusts Wharf's own CA and registers over HTTPS", async () => {
    const tlsDir = mkdtempSync(join(tmpdir(), "wharf-up-tls-"));
    const tlsBridge = `wu${randomBytes(4).toString("hex")}`;
    const env = agentEnv(tlsBridge);
    const up = await spawnWharf(
      ["up", "--tls", "--port", "0", "--data-dir", tlsDir, "--log-level", "warn"],
      env,
    );
    try {
      assert.match(up.endpoint, /^https:\/\//);
      const ca = join(tlsDir, "ca.pem");
      writeFileSync(ca, (await runWharf(["ca", "--data-dir", tlsDir])).stdout);
      const exports = parseExports((await runWharf(["env", "--data-dir", tlsDir])).stdout);
      const server = {
        endpoint: up.endpoint,
        credentials: {
          accessKeyId: exports.AWS_ACCESS_KEY_ID ?? "",
          secretAccessKey: exports.AWS_SECRET_ACCESS_KEY ?? "",
        },
      } as TestServer;
      const described = await eventually("the local agent, connected over HTTPS", async () => {
        const listed = await aws(server, ["ecs", "list-container-instances", "--ca-bundle", ca]);
        const arn = (listed.json as { containerInstanceArns?: string[] } | undefined)
          ?.containerInstanceArns?.[0];
        if (arn === undefined) return undefined;
        const result = await aws(server, [
          "ecs",
          "describe-container-instances",
          "--container-instances",
          arn,
          "--ca-bundle",
          ca,
        ]);
        const instance = (result.json as { containerInstances: Array<{ agentConnected: boolean }> })
          .containerInstances[0];
        return instance?.agentConnected === true ? instance : undefined;
      });
      assert.equal(described.agentConnected, true);
    } finally {
      up.child.kill("SIGINT");
      await once(up.child, "exit");
      try {
        execFileSync("ip", ["link", "delete", tlsBridge], { timeout: 10_000, stdio: "ignore" });
      } catch {
        // already gone
      }
      rmSync(tlsDir, { recursive: true, force: true });
    }
  });
});
