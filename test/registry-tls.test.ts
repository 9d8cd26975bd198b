// Wharf serving HTTPS on its one port, started the way an operator starts it (`wharf server --tls`),
// checked with the clients that verify certificates: the AWS CLI, docker, skopeo, curl and Node.
//
// docker never verifies registries in 127.0.0.0/8 (it treats them as insecure and skips
// verification), so the test that proves docker checks Wharf's certificate talks to a second
// server listening on [::1], which docker does verify, against /etc/docker/certs.d.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { Agent, get as httpsGet } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { PeerCertificate, TLSSocket } from "node:tls";
import { ECRClient, GetAuthorizationTokenCommand } from "@aws-sdk/client-ecr";
import { parseExports, runWharf, WHARF_BIN } from "./cli.ts";
import { aws, type CliResult } from "./helpers.ts";
import { buildBusyboxImage, type Dockerd, startDockerd } from "./support/docker.ts";
import { skopeo, writeMultiPlatformLayout } from "./support/oci.ts";
import { check, killOnExit, type RunResult, release, run, SYSTEM_PATH, waitFor } from "./support/process.ts";

const RUN_ID = randomBytes(4).toString("hex");
const DOCKER_CERTS = "/etc/docker/certs.d";

const sha256 = (text: string): string => `sha256:${createHash("sha256").update(text, "utf8").digest("hex")}`;

interface Wharf {
  child: ChildProcess;
  /** What the server printed, e.g. https://127.0.0.1:41234 */
  endpoint: string;
  port: number;
  dataDir: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  output(): string;
  /** SIGTERM, then SIGKILL if it has not exited after 15 s. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts `wharf <args>` and waits for the endpoint it prints. test/cli.ts's spawnWharf only
 * recognises http:// endpoints, hence this one.
 */
async function startWharf(args: string[], dataDir: string): Promise<Wharf> {
  const child = spawn(process.execPath, [WHARF_BIN, ...args], {
    env: { PATH: SYSTEM_PATH, HOME: dataDir },
    stdio: ["ignore", "pipe", "pipe"],
  });
  if (child.pid !== undefined) killOnExit(child.pid);
  let output = "";
  let exited = false;
  child.on("exit", () => {
    exited = true;
    if (child.pid !== undefined) release(child.pid);
  });
  const collect = (chunk: Buffer) => {
    output += chunk.toString("utf8");
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  const stop = async () => {
    if (!exited) child.kill("SIGTERM");
    if (!(await waitFor(() => exited, 15_000))) child.kill("SIGKILL");
    await waitFor(() => exited, 5_000);
  };
  let endpoint: string;
  try {
    endpoint = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`wharf did not start in time:\n${output}`)), 30_000);
      const look = () => {
        const match = /serving .* at (https?:\/\/\S+)/.exec(output);
        if (match?.[1] !== undefined) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      };
      child.stdout?.on("data", look);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`wharf ${args.join(" ")} exited with ${code} before serving:\n${output}`));
      });
    });
  } catch (error) {
    await stop();
    throw error;
  }
  const env = await runWharf(["env", "--data-dir", dataDir]);
  assert.equal(env.code, 0, env.stderr);
  const exports = parseExports(env.stdout);
  assert.equal(exports.WHARF_ENDPOINT, endpoint, "wharf env points at the running server");
  return {
    child,
    endpoint,
    port: Number(new URL(endpoint).port),
    dataDir,
    credentials: {
      accessKeyId: exports.AWS_ACCESS_KEY_ID ?? "",
      secretAccessKey: exports.AWS_SECRET_ACCESS_KEY ?? "",
    },
    output: () => output,
    stop,
  };
}

interface HttpsAnswer {
  status: number;
  body: string;
  peer: PeerCertificate;
}

/** GET over HTTPS trusting only `ca` (Node's bundled roots when undefined); 10 s timeout. */
function getHttps(url: string, ca: string | undefined): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const request = httpsGet(url, { ...(ca === undefined ? {} : { ca }), timeout: 10_000 }, (response) => {
      const peer = (response.socket as TLSSocket).getPeerCertificate();
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () =>
        resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8"), peer }),
      );
      response.on("error", reject);
    });
    request.on("timeout", () => request.destroy(new Error(`GET ${url} timed out`)));
    request.on("error", reject);
  });
}

function ok<T>(what: string, result: CliResult): T {
  assert.equal(result.code, 0, `${what} exited ${result.code}: ${result.stderr}`);
  return result.json as T;
}

/** The combined output of a command that must fail. */
function failure(what: string, result: RunResult): string {
  assert.notEqual(result.code, 0, `${what} should have failed:\n${result.stdout}`);
  return `${result.stdout}\n${result.stderr}`;
}

