// The Amazon ECR API over the registry, with Debian's AWS CLI and with @aws-sdk/client-ecr,
// checked against what the same images look like through /v2/.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  BatchDeleteImageCommand,
  BatchGetImageCommand,
  CreateRepositoryCommand,
  DescribeImagesCommand,
  DescribeRepositoriesCommand,
  type ECRClient,
  GetAuthorizationTokenCommand,
  GetDownloadUrlForLayerCommand,
  GetLifecyclePolicyCommand,
  GetRepositoryPolicyCommand,
  ImageAlreadyExistsException,
  ImageNotFoundException,
  InvalidLayerPartException,
  InvalidParameterException,
  LayersNotFoundException,
  LifecyclePolicyNotFoundException,
  ListImagesCommand,
  PutImageCommand,
  PutLifecyclePolicyCommand,
  RepositoryNotFoundException,
  RepositoryPolicyNotFoundException,
  SetRepositoryPolicyCommand,
  UploadLayerPartCommand,
} from "@aws-sdk/client-ecr";
import { aws, type CliResult, startTestServer, type TestServer } from "./helpers.ts";
import {
  descriptor,
  ecrClient,
  MEDIA,
  type PushedImage,
  pushImage,
  sha256,
  V2Client,
} from "./support/v2-client.ts";

let server: TestServer;
let ecr: ECRClient;
let client: V2Client;
const scratch = mkdtempSync(join(tmpdir(), "wharf-ecr-"));

before(async () => {
  server = await startTestServer();
  ecr = ecrClient(server);
  client = await V2Client.login(server);
});
after(async () => {
  ecr.destroy();
  await server.stop();
  rmSync(scratch, { recursive: true, force: true });
});

/** Runs the CLI and returns its JSON output; fails the test on a non-zero exit. */
async function cli(args: string[], on: TestServer = server): Promise<Record<string, unknown>> {
  const result = await aws(on, args);
  assert.equal(result.code, 0, `aws ${args.join(" ")}: ${result.stderr}`);
  return (result.json ?? {}) as Record<string, unknown>;
}

/** Runs the CLI expecting the service to answer with `exception`. */
async function cliFails(args: string[], exception: string, on: TestServer = server): Promise<CliResult> {
  const result = await aws(on, args);
  assert.notEqual(result.code, 0, `aws ${args.join(" ")} should fail`);
  assert.match(result.stderr, new RegExp(`\\(${exception}\\)`), result.stderr);
  return result;
}

interface ImageDetail {
  imageDigest: string;
  imageTags?: string[];
  imageSizeInBytes: number;
  imagePushedAt: string;
  imageManifestMediaType: string;
  artifactMediaType?: string;
}

async function describeImages(repo: string, ...extra: string[]): Promise<ImageDetail[]> {
  const out = await cli(["ecr", "describe-images", "--repository-name", repo, ...extra]);
  return out.imageDetails as ImageDetail[];
}

async function tagsOf(repo: string, digest: string): Promise<string[] | undefined> {
  const out = await ecr.send(
    new DescribeImagesCommand({ repositoryName: repo, imageIds: [{ imageDigest: digest }] }),
  );
  return out.imageDetails?.[0]?.imageTags;
}

function policy(statements: object[]): string {
  return JSON.stringify({ Version: "2012-10-17", Statement: statements });
}

