import assert from "node:assert/strict";
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ImageError } from "./errors.ts";
import { gzipLayer, plainLayer, type TestEntry, type TestLayer, tarOf } from "./testing.ts";
import { type LayerBlob, unpackLayers } from "./unpack.ts";

const IS_ROOT = process.getuid?.() === 0;

let work: string;
let counter = 0;

before(async () => {
  work = await mkdtemp(join(tmpdir(), "wharf-unpack-test-"));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Writes each layer's blob to disk and returns what unpackLayers takes. */
async function blobs(layers: TestLayer[]): Promise<LayerBlob[]> {
  const out: LayerBlob[] = [];
  for (const layer of layers) {
    const path = join(work, `blob-${counter++}`);
    await writeFile(path, layer.bytes);
    out.push({
      path,
      digest: layer.digest,
      diffId: layer.diffId,
      compression: layer.mediaType.endsWith("gzip") ? "gzip" : "none",
    });
  }
  return out;
}

/** Unpacks tars of `layers` (gzip) into a fresh directory and returns it. */
async function unpack(...layers: TestEntry[][]): Promise<string> {
  const root = join(work, `root-${counter++}`);
  await mkdir(root);
  const built = await Promise.all(layers.map(async (entries) => gzipLayer(await tarOf(entries))));
  await unpackLayers(root, await blobs(built));
  return root;
}

/** Every path under `root`, sorted, directories with a trailing slash. */
async function tree(root: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(join(root, prefix))).sort()) {
    const rel = `${prefix}${name}`;
    const info = await lstat(join(root, rel));
    if (info.isDirectory()) out.push(`${rel}/`, ...(await tree(root, `${rel}/`)));
    else out.push(rel);
  }
  return out;
}

const file = (name: string, content: string, extra: Partial<TestEntry> = {}): TestEntry => ({
  name,
  content,
  ...extra,
});
const dir = (name: string, extra: Partial<TestEntry> = {}): TestEntry => ({
  name,
  type: "directory",
  ...extra,
});

