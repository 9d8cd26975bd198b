// The OCI Distribution API (v1.1) at /v2/, spoken with plain HTTP as a client would:
// every behaviour a push or pull relies on, and every error code in its envelope.
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  CreateRepositoryCommand,
  DeleteRepositoryPolicyCommand,
  type ECRClient,
  SetRepositoryPolicyCommand,
} from "@aws-sdk/client-ecr";
import { startTestServer, type TestServer } from "./helpers.ts";
import {
  descriptor,
  ecrClient,
  errorCodes,
  loginPassword,
  MEDIA,
  pushImage,
  type Reply,
  sha256,
  V2Client,
} from "./support/v2-client.ts";

let server: TestServer;
let ecr: ECRClient;
let client: V2Client;
let anonymous: V2Client;

before(async () => {
  server = await startTestServer();
  ecr = ecrClient(server);
  client = await V2Client.login(server);
  anonymous = new V2Client(server.endpoint);
});
after(async () => {
  ecr.destroy();
  await server.stop();
});

async function createRepository(name: string, mutability: "MUTABLE" | "IMMUTABLE" = "MUTABLE") {
  await ecr.send(new CreateRepositoryCommand({ repositoryName: name, imageTagMutability: mutability }));
}

/** A challenge a client can answer: Basic with the ECR password, or the token flow. */
const CHALLENGE = /^(Basic|Bearer) realm="[^"]+"/;

const DENY_ADMIN = (actions: string[]) =>
  JSON.stringify({
    Version: "2012-10-17",
    Statement: [
      {
        Sid: "deny-admin",
        Effect: "Deny",
        Principal: { AWS: "arn:aws:iam::000000000000:user/admin" },
        Action: actions,
      },
    ],
  });

/** Asserts a reply is the spec's error envelope with `code` and `status`. */
function assertError(reply: Reply, status: number, code: string): void {
  assert.equal(
    reply.status,
    status,
    `expected ${status} ${code}, got ${reply.status} ${reply.body.toString()}`,
  );
  assert.deepEqual(errorCodes(reply), [code]);
  const entry = (reply.json as { errors: Array<Record<string, unknown>> }).errors[0];
  assert.equal(typeof entry?.message, "string");
  assert.match(reply.headers.get("content-type") ?? "", /^application\/json/);
}

async function startUpload(repo: string): Promise<string> {
  const reply = await client.request("POST", `/v2/${repo}/blobs/uploads/`);
  assert.equal(reply.status, 202);
  const location = reply.headers.get("location") ?? "";
  assert.ok(location.startsWith(`/v2/${repo}/blobs/uploads/`), `Location ${location}`);
  return location;
}

function patch(location: string, bytes: Buffer, start: number): Promise<Reply> {
  return client.request("PATCH", location, {
    headers: {
      "content-type": "application/octet-stream",
      "content-range": `${start}-${start + bytes.length - 1}`,
    },
    body: bytes,
  });
}

/** A body sent with chunked transfer encoding, so no Content-Length announces its size. */
function chunkedBody(bytes: Buffer): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(new Uint8Array(bytes));
      controller.close();
    },
  });
}

describe("OCI distribution: the base endpoint", () => {
  it("challenges without credentials and answers with them", async () => {
    const denied = await anonymous.request("GET", "/v2/");
    assertError(denied, 401, "UNAUTHORIZED");
    assert.match(denied.headers.get("www-authenticate") ?? "", CHALLENGE);
    assert.equal(denied.headers.get("docker-distribution-api-version"), "registry/2.0");
    const ok = await client.request("GET", "/v2/");
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get("docker-distribution-api-version"), "registry/2.0");
  });
});

