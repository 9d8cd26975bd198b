import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  ClusterNotFoundException,
  CreateClusterCommand,
  DeleteClusterCommand,
  DescribeCapacityProvidersCommand,
  DescribeClustersCommand,
  InvalidParameterException,
  ListClustersCommand,
  ListTagsForResourceCommand,
  PutClusterCapacityProvidersCommand,
  TagResourceCommand,
  UntagResourceCommand,
  UpdateClusterCommand,
} from "@aws-sdk/client-ecs";
import { aws, ecsClient, startTestServer, type TestServer } from "./helpers.ts";

let server: TestServer;
before(async () => {
  server = await startTestServer();
});
after(async () => {
  await server.stop();
});

describe("ECS clusters with @aws-sdk/client-ecs", () => {
  it("creates, describes, lists, updates, tags and deletes a cluster", async () => {
    const ecs = ecsClient(server);
    const created = await ecs.send(
      new CreateClusterCommand({ clusterName: "sdk-demo", tags: [{ key: "team", value: "web" }] }),
    );
    assert.equal(created.cluster?.clusterArn, "arn:aws:ecs:us-east-1:000000000000:cluster/sdk-demo");
    assert.equal(created.cluster?.status, "ACTIVE");
    assert.deepEqual(created.cluster?.tags, [{ key: "team", value: "web" }]);
    assert.deepEqual(created.cluster?.settings, [{ name: "containerInsights", value: "disabled" }]);
    assert.equal(created.cluster?.registeredContainerInstancesCount, 0);

    const plain = await ecs.send(new DescribeClustersCommand({ clusters: ["sdk-demo"] }));
    assert.equal(plain.clusters?.length, 1);
    assert.deepEqual(plain.clusters?.[0]?.tags, []);
    assert.deepEqual(plain.failures, []);

    const full = await ecs.send(
      new DescribeClustersCommand({
        clusters: [created.cluster?.clusterArn ?? "", "missing-one"],
        include: ["TAGS", "SETTINGS", "STATISTICS"],
      }),
    );
    assert.deepEqual(full.clusters?.[0]?.tags, [{ key: "team", value: "web" }]);
    assert.ok(
      full.clusters?.[0]?.statistics?.some((s) => s.name === "runningFargateTasksCount" && s.value === "0"),
    );
    assert.deepEqual(full.failures, [
      { arn: "arn:aws:ecs:us-east-1:000000000000:cluster/missing-one", reason: "MISSING" },
    ]);

    const updated = await ecs.send(
      new UpdateClusterCommand({
        cluster: "sdk-demo",
        settings: [{ name: "containerInsights", value: "enabled" }],
        configuration: { executeCommandConfiguration: { logging: "DEFAULT" } },
      }),
    );
    assert.deepEqual(updated.cluster?.settings, [{ name: "containerInsights", value: "enabled" }]);
    assert.equal(updated.cluster?.configuration?.executeCommandConfiguration?.logging, "DEFAULT");

    const withFargate = await ecs.send(
      new PutClusterCapacityProvidersCommand({
        cluster: "sdk-demo",
        capacityProviders: ["FARGATE"],
        defaultCapacityProviderStrategy: [{ capacityProvider: "FARGATE", weight: 1, base: 0 }],
      }),
    );
    assert.deepEqual(withFargate.cluster?.capacityProviders, ["FARGATE"]);
    // Weight 0 is refused only when every one of several providers has it, as RunTask's strategy.
    const alone = await ecs.send(
      new PutClusterCapacityProvidersCommand({
        cluster: "sdk-demo",
        capacityProviders: ["FARGATE", "FARGATE_SPOT"],
        defaultCapacityProviderStrategy: [{ capacityProvider: "FARGATE_SPOT", weight: 0, base: 0 }],
      }),
    );
    assert.deepEqual(alone.cluster?.defaultCapacityProviderStrategy, [
      { capacityProvider: "FARGATE_SPOT", weight: 0, base: 0 },
    ]);
    await assert.rejects(
      ecs.send(
        new PutClusterCapacityProvidersCommand({
          cluster: "sdk-demo",
          capacityProviders: ["FARGATE", "FARGATE_SPOT"],
          defaultCapacityProviderStrategy: [
            { capacityProvider: "FARGATE", weight: 0, base: 0 },
            { capacityProvider: "FARGATE_SPOT", weight: 0, base: 0 },
          ],
        }),
      ),
      /at least one capacity provider with a weight greater than zero/,
    );

    const arn = created.cluster?.clusterArn ?? "";
    await ecs.send(new TagResourceCommand({ resourceArn: arn, tags: [{ key: "env", value: "prod" }] }));
    await ecs.send(new UntagResourceCommand({ resourceArn: arn, tagKeys: ["team"] }));
    const tags = await ecs.send(new ListTagsForResourceCommand({ resourceArn: arn }));
    assert.deepEqual(tags.tags, [{ key: "env", value: "prod" }]);

    const deleted = await ecs.send(new DeleteClusterCommand({ cluster: "sdk-demo" }));
    assert.equal(deleted.cluster?.status, "INACTIVE");
    const afterDelete = await ecs.send(new DescribeClustersCommand({ clusters: ["sdk-demo"] }));
    assert.equal(afterDelete.clusters?.[0]?.status, "INACTIVE");
    const listed = await ecs.send(new ListClustersCommand({}));
    assert.ok(!listed.clusterArns?.includes(arn), "a deleted cluster is no longer listed");
    await assert.rejects(
      ecs.send(new ListTagsForResourceCommand({ resourceArn: arn })),
      (error: Error) =>
        error.name === "InvalidParameterException" &&
        error.message === "The specified cluster is inactive. Specify an active cluster and try again.",
    );
    await assert.rejects(
      ecs.send(new UpdateClusterCommand({ cluster: "sdk-demo", settings: [] })),
      ClusterNotFoundException,
    );
  });

  it("describes the Fargate capacity providers every account has", async () => {
    const ecs = ecsClient(server);
    const arn = (name: string) => `arn:aws:ecs:us-east-1:000000000000:capacity-provider/${name}`;
    const all = await ecs.send(new DescribeCapacityProvidersCommand({}));
    assert.deepEqual(
      all.capacityProviders?.map((p) => [p.name, p.capacityProviderArn, p.status]),
      [
        ["FARGATE", arn("FARGATE"), "ACTIVE"],
        ["FARGATE_SPOT", arn("FARGATE_SPOT"), "ACTIVE"],
      ],
    );
    const some = await ecs.send(
      new DescribeCapacityProvidersCommand({ capacityProviders: [arn("FARGATE_SPOT"), "my-asg"] }),
    );
    assert.deepEqual(
      some.capacityProviders?.map((p) => p.name),
      ["FARGATE_SPOT"],
    );
    assert.deepEqual(some.failures, [{ arn: "my-asg", reason: "MISSING" }]);
    const first = await ecs.send(new DescribeCapacityProvidersCommand({ maxResults: 1 }));
    assert.deepEqual(
      first.capacityProviders?.map((p) => p.name),
      ["FARGATE"],
    );
    const second = await ecs.send(
      new DescribeCapacityProvidersCommand({ maxResults: 1, nextToken: first.nextToken }),
    );
    assert.deepEqual(
      second.capacityProviders?.map((p) => p.name),
      ["FARGATE_SPOT"],
    );
    assert.equal(second.nextToken, undefined);
  });

  it("creates the default cluster when no name is given, and create is idempotent", async () => {
    const ecs = ecsClient(server);
    const first = await ecs.send(new CreateClusterCommand({}));
    assert.equal(first.cluster?.clusterName, "default");
    const again = await ecs.send(new CreateClusterCommand({ clusterName: "default" }));
    assert.equal(again.cluster?.clusterArn, first.cluster?.clusterArn);
    const described = await ecs.send(new DescribeClustersCommand({}));
    assert.equal(described.clusters?.[0]?.clusterName, "default");
  });

  it("pages ListClusters with maxResults and nextToken", async () => {
    const ecs = ecsClient(server);
    const names = Array.from({ length: 7 }, (_, i) => `page-${i}`);
    for (const clusterName of names) await ecs.send(new CreateClusterCommand({ clusterName }));
    const seen: string[] = [];
    let nextToken: string | undefined;
    let pages = 0;
    do {
      const page = await ecs.send(new ListClustersCommand({ maxResults: 3, nextToken }));
      assert.ok((page.clusterArns?.length ?? 0) <= 3);
      seen.push(...(page.clusterArns ?? []));
      nextToken = page.nextToken;
      pages++;
    } while (nextToken !== undefined);
    for (const name of names)
      assert.ok(
        seen.some((arn) => arn.endsWith(`/${name}`)),
        `${name} listed`,
      );
    assert.equal(new Set(seen).size, seen.length, "no cluster listed twice");
    assert.ok(pages >= 3);
  });

  it("refuses bad input with ECS's errors", async () => {
    const ecs = ecsClient(server);
    await assert.rejects(
      ecs.send(new CreateClusterCommand({ clusterName: "bad name!" })),
      InvalidParameterException,
    );
    await assert.rejects(
      ecs.send(new CreateClusterCommand({ clusterName: "x".repeat(256) })),
      InvalidParameterException,
    );
    await assert.rejects(
      ecs.send(
        new CreateClusterCommand({ clusterName: "reserved", tags: [{ key: "aws:owner", value: "me" }] }),
      ),
      InvalidParameterException,
    );
    await assert.rejects(
      ecs.send(new CreateClusterCommand({ clusterName: "cp", capacityProviders: ["no-such-provider"] })),
      InvalidParameterException,
    );
    await assert.rejects(
      ecs.send(new DeleteClusterCommand({ cluster: "never-was" })),
      ClusterNotFoundException,
    );
    await assert.rejects(
      ecs.send(new ListClustersCommand({ nextToken: "garbage" })),
      InvalidParameterException,
    );
    await assert.rejects(ecs.send(new ListClustersCommand({ maxResults: 101 })), InvalidParameterException);
    // Nothing was half-created by the refused calls.
    const described = await ecs.send(new DescribeClustersCommand({ clusters: ["reserved", "cp"] }));
    assert.equal(described.clusters?.length, 0);
  });
});