describe("ECR repositories", () => {
  it("creates repositories with tags, IMMUTABLE tags and an encryption configuration", async () => {
    const created = (
      await cli([
        "ecr",
        "create-repository",
        "--repository-name",
        "cli/app",
        "--tags",
        "Key=team,Value=web",
        "--image-tag-mutability",
        "IMMUTABLE",
        "--encryption-configuration",
        "encryptionType=KMS,kmsKey=arn:aws:kms:us-east-1:000000000000:key/example",
      ])
    ).repository as Record<string, unknown>;
    const port = new URL(server.endpoint).port;
    assert.equal(created.repositoryArn, "arn:aws:ecr:us-east-1:000000000000:repository/cli/app");
    assert.equal(created.registryId, "000000000000");
    assert.equal(created.repositoryUri, `localhost:${port}/cli/app`);
    assert.equal(created.imageTagMutability, "IMMUTABLE");
    assert.deepEqual(created.encryptionConfiguration, {
      encryptionType: "KMS",
      kmsKey: "arn:aws:kms:us-east-1:000000000000:key/example",
    });
    assert.ok(Math.abs(Date.parse(created.createdAt as string) - Date.now()) < 60_000);

    const plain = (await ecr.send(new CreateRepositoryCommand({ repositoryName: "sdk/plain" }))).repository;
    assert.equal(plain?.imageTagMutability, "MUTABLE");
    assert.deepEqual(plain?.encryptionConfiguration, { encryptionType: "AES256" });
    assert.ok(plain?.createdAt instanceof Date);

    await cliFails(
      ["ecr", "create-repository", "--repository-name", "cli/app"],
      "RepositoryAlreadyExistsException",
    );
    await assert.rejects(
      ecr.send(new CreateRepositoryCommand({ repositoryName: "Bad_Name" })),
      InvalidParameterException,
    );
    await assert.rejects(
      ecr.send(
        new CreateRepositoryCommand({
          repositoryName: "sdk/aes",
          encryptionConfiguration: {
            encryptionType: "AES256",
            kmsKey: "arn:aws:kms:us-east-1:000000000000:key/example",
          },
        }),
      ),
      InvalidParameterException,
    );

    const arn = created.repositoryArn as string;
    await cli(["ecr", "tag-resource", "--resource-arn", arn, "--tags", "Key=stage,Value=prod"]);
    const tags = await cli(["ecr", "list-tags-for-resource", "--resource-arn", arn]);
    assert.deepEqual(
      (tags.tags as Array<{ Key: string }>).sort((a, b) => a.Key.localeCompare(b.Key)),
      [
        { Key: "stage", Value: "prod" },
        { Key: "team", Value: "web" },
      ],
    );
  });

  it("describes repositories page by page, with the CLI and the SDK", async () => {
    for (const name of ["page/a", "page/b", "page/c", "page/d", "page/e"]) {
      await ecr.send(new CreateRepositoryCommand({ repositoryName: name }));
    }
    const all = (
      (await cli(["ecr", "describe-repositories"])).repositories as Array<{ repositoryName: string }>
    ).map((r) => r.repositoryName);
    assert.ok(all.length >= 5);
    const first = await cli(["ecr", "describe-repositories", "--max-items", "2"]);
    assert.equal((first.repositories as unknown[]).length, 2);
    assert.equal(typeof first.NextToken, "string");
    const rest = await cli(["ecr", "describe-repositories", "--starting-token", first.NextToken as string]);
    const paged = [...(first.repositories as unknown[]), ...(rest.repositories as unknown[])].map(
      (r) => (r as { repositoryName: string }).repositoryName,
    );
    assert.deepEqual(paged, all);

    const sdkNames: string[] = [];
    let nextToken: string | undefined;
    let pages = 0;
    do {
      const page = await ecr.send(new DescribeRepositoriesCommand({ maxResults: 2, nextToken }));
      assert.ok((page.repositories ?? []).length <= 2);
      sdkNames.push(...(page.repositories ?? []).map((r) => r.repositoryName ?? ""));
      nextToken = page.nextToken;
      pages++;
    } while (nextToken !== undefined);
    assert.deepEqual(sdkNames, all);
    assert.equal(pages, Math.ceil(all.length / 2));

    const named = await ecr.send(new DescribeRepositoriesCommand({ repositoryNames: ["page/c"] }));
    assert.equal(named.repositories?.[0]?.repositoryName, "page/c");
    await assert.rejects(
      ecr.send(new DescribeRepositoriesCommand({ repositoryNames: ["page/none"] })),
      RepositoryNotFoundException,
    );
  });

  it("refuses to delete a repository with images unless forced", async () => {
    await ecr.send(new CreateRepositoryCommand({ repositoryName: "doomed" }));
    await pushImage(client, "doomed", "v1");
    await cliFails(
      ["ecr", "delete-repository", "--repository-name", "doomed"],
      "RepositoryNotEmptyException",
    );
    assert.equal((await client.request("GET", "/v2/doomed/manifests/v1")).status, 200);
    const deleted = await cli(["ecr", "delete-repository", "--repository-name", "doomed", "--force"]);
    assert.equal((deleted.repository as { repositoryName: string }).repositoryName, "doomed");
    await assert.rejects(
      ecr.send(new DescribeRepositoriesCommand({ repositoryNames: ["doomed"] })),
      RepositoryNotFoundException,
    );
    assert.equal((await client.request("GET", "/v2/doomed/manifests/v1")).status, 404);
  });

  it("hands out registry passwords valid for 12 hours, with the proxy endpoint", async () => {
    const password = (await aws(server, ["ecr", "get-login-password"])).stdout.trim();
    const login = new V2Client(server.endpoint, password);
    assert.equal((await login.request("GET", "/v2/")).status, 200);

    const data = (
      (await cli(["ecr", "get-authorization-token"])).authorizationData as Array<Record<string, string>>
    )[0];
    assert.ok(data !== undefined);
    const port = new URL(server.endpoint).port;
    assert.equal(data.proxyEndpoint, `http://localhost:${port}`);
    const expiresIn = Date.parse(data.expiresAt ?? "") - Date.now();
    assert.ok(Math.abs(expiresIn - 12 * 3_600_000) < 60_000, `expires in ${expiresIn} ms`);
    const decoded = Buffer.from(data.authorizationToken ?? "", "base64").toString();
    assert.match(decoded, /^AWS:.+/);
    assert.equal((await new V2Client(server.endpoint, decoded.slice(4)).request("GET", "/v2/")).status, 200);

    const sdk = await ecr.send(new GetAuthorizationTokenCommand({}));
    const expiresAt = sdk.authorizationData?.[0]?.expiresAt;
    assert.ok(expiresAt instanceof Date);
    assert.ok(Math.abs(expiresAt.getTime() - Date.now() - 12 * 3_600_000) < 60_000);
  });

  it("describes the registry", async () => {
    const out = await cli(["ecr", "describe-registry"]);
    assert.equal(out.registryId, "000000000000");
  });
});

