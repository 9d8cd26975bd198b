// Proves the end-to-end harness itself, without Wharf: a private dockerd builds and runs a
// busybox image, and skopeo carries a hand-written multi-platform OCI layout through
// Debian's docker-registry with its digests intact.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { after, describe, it } from "node:test";
import { buildBusyboxImage, type Dockerd, startDockerd } from "./docker.ts";
import {
  LAYOUT_REF,
  MEDIA_TYPES,
  type MultiPlatformLayout,
  skopeo,
  writeMultiPlatformLayout,
} from "./oci.ts";
import { check, findProcesses, isAlive, run, SYSTEM_PATH } from "./process.ts";
import { type PeerRegistry, startDockerRegistry } from "./registry.ts";

const RUN_ID = randomBytes(4).toString("hex");
const TAG = `wharf-harness-${RUN_ID}:busybox`;
const REPO = `demo-${RUN_ID}`;
const HOST_ARCH = process.arch === "arm64" ? "arm64" : "amd64";

const sha256 = (text: string): string => `sha256:${createHash("sha256").update(text, "utf8").digest("hex")}`;

/** Inodes of TCP sockets in LISTEN state (IPv4 and IPv6). */
function listeningTcpInodes(): Set<string> {
  const inodes = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    if (!existsSync(table)) continue;
    for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[3] === "0A" && cols[9] !== undefined) inodes.add(cols[9]);
    }
  }
  return inodes;
}

/** Inodes of the sockets `pid` holds open. */
function socketInodes(pid: number): string[] {
  const inodes: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match?.[1] !== undefined) inodes.push(match[1]);
    } catch {
      // closed meanwhile
    }
  }
  return inodes;
}

interface IndexJson {
  mediaType?: string;
  manifests: { digest: string; mediaType: string; platform?: { architecture: string; os: string } }[];
}

