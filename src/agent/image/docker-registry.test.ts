// Integration: pulls a multi-platform image that skopeo pushed into Debian's docker-registry
// (CNCF distribution) on a loopback port, the way the agent pulls from any OCI registry.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { BUSYBOX } from "../../../test/support/docker.ts";
import { type MultiPlatformLayout, skopeo, writeMultiPlatformLayout } from "../../../test/support/oci.ts";
import { check } from "../../../test/support/process.ts";
import { type PeerRegistry, startDockerRegistry } from "../../../test/support/registry.ts";
import { ImageStore } from "./store.ts";

const HELLO = "hello from the agent's image store\n";

describe("ImageStore against docker-registry", () => {
  let work: string;
  let peer: PeerRegistry;
  let layout: MultiPlatformLayout;
  let store: ImageStore;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), "wharf-image-peer-"));
    peer = await startDockerRegistry();
    layout = await writeMultiPlatformLayout(join(work, "layout"), HELLO);
    check(
      "skopeo copy --all",
      await skopeo([
        "copy",
        "--all",
        `oci:${join(work, "layout")}`,
        `docker://${peer.host}/wharf/multi:v1`,
        "--dest-tls-verify=false",
      ]),
    );
    store = new ImageStore(join(work, "images"));
  });
  after(async () => {
    store?.close();
    await peer?.stop();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it("resolves the amd64 manifest of the index and unpacks /hello.txt and busybox", async () => {
    const pulled = await store.pull(`${peer.host}/wharf/multi:v1`, {
      platform: { os: "linux", architecture: "amd64" },
      insecure: (host) => host === peer.host,
      timeoutMs: 10_000,
    });
    assert.equal(pulled.indexDigest, layout.indexDigest);
    assert.equal(pulled.manifestDigest, layout.manifestDigests[0]);
    assert.equal(pulled.configDigest, layout.configDigests[0]);
    assert.equal(pulled.config.architecture, "amd64");
    assert.deepEqual(pulled.config.config?.Cmd, ["/bin/sh"]);
    assert.equal(await readFile(join(pulled.rootfs, "hello.txt"), "utf8"), HELLO);
    const busybox = await stat(join(pulled.rootfs, "bin/busybox"));
    assert.equal(busybox.mode & 0o777, 0o755);
    assert.ok((await readFile(join(pulled.rootfs, "bin/busybox"))).equals(await readFile(BUSYBOX)));
    if (process.arch === "x64") {
      const { stdout } = await promisify(execFile)(join(pulled.rootfs, "bin/busybox"), ["echo", "runs"]);
      assert.equal(stdout, "runs\n");
    }

    // the arm64 manifest shares the layer: only its config is fetched, and it unpacks apart
    const arm = await store.pull(`${peer.host}/wharf/multi@${layout.indexDigest}`, {
      platform: { os: "linux", architecture: "arm64", variant: "v8" },
      insecure: (host) => host === peer.host,
    });
    assert.equal(arm.manifestDigest, layout.manifestDigests[1]);
    assert.notEqual(arm.rootfs, pulled.rootfs);
    assert.equal(await readFile(join(arm.rootfs, "hello.txt"), "utf8"), HELLO);
  });
});
