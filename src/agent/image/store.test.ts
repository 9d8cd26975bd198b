import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { ImageError, type ImageErrorCode } from "./errors.ts";
import { ImageStore, type PullOptions } from "./store.ts";
import {
  gzipLayer,
  imageOf,
  indexOf,
  plainLayer,
  sha256,
  TEST_MEDIA_TYPES,
  type TestImage,
  TestRegistry,
  tarOf,
} from "./testing.ts";

const AMD64 = { os: "linux", architecture: "amd64" };

let work: string;
let registry: TestRegistry;
let store: ImageStore;
let storeRoot: string;
let base: TestImage;

const options = (extra: Partial<PullOptions> = {}): PullOptions => ({
  platform: AMD64,
  insecure: (host) => host === registry.host,
  timeoutMs: 5_000,
  ...extra,
});

async function layer(name: string, content: string) {
  return gzipLayer(await tarOf([{ name, content }]));
}

function code(expected: ImageErrorCode) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof ImageError, String(error));
    assert.equal(error.code, expected, error.message);
    return true;
  };
}

/** Files under the store's blobs/, rootfs/ and tmp/. */
async function stored(): Promise<{ blobs: string[]; rootfs: string[]; tmp: string[] }> {
  const list = async (dir: string) => (await readdir(join(storeRoot, dir)).catch(() => [])).sort();
  return { blobs: await list("blobs/sha256"), rootfs: await list("rootfs"), tmp: await list("tmp") };
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), "wharf-store-test-"));
  base = imageOf([await layer("etc/os-release", "base"), await layer("hello.txt", "hello")]);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});
beforeEach(async () => {
  registry = await new TestRegistry().start();
  storeRoot = await mkdtemp(join(work, "store-"));
  store = new ImageStore(storeRoot);
});
afterEach(async () => {
  store.close();
  await registry.stop();
});

