import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import {
  CreateClusterCommand,
  DescribeClustersCommand,
  ECSClient,
  ListClustersCommand,
} from "@aws-sdk/client-ecs";
import { parseExports, runWharf, spawnWharf } from "./cli.ts";

const dataDir = mkdtempSync(join(tmpdir(), "wharf-kill-"));
after(() => rmSync(dataDir, { recursive: true, force: true }));

async function client(endpoint: string): Promise<ECSClient> {
  const env = parseExports((await runWharf(["env", "--data-dir", dataDir])).stdout);
  return new ECSClient({
    endpoint,
    region: env.AWS_DEFAULT_REGION ?? "us-east-1",
    credentials: {
      accessKeyId: env.AWS_ACCESS_KEY_ID ?? "",
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY ?? "",
    },
    maxAttempts: 1,
  });
}

describe("durability", () => {
  it("keeps every acknowledged CreateCluster across SIGKILL mid-burst, with nothing half-applied", async () => {
    const first = await spawnWharf(["server", "--port", "0", "--data-dir", dataDir, "--log-level", "warn"]);
    const ecs = await client(first.endpoint);
    const acknowledged: string[] = [];
    let stop = false;
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const clusterName = `burst-${w}-${i}`;
        try {
          await ecs.send(
            new CreateClusterCommand({
              clusterName,
              tags: [
                { key: "worker", value: String(w) },
                { key: "seq", value: String(i) },
              ],
              settings: [{ name: "containerInsights", value: "enabled" }],
            }),
          );
          acknowledged.push(clusterName);
        } catch {
          return; // the server died under us: this call was never acknowledged
        }
      }
    };
    const workers = Array.from({ length: 8 }, (_, w) => worker(w));
    // Kill once a good number of writes are in flight.
    while (acknowledged.length < 150) await new Promise((resolve) => setTimeout(resolve, 5));
    first.child.kill("SIGKILL");
    await once(first.child, "exit");
    stop = true;
    await Promise.all(workers);
    ecs.destroy();

    const second = await spawnWharf(["server", "--port", "0", "--data-dir", dataDir, "--log-level", "warn"]);
    try {
      const after = await client(second.endpoint);
      const stored = new Set<string>();
      let nextToken: string | undefined;
      do {
        const page = await after.send(new ListClustersCommand({ nextToken, maxResults: 100 }));
        for (const arn of page.clusterArns ?? []) stored.add(arn.slice(arn.lastIndexOf("/") + 1));
        nextToken = page.nextToken;
      } while (nextToken !== undefined);
      for (const name of acknowledged) assert.ok(stored.has(name), `acknowledged cluster ${name} survived`);
      // Every stored cluster, acknowledged or caught in flight, is whole: its tags and settings came with it.
      const names = [...stored];
      for (let i = 0; i < names.length; i += 100) {
        const described = await after.send(
          new DescribeClustersCommand({ clusters: names.slice(i, i + 100), include: ["TAGS", "SETTINGS"] }),
        );
        for (const cluster of described.clusters ?? []) {
          assert.equal(cluster.tags?.length, 2, `${cluster.clusterName} has both tags`);
          assert.deepEqual(cluster.settings, [{ name: "containerInsights", value: "enabled" }]);
        }
      }
      after.destroy();
    } finally {
      second.child.kill("SIGTERM");
      await once(second.child, "exit");
    }
  });
});