describe("OCI distribution: blobs", () => {
  before(() => createRepository("blobs"));

  it("pushes monolithically and serves HEAD, GET and byte ranges", async () => {
    const bytes = randomBytes(1000);
    const digest = sha256(bytes);
    const pushed = await client.request("POST", `/v2/blobs/blobs/uploads/?digest=${digest}`, {
      headers: { "content-type": "application/octet-stream" },
      body: bytes,
    });
    assert.equal(pushed.status, 201);
    assert.equal(pushed.headers.get("location"), `/v2/blobs/blobs/${digest}`);
    assert.equal(pushed.headers.get("docker-content-digest"), digest);

    const head = await client.request("HEAD", `/v2/blobs/blobs/${digest}`);
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-length"), "1000");
    assert.equal(head.headers.get("docker-content-digest"), digest);
    assert.equal(head.body.length, 0);

    const whole = await client.request("GET", `/v2/blobs/blobs/${digest}`);
    assert.equal(whole.status, 200);
    assert.deepEqual(whole.body, bytes);

    const ranged = async (range: string) =>
      client.request("GET", `/v2/blobs/blobs/${digest}`, { headers: { range } });
    const middle = await ranged("bytes=10-19");
    assert.equal(middle.status, 206);
    assert.equal(middle.headers.get("content-range"), "bytes 10-19/1000");
    assert.deepEqual(middle.body, bytes.subarray(10, 20));
    const open = await ranged("bytes=990-");
    assert.equal(open.status, 206);
    assert.equal(open.headers.get("content-range"), "bytes 990-999/1000");
    assert.deepEqual(open.body, bytes.subarray(990));
    const suffix = await ranged("bytes=-5");
    assert.equal(suffix.status, 206);
    assert.equal(suffix.headers.get("content-range"), "bytes 995-999/1000");
    assert.deepEqual(suffix.body, bytes.subarray(995));
    const beyond = await ranged("bytes=1000-2000");
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers.get("content-range"), "bytes */1000");
    const headRange = await client.request("HEAD", `/v2/blobs/blobs/${digest}`, {
      headers: { range: "bytes=0-9" },
    });
    assert.equal(headRange.status, 206);
    assert.equal(headRange.headers.get("content-length"), "10");
  });

  it("pushes with POST then PUT, and an empty blob with no body at all", async () => {
    const bytes = randomBytes(4096);
    const location = await startUpload("blobs");
    const put = await client.request("PUT", `${location}?digest=${sha256(bytes)}`, {
      headers: { "content-type": "application/octet-stream" },
      body: bytes,
    });
    assert.equal(put.status, 201);
    assert.equal(put.headers.get("docker-content-digest"), sha256(bytes));
    assert.deepEqual(await client.pullBlob("blobs", sha256(bytes)), bytes);

    const empty = sha256(Buffer.alloc(0));
    const emptyPut = await client.request("PUT", `${await startUpload("blobs")}?digest=${empty}`);
    assert.equal(emptyPut.status, 201);
    const head = await client.request("HEAD", `/v2/blobs/blobs/${empty}`);
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-length"), "0");
  });

  it("takes chunks in order, refuses one out of order with 416 and keeps the upload intact", async () => {
    // Chunks that end inside the sealed storage's 1 MiB segments, and cross their boundaries.
    const bytes = randomBytes(2_800_000);
    const location = await startUpload("blobs");
    const first = await patch(location, bytes.subarray(0, 1_300_000), 0);
    assert.equal(first.status, 202);
    assert.equal(first.headers.get("range"), "0-1299999");
    const uploadLocation = first.headers.get("location") ?? "";
    assert.ok(uploadLocation.startsWith("/v2/blobs/blobs/uploads/"));

    const skipped = await patch(uploadLocation, bytes.subarray(1_400_000, 1_500_000), 1_400_000);
    assertError(skipped, 416, "BLOB_UPLOAD_INVALID");
    assert.equal(skipped.headers.get("range"), "0-1299999");
    const repeated = await patch(uploadLocation, bytes.subarray(0, 1000), 0);
    assert.equal(repeated.status, 416);

    const status = await client.request("GET", uploadLocation);
    assert.equal(status.status, 204);
    assert.equal(status.headers.get("range"), "0-1299999");
    assert.equal(status.headers.get("docker-upload-uuid"), uploadLocation.split("/").at(-1));

    const second = await patch(uploadLocation, bytes.subarray(1_300_000, 2_500_000), 1_300_000);
    assert.equal(second.status, 202);
    assert.equal(second.headers.get("range"), "0-2499999");
    const last = await client.request("PUT", `${uploadLocation}?digest=${sha256(bytes)}`, {
      headers: { "content-type": "application/octet-stream", "content-range": "2500000-2799999" },
      body: bytes.subarray(2_500_000),
    });
    assert.equal(last.status, 201);
    assert.deepEqual(await client.pullBlob("blobs", sha256(bytes)), bytes);
  });

  it("cancels an upload with DELETE", async () => {
    const location = await startUpload("blobs");
    assert.equal((await patch(location, randomBytes(100), 0)).status, 202);
    const cancelled = await client.request("DELETE", location);
    assert.equal(cancelled.status, 204);
    assertError(await client.request("GET", location), 404, "BLOB_UPLOAD_UNKNOWN");
  });

  it("mounts a blob from another repository, and uploads instead when the caller may not pull from it", async () => {
    await createRepository("mount-source");
    await createRepository("mount-target");
    await createRepository("mount-denied");
    const bytes = randomBytes(2000);
    const digest = await client.pushBlob("mount-source", bytes);
    assert.equal((await client.request("HEAD", `/v2/mount-target/blobs/${digest}`)).status, 404);

    const mounted = await client.request(
      "POST",
      `/v2/mount-target/blobs/uploads/?mount=${digest}&from=mount-source`,
    );
    assert.equal(mounted.status, 201);
    assert.equal(mounted.headers.get("location"), `/v2/mount-target/blobs/${digest}`);
    assert.equal(mounted.headers.get("docker-content-digest"), digest);
    assert.deepEqual(await client.pullBlob("mount-target", digest), bytes);

    const unknown = sha256(randomBytes(10));
    const notThere = await client.request(
      "POST",
      `/v2/mount-target/blobs/uploads/?mount=${unknown}&from=mount-source`,
    );
    assert.equal(notThere.status, 202);

    await ecr.send(
      new SetRepositoryPolicyCommand({
        repositoryName: "mount-source",
        policyText: DENY_ADMIN(["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]),
      }),
    );
    try {
      const refused = await client.request(
        "POST",
        `/v2/mount-denied/blobs/uploads/?mount=${digest}&from=mount-source`,
      );
      assert.equal(refused.status, 202);
      assert.match(
        refused.headers.get("location") ?? "",
        /^\/v2\/mount-denied\/blobs\/uploads\/[0-9a-f-]{36}$/,
      );
      assert.equal((await client.request("HEAD", `/v2/mount-denied/blobs/${digest}`)).status, 404);
    } finally {
      await ecr.send(new DeleteRepositoryPolicyCommand({ repositoryName: "mount-source" }));
    }
  });
});

describe("OCI distribution: manifests", () => {
  const repo = "manifests";
  before(() => createRepository(repo));

  async function getManifest(reference: string, accept?: string): Promise<Reply> {
    return client.request(
      "GET",
      `/v2/${repo}/manifests/${reference}`,
      accept === undefined ? {} : { headers: { accept } },
    );
  }

  it("stores Docker schema 2 and OCI image manifests by tag and by digest, and deletes them", async () => {
    for (const mediaType of [MEDIA.dockerManifest, MEDIA.ociManifest]) {
      const tag = mediaType === MEDIA.dockerManifest ? "docker" : "oci";
      const image = await pushImage(client, repo, tag, { mediaType });
      assert.equal(image.digest, sha256(image.manifest));

      const byTag = await getManifest(tag, mediaType);
      assert.equal(byTag.status, 200);
      assert.equal(byTag.headers.get("content-type"), mediaType);
      assert.equal(byTag.headers.get("docker-content-digest"), image.digest);
      assert.deepEqual(byTag.body, image.manifest);

      const head = await client.request("HEAD", `/v2/${repo}/manifests/${image.digest}`, {
        headers: { accept: mediaType },
      });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get("content-length"), String(image.manifest.length));
      assert.equal(head.headers.get("docker-content-digest"), image.digest);

      const again = await client.pushManifest(repo, image.digest, image.manifest, mediaType);
      assert.equal(again.digest, image.digest);

      assert.equal((await client.request("DELETE", `/v2/${repo}/manifests/${tag}`)).status, 202);
      assertError(await getManifest(tag), 404, "MANIFEST_UNKNOWN");
      assert.equal((await getManifest(image.digest)).status, 200);
      assert.equal((await client.request("DELETE", `/v2/${repo}/manifests/${image.digest}`)).status, 202);
      assertError(await getManifest(image.digest), 404, "MANIFEST_UNKNOWN");
      assertError(
        await client.request("DELETE", `/v2/${repo}/manifests/${image.digest}`),
        404,
        "MANIFEST_UNKNOWN",
      );
    }
  });

  it("stores Docker manifest lists and OCI indexes, and gives image-only clients the linux/amd64 child", async () => {
    for (const [listType, imageType] of [
      [MEDIA.dockerList, MEDIA.dockerManifest],
      [MEDIA.ociIndex, MEDIA.ociManifest],
    ] as const) {
      const amd64 = await pushImage(client, repo, `${listType.length}-amd64`, { mediaType: imageType });
      const arm64 = await pushImage(client, repo, `${listType.length}-arm64`, { mediaType: imageType });
      const list = {
        schemaVersion: 2,
        mediaType: listType,
        manifests: [
          { ...descriptor(imageType, arm64.manifest), platform: { os: "linux", architecture: "arm64" } },
          { ...descriptor(imageType, amd64.manifest), platform: { os: "linux", architecture: "amd64" } },
        ],
      };
      const tag = listType === MEDIA.dockerList ? "list" : "index";
      const pushed = await client.pushManifest(repo, tag, list, listType);

      const whole = await getManifest(tag, `${listType}, ${imageType}`);
      assert.equal(whole.status, 200);
      assert.equal(whole.headers.get("content-type"), listType);
      assert.equal(whole.headers.get("docker-content-digest"), pushed.digest);
      assert.deepEqual(whole.body, pushed.bytes);

      const anything = await getManifest(pushed.digest, "*/*");
      assert.equal(anything.headers.get("docker-content-digest"), pushed.digest);

      const imageOnly = await getManifest(tag, `${MEDIA.dockerManifest}, ${MEDIA.ociManifest}`);
      assert.equal(imageOnly.status, 200);
      assert.equal(imageOnly.headers.get("content-type"), imageType);
      assert.equal(imageOnly.headers.get("docker-content-digest"), amd64.digest);
      assert.deepEqual(imageOnly.body, amd64.manifest);
    }
  });

  it("stores an artifact with a subject, announces it with OCI-Subject and lists it as a referrer", async () => {
    const subject = await pushImage(client, repo, "signed");
    const empty = Buffer.from("{}");
    await client.pushBlob(repo, empty);
    const artifact = async (artifactType: string, content: string) => {
      const blob = Buffer.from(content);
      await client.pushBlob(repo, blob);
      const manifest = {
        schemaVersion: 2,
        mediaType: MEDIA.ociManifest,
        artifactType,
        config: descriptor(MEDIA.ociEmpty, empty),
        layers: [descriptor("application/octet-stream", blob)],
        subject: descriptor(MEDIA.ociManifest, subject.manifest),
        annotations: { "org.example.kind": artifactType },
      };
      const bytes = Buffer.from(JSON.stringify(manifest));
      const reply = await client.request("PUT", `/v2/${repo}/manifests/${sha256(bytes)}`, {
        headers: { "content-type": MEDIA.ociManifest },
        body: bytes,
      });
      assert.equal(reply.status, 201);
      assert.equal(reply.headers.get("oci-subject"), subject.digest);
      return { digest: sha256(bytes), size: bytes.length };
    };
    const sbom = await artifact("application/vnd.example.sbom+json", "an sbom");
    const signature = await artifact("application/vnd.example.signature", "a signature");

    const all = await client.request("GET", `/v2/${repo}/referrers/${subject.digest}`);
    assert.equal(all.status, 200);
    assert.equal(all.headers.get("content-type"), MEDIA.ociIndex);
    assert.equal(all.headers.get("oci-filters-applied"), null);
    const index = all.json as {
      schemaVersion: number;
      mediaType: string;
      manifests: Array<Record<string, unknown>>;
    };
    assert.equal(index.schemaVersion, 2);
    assert.equal(index.mediaType, MEDIA.ociIndex);
    const byDigest = new Map(index.manifests.map((m) => [m.digest, m]));
    assert.deepEqual(byDigest.get(sbom.digest), {
      mediaType: MEDIA.ociManifest,
      digest: sbom.digest,
      size: sbom.size,
      artifactType: "application/vnd.example.sbom+json",
      annotations: { "org.example.kind": "application/vnd.example.sbom+json" },
    });
    assert.ok(byDigest.has(signature.digest));
    assert.equal(index.manifests.length, 2);

    const filtered = await client.request(
      "GET",
      `/v2/${repo}/referrers/${subject.digest}?artifactType=${encodeURIComponent("application/vnd.example.signature")}`,
    );
    assert.equal(filtered.headers.get("oci-filters-applied"), "artifactType");
    assert.deepEqual(
      (filtered.json as { manifests: Array<{ digest: string }> }).manifests.map((m) => m.digest),
      [signature.digest],
    );
    const none = await client.request("GET", `/v2/${repo}/referrers/${sha256("nothing refers to this")}`);
    assert.equal(none.status, 200);
    assert.deepEqual((none.json as { manifests: unknown[] }).manifests, []);
  });

  it("lists tags and the catalog in pages that follow Link headers", async () => {
    await createRepository("paged");
    const image = await pushImage(client, "paged", "a");
    for (const tag of ["b", "c", "d", "e"])
      await client.pushManifest("paged", tag, image.manifest, MEDIA.ociManifest);

    const seen: string[] = [];
    let next: string | undefined = "/v2/paged/tags/list?n=2";
    let pages = 0;
    while (next !== undefined) {
      const reply = await client.request("GET", next);
      assert.equal(reply.status, 200);
      const body = reply.json as { name: string; tags: string[] };
      assert.equal(body.name, "paged");
      assert.ok(body.tags.length <= 2);
      seen.push(...body.tags);
      pages++;
      const link = reply.headers.get("link");
      next = link === null ? undefined : /^<([^>]+)>; rel="next"$/.exec(link)?.[1];
      if (link !== null) assert.ok(next, `Link ${link}`);
    }
    assert.deepEqual(seen, ["a", "b", "c", "d", "e"]);
    assert.equal(pages, 3);
    const afterC = await client.request("GET", "/v2/paged/tags/list?last=c");
    assert.deepEqual((afterC.json as { tags: string[] }).tags, ["d", "e"]);
    const zero = await client.request("GET", "/v2/paged/tags/list?n=0");
    assert.deepEqual((zero.json as { tags: string[] }).tags, []);
    assert.equal(zero.headers.get("link"), null);

    const all = ((await client.request("GET", "/v2/_catalog")).json as { repositories: string[] })
      .repositories;
    assert.ok(all.includes("paged") && all.includes("manifests"));
    const paged: string[] = [];
    next = "/v2/_catalog?n=3";
    while (next !== undefined) {
      const reply = await client.request("GET", next);
      paged.push(...(reply.json as { repositories: string[] }).repositories);
      const link = reply.headers.get("link");
      next = link === null ? undefined : /^<([^>]+)>; rel="next"$/.exec(link)?.[1];
    }
    assert.deepEqual(paged, all);
    assert.deepEqual([...all].sort(), all);
    assertError(await anonymous.request("GET", "/v2/_catalog"), 401, "UNAUTHORIZED");
  });

  it("serves nested repository names", async () => {
    await createRepository("team/app");
    const image = await pushImage(client, "team/app", "v1");
    const tags = await client.request("GET", "/v2/team/app/tags/list");
    assert.deepEqual(tags.json, { name: "team/app", tags: ["v1"] });
    assert.deepEqual((await getNested("team/app", "v1")).body, image.manifest);
    for (const digest of image.blobs) await client.pullBlob("team/app", digest);
    assertError(await client.request("GET", "/v2/team/tags/list"), 404, "NAME_UNKNOWN");
  });

  async function getNested(name: string, reference: string): Promise<Reply> {
    return client.request("GET", `/v2/${name}/manifests/${reference}`);
  }
});