describe("ECS clusters with the AWS CLI", () => {
  it("create-cluster, list-clusters, describe-clusters, delete-cluster behave like ECS", async () => {
    const created = await aws(server, ["ecs", "create-cluster", "--cluster-name", "demo"]);
    assert.equal(created.code, 0, created.stderr);
    const cluster = (created.json as { cluster: { clusterArn: string; clusterName: string; status: string } })
      .cluster;
    assert.equal(cluster.clusterName, "demo");
    assert.equal(cluster.status, "ACTIVE");
    assert.equal(cluster.clusterArn, "arn:aws:ecs:us-east-1:000000000000:cluster/demo");

    const listed = await aws(server, ["ecs", "list-clusters"]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.ok((listed.json as { clusterArns: string[] }).clusterArns.includes(cluster.clusterArn));

    const described = await aws(server, [
      "ecs",
      "describe-clusters",
      "--clusters",
      "demo",
      "--include",
      "TAGS",
    ]);
    assert.equal(described.code, 0, described.stderr);
    const body = described.json as { clusters: Array<{ clusterName: string }>; failures: unknown[] };
    assert.equal(body.clusters[0]?.clusterName, "demo");
    assert.deepEqual(body.failures, []);

    const deleted = await aws(server, ["ecs", "delete-cluster", "--cluster", "demo"]);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal((deleted.json as { cluster: { status: string } }).cluster.status, "INACTIVE");

    const missing = await aws(server, ["ecs", "delete-cluster", "--cluster", "demo-never"]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /ClusterNotFoundException/);
  });

  it("answers the Query protocol: sts get-caller-identity", async () => {
    const who = await aws(server, ["sts", "get-caller-identity"]);
    assert.equal(who.code, 0, who.stderr);
    assert.deepEqual(who.json, {
      UserId: server.credentials.accessKeyId,
      Account: "000000000000",
      Arn: "arn:aws:iam::000000000000:user/admin",
    });
  });
});
