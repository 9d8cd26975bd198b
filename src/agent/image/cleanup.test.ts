import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ImageCleanup, overlayLowerDirs } from "./cleanup.ts";
import { ImageStore, type PulledImage } from "./store.ts";
import { gzipLayer, imageOf, TestRegistry, tarOf } from "./testing.ts";

const image = (rootfs: string): PulledImage => ({
  reference: "r",
  manifestDigest: "m",
  configDigest: "c",
  config: { rootfs: { type: "layers", diff_ids: [] } },
  rootfs,
});

describe("image cleanup", () => {
  it("reads the lower directories of overlay mounts from mountinfo, escapes and all", () => {
    const mountinfo = [
      "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
      "301 22 0:52 / /data/a/rootfs rw,relatime - overlay overlay rw,lowerdir=/img/one,upperdir=/data/a/upper,workdir=/data/a/work",
      "302 22 0:53 / /data/b/rootfs rw,relatime - overlay overlay rw,lowerdir=/img/two:/img/with\\040space,upperdir=/u,workdir=/w",
      "303 22 0:54 / /tmp rw - tmpfs tmpfs rw,lowerdir=/not/an/overlay",
    ].join("\n");
    assert.deepEqual([...overlayLowerDirs(mountinfo)].sort(), ["/img/one", "/img/two", "/img/with space"]);
  });

  it("keeps mounted images and those pulled within the minimum age, and forgets the rest", async () => {
    let now = 0;
    const pruned: string[][] = [];
    const cleanup = new ImageCleanup({
      prune: async (inUse) => {
        pruned.push([...inUse].sort());
      },
      mountinfo: () => "1 0 0:1 / /x rw - overlay overlay rw,lowerdir=/img/mounted,upperdir=/u,workdir=/w",
      now: () => now,
      minimumAgeMs: 1_000,
    });
    await cleanup.pull(async () => image("/img/old"));
    now = 500;
    await cleanup.pull(async () => image("/img/recent"));
    now = 1_200;
    assert.equal(await cleanup.prune(), true);
    assert.deepEqual(pruned.pop(), ["/img/mounted", "/img/recent"]);
    now = 1_600;
    assert.equal(await cleanup.prune(), true);
    assert.deepEqual(pruned.pop(), ["/img/mounted"]);
  });

  it("never prunes while a pull is in flight, and a pull waits for a prune to finish", async () => {
    const events: string[] = [];
    let finishPull: (value: PulledImage) => void = () => undefined;
    let finishPrune: () => void = () => undefined;
    const cleanup = new ImageCleanup({
      prune: (inUse) => {
        events.push(`prune keeps ${[...inUse].join(",")}`);
        return new Promise((resolve) => {
          finishPrune = resolve;
        });
      },
      mountinfo: () => "",
      now: () => 0,
      minimumAgeMs: 1_000,
    });
    const pulling = cleanup.pull(
      () =>
        new Promise<PulledImage>((resolve) => {
          finishPull = resolve;
        }),
    );
    assert.equal(await cleanup.prune(), false, "skipped: a pull is in flight");
    finishPull(image("/img/a"));
    await pulling;
    const pruning = cleanup.prune();
    await new Promise((resolve) => setImmediate(resolve));
    const waiting = cleanup.pull(async () => {
      events.push("second pull runs");
      return image("/img/b");
    });
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(events, ["prune keeps /img/a"]);
    finishPrune();
    assert.equal(await pruning, true);
    await waiting;
    assert.deepEqual(events, ["prune keeps /img/a", "second pull runs"]);
  });

  it("with a real store and a real overlay mount: removes an image only once no container sits on it", async () => {
    const work = await mkdtemp(join(tmpdir(), "wharf-cleanup-test-"));
    const registry = await new TestRegistry().start();
    const store = new ImageStore(join(work, "store"));
    const target = join(work, "container");
    try {
      const layer = async (name: string, content: string) => gzipLayer(await tarOf([{ name, content }]));
      registry.push("app", imageOf([await layer("hello.txt", "one")]), "v1");
      registry.push("app", imageOf([await layer("hello.txt", "two")]), "v2");
      const cleanup = new ImageCleanup({
        prune: (inUse) => store.prune(inUse),
        mountinfo: () => readFileSync("/proc/self/mountinfo", "utf8"),
        now: () => Date.now(),
        minimumAgeMs: 0,
      });
      const options = {
        platform: { os: "linux", architecture: "amd64" },
        insecure: () => true,
        timeoutMs: 5_000,
      };
      const v1 = await cleanup.pull(() => store.pull(`${registry.host}/app:v1`, options));
      const v2 = await cleanup.pull(() => store.pull(`${registry.host}/app:v2`, options));
      for (const dir of ["upper", "work", "rootfs"]) await mkdir(join(target, dir), { recursive: true });
      execFileSync("mount", [
        "-t",
        "overlay",
        "overlay",
        "-o",
        `lowerdir=${v1.rootfs},upperdir=${join(target, "upper")},workdir=${join(target, "work")}`,
        join(target, "rootfs"),
      ]);
      try {
        assert.equal(await cleanup.prune(), true);
        assert.equal(readFileSync(join(target, "rootfs", "hello.txt"), "utf8"), "one");
        assert.ok(existsSync(v1.rootfs), "the mounted image stays");
        assert.ok(!existsSync(v2.rootfs), "the unused image is gone");
      } finally {
        execFileSync("umount", [join(target, "rootfs")]);
      }
      assert.equal(await cleanup.prune(), true);
      assert.ok(!existsSync(v1.rootfs), "unmounted, it goes too");
    } finally {
      store.close();
      await registry.stop();
      await rm(work, { recursive: true, force: true });
    }
  });
});