describe("ImageStore.pull", () => {
  it("pulls with Basic auth (Wharf's registry: user AWS) and unpacks the layers in order", async () => {
    registry.auth = { kind: "basic", username: "AWS", password: "secret" };
    registry.push("app", base, "v1");
    const asked: string[] = [];
    const pulled = await store.pull(
      `${registry.host}/app:v1`,
      options({
        credentials: async (host) => {
          asked.push(host);
          return { username: "AWS", password: "secret" };
        },
      }),
    );
    assert.deepEqual(asked, [registry.host]);
    assert.equal(pulled.reference, `${registry.host}/app:v1`);
    assert.equal(pulled.manifestDigest, base.manifest.digest);
    assert.equal(pulled.configDigest, base.config.digest);
    assert.deepEqual(pulled.config.config?.Cmd, ["/bin/sh"]);
    assert.equal(pulled.rootfs, join(storeRoot, "rootfs", base.config.digest.slice("sha256:".length)));
    assert.equal(await readFile(join(pulled.rootfs, "hello.txt"), "utf8"), "hello");
    assert.equal(await readFile(join(pulled.rootfs, "etc/os-release"), "utf8"), "base");
    assert.deepEqual((await stored()).tmp, []);
  });

  it("refuses wrong Basic credentials, and anonymous pulls of a private registry", async () => {
    registry.auth = { kind: "basic", username: "AWS", password: "secret" };
    registry.push("app", base, "v1");
    await assert.rejects(
      store.pull(
        `${registry.host}/app:v1`,
        options({ credentials: async () => ({ username: "AWS", password: "no" }) }),
      ),
      code("UNAUTHORIZED"),
    );
    await assert.rejects(store.pull(`${registry.host}/app:v1`, options()), code("UNAUTHORIZED"));
  });

  it("sends Basic credentials up front to a registry marked basicFirst: no 401, no token", async () => {
    registry.auth = { kind: "basic", username: "AWS", password: "secret" };
    registry.push("app", base, "v1");
    const first = options({
      credentials: async () => ({ username: "AWS", password: "secret" }),
      basicFirst: (host) => host === registry.host,
    });
    await store.pull(`${registry.host}/app:v1`, first);
    const before = registry.count(/^GET /);
    await store.pull(`${registry.host}/app:v1`, first);
    assert.equal(registry.count(/^GET /) - before, 1, "a cached image costs one manifest request");
    // A registry that wants a token after all still gets one, from its challenge.
    registry.auth = { kind: "bearer", username: "AWS", password: "secret", token: "t0k3n" };
    await store.pull(`${registry.host}/app:v1`, first);
    assert.equal(registry.count(/^GET \/token/), 1);
  });

  it("follows the Bearer token flow, sending Basic credentials to the realm", async () => {
    registry.auth = { kind: "bearer", username: "me", password: "pw", token: "t0k3n" };
    registry.push("ns/app", base, "latest");
    const pulled = await store.pull(
      `${registry.host}/ns/app`,
      options({ credentials: async () => ({ username: "me", password: "pw" }) }),
    );
    assert.equal(await readFile(join(pulled.rootfs, "hello.txt"), "utf8"), "hello");
    assert.equal(
      registry.count(/^GET \/token\?service=test-registry&scope=repository%3Ans%2Fapp%3Apull$/),
      1,
    );
    assert.equal(registry.count(/^GET \/token/), 1, "one token serves the whole pull");
  });

  it("gets anonymous Bearer tokens, and sends a given token as it is", async () => {
    registry.auth = { kind: "bearer", token: "anonymous" };
    registry.push("app", base, "v1");
    await store.pull(`${registry.host}/app:v1`, options());
    assert.equal(registry.count(/^GET \/token/), 1);

    registry.auth = { kind: "bearer", username: "x", token: "given" };
    const other = new ImageStore(await mkdtemp(join(work, "store-")));
    try {
      await other.pull(`${registry.host}/app:v1`, options({ credentials: async () => ({ token: "given" }) }));
    } finally {
      other.close();
    }
    assert.equal(registry.count(/^GET \/token/), 1, "no token request with a given token");
  });

  it("resolves an image index to the requested platform", async () => {
    const arm = imageOf([await layer("arch", "arm64")], {
      os: "linux",
      architecture: "arm64",
      variant: "v8",
    });
    const amd = imageOf([await layer("arch", "amd64")], AMD64);
    registry.push("multi", arm);
    registry.push("multi", amd);
    const index = indexOf([
      { image: arm, platform: { os: "linux", architecture: "arm64", variant: "v8" } },
      { image: amd, platform: { os: "linux", architecture: "amd64" } },
    ]);
    registry.putManifest("multi", index, "v1");

    const pulledAmd = await store.pull(`${registry.host}/multi:v1`, options());
    assert.equal(pulledAmd.manifestDigest, amd.manifest.digest);
    assert.equal(pulledAmd.indexDigest, index.digest);
    assert.equal(await readFile(join(pulledAmd.rootfs, "arch"), "utf8"), "amd64");
    // Pulled again: the index comes from the registry (it checks access, the tag may move), the
    // platform manifest it names, verified the first time, from memory.
    const before = registry.count(/^GET \/v2\/multi\/manifests\//);
    assert.equal(
      (await store.pull(`${registry.host}/multi:v1`, options())).manifestDigest,
      amd.manifest.digest,
    );
    assert.equal(registry.count(/^GET \/v2\/multi\/manifests\//) - before, 1);

    const pulledArm = await store.pull(
      `${registry.host}/multi@${index.digest}`,
      options({ platform: { os: "linux", architecture: "arm64" } }),
    );
    assert.equal(pulledArm.manifestDigest, arm.manifest.digest);
    assert.equal(await readFile(join(pulledArm.rootfs, "arch"), "utf8"), "arm64");

    await assert.rejects(
      store.pull(`${registry.host}/multi:v1`, options({ platform: { os: "linux", architecture: "s390x" } })),
      (error: unknown) =>
        code("PLATFORM_MISMATCH")(error) &&
        error instanceof Error &&
        error.message.includes("linux/s390x") &&
        error.message.includes("linux/arm64/v8, linux/amd64"),
    );
  });

  it("refuses a single-platform image built for another platform", async () => {
    registry.push("arm", imageOf([await layer("a", "b")], { os: "linux", architecture: "arm64" }), "v1");
    await assert.rejects(store.pull(`${registry.host}/arm:v1`, options()), code("PLATFORM_MISMATCH"));
  });

  it("refuses a blob that does not match its digest, and caches nothing", async () => {
    registry.push("app", base, "v1");
    const bad = base.layers[1];
    assert.ok(bad !== undefined);
    registry.corrupt.add(bad.digest);
    await assert.rejects(store.pull(`${registry.host}/app:v1`, options()), code("DIGEST_MISMATCH"));
    const after = await stored();
    assert.ok(!after.blobs.includes(bad.digest.slice("sha256:".length)), "the corrupt blob is not cached");
    assert.deepEqual(after.rootfs, []);
    assert.deepEqual(after.tmp, []);

    registry.corrupt.clear();
    const pulled = await store.pull(`${registry.host}/app:v1`, options());
    assert.equal(await readFile(join(pulled.rootfs, "hello.txt"), "utf8"), "hello");
  });

  it("verifies a manifest pulled by digest", async () => {
    registry.push("app", base, "v1");
    const other = imageOf([await layer("x", "y")]);
    // the registry answers a digest with some other manifest
    registry.putManifest("app", { ...other.manifest, digest: base.manifest.digest.replace(/.$/, "0") });
    const wrong = base.manifest.digest.replace(/.$/, "0");
    await assert.rejects(store.pull(`${registry.host}/app@${wrong}`, options()), code("DIGEST_MISMATCH"));
    const pulled = await store.pull(`${registry.host}/app@${base.manifest.digest}`, options());
    assert.equal(pulled.manifestDigest, base.manifest.digest);
  });

  it("coalesces concurrent pulls of one image into one download of each blob", async () => {
    registry.push("app", base, "v1");
    registry.push("app2", base, "v1");
    let release = (): void => {};
    registry.hold = new Promise((resolve) => {
      release = resolve;
    });
    const pulls = [
      store.pull(`${registry.host}/app:v1`, options()),
      store.pull(`${registry.host}/app:v1`, options()),
      store.pull(`${registry.host}/app2:v1`, options()),
    ];
    // every pull has its manifest, and the first blob request is held, before any blob arrives
    while (registry.count(/manifests/) < 3 || registry.count(/blobs/) < 1) await sleep(10);
    await sleep(100);
    release();
    const [a, b, c] = await Promise.all(pulls);
    assert.equal(a?.rootfs, b?.rootfs);
    assert.equal(a?.rootfs, c?.rootfs);
    for (const blob of [base.config, ...base.layers]) {
      assert.equal(registry.count(new RegExp(`GET /v2/app2?/blobs/${blob.digest}`)), 1, blob.digest);
    }
  });

  it("shares cached layers between images, and skips downloads for an unpacked image", async () => {
    registry.push("app", base, "v1");
    const derived = imageOf([...base.layers, await layer("app", "derived")]);
    registry.push("app", derived, "v2");
    await store.pull(`${registry.host}/app:v1`, options());
    const blobGets = registry.count(/blobs/);
    const pulled = await store.pull(`${registry.host}/app:v2`, options());
    assert.equal(registry.count(/blobs/) - blobGets, 2, "only the new config and layer are fetched");
    assert.equal(await readFile(join(pulled.rootfs, "app"), "utf8"), "derived");
    await store.pull(`${registry.host}/app:v2`, options());
    assert.equal(registry.count(/blobs/) - blobGets, 2, "an unpacked image needs no blob");
  });

  it("unpacks uncompressed layers and refuses zstd ones before downloading", async () => {
    registry.push("plain", imageOf([plainLayer(await tarOf([{ name: "p", content: "plain" }]))]), "v1");
    const pulled = await store.pull(`${registry.host}/plain:v1`, options());
    assert.equal(await readFile(join(pulled.rootfs, "p"), "utf8"), "plain");

    const zstd = { ...(await layer("z", "z")), mediaType: TEST_MEDIA_TYPES.zstd };
    registry.push("zstd", imageOf([zstd]), "v1");
    await assert.rejects(
      store.pull(`${registry.host}/zstd:v1`, options()),
      (error: unknown) => code("UNSUPPORTED_MEDIA_TYPE")(error) && /zstd/.test(String(error)),
    );
    assert.equal(registry.count(new RegExp(zstd.digest)), 0);
  });

  it("refuses a layer with ../ entries, leaving nothing unpacked", async () => {
    const evil = imageOf([
      gzipLayer(
        await tarOf([
          { name: "ok", content: "x" },
          { name: "../../evil", content: "x" },
        ]),
      ),
    ]);
    registry.push("evil", evil, "v1");
    await assert.rejects(store.pull(`${registry.host}/evil:v1`, options()), code("INVALID_LAYER"));
    const after = await stored();
    assert.deepEqual(after.rootfs, []);
    assert.deepEqual(after.tmp, []);
    assert.deepEqual((await readdir(storeRoot)).sort(), ["blobs", "images", "rootfs", "tmp"]);
  });

  it("reports missing images, times out, and honours its signal", async () => {
    await assert.rejects(store.pull(`${registry.host}/nothing:v1`, options()), code("NOT_FOUND"));

    registry.push("app", base, "v1");
    registry.hold = new Promise(() => {});
    await assert.rejects(store.pull(`${registry.host}/app:v1`, options({ timeoutMs: 300 })), code("TIMEOUT"));

    const controller = new AbortController();
    const pulling = store.pull(`${registry.host}/app:v1`, options({ signal: controller.signal }));
    while (registry.count(/blobs/) < 2) await sleep(10);
    controller.abort();
    await assert.rejects(pulling, code("ABORTED"));
    assert.deepEqual((await stored()).rootfs, []);
  });
});

describe("ImageStore.prune", () => {
  it("removes unused images and the blobs only they used", async () => {
    registry.push("app", base, "v1");
    const derived = imageOf([...base.layers, await layer("app", "derived")]);
    registry.push("app", derived, "v2");
    const v1 = await store.pull(`${registry.host}/app:v1`, options());
    const v2 = await store.pull(`${registry.host}/app:v2`, options());
    const hex = (digest: string) => digest.slice("sha256:".length);

    await store.prune(new Set([v1.rootfs]));
    let after = await stored();
    assert.deepEqual(after.rootfs, [hex(base.config.digest)]);
    assert.deepEqual(after.blobs, [base.config, ...base.layers].map((b) => hex(b.digest)).sort());
    assert.equal(await readFile(join(v1.rootfs, "hello.txt"), "utf8"), "hello");
    assert.ok(!after.rootfs.includes(hex(v2.configDigest)));

    await store.prune(new Set());
    after = await stored();
    assert.deepEqual(after, { blobs: [], rootfs: [], tmp: [] });
    assert.deepEqual(await readdir(join(storeRoot, "images")), []);

    // and pulls again from scratch
    const again = await store.pull(`${registry.host}/app:v2`, options());
    assert.equal(await readFile(join(again.rootfs, "app"), "utf8"), "derived");
    assert.equal(
      sha256(await readFile(join(storeRoot, "blobs/sha256", hex(derived.config.digest)))),
      derived.config.digest,
    );
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
