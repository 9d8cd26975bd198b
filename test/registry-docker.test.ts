// Wharf's registry with the tools a user pushes and pulls with: Debian's docker (a private
// dockerd on a unix socket), skopeo and the AWS CLI, against a real server on a loopback port.
// docker treats `localhost:<port>` as an insecure registry, so all of this is plain HTTP.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { aws, type CliResult, startTestServer, type TestServer } from "./helpers.ts";
import { buildBusyboxImage, type Dockerd, startDockerd } from "./support/docker.ts";
import { LAYOUT_REF, MEDIA_TYPES, skopeo, writeMultiPlatformLayout } from "./support/oci.ts";
import { check, type RunResult } from "./support/process.ts";

const RUN_ID = randomBytes(4).toString("hex");
const HOUR_MS = 3_600_000;

const sha256 = (text: string): string => `sha256:${createHash("sha256").update(text, "utf8").digest("hex")}`;

interface ImageDetail {
  imageDigest: string;
  imageTags?: string[];
  imageManifestMediaType?: string;
}

/** Throws with the CLI's output unless it exited 0; returns its parsed JSON. */
function ok<T>(what: string, result: CliResult): T {
  assert.equal(result.code, 0, `${what} exited ${result.code}: ${result.stderr}`);
  return result.json as T;
}

async function describeImages(server: TestServer, repository: string): Promise<ImageDetail[]> {
  const out = ok<{ imageDetails: ImageDetail[] }>(
    `describe-images ${repository}`,
    await aws(server, ["ecr", "describe-images", "--repository-name", repository]),
  );
  return out.imageDetails;
}

/** What `aws ecr get-login-password` prints. */
async function loginPassword(server: TestServer): Promise<string> {
  const result = await aws(server, ["ecr", "get-login-password"]);
  assert.equal(result.code, 0, result.stderr);
  const password = result.stdout.trim();
  assert.notEqual(password, "");
  return password;
}

function dockerLogin(d: Dockerd, host: string, password: string): Promise<RunResult> {
  return d.docker(["login", "--username", "AWS", "--password-stdin", host], {
    input: password,
    timeoutMs: 30_000,
  });
}

/** `docker push` and the manifest digest it reports (`<tag>: digest: sha256:… size: N`). */
async function dockerPush(d: Dockerd, ref: string): Promise<string> {
  const pushed = check(`docker push ${ref}`, await d.docker(["push", ref]));
  const match = /: digest: (sha256:[0-9a-f]{64}) size: \d+/.exec(pushed.stdout);
  assert.ok(match?.[1] !== undefined, `docker push printed no digest:\n${pushed.stdout}`);
  return match[1];
}

async function repoDigests(d: Dockerd, ref: string): Promise<string[]> {
  const inspect = check(
    `docker image inspect ${ref}`,
    await d.docker(["image", "inspect", "--format", "{{json .RepoDigests}}", ref], { timeoutMs: 30_000 }),
  );
  return JSON.parse(inspect.stdout) as string[];
}

/** The combined output of a command that must fail. */
function failure(what: string, result: RunResult): string {
  assert.notEqual(result.code, 0, `${what} should have failed:\n${result.stdout}`);
  return `${result.stdout}\n${result.stderr}`;
}

