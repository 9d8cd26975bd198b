import assert from "node:assert/strict";
import { request } from "node:http";
import { after, before, describe, it } from "node:test";
import { Sha256 } from "@aws-crypto/sha256-js";
import { HttpRequest } from "@smithy/protocol-http";
import { SignatureV4 } from "@smithy/signature-v4";
import { startTestServer, type TestServer } from "./helpers.ts";
import { prng } from "./support/prng.ts";

let server: TestServer;
before(async () => {
  server = await startTestServer();
});
after(async () => {
  await server.stop();
});

const OPERATIONS = [
  "CreateCluster",
  "DescribeClusters",
  "ListClusters",
  "DeleteCluster",
  "UpdateCluster",
  "UpdateClusterSettings",
  "PutClusterCapacityProviders",
  "TagResource",
  "UntagResource",
  "ListTagsForResource",
  "NoSuchOperation",
];
const FIELDS = [
  "clusterName",
  "cluster",
  "clusters",
  "include",
  "tags",
  "tagKeys",
  "resourceArn",
  "settings",
  "configuration",
  "capacityProviders",
  "defaultCapacityProviderStrategy",
  "maxResults",
  "nextToken",
  "__proto__",
  "constructor",
];

function randomValue(random: () => number, depth = 0): unknown {
  const pick = Math.floor(random() * (depth > 2 ? 6 : 9));
  switch (pick) {
    case 0:
      return null;
    case 1:
      return random() < 0.5;
    case 2:
      return Math.floor((random() - 0.5) * 1e12);
    case 3:
      return random() * 1e308;
    case 4:
      return "x".repeat(Math.floor(random() * 300));
    case 5:
      return [
        "arn:aws:ecs:us-east-1:000000000000:cluster/",
        "default",
        "FARGATE",
        "",
        "../../etc",
        "\u0000\uffff",
      ][Math.floor(random() * 6)];
    case 6:
      return Array.from({ length: Math.floor(random() * 4) }, () => randomValue(random, depth + 1));
    default: {
      const object: Record<string, unknown> = {};
      for (let i = Math.floor(random() * 4); i > 0; i--) {
        object[FIELDS[Math.floor(random() * FIELDS.length)] ?? "x"] = randomValue(random, depth + 1);
      }
      object.key = "k";
      object.name = "containerInsights";
      return object;
    }
  }
}

function randomBody(random: () => number): string {
  const kind = random();
  if (kind < 0.15) return "";
  if (kind < 0.3)
    return Buffer.from(Array.from({ length: 64 }, () => Math.floor(random() * 256))).toString("latin1");
  if (kind < 0.4) return '{"clusterName": "unterminated';
  if (kind < 0.45) return "[1,2,3]";
  const body: Record<string, unknown> = {};
  for (let i = Math.floor(random() * 5); i > 0; i--) {
    body[FIELDS[Math.floor(random() * FIELDS.length)] ?? "x"] = randomValue(random);
  }
  return JSON.stringify(body);
}

interface Sent {
  status: number;
  body: string;
}

function send(method: string, path: string, headers: Record<string, string>, body: string): Promise<Sent> {
  const url = new URL(server.endpoint);
  return new Promise((resolve, reject) => {
    const bytes = Buffer.from(body, "latin1");
    const sized = { ...headers, "content-length": String(bytes.length) };
    const req = request(
      { host: url.hostname, port: url.port, method, path, headers: sized, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }),
        );
      },
    );
    req.on("error", reject);
    req.end(bytes);
  });
}

async function signedHeaders(
  target: string,
  contentType: string,
  body: string,
): Promise<Record<string, string>> {
  const url = new URL(server.endpoint);
  const signer = new SignatureV4({
    service: "ecs",
    region: "us-east-1",
    credentials: server.credentials,
    sha256: Sha256,
  });
  const signed = await signer.sign(
    new HttpRequest({
      method: "POST",
      hostname: url.hostname,
      port: Number(url.port),
      path: "/",
      headers: { host: url.host, "content-type": contentType, "x-amz-target": target },
      body: Buffer.from(body, "latin1"),
    }),
  );
  return signed.headers;
}

describe("front door fuzz", () => {
  it("never answers 500 and never falls over, signed or not", async () => {
    const seed = Number(process.env.WHARF_FUZZ_SEED ?? 20261129);
    const random = prng(seed);
    const statuses = new Map<number, number>();
    for (let i = 0; i < 400; i++) {
      const operation = OPERATIONS[Math.floor(random() * OPERATIONS.length)] ?? "ListClusters";
      const target =
        random() < 0.9
          ? `AmazonEC2ContainerServiceV20141113.${operation}`
          : (["", ".", "Nope.ListClusters", "AmazonEC2ContainerServiceV20141113.", "a".repeat(500)][
              Math.floor(random() * 5)
            ] ?? "");
      const contentType =
        random() < 0.85
          ? "application/x-amz-json-1.1"
          : (["application/json", "text/plain", "application/x-www-form-urlencoded", "", "garbage/;;;"][
              Math.floor(random() * 5)
            ] ?? "");
      const body = randomBody(random);
      let headers: Record<string, string>;
      if (random() < 0.8) {
        headers = await signedHeaders(target, contentType, body);
        if (random() < 0.1)
          headers.authorization = (headers.authorization ?? "").slice(0, Math.floor(random() * 80));
        if (random() < 0.05) headers["x-amz-date"] = "yesterday";
      } else {
        headers = { "content-type": contentType, "x-amz-target": target };
        if (random() < 0.5)
          headers.authorization = "AWS4-HMAC-SHA256 Credential=/,,,SignedHeaders=;Signature=zz";
      }
      const method =
        random() < 0.95 ? "POST" : (["GET", "PUT", "DELETE", "PATCH"][Math.floor(random() * 4)] ?? "GET");
      const path =
        random() < 0.95
          ? "/"
          : (["/x", "//", "/?Action=ListClusters", "/%zz"][Math.floor(random() * 4)] ?? "/");
      const response = await send(method, path, headers, body).catch((error: unknown) => {
        throw new Error(
          `seed ${seed} request ${i}: ${method} ${path} ${JSON.stringify(headers)} body ${JSON.stringify(body)}: ${String(error)}`,
        );
      });
      statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
      assert.ok(
        response.status >= 200 && response.status < 500,
        `seed ${seed} request ${i}: ${method} ${path} ${target} -> ${response.status} ${response.body}`,
      );
      if (response.status >= 400) {
        const isJson = response.body.startsWith("{");
        assert.ok(
          isJson || response.body.includes("<ErrorResponse"),
          `error in a protocol's shape: ${response.body}`,
        );
      }
    }
    // The run reached past authentication into the operations, not only the signature check.
    assert.ok((statuses.get(200) ?? 0) > 0, `some calls succeeded: ${JSON.stringify([...statuses])}`);
    assert.ok((statuses.get(400) ?? 0) > 0);
    const health = await fetch(`${server.endpoint}/healthz`);
    assert.equal(health.status, 200);
  });

  it("refuses an oversized body with 413 in the JSON shape", async () => {
    const body = JSON.stringify({ clusterName: "x".repeat(9 * 1024 * 1024) });
    const response = await send(
      "POST",
      "/",
      {
        "content-type": "application/x-amz-json-1.1",
        "x-amz-target": "AmazonEC2ContainerServiceV20141113.CreateCluster",
      },
      body,
    );
    assert.equal(response.status, 413);
    assert.equal(JSON.parse(response.body).__type, "RequestEntityTooLargeException");
  });
});