function openssl(args: string[], cwd: string): Promise<RunResult> {
  return run("/usr/bin/openssl", args, { env: { PATH: SYSTEM_PATH }, cwd, timeoutMs: 30_000 });
}

describe("Wharf over HTTPS with the AWS CLI, docker, skopeo and curl", () => {
  const work = mkdtempSync(join(tmpdir(), `wharf-registry-tls-${RUN_ID}-`));
  const servers: Wharf[] = [];
  const certsDirs = new Set<string>();
  let d: Dockerd;
  let server: Wharf;
  /** Wharf's CA as `wharf ca` printed it, and a directory holding it as ca.crt (skopeo's --cert-dir). */
  let caPem: string;
  const caDir = join(work, "ca");
  const caFile = join(caDir, "ca.crt");
  const localEndpoint = () => ({
    endpoint: `https://localhost:${server.port}`,
    credentials: server.credentials,
  });

  /** Trusts `pem` for `host` in docker's certs.d; removed in `after` if the test does not. */
  let madeCertsRoot = false;
  function trustForDocker(host: string, pem: string): string {
    madeCertsRoot ||= !existsSync(DOCKER_CERTS);
    const dir = join(DOCKER_CERTS, host);
    certsDirs.add(dir);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "ca.crt"), pem);
    return dir;
  }
  function untrustForDocker(dir: string): void {
    rmSync(dir, { recursive: true, force: true });
    certsDirs.delete(dir);
  }

  async function startTls(args: string[]): Promise<Wharf> {
    const dataDir = mkdtempSync(join(work, "data-"));
    const started = await startWharf(
      ["server", ...args, "--port", "0", "--data-dir", dataDir, "--log-level", "warn"],
      dataDir,
    );
    servers.push(started);
    return started;
  }

  before(async () => {
    d = await startDockerd();
    server = await startTls(["--tls"]);
    const ca = await runWharf(["ca", "--data-dir", server.dataDir]);
    assert.equal(ca.code, 0, ca.stderr);
    caPem = ca.stdout;
    mkdirSync(caDir);
    writeFileSync(caFile, caPem);
  });

  after(async () => {
    for (const dir of certsDirs) rmSync(dir, { recursive: true, force: true });
    if (madeCertsRoot) {
      try {
        rmdirSync(DOCKER_CERTS); // only if nothing else was put there meanwhile
      } catch {
        // not empty, or already gone
      }
    }
    await d?.stop();
    for (const s of servers) await s.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("wharf server --tls serves HTTPS under its own CA, which wharf ca prints", async () => {
    assert.match(server.endpoint, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(caPem, readFileSync(join(server.dataDir, "tls", "ca.crt"), "utf8"));
    const ca = new X509Certificate(caPem);
    assert.ok(ca.ca, "wharf ca prints a CA certificate");

    for (const host of ["localhost", "127.0.0.1"]) {
      const health = await getHttps(`https://${host}:${server.port}/healthz`, caPem);
      assert.equal(health.status, 200);
      assert.deepEqual(JSON.parse(health.body), { status: "ok" });
      assert.ok(new X509Certificate(health.peer.raw).checkIssued(ca), "the server certificate is the CA's");
    }
    await assert.rejects(getHttps(`https://localhost:${server.port}/healthz`, undefined), (error: Error) => {
      assert.match(String((error as { code?: string }).code), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED/);
      return true;
    });
  });

  it("the AWS CLI needs --ca-bundle; get-authorization-token names an https:// proxyEndpoint", async () => {
    const trusted = ["--ca-bundle", caFile];
    ok(
      "create-repository",
      await aws(localEndpoint(), ["ecr", "create-repository", "--repository-name", "web", ...trusted]),
    );
    const described = ok<{ repositories: { repositoryName: string; repositoryUri: string }[] }>(
      "describe-repositories",
      await aws(localEndpoint(), ["ecr", "describe-repositories", ...trusted]),
    );
    assert.deepEqual(
      described.repositories.map((r) => [r.repositoryName, r.repositoryUri]),
      [["web", `localhost:${server.port}/web`]],
    );

    const untrusted = await aws(localEndpoint(), ["ecr", "describe-repositories"]);
    assert.notEqual(untrusted.code, 0, "the CLI refuses a certificate it cannot verify");
    assert.match(untrusted.stderr, /SSL validation failed|CERTIFICATE_VERIFY_FAILED/);

    const token = ok<{ authorizationData: { proxyEndpoint: string; authorizationToken: string }[] }>(
      "get-authorization-token",
      await aws(localEndpoint(), ["ecr", "get-authorization-token", ...trusted]),
    );
    assert.equal(token.authorizationData[0]?.proxyEndpoint, `https://localhost:${server.port}`);
    assert.match(
      Buffer.from(token.authorizationData[0]?.authorizationToken ?? "", "base64").toString(),
      /^AWS:./,
    );
  });

  it("docker logs in, pushes and pulls over HTTPS to localhost, CA in /etc/docker/certs.d as documented", async () => {
    const host = `localhost:${server.port}`;
    const certs = trustForDocker(host, caPem);
    try {
      const password = await aws(localEndpoint(), ["ecr", "get-login-password", "--ca-bundle", caFile]);
      assert.equal(password.code, 0, password.stderr);
      const login = check(
        "docker login",
        await d.docker(["login", "--username", "AWS", "--password-stdin", host], {
          input: password.stdout.trim(),
        }),
      );
      assert.match(login.stdout, /Login Succeeded/);

      const local = `wharf-tls-${RUN_ID}:web`;
      const content = `hello over https ${RUN_ID}\n`;
      await buildBusyboxImage(d, local, content);
      const ref = `${host}/web:v1`;
      check("docker tag", await d.docker(["tag", local, ref]));
      const pushed = check("docker push", await d.docker(["push", ref]));
      const digest = /: digest: (sha256:[0-9a-f]{64})/.exec(pushed.stdout)?.[1];
      assert.ok(digest !== undefined, pushed.stdout);

      check("docker rmi", await d.docker(["rmi", ref, local]));
      const pulled = check("docker pull", await d.docker(["pull", ref]));
      assert.match(pulled.stdout, new RegExp(`Digest: ${digest}`));
      const ran = check(
        "docker run",
        await d.docker(["run", "--rm", "--network", "none", ref, "/bin/cat", "/hello.txt"]),
      );
      assert.equal(ran.stdout, content);

      const images = ok<{ imageDetails: { imageDigest: string; imageTags?: string[] }[] }>(
        "describe-images",
        await aws(localEndpoint(), [
          "ecr",
          "describe-images",
          "--repository-name",
          "web",
          "--ca-bundle",
          caFile,
        ]),
      );
      assert.deepEqual(
        images.imageDetails.map((image) => [image.imageDigest, image.imageTags]),
        [[digest, ["v1"]]],
      );
    } finally {
      untrustForDocker(certs);
    }
  });

  it("docker verifies Wharf's certificate: unknown authority until the right CA is in certs.d", async () => {
    const v6 = await startTls(["--tls", "--host", "::1"]);
    assert.match(v6.endpoint, /^https:\/\/\[::1\]:\d+$/);
    const v6Ca = await runWharf(["ca", "--data-dir", v6.dataDir]);
    assert.equal(v6Ca.code, 0, v6Ca.stderr);
    assert.notEqual(v6Ca.stdout, caPem, "every data directory has its own CA");
    // Debian's AWS CLI 2.9 rejects https://[::1]:port as an endpoint; the SDK takes it.
    const ecr = new ECRClient({
      endpoint: v6.endpoint,
      region: "us-east-1",
      credentials: v6.credentials,
      maxAttempts: 1,
      requestHandler: { httpsAgent: new Agent({ ca: v6Ca.stdout }) },
    });
    const token = await ecr.send(new GetAuthorizationTokenCommand({}));
    ecr.destroy();
    const [, password] = Buffer.from(token.authorizationData?.[0]?.authorizationToken ?? "", "base64")
      .toString()
      .split(":");
    assert.ok(password !== undefined && password !== "");
    const host = `[::1]:${v6.port}`;
    const login = () =>
      d.docker(["login", "--username", "AWS", "--password-stdin", host], {
        input: password,
        timeoutMs: 30_000,
      });

    assert.ok(!existsSync(join(DOCKER_CERTS, host)));
    const untrusted = failure("docker login without the CA", await login());
    assert.match(untrusted, /x509: certificate signed by unknown authority/);

    const certs = trustForDocker(host, caPem);
    try {
      const wrongCa = failure("docker login trusting another Wharf's CA", await login());
      assert.match(wrongCa, /x509: certificate signed by unknown authority/);

      writeFileSync(join(certs, "ca.crt"), v6Ca.stdout);
      const trusted = check("docker login with the CA", await login());
      assert.match(trusted.stdout, /Login Succeeded/);
    } finally {
      untrustForDocker(certs);
    }
  });

  it("skopeo copies with --dest-cert-dir and --dest-tls-verify=true, and refuses without the CA", async () => {
    const host = `localhost:${server.port}`;
    for (const system of ["/etc/containers/certs.d", DOCKER_CERTS]) {
      assert.ok(!existsSync(join(system, host)), `no CA for ${host} under ${system}`);
    }
    ok(
      "create-repository",
      await aws(localEndpoint(), [
        "ecr",
        "create-repository",
        "--repository-name",
        "multi",
        "--ca-bundle",
        caFile,
      ]),
    );
    const password = await aws(localEndpoint(), ["ecr", "get-login-password", "--ca-bundle", caFile]);
    assert.equal(password.code, 0, password.stderr);
    const creds = `AWS:${password.stdout.trim()}`;
    const layoutDir = join(work, "layout");
    const layout = await writeMultiPlatformLayout(layoutDir, `hello tls ${RUN_ID}\n`);
    const ref = `docker://${host}/multi:latest`;

    const untrusted = failure(
      "skopeo copy without the CA",
      await skopeo([
        "copy",
        "--all",
        `oci:${layoutDir}`,
        ref,
        "--dest-tls-verify=true",
        "--dest-creds",
        creds,
      ]),
    );
    assert.match(untrusted, /x509: certificate signed by unknown authority/);

    check(
      "skopeo copy --dest-cert-dir",
      await skopeo([
        "copy",
        "--all",
        `oci:${layoutDir}`,
        ref,
        "--dest-tls-verify=true",
        "--dest-cert-dir",
        caDir,
        "--dest-creds",
        creds,
      ]),
    );
    const raw = check(
      "skopeo inspect --cert-dir",
      await skopeo(["inspect", "--raw", "--tls-verify=true", "--cert-dir", caDir, "--creds", creds, ref]),
    );
    assert.equal(sha256(raw.stdout), layout.indexDigest);
    for (const digest of layout.manifestDigests) {
      const manifest = check(
        `skopeo inspect @${digest}`,
        await skopeo([
          "inspect",
          "--raw",
          "--tls-verify=true",
          "--cert-dir",
          caDir,
          "--creds",
          creds,
          `docker://${host}/multi@${digest}`,
        ]),
      );
      assert.equal(sha256(manifest.stdout), digest);
    }
  });

  it("serves the operator's own certificate with --tls-cert and --tls-key", async () => {
    const pki = join(work, "operator");
    mkdirSync(pki);
    const p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    check(
      "openssl req (CA)",
      await openssl(
        [
          "req",
          "-x509",
          ...p256,
          "-keyout",
          "ca.key",
          "-out",
          "ca.crt",
          "-days",
          "2",
          "-subj",
          `/CN=Operator CA ${RUN_ID}`,
          "-addext",
          "basicConstraints=critical,CA:TRUE",
          "-addext",
          "keyUsage=critical,keyCertSign,cRLSign",
        ],
        pki,
      ),
    );
    check(
      "openssl req (server)",
      await openssl(
        ["req", "-new", ...p256, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"],
        pki,
      ),
    );
    writeFileSync(
      join(pki, "server.ext"),
      "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    );
    check(
      "openssl x509 (sign)",
      await openssl(
        [
          "x509",
          "-req",
          "-in",
          "server.csr",
          "-CA",
          "ca.crt",
          "-CAkey",
          "ca.key",
          "-set_serial",
          "0x01",
          "-days",
          "2",
          "-extfile",
          "server.ext",
          "-out",
          "server.crt",
        ],
        pki,
      ),
    );

    const operator = await startTls([
      "--tls-cert",
      join(pki, "server.crt"),
      "--tls-key",
      join(pki, "server.key"),
    ]);
    assert.match(operator.endpoint, /^https:\/\/127\.0\.0\.1:\d+$/);
    const operatorCa = readFileSync(join(pki, "ca.crt"), "utf8");
    const health = await getHttps(`https://localhost:${operator.port}/healthz`, operatorCa);
    assert.equal(health.status, 200);
    assert.equal(
      new X509Certificate(health.peer.raw).fingerprint256,
      new X509Certificate(readFileSync(join(pki, "server.crt"))).fingerprint256,
      "Wharf serves the operator's certificate",
    );

    const curl = check(
      "curl --cacert",
      await run(
        "/usr/bin/curl",
        [
          "--silent",
          "--show-error",
          "--fail",
          "--max-time",
          "10",
          "--cacert",
          join(pki, "ca.crt"),
          `${operator.endpoint}/healthz`,
        ],
        { env: { PATH: SYSTEM_PATH }, timeoutMs: 20_000 },
      ),
    );
    assert.deepEqual(JSON.parse(curl.stdout), { status: "ok" });
    const wharfCa = failure(
      "curl with Wharf's CA",
      await run(
        "/usr/bin/curl",
        ["--silent", "--show-error", "--max-time", "10", "--cacert", caFile, `${operator.endpoint}/healthz`],
        {
          env: { PATH: SYSTEM_PATH },
          timeoutMs: 20_000,
        },
      ),
    );
    assert.match(wharfCa, /certificate/i);

    assert.ok(
      !existsSync(join(operator.dataDir, "tls", "ca.key")),
      "no Wharf CA is made beside the operator's",
    );
    const ca = await runWharf(["ca", "--data-dir", operator.dataDir]);
    assert.notEqual(ca.code, 0);
    assert.match(ca.stderr, /no Wharf CA/);
  });
});