describe("docker, skopeo and the AWS CLI against Wharf's registry over HTTP", () => {
  const work = mkdtempSync(join(tmpdir(), `wharf-registry-docker-${RUN_ID}-`));
  const localTag = (name: string) => `wharf-e2e-${RUN_ID}:${name}`;
  let d: Dockerd;
  let server: TestServer;
  let host: string;
  const servers: TestServer[] = [];

  before(async () => {
    d = await startDockerd();
    server = await startTestServer();
    servers.push(server);
    host = `localhost:${server.port}`;
  });

  after(async () => {
    await d?.stop();
    for (const s of servers) await s.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("create-repository, get-login-password | docker login, push, describe-images, pull and run", async () => {
    const created = ok<{ repository: { repositoryUri: string; imageTagMutability: string } }>(
      "create-repository",
      await aws(server, ["ecr", "create-repository", "--repository-name", "web"]),
    );
    assert.equal(created.repository.repositoryUri, `${host}/web`);

    const login = check("docker login", await dockerLogin(d, host, await loginPassword(server)));
    assert.match(login.stdout, /Login Succeeded/);

    const content = `hello web ${RUN_ID}\n`;
    const imageId = await buildBusyboxImage(d, localTag("web"), content);
    const ref = `${host}/web:v1`;
    check("docker tag", await d.docker(["tag", localTag("web"), ref]));
    const digest = await dockerPush(d, ref);
    assert.deepEqual(await repoDigests(d, ref), [`${host}/web@${digest}`]);

    const images = await describeImages(server, "web");
    assert.deepEqual(
      images.map((image) => [image.imageDigest, image.imageTags]),
      [[digest, ["v1"]]],
    );

    check("docker rmi", await d.docker(["rmi", ref, localTag("web")]));
    assert.notEqual((await d.docker(["image", "inspect", ref])).code, 0, "the image is gone locally");
    const pulled = check("docker pull", await d.docker(["pull", ref]));
    assert.match(pulled.stdout, new RegExp(`Digest: ${digest}`));
    const inspect = check(
      "docker image inspect",
      await d.docker(["image", "inspect", "--format", "{{.Id}}", ref]),
    );
    assert.equal(inspect.stdout.trim(), imageId, "the config digest (image id) survived the round trip");
    assert.deepEqual(await repoDigests(d, ref), [`${host}/web@${digest}`]);
    const ran = check(
      "docker run",
      await d.docker(["run", "--rm", "--network", "none", ref, "/bin/cat", "/hello.txt"]),
    );
    assert.equal(ran.stdout, content);
  });

  it("refuses a wrong password: docker login fails, a push with it stored fails, nothing lands", async () => {
    check("docker logout", await d.docker(["logout", host]));
    const wrong = failure("docker login with a wrong password", await dockerLogin(d, host, "not-a-token"));
    assert.match(wrong, /401 Unauthorized|unauthorized/i);
    // a genuine password with one character of its signature changed (not the last: its low bits are padding)
    const genuine = await loginPassword(server);
    const at = genuine.lastIndexOf(".") + 1;
    const forged = `${genuine.slice(0, at)}${genuine[at] === "A" ? "B" : "A"}${genuine.slice(at + 1)}`;
    assert.match(
      failure("docker login with a forged password", await dockerLogin(d, host, forged)),
      /401|unauthorized/i,
    );

    // What docker would send had the login been stored: the wrong password as Basic credentials.
    const configFile = join(d.configDir, "config.json");
    const saved = readFileSync(configFile, "utf8");
    const auth = Buffer.from("AWS:not-a-token").toString("base64");
    writeFileSync(configFile, `${JSON.stringify({ auths: { [host]: { auth } } })}\n`);
    try {
      await buildBusyboxImage(d, localTag("wrong"), `wrong ${RUN_ID}\n`);
      check("docker tag", await d.docker(["tag", localTag("wrong"), `${host}/web:wrong`]));
      const push = failure(
        "docker push with a wrong password",
        await d.docker(["push", `${host}/web:wrong`]),
      );
      assert.match(push, /unauthorized/i);
    } finally {
      writeFileSync(configFile, saved);
    }
    const tags = (await describeImages(server, "web")).flatMap((image) => image.imageTags ?? []);
    assert.deepEqual(tags, ["v1"]);
  });

  it("refuses a password once it has expired (12 hours, by the server's clock)", async () => {
    let skewMs = 0;
    const clocked = await startTestServer({ clock: () => new Date(Date.now() + skewMs) });
    servers.push(clocked);
    const clockedHost = `localhost:${clocked.port}`;
    ok("create-repository", await aws(clocked, ["ecr", "create-repository", "--repository-name", "web"]));
    const password = await loginPassword(clocked);
    check("docker login", await dockerLogin(d, clockedHost, password));
    await buildBusyboxImage(d, localTag("expiry"), `expiry ${RUN_ID}\n`);
    check("docker tag", await d.docker(["tag", localTag("expiry"), `${clockedHost}/web:v1`]));
    await dockerPush(d, `${clockedHost}/web:v1`);

    skewMs = 13 * HOUR_MS;
    check("docker tag", await d.docker(["tag", localTag("expiry"), `${clockedHost}/web:v2`]));
    const push = failure(
      "docker push with an expired password",
      await d.docker(["push", `${clockedHost}/web:v2`]),
    );
    assert.match(push, /unauthorized|401/i);
    const pull = failure(
      "docker pull with an expired password",
      await d.docker(["pull", `${clockedHost}/web:v1`]),
    );
    assert.match(pull, /unauthorized|401/i);
    const relogin = failure(
      "docker login with an expired password",
      await dockerLogin(d, clockedHost, password),
    );
    assert.match(relogin, /401 Unauthorized|unauthorized/i);

    skewMs = 0;
    const images = await describeImages(clocked, "web");
    assert.deepEqual(
      images.flatMap((image) => image.imageTags ?? []),
      ["v1"],
      "the refused push left no tag",
    );
  });

  it("skopeo copy --all carries a multi-platform index in and out with every digest intact", async () => {
    const layoutDir = join(work, "layout");
    const layout = await writeMultiPlatformLayout(layoutDir, `hello multi ${RUN_ID}\n`);
    ok("create-repository", await aws(server, ["ecr", "create-repository", "--repository-name", "multi"]));
    const creds = `AWS:${await loginPassword(server)}`;
    const ref = `docker://${host}/multi:latest`;
    check(
      "skopeo copy --all (in)",
      await skopeo([
        "copy",
        "--all",
        `oci:${layoutDir}`,
        ref,
        "--dest-tls-verify=false",
        "--dest-creds",
        creds,
      ]),
    );

    const raw = check(
      "skopeo inspect --raw",
      await skopeo(["inspect", "--raw", "--tls-verify=false", "--creds", creds, ref]),
    );
    assert.equal(sha256(raw.stdout), layout.indexDigest);
    assert.equal((JSON.parse(raw.stdout) as { mediaType: string }).mediaType, MEDIA_TYPES.index);
    for (const digest of layout.manifestDigests) {
      const manifest = check(
        `skopeo inspect --raw @${digest}`,
        await skopeo([
          "inspect",
          "--raw",
          "--tls-verify=false",
          "--creds",
          creds,
          `docker://${host}/multi@${digest}`,
        ]),
      );
      assert.equal(sha256(manifest.stdout), digest);
    }
    const tagged = (await describeImages(server, "multi")).find((image) =>
      image.imageTags?.includes("latest"),
    );
    assert.equal(tagged?.imageDigest, layout.indexDigest);
    assert.equal(tagged?.imageManifestMediaType, MEDIA_TYPES.index);

    const outDir = join(work, "out");
    check(
      "skopeo copy --all (out)",
      await skopeo([
        "copy",
        "--all",
        ref,
        `oci:${outDir}:${LAYOUT_REF}`,
        "--src-tls-verify=false",
        "--src-creds",
        creds,
      ]),
    );
    const copied = check(
      "skopeo inspect --raw (copy)",
      await skopeo(["inspect", "--raw", `oci:${outDir}:${LAYOUT_REF}`]),
    );
    assert.equal(sha256(copied.stdout), layout.indexDigest);
    const blobs = readdirSync(join(outDir, "blobs", "sha256")).map((hex) => `sha256:${hex}`);
    for (const digest of [
      layout.indexDigest,
      ...layout.manifestDigests,
      ...layout.configDigests,
      layout.layerDigest,
    ]) {
      assert.ok(blobs.includes(digest), `${digest} was copied out`);
    }
    for (const digest of blobs) {
      const bytes = readFileSync(join(outDir, "blobs", "sha256", digest.slice("sha256:".length)));
      assert.equal(`sha256:${createHash("sha256").update(bytes).digest("hex")}`, digest);
    }

    // docker picks this host's platform out of the index Wharf serves.
    check("docker login", await dockerLogin(d, host, creds.slice("AWS:".length)));
    const pulled = `${host}/multi:latest`;
    check("docker pull (index)", await d.docker(["pull", pulled]));
    assert.deepEqual(await repoDigests(d, pulled), [`${host}/multi@${layout.indexDigest}`]);
    const ran = check(
      "docker run (index)",
      await d.docker(["run", "--rm", "--network", "none", pulled, "/bin/cat", "/hello.txt"]),
    );
    assert.equal(ran.stdout, `hello multi ${RUN_ID}\n`);
  });

  it("an IMMUTABLE repository refuses to move a tag: docker push fails, the original digest stays", async () => {
    ok(
      "create-repository",
      await aws(server, [
        "ecr",
        "create-repository",
        "--repository-name",
        "fixed",
        "--image-tag-mutability",
        "IMMUTABLE",
      ]),
    );
    check("docker login", await dockerLogin(d, host, await loginPassword(server)));
    const ref = `${host}/fixed:v1`;
    await buildBusyboxImage(d, localTag("first"), `first ${RUN_ID}\n`);
    check("docker tag", await d.docker(["tag", localTag("first"), ref]));
    const original = await dockerPush(d, ref);

    await buildBusyboxImage(d, localTag("second"), `second ${RUN_ID}\n`);
    check("docker tag", await d.docker(["tag", localTag("second"), ref]));
    const push = failure("docker push over an immutable tag", await d.docker(["push", ref]));
    assert.match(push, /tag invalid|TAG_INVALID/i);
    assert.match(push, /immutable/i);

    const images = await describeImages(server, "fixed");
    const v1 = images.filter((image) => image.imageTags?.includes("v1"));
    assert.deepEqual(
      v1.map((image) => image.imageDigest),
      [original],
    );
  });

  const publicRef = () => `${host}/public:v1`;
  const publicContent = `public ${RUN_ID}\n`;
  let publicDigest = "";

  it("set-repository-policy opens a repository to Principal * for pulls", async () => {
    ok("create-repository", await aws(server, ["ecr", "create-repository", "--repository-name", "public"]));
    check("docker login", await dockerLogin(d, host, await loginPassword(server)));
    await buildBusyboxImage(d, localTag("public"), publicContent);
    check("docker tag", await d.docker(["tag", localTag("public"), publicRef()]));
    publicDigest = await dockerPush(d, publicRef());

    const policy = {
      Version: "2012-10-17",
      Statement: [
        {
          Sid: "AnonymousPull",
          Effect: "Allow",
          Principal: "*",
          Action: ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
        },
      ],
    };
    const text = JSON.stringify(policy);
    ok(
      "set-repository-policy",
      await aws(server, [
        "ecr",
        "set-repository-policy",
        "--repository-name",
        "public",
        "--policy-text",
        text,
      ]),
    );
    const got = ok<{ policyText: string }>(
      "get-repository-policy",
      await aws(server, ["ecr", "get-repository-policy", "--repository-name", "public"]),
    );
    assert.deepEqual(JSON.parse(got.policyText), policy);
    check("docker logout", await d.docker(["logout", host]));
    check("docker rmi", await d.docker(["rmi", publicRef(), localTag("public")]));
  });

  it("skopeo reads the public repository without credentials", async () => {
    assert.notEqual(publicDigest, "", "the public image was not pushed");
    // skopeo answers a Basic challenge with empty credentials (`Authorization: Basic Og==`)
    const inspect = check(
      "anonymous skopeo inspect --raw",
      await skopeo(["inspect", "--raw", "--tls-verify=false", `docker://${publicRef()}`]),
    );
    assert.equal(sha256(inspect.stdout), publicDigest);
    const out = join(work, "public-out");
    check(
      "anonymous skopeo copy",
      await skopeo(["copy", "--src-tls-verify=false", `docker://${publicRef()}`, `oci:${out}:v1`]),
    );
    const copied = check("skopeo inspect --raw (copy)", await skopeo(["inspect", "--raw", `oci:${out}:v1`]));
    // An OCI layout holds OCI manifests and configs, so skopeo rewrites docker's; the layers are the same bytes.
    const blobsOf = (text: string) =>
      (JSON.parse(text) as { layers: Array<{ digest: string }> }).layers.map((layer) => layer.digest);
    assert.deepEqual(blobsOf(copied.stdout), blobsOf(inspect.stdout));
  });

  it("docker pulls the public repository anonymously and runs it", async () => {
    assert.notEqual(publicDigest, "", "the public image was not pushed");
    const pulled = check("anonymous docker pull", await d.docker(["pull", publicRef()]));
    assert.match(pulled.stdout, new RegExp(`Digest: ${publicDigest}`));
    const ran = check(
      "docker run",
      await d.docker(["run", "--rm", "--network", "none", publicRef(), "/bin/cat", "/hello.txt"]),
    );
    assert.equal(ran.stdout, publicContent);
  });

  it("anonymous docker push to the public repository fails, and private repositories stay closed", async () => {
    assert.notEqual(publicDigest, "", "the public image was not pushed");
    await buildBusyboxImage(d, localTag("anonymous"), `anonymous ${RUN_ID}\n`);
    check("docker tag", await d.docker(["tag", localTag("anonymous"), `${host}/public:v2`]));
    const push = failure("anonymous docker push", await d.docker(["push", `${host}/public:v2`]));
    assert.match(push, /unauthorized|no basic auth credentials|denied/i);
    const tags = (await describeImages(server, "public")).flatMap((image) => image.imageTags ?? []);
    assert.deepEqual(tags, ["v1"]);

    const privatePull = failure(
      "anonymous docker pull of a private repository",
      await d.docker(["pull", `${host}/web:v1`]),
    );
    assert.match(privatePull, /unauthorized|no basic auth credentials|pull access denied/i);
  });
});