describe("ECR images", () => {
  const repo = "images";
  let docker: PushedImage;
  let oci: PushedImage;
  let untagged: PushedImage;

  before(async () => {
    await ecr.send(new CreateRepositoryCommand({ repositoryName: repo }));
    docker = await pushImage(client, repo, "docker", {
      mediaType: MEDIA.dockerManifest,
      layers: [randomBytes(3000), randomBytes(500)],
    });
    oci = await pushImage(client, repo, "oci", { layers: [randomBytes(1234)] });
    await client.pushManifest(repo, "also-oci", oci.manifest, MEDIA.ociManifest);
    untagged = await pushImage(client, repo, "temporary");
    assert.equal((await client.request("DELETE", `/v2/${repo}/manifests/temporary`)).status, 202);
  });

  it("describes images with digest, tags, size, push time and media types", async () => {
    const details = await describeImages(repo);
    const byDigest = new Map(details.map((d) => [d.imageDigest, d]));
    assert.equal(details.length, 3);
    const d = byDigest.get(docker.digest);
    assert.deepEqual(d?.imageTags, ["docker"]);
    assert.equal(d?.imageSizeInBytes, 3500);
    assert.equal(d?.imageManifestMediaType, MEDIA.dockerManifest);
    assert.equal(d?.artifactMediaType, MEDIA.dockerConfig);
    assert.ok(Math.abs(Date.parse(d?.imagePushedAt ?? "") - Date.now()) < 60_000);
    const o = byDigest.get(oci.digest);
    assert.deepEqual(o?.imageTags, ["also-oci", "oci"]);
    assert.equal(o?.imageSizeInBytes, 1234);
    assert.equal(o?.imageManifestMediaType, MEDIA.ociManifest);
    assert.equal(byDigest.get(untagged.digest)?.imageTags, undefined);

    const onlyUntagged = await describeImages(repo, "--filter", "tagStatus=UNTAGGED");
    assert.deepEqual(
      onlyUntagged.map((i) => i.imageDigest),
      [untagged.digest],
    );
    const onlyTagged = await ecr.send(
      new DescribeImagesCommand({ repositoryName: repo, filter: { tagStatus: "TAGGED" } }),
    );
    assert.deepEqual(
      (onlyTagged.imageDetails ?? []).map((i) => i.imageDigest).sort(),
      [docker.digest, oci.digest].sort(),
    );
    const one = await ecr.send(
      new DescribeImagesCommand({ repositoryName: repo, imageIds: [{ imageTag: "oci" }] }),
    );
    assert.equal(one.imageDetails?.[0]?.imageDigest, oci.digest);
    assert.ok(one.imageDetails?.[0]?.imagePushedAt instanceof Date);
    assert.equal(one.imageDetails?.[0]?.imageSizeInBytes, 1234);
    await assert.rejects(
      ecr.send(new DescribeImagesCommand({ repositoryName: repo, imageIds: [{ imageTag: "nope" }] })),
      ImageNotFoundException,
    );
  });

  it("lists images with a tag status filter, and pages them", async () => {
    const tagged = (
      await cli(["ecr", "list-images", "--repository-name", repo, "--filter", "tagStatus=TAGGED"])
    ).imageIds as Array<{ imageDigest: string; imageTag?: string }>;
    assert.deepEqual(
      tagged.map((id) => `${id.imageTag}@${id.imageDigest}`).sort(),
      [`also-oci@${oci.digest}`, `docker@${docker.digest}`, `oci@${oci.digest}`].sort(),
    );
    const untaggedIds = await ecr.send(
      new ListImagesCommand({ repositoryName: repo, filter: { tagStatus: "UNTAGGED" } }),
    );
    assert.deepEqual(untaggedIds.imageIds, [{ imageDigest: untagged.digest }]);

    const seen: string[] = [];
    let nextToken: string | undefined;
    do {
      const page = await ecr.send(new ListImagesCommand({ repositoryName: repo, maxResults: 1, nextToken }));
      assert.ok((page.imageIds ?? []).length <= 1);
      seen.push(...(page.imageIds ?? []).map((id) => `${id.imageTag ?? ""}@${id.imageDigest}`));
      nextToken = page.nextToken;
    } while (nextToken !== undefined);
    assert.equal(seen.length, 4);
  });

  it("returns manifests with batch-get-image, byte for byte", async () => {
    const out = await cli([
      "ecr",
      "batch-get-image",
      "--repository-name",
      repo,
      "--image-ids",
      "imageTag=docker",
      "imageTag=missing",
    ]);
    const images = out.images as Array<{
      imageId: { imageDigest: string; imageTag: string };
      imageManifest: string;
      imageManifestMediaType: string;
    }>;
    assert.equal(images.length, 1);
    assert.deepEqual(images[0]?.imageId, { imageDigest: docker.digest, imageTag: "docker" });
    assert.equal(images[0]?.imageManifest, docker.manifest.toString());
    assert.equal(images[0]?.imageManifestMediaType, MEDIA.dockerManifest);
    assert.deepEqual(out.failures, [
      {
        imageId: { imageTag: "missing" },
        failureCode: "ImageNotFound",
        failureReason: "Requested image not found",
      },
    ]);
    const sdk = await ecr.send(
      new BatchGetImageCommand({
        repositoryName: repo,
        imageIds: [{ imageDigest: oci.digest }],
        acceptedMediaTypes: [MEDIA.ociManifest],
      }),
    );
    assert.equal(sdk.images?.[0]?.imageManifest, oci.manifest.toString());
    const refused = await ecr.send(
      new BatchGetImageCommand({
        repositoryName: repo,
        imageIds: [{ imageDigest: oci.digest }],
        acceptedMediaTypes: [MEDIA.dockerManifest],
      }),
    );
    assert.equal(refused.failures?.[0]?.failureCode, "UnsupportedImageType");
  });

  it("puts an image pushed through /v2/ under a new tag, visible both ways", async () => {
    const out = await cli([
      "ecr",
      "put-image",
      "--repository-name",
      repo,
      "--image-tag",
      "from-cli",
      "--image-manifest",
      docker.manifest.toString(),
    ]);
    const image = out.image as {
      imageId: { imageDigest: string; imageTag: string };
      imageManifestMediaType: string;
    };
    assert.deepEqual(image.imageId, { imageDigest: docker.digest, imageTag: "from-cli" });
    assert.equal(image.imageManifestMediaType, MEDIA.dockerManifest);
    const pulled = await client.request("GET", `/v2/${repo}/manifests/from-cli`, {
      headers: { accept: MEDIA.dockerManifest },
    });
    assert.equal(pulled.headers.get("docker-content-digest"), docker.digest);
    assert.deepEqual(pulled.body, docker.manifest);
    assert.deepEqual(await tagsOf(repo, docker.digest), ["docker", "from-cli"]);

    const sdk = await ecr.send(
      new PutImageCommand({
        repositoryName: repo,
        imageTag: "from-sdk",
        imageManifest: oci.manifest.toString(),
        imageManifestMediaType: MEDIA.ociManifest,
      }),
    );
    assert.equal(sdk.image?.imageId?.imageDigest, oci.digest);
    assert.equal(
      (await client.request("HEAD", `/v2/${repo}/manifests/from-sdk`)).headers.get("docker-content-digest"),
      oci.digest,
    );
    await assert.rejects(
      ecr.send(
        new PutImageCommand({
          repositoryName: repo,
          imageTag: "from-sdk",
          imageManifest: oci.manifest.toString(),
        }),
      ),
      ImageAlreadyExistsException,
    );
  });

  it("refuses put-image when the manifest's layers are missing", async () => {
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA.ociManifest,
      config: descriptor(MEDIA.ociConfig, oci.config),
      layers: [descriptor(MEDIA.ociLayer, Buffer.from("never uploaded"))],
    });
    await cliFails(
      ["ecr", "put-image", "--repository-name", repo, "--image-tag", "broken", "--image-manifest", manifest],
      "LayersNotFoundException",
    );
    await assert.rejects(
      ecr.send(new PutImageCommand({ repositoryName: repo, imageTag: "broken", imageManifest: manifest })),
      LayersNotFoundException,
    );
    assert.equal((await client.request("GET", `/v2/${repo}/manifests/broken`)).status, 404);
  });

  it("stops re-tagging once tags are immutable", async () => {
    await ecr.send(new CreateRepositoryCommand({ repositoryName: "retag" }));
    const first = await pushImage(client, "retag", "stable");
    const second = await pushImage(client, "retag", "next");
    const out = await cli([
      "ecr",
      "put-image-tag-mutability",
      "--repository-name",
      "retag",
      "--image-tag-mutability",
      "IMMUTABLE",
    ]);
    assert.equal(out.imageTagMutability, "IMMUTABLE");
    await cliFails(
      [
        "ecr",
        "put-image",
        "--repository-name",
        "retag",
        "--image-tag",
        "stable",
        "--image-manifest",
        second.manifest.toString(),
      ],
      "ImageTagAlreadyExistsException",
    );
    const still = await client.request("HEAD", "/v2/retag/manifests/stable");
    assert.equal(still.headers.get("docker-content-digest"), first.digest);
  });

  it("deletes one tag of several, then an image by digest", async () => {
    const byTag = await cli([
      "ecr",
      "batch-delete-image",
      "--repository-name",
      repo,
      "--image-ids",
      "imageTag=also-oci",
    ]);
    assert.deepEqual(byTag.imageIds, [{ imageDigest: oci.digest, imageTag: "also-oci" }]);
    assert.deepEqual(byTag.failures, []);
    assert.deepEqual(await tagsOf(repo, oci.digest), ["from-sdk", "oci"]);
    assert.equal((await client.request("GET", `/v2/${repo}/manifests/oci`)).status, 200);

    const byDigest = await ecr.send(
      new BatchDeleteImageCommand({
        repositoryName: repo,
        imageIds: [{ imageDigest: oci.digest }, { imageTag: "gone" }],
      }),
    );
    assert.deepEqual((byDigest.imageIds ?? []).map((id) => id.imageTag).sort(), ["from-sdk", "oci"]);
    assert.equal(byDigest.failures?.[0]?.failureCode, "ImageNotFound");
    assert.equal((await client.request("GET", `/v2/${repo}/manifests/oci`)).status, 404);
    assert.equal((await client.request("GET", `/v2/${repo}/manifests/${oci.digest}`)).status, 404);
    const remaining = await ecr.send(new DescribeImagesCommand({ repositoryName: repo }));
    assert.deepEqual(
      (remaining.imageDetails ?? []).map((d) => d.imageDigest).sort(),
      [docker.digest, untagged.digest].sort(),
    );
  });
});