describe("OCI distribution: error codes", () => {
  const repo = "errors";
  before(() => createRepository(repo));

  it("BLOB_UNKNOWN for a blob the repository does not have", async () => {
    assertError(await client.request("GET", `/v2/${repo}/blobs/${sha256("absent")}`), 404, "BLOB_UNKNOWN");
    const head = await client.request("HEAD", `/v2/${repo}/blobs/${sha256("absent")}`);
    assert.equal(head.status, 404);
  });

  it("BLOB_UPLOAD_INVALID for a malformed Content-Range, BLOB_UPLOAD_UNKNOWN for an unknown upload", async () => {
    const location = await startUpload(repo);
    const reply = await client.request("PATCH", location, {
      headers: { "content-type": "application/octet-stream", "content-range": "bytes=a-b" },
      body: randomBytes(10),
    });
    assertError(reply, 400, "BLOB_UPLOAD_INVALID");
    const unknown = `/v2/${repo}/blobs/uploads/${randomUUID()}`;
    assertError(await client.request("GET", unknown), 404, "BLOB_UPLOAD_UNKNOWN");
    assertError(await patch(unknown, randomBytes(10), 0), 404, "BLOB_UPLOAD_UNKNOWN");
    assertError(await client.request("PUT", `${unknown}?digest=${sha256("x")}`), 404, "BLOB_UPLOAD_UNKNOWN");
    assertError(
      await client.request("DELETE", `/v2/${repo}/blobs/uploads/not-an-upload`),
      404,
      "BLOB_UPLOAD_UNKNOWN",
    );
  });

  it("DIGEST_INVALID when the bytes do not match, and nothing becomes visible", async () => {
    const bytes = randomBytes(5000);
    const claimed = sha256("something else");
    const location = await startUpload(repo);
    const put = await client.request("PUT", `${location}?digest=${claimed}`, { body: bytes });
    assertError(put, 400, "DIGEST_INVALID");
    assert.equal((await client.request("HEAD", `/v2/${repo}/blobs/${claimed}`)).status, 404);
    assert.equal((await client.request("HEAD", `/v2/${repo}/blobs/${sha256(bytes)}`)).status, 404);
    assertError(await client.request("GET", location), 404, "BLOB_UPLOAD_UNKNOWN");

    const monolithic = await client.request("POST", `/v2/${repo}/blobs/uploads/?digest=${claimed}`, {
      body: bytes,
    });
    assertError(monolithic, 400, "DIGEST_INVALID");
    assert.equal((await client.request("HEAD", `/v2/${repo}/blobs/${claimed}`)).status, 404);

    assertError(
      await client.request("PUT", `${await startUpload(repo)}?digest=sha256:xyz`, { body: bytes }),
      400,
      "DIGEST_INVALID",
    );

    const image = await pushImage(client, repo, "digest-check");
    const wrong = await client.request("PUT", `/v2/${repo}/manifests/${sha256("other manifest")}`, {
      headers: { "content-type": MEDIA.ociManifest },
      body: image.manifest,
    });
    assertError(wrong, 400, "DIGEST_INVALID");
    assert.equal(
      (await client.request("GET", `/v2/${repo}/manifests/${sha256("other manifest")}`)).status,
      404,
    );
  });

  it("MANIFEST_BLOB_UNKNOWN for a manifest naming a missing blob, with nothing stored", async () => {
    const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
    await client.pushBlob(repo, config);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA.ociManifest,
        config: descriptor(MEDIA.ociConfig, config),
        layers: [descriptor(MEDIA.ociLayer, Buffer.from("a layer never pushed"))],
      }),
    );
    const reply = await client.request("PUT", `/v2/${repo}/manifests/dangling`, {
      headers: { "content-type": MEDIA.ociManifest },
      body: manifest,
    });
    assertError(reply, 400, "MANIFEST_BLOB_UNKNOWN");
    const detail = (reply.json as { errors: Array<{ detail: { digest: string } }> }).errors[0]?.detail;
    assert.equal(detail?.digest, sha256("a layer never pushed"));
    assertError(await client.request("GET", `/v2/${repo}/manifests/dangling`), 404, "MANIFEST_UNKNOWN");
    assert.equal((await client.request("GET", `/v2/${repo}/manifests/${sha256(manifest)}`)).status, 404);
    assert.ok(
      !((await client.request("GET", `/v2/${repo}/tags/list`)).json as { tags: string[] }).tags.includes(
        "dangling",
      ),
    );
    const hex = sha256(manifest).slice(7);
    assert.equal(
      existsSync(join(server.dataDir, "registry", "blobs", "sha256", hex.slice(0, 2), hex)),
      false,
    );

    const index = {
      schemaVersion: 2,
      mediaType: MEDIA.ociIndex,
      manifests: [
        { ...descriptor(MEDIA.ociManifest, manifest), platform: { os: "linux", architecture: "amd64" } },
      ],
    };
    const indexReply = await client.request("PUT", `/v2/${repo}/manifests/dangling-index`, {
      headers: { "content-type": MEDIA.ociIndex },
      body: JSON.stringify(index),
    });
    assertError(indexReply, 400, "MANIFEST_BLOB_UNKNOWN");
  });

  it("MANIFEST_INVALID for bytes that are not a manifest", async () => {
    const put = (body: string, contentType = MEDIA.ociManifest) =>
      client.request("PUT", `/v2/${repo}/manifests/broken`, {
        headers: { "content-type": contentType },
        body,
      });
    assertError(await put("{not json"), 400, "MANIFEST_INVALID");
    assertError(await put("[]"), 400, "MANIFEST_INVALID");
    assertError(
      await put(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.ociManifest })),
      400,
      "MANIFEST_INVALID",
    );
    assertError(
      await put(
        JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.dockerManifest, config: {}, layers: [] }),
      ),
      400,
      "MANIFEST_INVALID",
    );
    assertError(await client.request("GET", `/v2/${repo}/manifests/broken`), 404, "MANIFEST_UNKNOWN");
  });

  it("NAME_INVALID for path tricks, upper case and empty segments", async () => {
    for (const path of [
      "/v2/errors/../blobs/tags/list",
      "/v2/..%2Ferrors/tags/list",
      "/v2/Errors/tags/list",
      "/v2/team//app/tags/list",
      "/v2/team/app%2F/tags/list",
      "/v2/-errors/manifests/latest",
    ]) {
      const reply = await client.raw("GET", path);
      assertError(reply, 400, "NAME_INVALID");
    }
  });

  it("NAME_UNKNOWN for a repository that does not exist, and a challenge for anonymous callers", async () => {
    assertError(await client.request("GET", "/v2/no-such-repo/tags/list"), 404, "NAME_UNKNOWN");
    assertError(await client.request("POST", "/v2/no-such-repo/blobs/uploads/"), 404, "NAME_UNKNOWN");
    assertError(await anonymous.request("GET", "/v2/no-such-repo/tags/list"), 401, "UNAUTHORIZED");
  });

  it("SIZE_INVALID when a body is shorter or longer than its Content-Length or Content-Range", async () => {
    const bytes = randomBytes(200);
    const location = await startUpload(repo);
    const first = await patch(location, bytes.subarray(0, 50), 0);
    assert.equal(first.status, 202);
    // Content-Length disagrees with Content-Range.
    const mismatch = await client.request("PATCH", location, {
      headers: { "content-type": "application/octet-stream", "content-range": "50-149" },
      body: bytes.subarray(50, 100),
    });
    assertError(mismatch, 400, "SIZE_INVALID");
    // Chunked bodies: only the range says how long they should be.
    const longer = await client.request("PATCH", location, {
      headers: { "content-type": "application/octet-stream", "content-range": "50-99" },
      body: chunkedBody(bytes.subarray(50, 150)),
    });
    assertError(longer, 400, "SIZE_INVALID");
    const shorter = await client.request("PATCH", location, {
      headers: { "content-type": "application/octet-stream", "content-range": "50-149" },
      body: chunkedBody(bytes.subarray(50, 80)),
    });
    assertError(shorter, 400, "SIZE_INVALID");
    const putMismatch = await client.request("PUT", `${location}?digest=${sha256(bytes)}`, {
      headers: { "content-type": "application/octet-stream", "content-range": "50-199" },
      body: bytes.subarray(50, 60),
    });
    assertError(putMismatch, 400, "SIZE_INVALID");
    // None of that counted: the upload still holds its first 50 bytes and completes.
    const status = await client.request("GET", location);
    assert.equal(status.headers.get("range"), "0-49");
    assert.equal((await patch(location, bytes.subarray(50), 50)).status, 202);
    assert.equal((await client.request("PUT", `${location}?digest=${sha256(bytes)}`)).status, 201);
    assert.deepEqual(await client.pullBlob(repo, sha256(bytes)), bytes);
  });

  it("TAG_INVALID when an immutable repository's tag would move, or a tag is malformed", async () => {
    await createRepository("immutable", "IMMUTABLE");
    const first = await pushImage(client, "immutable", "v1");
    const second = await pushImage(client, "immutable", "v2");
    const moved = await client.request("PUT", "/v2/immutable/manifests/v1", {
      headers: { "content-type": MEDIA.ociManifest },
      body: second.manifest,
    });
    assertError(moved, 400, "TAG_INVALID");
    const still = await client.request("GET", "/v2/immutable/manifests/v1");
    assert.equal(still.headers.get("docker-content-digest"), first.digest);
    // The same manifest again is no move.
    assert.equal(
      (await client.pushManifest("immutable", "v1", first.manifest, MEDIA.ociManifest)).digest,
      first.digest,
    );

    const malformed = await client.request("PUT", `/v2/${repo}/manifests/.hidden`, {
      headers: { "content-type": MEDIA.ociManifest },
      body: first.manifest,
    });
    assertError(malformed, 400, "TAG_INVALID");
  });

  it("UNAUTHORIZED for a forged or foreign token", async () => {
    const password = await loginPassword(server);
    const [prefix, payload, mac] = password.split(".") as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString()) as { k: string; e: number };
    const longer = Buffer.from(JSON.stringify({ ...claims, e: claims.e + 86_400_000 })).toString("base64url");
    const forgeries = [
      `${prefix}.${longer}.${mac}`,
      `${prefix}.${payload}.${Buffer.alloc(32).toString("base64url")}`,
      `${prefix}.${payload}`,
      "not-a-token",
    ];
    for (const forged of forgeries) {
      const reply = await new V2Client(server.endpoint, forged).request("GET", `/v2/${repo}/tags/list`);
      assertError(reply, 401, "UNAUTHORIZED");
      assert.match(reply.headers.get("www-authenticate") ?? "", CHALLENGE);
    }
    const wrongUser = await client.request("GET", "/v2/", {
      anonymous: true,
      headers: { authorization: `Basic ${Buffer.from(`admin:${password}`).toString("base64")}` },
    });
    assertError(wrongUser, 401, "UNAUTHORIZED");
  });

  it("UNAUTHORIZED once a token has expired (12 hours)", async () => {
    let offset = 0;
    const clocked = await startTestServer({ clock: () => new Date(Date.now() + offset) });
    try {
      const login = await V2Client.login(clocked);
      assert.equal((await login.request("GET", "/v2/")).status, 200);
      offset = 12 * 3_600_000 - 60_000;
      assert.equal((await login.request("GET", "/v2/")).status, 200);
      offset = 12 * 3_600_000 + 1000;
      const expired = await login.request("GET", "/v2/");
      assertError(expired, 401, "UNAUTHORIZED");
      assert.match(expired.headers.get("www-authenticate") ?? "", CHALLENGE);
    } finally {
      await clocked.stop();
    }
  });

  it("DENIED when the repository policy explicitly denies the caller", async () => {
    await createRepository("denied");
    const image = await pushImage(client, "denied", "v1");
    await ecr.send(
      new SetRepositoryPolicyCommand({ repositoryName: "denied", policyText: DENY_ADMIN(["ecr:*"]) }),
    );
    try {
      assertError(await client.request("GET", "/v2/denied/manifests/v1"), 403, "DENIED");
      assertError(await client.request("GET", `/v2/denied/blobs/${image.blobs[0]}`), 403, "DENIED");
      assertError(await client.request("POST", "/v2/denied/blobs/uploads/"), 403, "DENIED");
      assertError(await client.request("DELETE", "/v2/denied/manifests/v1"), 403, "DENIED");
    } finally {
      await ecr.send(new DeleteRepositoryPolicyCommand({ repositoryName: "denied" }));
    }
    assert.equal((await client.request("GET", "/v2/denied/manifests/v1")).status, 200);
  });

  it("UNSUPPORTED for methods a route does not take", async () => {
    assertError(
      await client.request("PATCH", `/v2/${repo}/manifests/latest`, { body: "{}" }),
      405,
      "UNSUPPORTED",
    );
    assertError(await client.request("POST", `/v2/${repo}/tags/list`), 405, "UNSUPPORTED");
    assertError(
      await client.request("PUT", `/v2/${repo}/blobs/${sha256("x")}`, { body: "x" }),
      405,
      "UNSUPPORTED",
    );
  });
});