describe("end-to-end harness", () => {
  const work = mkdtempSync(join(tmpdir(), `wharf-harness-${RUN_ID}-`));
  let d: Dockerd | undefined;
  let registry: PeerRegistry | undefined;
  let layout: MultiPlatformLayout | undefined;
  const layoutDir = join(work, "layout");

  after(async () => {
    await d?.stop();
    await registry?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("starts a private dockerd on a unix socket with no TCP listener and no bridge", async (t) => {
    const started = Date.now();
    d = await startDockerd();
    t.diagnostic(`dockerd ready in ${Date.now() - started} ms, storage driver ${d.storageDriver}`);
    assert.match(d.host, /^unix:\/\//);
    assert.ok(existsSync(join(d.root, "key.json")), "the daemon key stays in its own dir, not /etc/docker");
    const daemonProcesses = findProcesses(basename(d.root));
    assert.ok(daemonProcesses.includes(d.pid), "dockerd carries the marker");
    const listening = listeningTcpInodes();
    for (const pid of daemonProcesses) {
      assert.deepEqual(
        socketInodes(pid).filter((inode) => listening.has(inode)),
        [],
        `process ${pid} listens on TCP`,
      );
    }
    const networks = check("docker network ls", await d.docker(["network", "ls", "--format", "{{.Name}}"]));
    assert.deepEqual(networks.stdout.trim().split("\n").sort(), ["host", "none"]);
  });

  it("builds a busybox image FROM scratch offline", async (t) => {
    assert.ok(d !== undefined, "dockerd did not start");
    const started = Date.now();
    const id = await buildBusyboxImage(d, TAG, `hello ${RUN_ID}\n`);
    t.diagnostic(`image built in ${Date.now() - started} ms`);
    assert.match(id, /^sha256:[0-9a-f]{64}$/);
    const inspect = check("docker image inspect", await d.docker(["image", "inspect", TAG]));
    const [image] = JSON.parse(inspect.stdout) as { Id: string; Os: string; Config: { Cmd: string[] } }[];
    assert.equal(image?.Id, id);
    assert.deepEqual(image?.Config.Cmd, ["/bin/sh"]);
  });

  it("runs the image with docker run --network none", async (t) => {
    assert.ok(d !== undefined, "dockerd did not start");
    const started = Date.now();
    const cat = check(
      "docker run cat",
      await d.docker(["run", "--rm", "--network", "none", TAG, "/bin/cat", "/hello.txt"]),
    );
    t.diagnostic(`docker run in ${Date.now() - started} ms`);
    assert.equal(cat.stdout, `hello ${RUN_ID}\n`);
    const sh = check(
      "docker run sh",
      await d.docker(
        ["run", "--rm", "-i", "--network", "none", TAG, "/bin/sh", "-c", "read x; echo got $x"],
        {
          input: "stdin\n",
        },
      ),
    );
    assert.equal(sh.stdout, "got stdin\n");
  });

  it("writes a multi-platform OCI layout that skopeo reads as an index of two manifests", async () => {
    layout = await writeMultiPlatformLayout(layoutDir);
    const raw = check("skopeo inspect --raw", await skopeo(["inspect", "--raw", `oci:${layoutDir}`]));
    assert.equal(sha256(raw.stdout), layout.indexDigest);
    const index = JSON.parse(raw.stdout) as IndexJson;
    assert.equal(index.mediaType, MEDIA_TYPES.index);
    assert.deepEqual(
      index.manifests.map((m) => m.digest),
      layout.manifestDigests,
    );
    assert.deepEqual(
      index.manifests.map((m) => `${m.platform?.os}/${m.platform?.architecture}`),
      ["linux/amd64", "linux/arm64"],
    );
    assert.equal(new Set(layout.manifestDigests).size, 2, "the two manifests differ");
    for (const arch of ["amd64", "arm64"]) {
      const config = check(
        `skopeo inspect --config (${arch})`,
        await skopeo(["--override-arch", arch, "inspect", "--config", `oci:${layoutDir}:${LAYOUT_REF}`]),
      );
      assert.equal((JSON.parse(config.stdout) as { architecture: string }).architecture, arch);
    }
    const again = await writeMultiPlatformLayout(join(work, "layout-again"));
    assert.deepEqual(again, layout, "the layout is reproducible");
  });

  it("writes layers umoci unpacks (one platform, copied out by skopeo)", async (t) => {
    assert.ok(layout !== undefined, "no layout");
    if (!existsSync("/usr/bin/umoci")) {
      t.skip("umoci is not installed");
      return;
    }
    const env = { PATH: SYSTEM_PATH };
    const ls = check(
      "umoci ls",
      await run("/usr/bin/umoci", ["ls", "--layout", layoutDir], { env, timeoutMs: 30_000 }),
    );
    assert.equal(ls.stdout.trim(), LAYOUT_REF);
    // umoci 0.4 cannot choose a platform from an index, so hand it one image
    const single = join(work, "single");
    check(
      "skopeo copy (one platform)",
      await skopeo([
        "--override-arch",
        "arm64",
        "copy",
        `oci:${layoutDir}:${LAYOUT_REF}`,
        `oci:${single}:arm64`,
      ]),
    );
    const bundle = join(work, "bundle");
    check(
      "umoci unpack",
      await run("/usr/bin/umoci", ["unpack", "--image", `${single}:arm64`, bundle], {
        env,
        timeoutMs: 60_000,
      }),
    );
    assert.equal(readFileSync(join(bundle, "rootfs", "hello.txt"), "utf8"), "hello from an OCI layout\n");
    assert.equal(readlinkSync(join(bundle, "rootfs", "bin", "sh")), "busybox");
    const arm64 = layout.manifestDigests[1]?.replace(":", "_");
    assert.ok(readdirSync(bundle).includes(`${arm64}.mtree`), "umoci unpacked the arm64 manifest");
  });

  it("copies the layout with skopeo copy --all into docker-registry with every digest intact", async (t) => {
    assert.ok(layout !== undefined, "no layout");
    let started = Date.now();
    registry = await startDockerRegistry();
    t.diagnostic(`docker-registry ready in ${Date.now() - started} ms on ${registry.host}`);
    const ref = `docker://${registry.host}/${REPO}:multi`;
    started = Date.now();
    check(
      "skopeo copy --all",
      await skopeo(["copy", "--all", `oci:${layoutDir}`, ref, "--dest-tls-verify=false"]),
    );
    t.diagnostic(`skopeo copy --all in ${Date.now() - started} ms`);
    const raw = check("skopeo inspect --raw", await skopeo(["inspect", "--raw", "--tls-verify=false", ref]));
    assert.equal(sha256(raw.stdout), layout.indexDigest);
    for (const digest of layout.manifestDigests) {
      const manifest = check(
        `skopeo inspect --raw @${digest}`,
        await skopeo([
          "inspect",
          "--raw",
          "--tls-verify=false",
          `docker://${registry.host}/${REPO}@${digest}`,
        ]),
      );
      assert.equal(sha256(manifest.stdout), digest);
    }
  });

  it("lets the private dockerd pull from and push to a loopback registry over plain HTTP", async () => {
    assert.ok(d !== undefined && registry !== undefined && layout !== undefined, "an earlier step failed");
    const multi = `${registry.host}/${REPO}:multi`;
    check("docker pull", await d.docker(["pull", multi]));
    const pulled = check(
      "docker run pulled",
      await d.docker(["run", "--rm", "--network", "none", multi, "/bin/cat", "/hello.txt"]),
    );
    assert.equal(pulled.stdout, "hello from an OCI layout\n");
    const digests = check(
      "docker image inspect",
      await d.docker(["image", "inspect", "--format", "{{json .RepoDigests}}", multi]),
    );
    assert.deepEqual(JSON.parse(digests.stdout), [`${registry.host}/${REPO}@${layout.indexDigest}`]);
    const config = check(
      "docker image inspect",
      await d.docker(["image", "inspect", "--format", "{{.Architecture}}", multi]),
    );
    assert.equal(config.stdout.trim(), HOST_ARCH);

    const pushed = `${registry.host}/${REPO}:busybox`;
    check("docker tag", await d.docker(["tag", TAG, pushed]));
    check("docker push", await d.docker(["push", pushed]));
    const manifest = check(
      "skopeo inspect",
      await skopeo(["inspect", "--tls-verify=false", `docker://${pushed}`]),
    );
    assert.equal((JSON.parse(manifest.stdout) as { Architecture: string }).Architecture, HOST_ARCH);
  });

  it("stops dockerd and docker-registry leaving no process, mount or directory behind", async () => {
    assert.ok(d !== undefined, "dockerd did not start");
    const marker = basename(d.root);
    const before = findProcesses(marker);
    assert.ok(before.length >= 2, `dockerd and its containerd run (found ${before.join(", ")})`);
    await d.stop();
    assert.deepEqual(findProcesses(marker), []);
    assert.ok(before.every((pid) => !isAlive(pid)));
    assert.ok(!existsSync(d.root), "the daemon's temp dir is gone");
    assert.ok(!readFileSync("/proc/self/mounts", "utf8").includes(d.root), "nothing stays mounted");
    await d.stop(); // idempotent

    if (registry !== undefined) {
      await registry.stop();
      assert.ok(!isAlive(registry.pid));
      assert.ok(!existsSync(registry.root));
    }
  });
});