describe("ECR layers", () => {
  const repo = "layers";
  before(() => ecr.send(new CreateRepositoryCommand({ repositoryName: repo })));

  it("checks layer availability", async () => {
    const layer = randomBytes(777);
    const digest = await client.pushBlob(repo, layer);
    const missing = sha256("not here");
    const out = await cli([
      "ecr",
      "batch-check-layer-availability",
      "--repository-name",
      repo,
      "--layer-digests",
      digest,
      missing,
    ]);
    assert.deepEqual(out.layers, [
      {
        layerDigest: digest,
        layerAvailability: "AVAILABLE",
        layerSize: 777,
        mediaType: "application/octet-stream",
      },
    ]);
    assert.deepEqual(
      (out.failures as Array<{ layerDigest: string; failureCode: string }>).map((f) => [
        f.layerDigest,
        f.failureCode,
      ]),
      [[missing, "MissingLayerDigest"]],
    );
  });

  it("uploads a layer in parts with the CLI, and /v2/ serves it", async () => {
    const layer = randomBytes(300_000);
    const digest = sha256(layer);
    const started = await cli(["ecr", "initiate-layer-upload", "--repository-name", repo]);
    const uploadId = started.uploadId as string;
    assert.equal(typeof started.partSize, "number");
    const part = async (from: number, to: number) => {
      const file = join(scratch, `part-${from}`);
      writeFileSync(file, layer.subarray(from, to + 1));
      return aws(server, [
        "ecr",
        "upload-layer-part",
        "--repository-name",
        repo,
        "--upload-id",
        uploadId,
        "--part-first-byte",
        String(from),
        "--part-last-byte",
        String(to),
        "--layer-part-blob",
        `fileb://${file}`,
      ]);
    };
    const first = await part(0, 199_999);
    assert.equal(first.code, 0, first.stderr);
    assert.equal((first.json as { lastByteReceived: number }).lastByteReceived, 199_999);
    await assert.rejects(
      ecr.send(
        new UploadLayerPartCommand({
          repositoryName: repo,
          uploadId,
          partFirstByte: 250_000,
          partLastByte: 299_999,
          layerPartBlob: layer.subarray(250_000),
        }),
      ),
      InvalidLayerPartException,
    );
    assert.equal((await part(200_000, 299_999)).code, 0);
    const completed = await cli([
      "ecr",
      "complete-layer-upload",
      "--repository-name",
      repo,
      "--upload-id",
      uploadId,
      "--layer-digests",
      digest,
    ]);
    assert.equal(completed.layerDigest, digest);
    assert.deepEqual(await client.pullBlob(repo, digest), layer);
  });

  it("gives a download URL that a plain GET can use", async () => {
    const layer = randomBytes(5000);
    const digest = await client.pushBlob(repo, layer);
    const out = await cli([
      "ecr",
      "get-download-url-for-layer",
      "--repository-name",
      repo,
      "--layer-digest",
      digest,
    ]);
    assert.equal(out.layerDigest, digest);
    const response = await fetch(out.downloadUrl as string);
    assert.equal(response.status, 200);
    const body = Buffer.from(await response.arrayBuffer());
    assert.equal(sha256(body), digest);
    await assert.rejects(
      ecr.send(new GetDownloadUrlForLayerCommand({ repositoryName: repo, layerDigest: sha256("absent") })),
      LayersNotFoundException,
    );
  });
});

