import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Sha256 } from "@aws-crypto/sha256-js";
import { HttpRequest } from "@smithy/protocol-http";
import { SignatureV4 } from "@smithy/signature-v4";
import { aws, startTestServer, type TestServer } from "./helpers.ts";

let server: TestServer;
before(async () => {
  server = await startTestServer();
});
after(async () => {
  await server.stop();
});

interface Raw {
  status: number;
  headers: Headers;
  text: string;
}

/** A CreateCluster request signed by the JS SDK's own signer, optionally altered after signing. */
async function signedCall(
  options: {
    secret?: string;
    date?: Date;
    body?: string;
    tamperBody?: string;
    service?: string;
    region?: string;
    presign?: boolean;
  } = {},
): Promise<Raw> {
  const url = new URL(server.endpoint);
  const body = options.body ?? JSON.stringify({ clusterName: "auth-test" });
  const request = new HttpRequest({
    method: "POST",
    protocol: url.protocol,
    hostname: url.hostname,
    port: Number(url.port),
    path: "/",
    headers: {
      host: url.host,
      "content-type": "application/x-amz-json-1.1",
      "x-amz-target": "AmazonEC2ContainerServiceV20141113.CreateCluster",
    },
    body,
  });
  const signer = new SignatureV4({
    service: options.service ?? "ecs",
    region: options.region ?? "us-east-1",
    credentials: {
      accessKeyId: server.credentials.accessKeyId,
      secretAccessKey: options.secret ?? server.credentials.secretAccessKey,
    },
    sha256: Sha256,
  });
  const signingDate = options.date ?? new Date();
  const signed = options.presign
    ? await signer.presign(request, {
        signingDate,
        expiresIn: 60,
        unhoistableHeaders: new Set(["x-amz-target"]),
      })
    : await signer.sign(request, { signingDate });
  const query = new URLSearchParams(signed.query as Record<string, string>).toString();
  const response = await fetch(`${server.endpoint}/${query === "" ? "" : `?${query}`}`, {
    method: "POST",
    headers: signed.headers,
    body: options.tamperBody ?? body,
  });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

function errorType(raw: Raw): string {
  return (JSON.parse(raw.text) as { __type: string }).__type;
}

describe("SigV4 at the front door", () => {
  it("accepts a correctly signed request, in the header form and the presigned form", async () => {
    const ok = await signedCall();
    assert.equal(ok.status, 200, ok.text);
    assert.ok(ok.headers.get("x-amzn-requestid"), "every response carries x-amzn-RequestId");
    const presigned = await signedCall({ presign: true, body: JSON.stringify({ clusterName: "presigned" }) });
    assert.equal(presigned.status, 200, presigned.text);
  });

  it("refuses a wrong secret with InvalidSignatureException", async () => {
    const raw = await signedCall({ secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" });
    assert.equal(raw.status, 403);
    assert.equal(errorType(raw), "InvalidSignatureException");
  });

  it("refuses a tampered body", async () => {
    const raw = await signedCall({ tamperBody: JSON.stringify({ clusterName: "auth-evil" }) });
    assert.equal(raw.status, 403);
    assert.equal(errorType(raw), "InvalidSignatureException");
  });

  it("refuses a date 20 minutes off either way", async () => {
    for (const offset of [-20, 20]) {
      const raw = await signedCall({ date: new Date(Date.now() + offset * 60_000) });
      assert.equal(raw.status, 403, `offset ${offset}`);
      assert.equal(errorType(raw), "InvalidSignatureException");
      assert.match(
        JSON.parse(raw.text).message,
        offset < 0 ? /Signature expired/ : /Signature not yet current/,
      );
    }
  });

  it("refuses a credential scoped to another service or region", async () => {
    assert.equal(errorType(await signedCall({ service: "ecr" })), "InvalidSignatureException");
    assert.equal(errorType(await signedCall({ region: "eu-west-1" })), "InvalidSignatureException");
  });

  it("refuses a request with no credentials with MissingAuthenticationTokenException", async () => {
    const response = await fetch(`${server.endpoint}/`, {
      method: "POST",
      headers: {
        "content-type": "application/x-amz-json-1.1",
        "x-amz-target": "AmazonEC2ContainerServiceV20141113.ListClusters",
      },
      body: "{}",
    });
    assert.equal(response.status, 403);
    assert.equal(
      ((await response.json()) as { __type: string }).__type,
      "MissingAuthenticationTokenException",
    );
  });

  it("leaves nothing behind from refused requests", async () => {
    const listed = await aws(server, ["ecs", "describe-clusters", "--clusters", "auth-evil"]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual((listed.json as { clusters: unknown[] }).clusters, []);
  });
});

describe("SigV4 with the AWS CLI", () => {
  it("refuses a wrong secret, an unknown key and missing credentials with the real codes", async () => {
    const wrongSecret = await aws(server, ["ecs", "list-clusters"], {
      AWS_SECRET_ACCESS_KEY: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    });
    assert.notEqual(wrongSecret.code, 0);
    assert.match(wrongSecret.stderr, /InvalidSignatureException/);

    const unknownKey = await aws(server, ["ecs", "list-clusters"], {
      AWS_ACCESS_KEY_ID: "AKIAIOSFODNN7EXAMPLE",
    });
    assert.notEqual(unknownKey.code, 0);
    assert.match(unknownKey.stderr, /UnrecognizedClientException/);

    const anonymous = await aws(server, ["ecs", "list-clusters", "--no-sign-request"]);
    assert.notEqual(anonymous.code, 0);
    assert.match(anonymous.stderr, /MissingAuthenticationTokenException/);
  });

  it("uses the Query protocol's codes for Query services", async () => {
    const wrongSecret = await aws(server, ["sts", "get-caller-identity"], {
      AWS_SECRET_ACCESS_KEY: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    });
    assert.notEqual(wrongSecret.code, 0);
    assert.match(wrongSecret.stderr, /SignatureDoesNotMatch/);
    const unknownKey = await aws(server, ["sts", "get-caller-identity"], {
      AWS_ACCESS_KEY_ID: "AKIAIOSFODNN7EXAMPLE",
    });
    assert.notEqual(unknownKey.code, 0);
    assert.match(unknownKey.stderr, /InvalidClientTokenId/);
  });

  it("refuses a request whose clock is 20 minutes off", async () => {
    const skewed = await startTestServer({ clock: () => new Date(Date.now() + 20 * 60_000) });
    try {
      const result = await aws(skewed, ["ecs", "list-clusters"]);
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /InvalidSignatureException/);
      assert.match(result.stderr, /Signature expired/);
    } finally {
      await skewed.stop();
    }
  });
});