describe("unpackLayers", () => {
  it("flattens layers in order, later files replacing earlier ones", async () => {
    const root = await unpack(
      [dir("etc"), file("etc/hostname", "one"), file("etc/keep", "keep")],
      [file("etc/hostname", "two"), file("new/deep/file", "created parents")],
    );
    assert.deepEqual(await tree(root), [
      "etc/",
      "etc/hostname",
      "etc/keep",
      "new/",
      "new/deep/",
      "new/deep/file",
    ]);
    assert.equal(await readFile(join(root, "etc/hostname"), "utf8"), "two");
  });

  it("applies whiteouts to lower layers only, whatever their order in the layer", async () => {
    const root = await unpack(
      [
        file("a", "lower a"),
        file("b", "lower b"),
        dir("d"),
        file("d/old", "lower"),
        dir("d/sub"),
        file("d/sub/x", "lower"),
        dir("o"),
        file("o/old1", "lower"),
        dir("o/sub"),
        file("o/sub/old2", "lower"),
        dir("p"),
        file("p/old", "lower"),
        file("gone/deep", "lower"),
      ],
      [
        // a whiteout listed before the same layer's file of that name: the new file stays
        file(".wh.a", ""),
        file("a", "upper a"),
        // and one listed after it: the new file stays too
        file("b", "upper b"),
        file(".wh.b", ""),
        // a whiteout of a directory the layer recreates: lower content goes, new content stays
        file("d/new", "upper"),
        file(".wh.d", ""),
        // opaque directory, its marker before the new content
        file("o/.wh..wh..opq", ""),
        file("o/new", "upper"),
        // opaque directory, its marker after the new content
        dir("p"),
        file("p/new", "upper"),
        file("p/.wh..wh..opq", ""),
        file(".wh.gone", ""),
        file(".wh.never-existed", ""),
      ],
    );
    assert.deepEqual(await tree(root), ["a", "b", "d/", "d/new", "o/", "o/new", "p/", "p/new"]);
    assert.equal(await readFile(join(root, "a"), "utf8"), "upper a");
    assert.equal(await readFile(join(root, "b"), "utf8"), "upper b");
  });

  it("whites out files, symlinks and directories of any lower layer", async () => {
    const root = await unpack(
      [file("bin/tool", "x"), { name: "bin/alias", type: "symlink", linkname: "tool" }, file("lib/x/y", "z")],
      [file("keep", "k")],
      [file("bin/.wh.alias", ""), file(".wh.lib", "")],
    );
    assert.deepEqual(await tree(root), ["bin/", "bin/tool", "keep"]);
  });

  it("creates symlinks and hard links, and keeps modes, setuid bits, owners and mtimes", async () => {
    const mtime = new Date("2024-05-06T07:08:09Z");
    const root = await unpack(
      [
        dir("bin", { mode: 0o755, mtime }),
        file("bin/busybox", "#!", { mode: 0o4755, uid: 1234, gid: 5678, mtime }),
        { name: "bin/sh", type: "symlink", linkname: "busybox", mtime },
        { name: "bin/abs", type: "symlink", linkname: "/etc/passwd" },
        { name: "bin/hard", type: "link", linkname: "bin/busybox" },
        dir("secret", { mode: 0o700, uid: 42, gid: 43, mtime }),
        file("secret/key", "k", { mode: 0o600 }),
        dir("tmp", { mode: 0o1777 }),
        { name: "dev/null", type: "character-device", devmajor: 1, devminor: 3 },
        { name: "fifo", type: "fifo" },
      ],
      [{ name: "bin/hard2", type: "link", linkname: "bin/busybox" }],
    );
    const busybox = await stat(join(root, "bin/busybox"));
    assert.equal(busybox.mode & 0o7777, 0o4755);
    assert.equal(busybox.mtime.getTime(), mtime.getTime());
    assert.equal(busybox.nlink, 3);
    assert.equal((await stat(join(root, "bin/hard"))).ino, busybox.ino);
    assert.equal((await stat(join(root, "bin/hard2"))).ino, busybox.ino);
    assert.equal(await readlink(join(root, "bin/sh")), "busybox");
    assert.equal(await readlink(join(root, "bin/abs")), "/etc/passwd");
    assert.equal((await lstat(join(root, "bin/sh"))).mtime.getTime(), mtime.getTime());
    const secret = await stat(join(root, "secret"));
    assert.equal(secret.mode & 0o7777, 0o700);
    assert.equal(secret.mtime.getTime(), mtime.getTime(), "directory mtimes survive their children");
    assert.equal((await stat(join(root, "tmp"))).mode & 0o7777, 0o1777);
    if (IS_ROOT) {
      assert.equal(busybox.uid, 1234);
      assert.equal(busybox.gid, 5678);
      assert.equal(secret.uid, 42);
    }
    // devices and fifos are skipped
    assert.deepEqual(await readdir(join(root, "dev")), []);
    assert.deepEqual((await tree(root)).includes("fifo"), false);
  });

  it("replaces a lower symlink rather than writing through it", async () => {
    const outside = join(work, `outside-${counter++}`);
    await mkdir(outside);
    await writeFile(join(outside, "target"), "untouched");
    const root = await unpack(
      [{ name: "link", type: "symlink", linkname: join(outside, "target") }],
      [file("link", "replaced")],
    );
    assert.equal(await readFile(join(outside, "target"), "utf8"), "untouched");
    assert.equal(await readFile(join(root, "link"), "utf8"), "replaced");
    assert.ok((await lstat(join(root, "link"))).isFile());
  });

  it("writes a new file instead of through a hard link it shares with a lower file", async () => {
    const root = await unpack(
      [file("a", "original"), { name: "b", type: "link", linkname: "a" }],
      [file("b", "changed")],
    );
    assert.equal(await readFile(join(root, "a"), "utf8"), "original");
    assert.equal(await readFile(join(root, "b"), "utf8"), "changed");
  });

  it("unpacks uncompressed layers", async () => {
    const root = join(work, `root-${counter++}`);
    await mkdir(root);
    await unpackLayers(root, await blobs([plainLayer(await tarOf([file("./plain", "tar")]))]));
    assert.equal(await readFile(join(root, "plain"), "utf8"), "tar");
  });

  it("refuses a layer whose content does not match its diff_id", async () => {
    const root = join(work, `root-${counter++}`);
    await mkdir(root);
    const layer = gzipLayer(await tarOf([file("x", "y")]));
    const [blob] = await blobs([{ ...layer, diffId: gzipLayer(await tarOf([file("x", "z")])).diffId }]);
    assert.ok(blob !== undefined);
    await assert.rejects(unpackLayers(root, [blob]), { code: "DIGEST_MISMATCH" });
  });

  describe("refuses entries that would write outside the root", () => {
    let base: string;
    let sentinel: string;
    let outside: string;

    before(async () => {
      base = join(work, "escape");
      await mkdir(base);
      sentinel = join(base, "sentinel");
      outside = join(base, "outside");
      await mkdir(outside);
    });

    const cases: [string, () => TestEntry[][]][] = [
      ["a ../ entry", () => [[file("../sentinel", "pwned")]]],
      ["a nested ../ entry", () => [[dir("a"), file("a/../../sentinel", "pwned")]]],
      ["an absolute entry", () => [[file(sentinel, "pwned")]]],
      [
        "a file below a symlink of the same layer",
        () => [[{ name: "a", type: "symlink", linkname: outside }, file("a/passwd", "pwned")]],
      ],
      [
        "a file below a symlink of a lower layer",
        () => [[{ name: "a", type: "symlink", linkname: outside }], [file("a/passwd", "pwned")]],
      ],
      [
        "a directory below a relative symlink",
        () => [[{ name: "a", type: "symlink", linkname: "../outside" }, dir("a/sub")]],
      ],
      ["a hard link to ../", () => [[{ name: "h", type: "link", linkname: "../sentinel" }]]],
      ["a hard link to an absolute path", () => [[{ name: "h", type: "link", linkname: sentinel }]]],
      [
        "a hard link through a symlink",
        () => [
          [
            { name: "a", type: "symlink", linkname: base },
            { name: "h", type: "link", linkname: "a/sentinel" },
          ],
        ],
      ],
      [
        "a whiteout through a symlink",
        () => [[{ name: "a", type: "symlink", linkname: base }], [file("a/.wh.sentinel", "")]],
      ],
      ["a whiteout of an empty name", () => [[file("outside/keep", "x")], [file("outside/.wh.", "")]]],
      ["a whiteout of ..", () => [[file("d/x", "x")], [file("d/.wh...", "")]]],
      [
        "an opaque whiteout through a symlink",
        () => [[{ name: "a", type: "symlink", linkname: outside }], [file("a/.wh..wh..opq", "")]],
      ],
    ];
    for (const [name, layers] of cases) {
      it(name, async () => {
        await writeFile(sentinel, "original");
        await writeFile(join(outside, "keep"), "original");
        const root = join(base, `root-${counter++}`);
        await mkdir(root);
        const built = await Promise.all(layers().map(async (entries) => gzipLayer(await tarOf(entries))));
        await assert.rejects(
          unpackLayers(root, await blobs(built)),
          (error: unknown) => error instanceof ImageError && error.code === "INVALID_LAYER",
        );
        assert.equal(await readFile(sentinel, "utf8"), "original");
        assert.deepEqual(await readdir(outside), ["keep"]);
        assert.equal(await readFile(join(outside, "keep"), "utf8"), "original");
        assert.deepEqual((await readdir(base)).filter((n) => !n.startsWith("root-")).sort(), [
          "outside",
          "sentinel",
        ]);
      });
    }
  });
});