describe("ECR repository policies", () => {
  const repo = "public-pull";
  let image: PushedImage;
  const anonymous = () => new V2Client(server.endpoint);

  before(async () => {
    await ecr.send(new CreateRepositoryCommand({ repositoryName: repo }));
    image = await pushImage(client, repo, "v1");
  });

  it("lets anyone pull, and nobody anonymous push, under a policy allowing Principal *", async () => {
    assert.equal((await anonymous().request("GET", `/v2/${repo}/manifests/v1`)).status, 401);
    const text = policy([
      {
        Sid: "public-pull",
        Effect: "Allow",
        Principal: "*",
        Action: ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
      },
    ]);
    await cli(["ecr", "set-repository-policy", "--repository-name", repo, "--policy-text", text]);
    const got = await cli(["ecr", "get-repository-policy", "--repository-name", repo]);
    assert.equal(got.policyText, text);
    assert.equal(got.repositoryName, repo);

    const manifest = await anonymous().request("GET", `/v2/${repo}/manifests/v1`);
    assert.equal(manifest.status, 200);
    assert.deepEqual(manifest.body, image.manifest);
    for (const digest of image.blobs) await anonymous().pullBlob(repo, digest);
    const push = await anonymous().request("POST", `/v2/${repo}/blobs/uploads/`);
    assert.equal(push.status, 401);
    assert.match(push.headers.get("www-authenticate") ?? "", /^(Basic|Bearer) realm="[^"]+"/);
    const tag = await anonymous().request("PUT", `/v2/${repo}/manifests/v2`, {
      headers: { "content-type": MEDIA.ociManifest },
      body: image.manifest,
    });
    assert.equal(tag.status, 401);

    await cli(["ecr", "delete-repository-policy", "--repository-name", repo]);
    assert.equal((await anonymous().request("GET", `/v2/${repo}/manifests/v1`)).status, 401);
    await assert.rejects(
      ecr.send(new GetRepositoryPolicyCommand({ repositoryName: repo })),
      RepositoryPolicyNotFoundException,
    );
    await assert.rejects(
      ecr.send(new SetRepositoryPolicyCommand({ repositoryName: repo, policyText: "{not a policy" })),
      InvalidParameterException,
    );
  });
});

