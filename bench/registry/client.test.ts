import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { RegistryClient } from "./client.ts";

const BLOB = randomBytes(3 * 1024 * 1024 + 17);
const DIGEST = `sha256:${createHash("sha256").update(BLOB).digest("hex")}`;
const AUTHORIZATION = "Basic QVdTOnNlY3JldA==";

describe("the registry benchmark's client pulls blobs", () => {
  const server = createServer((request, response) => {
    if (request.headers.authorization !== AUTHORIZATION) {
      response.writeHead(401, { "content-length": 0 });
      response.end();
    } else if (request.url === `/v2/app/blobs/${DIGEST}`) {
      response.writeHead(200, { "content-length": BLOB.length });
      response.end(BLOB);
    } else {
      const text = '{"errors":[{"code":"BLOB_UNKNOWN"}]}';
      response.writeHead(404, { "content-length": text.length });
      response.end(text);
    }
  });
  let client: RegistryClient;
  before(async () => {
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as AddressInfo;
    client = new RegistryClient({ url: `http://127.0.0.1:${port}`, authorization: AUTHORIZATION }, 3);
  });
  after(() => {
    client.close();
    server.close();
  });

  test("hashing on worker threads and counting on the main thread, several at once", async () => {
    for (const verify of [true, false]) {
      await Promise.all([1, 2, 3].map(() => client.pullBlob("app", DIGEST, BLOB.length, verify)));
      await client.pullBlob("app", DIGEST, BLOB.length, verify);
    }
  });

  test("a body whose sha256 or length is not the one asked for fails the pull", async () => {
    const other = `sha256:${"0".repeat(64)}`;
    await assert.rejects(client.pullBlob("app", other, BLOB.length, true), /HTTP 404: .*BLOB_UNKNOWN/);
    await assert.rejects(client.pullBlob("app", DIGEST, BLOB.length + 1, true), /got 3145745 bytes/);
    await assert.rejects(client.pullBlob("app", DIGEST, BLOB.length - 1, false), /want 3145744/);
  });

  test("the hashing pull checks the digest, not just the length", async () => {
    // Served under the right path but with one byte changed: only the hash can tell.
    const tampered = Buffer.from(BLOB);
    tampered[12345] = (tampered[12345] ?? 0) ^ 1;
    const forged = createServer((_request, response) => {
      response.writeHead(200, { "content-length": tampered.length });
      response.end(tampered);
    });
    forged.listen(0, "127.0.0.1");
    await once(forged, "listening");
    const { port } = forged.address() as AddressInfo;
    const other = new RegistryClient({ url: `http://127.0.0.1:${port}`, authorization: undefined }, 1);
    try {
      await assert.rejects(other.pullBlob("app", DIGEST, BLOB.length, true), /got 3145745 bytes sha256:/);
      await other.pullBlob("app", DIGEST, BLOB.length, false);
    } finally {
      other.close();
      forged.close();
    }
  });
});