describe("ECR lifecycle policies", () => {
  const repo = "lifecycle";
  let clocked: TestServer;
  let offset = 0;
  let login: V2Client;

  let clockedEcr: ECRClient;

  before(async () => {
    clocked = await startTestServer({ clock: () => new Date(Date.now() + offset), gcGraceMs: 0 });
    clockedEcr = ecrClient(clocked);
    login = await V2Client.login(clocked);
    await clockedEcr.send(new CreateRepositoryCommand({ repositoryName: repo }));
  });
  after(async () => {
    clockedEcr.destroy();
    await clocked.stop();
  });

  const KEEP_TWO_V = JSON.stringify({
    rules: [
      {
        rulePriority: 1,
        description: "keep the two newest v images",
        selection: {
          tagStatus: "tagged",
          tagPrefixList: ["v"],
          countType: "imageCountMoreThan",
          countNumber: 2,
        },
        action: { type: "expire" },
      },
    ],
  });

  it("refuses invalid policies with InvalidParameterException", async () => {
    // The API takes at least 100 characters of policy text; a description pads these.
    const rule = (selection: object) =>
      JSON.stringify({
        rules: [
          {
            rulePriority: 1,
            description: "a rule that is wrong on purpose",
            selection,
            action: { type: "expire" },
          },
        ],
      });
    const missingPrefixes = await cliFails(
      [
        "ecr",
        "put-lifecycle-policy",
        "--repository-name",
        repo,
        "--lifecycle-policy-text",
        rule({ tagStatus: "tagged", countType: "imageCountMoreThan", countNumber: 1 }),
      ],
      "InvalidParameterException",
      clocked,
    );
    assert.match(missingPrefixes.stderr, /Must specify tagPrefixList or tagPatternList/);
    for (const text of [
      rule({ tagStatus: "any", countType: "imageCountMoreThan", countUnit: "days", countNumber: 1 }),
      rule({ tagStatus: "untagged", countType: "imageCountMoreThan", countNumber: 0 }),
      JSON.stringify({
        rules: "not a list of rules, though long enough to pass the 100 character minimum length of the API",
      }),
    ]) {
      await assert.rejects(
        clockedEcr.send(new PutLifecyclePolicyCommand({ repositoryName: repo, lifecyclePolicyText: text })),
        (error: unknown) => {
          assert.ok(error instanceof InvalidParameterException, String(error));
          assert.match(error.message, /Lifecycle policy validation failure/);
          return true;
        },
      );
    }
    await assert.rejects(
      clockedEcr.send(new GetLifecyclePolicyCommand({ repositoryName: repo })),
      LifecyclePolicyNotFoundException,
    );
  });

  it("previews exactly what a run then expires, and GC reclaims the expired images' blobs", async () => {
    const shared = randomBytes(2000);
    const images = new Map<string, PushedImage>();
    for (const tag of ["v1", "v2", "v3", "v4", "v5"]) {
      offset += 1000; // distinct push times, oldest first
      images.set(tag, await pushImage(login, repo, tag, { layers: [shared, randomBytes(1500)] }));
    }
    const digestOf = (tag: string) => images.get(tag)?.digest ?? "";

    const started = await cli(
      [
        "ecr",
        "start-lifecycle-policy-preview",
        "--repository-name",
        repo,
        "--lifecycle-policy-text",
        KEEP_TWO_V,
      ],
      clocked,
    );
    assert.equal(started.lifecyclePolicyText, KEEP_TWO_V);
    const preview = await cli(["ecr", "get-lifecycle-policy-preview", "--repository-name", repo], clocked);
    assert.equal(preview.status, "COMPLETE");
    const results = preview.previewResults as Array<{
      imageDigest: string;
      imageTags: string[];
      action: { type: string };
      appliedRulePriority: number;
    }>;
    assert.deepEqual(
      results.map((r) => r.imageTags),
      [["v1"], ["v2"], ["v3"]],
    );
    assert.deepEqual(
      results.map((r) => r.imageDigest),
      ["v1", "v2", "v3"].map(digestOf),
    );
    assert.ok(results.every((r) => r.action.type === "EXPIRE" && r.appliedRulePriority === 1));
    assert.deepEqual(preview.summary, { expiringImageTotalCount: 3 });
    assert.equal((await tagsByImage()).length, 5, "a preview expires nothing");

    await cli(
      ["ecr", "put-lifecycle-policy", "--repository-name", repo, "--lifecycle-policy-text", KEEP_TWO_V],
      clocked,
    );
    await clocked.registry.maintain(repo);
    assert.deepEqual((await tagsByImage()).sort(), [["v4"], ["v5"]]);
    const got = await cli(["ecr", "get-lifecycle-policy", "--repository-name", repo], clocked);
    assert.equal(got.lifecyclePolicyText, KEEP_TWO_V);
    assert.equal(typeof got.lastEvaluatedAt, "string");

    // The expired images' own blobs are gone from the registry and from the disk; what v4 and v5 use stays.
    for (const tag of ["v1", "v2", "v3"]) {
      const image = images.get(tag);
      assert.ok(image !== undefined);
      assert.equal((await login.request("GET", `/v2/${repo}/manifests/${image.digest}`)).status, 404);
      for (const digest of [image.digest, image.blobs[0] ?? "", image.blobs[2] ?? ""]) {
        assert.equal(
          (await login.request("HEAD", `/v2/${repo}/blobs/${digest}`)).status,
          404,
          `${tag} ${digest}`,
        );
        assert.equal(existsSync(blobPath(clocked, digest)), false, `${tag} ${digest} on disk`);
      }
    }
    for (const tag of ["v4", "v5"]) {
      const image = images.get(tag);
      assert.ok(image !== undefined);
      for (const digest of image.blobs) await login.pullBlob(repo, digest);
    }
  });

  async function tagsByImage(): Promise<string[][]> {
    const out = await clockedEcr.send(new DescribeImagesCommand({ repositoryName: repo }));
    return (out.imageDetails ?? []).map((d) => d.imageTags ?? []);
  }
});

function blobPath(on: TestServer, digest: string): string {
  const hex = digest.slice("sha256:".length);
  return join(on.dataDir, "registry", "blobs", "sha256", hex.slice(0, 2), hex);
}
