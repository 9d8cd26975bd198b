// Storage you can trust: pushes cut off by the client or by a killed server, racing
// pushes, garbage collection running under live pushes, and blobs sealed at rest.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { CreateRepositoryCommand, DeleteRepositoryCommand } from "@aws-sdk/client-ecr";
import { parseExports, runWharf, spawnWharf } from "./cli.ts";
import { startTestServer, type TestServer } from "./helpers.ts";
import {
  descriptor,
  ecrClient,
  errorCodes,
  MEDIA,
  type PushedImage,
  pushImage,
  type Reply,
  sha256,
  V2Client,
} from "./support/v2-client.ts";

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function createRepository(
  on: TestServer | { endpoint: string; credentials: TestServer["credentials"] },
  name: string,
) {
  const ecr = ecrClient(on);
  try {
    await ecr.send(new CreateRepositoryCommand({ repositoryName: name }));
  } finally {
    ecr.destroy();
  }
}

function uploadFile(dataDir: string, location: string): string {
  return join(dataDir, "registry", "uploads", location.split("/").at(-1) ?? "");
}

function blobFile(dataDir: string, digest: string): string {
  const hex = digest.slice("sha256:".length);
  return join(dataDir, "registry", "blobs", "sha256", hex.slice(0, 2), hex);
}

/** Waits (polling, bounded) until `done()` holds. */
async function until(done: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/**
 * A request body that sends `bytes` at once and then stalls, as a client
 * whose connection is about to die; the request is cut off by aborting it.
 */
function stallingBody(bytes: Buffer): ReadableStream<Uint8Array> {
  let sent = false;
  return new ReadableStream({
    pull(controller) {
      if (!sent) {
        sent = true;
        controller.enqueue(new Uint8Array(bytes));
        return;
      }
      return new Promise<void>(() => {}); // never more
    },
  });
}

async function startUpload(client: V2Client, repo: string): Promise<string> {
  const reply = await client.request("POST", `/v2/${repo}/blobs/uploads/`);
  assert.equal(reply.status, 202);
  return reply.headers.get("location") ?? "";
}

function patch(client: V2Client, location: string, bytes: Buffer, start: number): Promise<Reply> {
  return client.request("PATCH", location, {
    headers: {
      "content-type": "application/octet-stream",
      "content-range": `${start}-${start + bytes.length - 1}`,
    },
    body: bytes,
  });
}

/**
 * Starts a chunk of `bytes` at `start` that sends only its first `sent` bytes; resolves once
 * the upload file holds `onDisk` bytes, with `cut` to abort the request and `outcome`, the
 * name of the error the request ended with (or "answered").
 */
async function stalledPatch(
  client: V2Client,
  location: string,
  bytes: Buffer,
  start: number,
  sent: number,
  file: string,
  onDisk: number,
): Promise<{ cut: () => void; outcome: Promise<string> }> {
  const controller = new AbortController();
  const request = client.request("PATCH", location, {
    headers: {
      "content-type": "application/octet-stream",
      "content-range": `${start}-${start + bytes.length - 1}`,
    },
    body: stallingBody(bytes.subarray(0, sent)),
    signal: controller.signal,
  });
  const outcome = request.then(
    () => "answered",
    (error: unknown) => (error as Error).name,
  );
  await until(() => fileSize(file) >= onDisk, "the stalled chunk to reach the disk");
  return { cut: () => controller.abort(), outcome };
}

describe("cut-off pushes", () => {
  it("a chunk cut off mid-body leaves nothing visible, and the upload resumes from its Range", async () => {
    const server = await startTestServer();
    try {
      await createRepository(server, "cut");
      const client = await V2Client.login(server);
      const blob = randomBytes(4_000_000);
      const digest = sha256(blob);
      const location = await startUpload(client, "cut");
      // 1 300 000 bytes end inside the second 1 MiB storage segment, which the cut-off chunk
      // then rewrites: it carries 2 400 000 more bytes, enough to fill segments 1 and 2 (which
      // ends at 3 145 728 bytes, some 3 145 836 bytes of file) before the client goes away.
      assert.equal((await patch(client, location, blob.subarray(0, 1_300_000), 0)).status, 202);
      const file = uploadFile(server.dataDir, location);
      const stalled = await stalledPatch(
        client,
        location,
        blob.subarray(1_300_000),
        1_300_000,
        2_400_000,
        file,
        3_145_000,
      );
      stalled.cut();
      assert.equal(await stalled.outcome, "AbortError");

      const status = await client.request("GET", location);
      assert.equal(status.status, 204);
      assert.equal(status.headers.get("range"), "0-1299999");
      assert.equal((await client.request("HEAD", `/v2/cut/blobs/${digest}`)).status, 404);

      const resumed = await patch(client, location, blob.subarray(1_300_000), 1_300_000);
      assert.equal(resumed.status, 202, resumed.body.toString());
      assert.equal(resumed.headers.get("range"), "0-3999999");
      assert.equal((await client.request("PUT", `${location}?digest=${digest}`)).status, 201);
      assert.deepEqual(await client.pullBlob("cut", digest), blob);

      // A monolithic push cut off mid-body leaves nothing behind either.
      const other = randomBytes(3_200_000);
      const controller = new AbortController();
      const monolithic = client.request("POST", `/v2/cut/blobs/uploads/?digest=${sha256(other)}`, {
        headers: { "content-type": "application/octet-stream", "content-length": String(other.length) },
        body: stallingBody(other.subarray(0, 2_000_000)),
        signal: controller.signal,
      });
      const uploads = join(server.dataDir, "registry", "uploads");
      await until(
        () => readdirSync(uploads).some((name) => fileSize(join(uploads, name)) >= 1_048_576),
        "the monolithic push to fill its first storage segment",
      );
      controller.abort();
      await assert.rejects(monolithic, { name: "AbortError" });
      assert.equal((await client.request("HEAD", `/v2/cut/blobs/${sha256(other)}`)).status, 404);
    } finally {
      await server.stop();
    }
  });

  it("an upload survives the server being SIGKILLed mid-chunk and completes after a restart", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "wharf-kill-registry-"));
    dirs.push(dataDir);
    const args = ["server", "--port", "0", "--data-dir", dataDir, "--log-level", "warn"];
    const first = await spawnWharf(args);
    const env = parseExports((await runWharf(["env", "--data-dir", dataDir])).stdout);
    const credentials = {
      accessKeyId: env.AWS_ACCESS_KEY_ID ?? "",
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY ?? "",
    };
    const blob = randomBytes(1_500_000);
    const digest = sha256(blob);
    let location: string;
    try {
      await createRepository({ endpoint: first.endpoint, credentials }, "survivor");
      const client = await V2Client.login({ endpoint: first.endpoint, credentials });
      location = await startUpload(client, "survivor");
      assert.equal((await patch(client, location, blob.subarray(0, 700_000), 0)).status, 202);
      // 700 000 bytes end inside segment 2; the next chunk has filled segments 2 and 3
      // (to 1 048 576 bytes, some 1 048 700 bytes of file) when the server dies.
      const file = uploadFile(dataDir, location);
      const stalled = await stalledPatch(
        client,
        location,
        blob.subarray(700_000),
        700_000,
        600_000,
        file,
        1_048_000,
      );
      first.child.kill("SIGKILL");
      await once(first.child, "exit");
      stalled.cut();
      assert.notEqual(await stalled.outcome, "answered");
    } catch (error) {
      first.child.kill("SIGKILL");
      throw error;
    }

    const second = await spawnWharf(args);
    try {
      const client = await V2Client.login({ endpoint: second.endpoint, credentials });
      const status = await client.request("GET", location);
      assert.equal(status.status, 204, status.body.toString());
      assert.equal(status.headers.get("range"), "0-699999");
      const rest = await patch(client, location, blob.subarray(700_000), 700_000);
      assert.equal(rest.status, 202, rest.body.toString());
      assert.equal((await client.request("PUT", `${location}?digest=${digest}`)).status, 201);
      assert.deepEqual(await client.pullBlob("survivor", digest), blob);
    } finally {
      second.child.kill("SIGTERM");
      await once(second.child, "exit");
    }
  });
});

/** Every blob an image names downloads and hashes to its digest; so does the manifest. */
async function assertWhole(client: V2Client, repo: string, image: PushedImage): Promise<void> {
  const manifest = await client.request("GET", `/v2/${repo}/manifests/${image.digest}`);
  assert.equal(manifest.status, 200, `manifest ${image.digest}: ${manifest.body.toString()}`);
  assert.equal(sha256(manifest.body), image.digest);
  const parsed = JSON.parse(manifest.body.toString()) as {
    config: { digest: string };
    layers: Array<{ digest: string }>;
  };
  for (const { digest } of [parsed.config, ...parsed.layers]) await client.pullBlob(repo, digest);
}

describe("concurrent pushes", () => {
  it("two clients pushing one tag at once: the tag ends on one of them and both stay whole", async () => {
    const server = await startTestServer();
    try {
      await createRepository(server, "race");
      const alice = await V2Client.login(server);
      const bob = await V2Client.login(server);
      const shared = randomBytes(300_000);
      for (let round = 0; round < 8; round++) {
        const [a, b] = await Promise.all([
          pushImage(alice, "race", "latest", { layers: [shared, randomBytes(200_000)] }),
          pushImage(bob, "race", "latest", { layers: [shared, randomBytes(200_000)] }),
        ]);
        assert.notEqual(a.digest, b.digest);
        const tagged = await alice.request("HEAD", "/v2/race/manifests/latest");
        assert.ok(
          [a.digest, b.digest].includes(tagged.headers.get("docker-content-digest") ?? ""),
          `round ${round}`,
        );
        await assertWhole(alice, "race", a);
        await assertWhole(bob, "race", b);
      }
    } finally {
      await server.stop();
    }
  });
});

describe("garbage collection", () => {
  it("never loses a blob that a finished push needs, with collection running throughout", async (t) => {
    const server = await startTestServer({ gcGraceMs: 0 });
    try {
      await createRepository(server, "busy");
      const registry = server.registry.registry;
      let pushing = true;
      let collections = 0;
      const collector = (async () => {
        while (pushing) {
          await registry.collectGarbage();
          collections++;
          await sleep(Math.random() * 60); // passes at uneven times, so they land everywhere in a push
        }
      })();

      // With no grace, collection may take a blob between its upload and the manifest that
      // names it: that push fails cleanly with MANIFEST_BLOB_UNKNOWN, and the client pushes again.
      let refused = 0;
      const push = async (client: V2Client, tag: string, layers: Buffer[]): Promise<PushedImage> => {
        for (let attempt = 0; ; attempt++) {
          try {
            return await pushImage(client, "busy", tag, { layers });
          } catch (error) {
            assert.match(String(error), /answered 400: .*MANIFEST_BLOB_UNKNOWN/);
            refused++;
            assert.ok(attempt < 500, `${tag} never got through`);
          }
        }
      };
      const shared = randomBytes(100_000);
      const finished: Array<{ tag: string; image: PushedImage }> = [];
      const worker = async (w: number) => {
        const client = await V2Client.login(server);
        for (let i = 0; i < 12; i++) {
          const tag = `w${w}-${i}`;
          finished.push({ tag, image: await push(client, tag, [shared, randomBytes(20_000)]) });
        }
      };
      // One more client puts back, again and again, a manifest it has just deleted: its bytes
      // stay on disk as garbage in between, and collection must not take them under the push.
      const flipper = async () => {
        const client = await V2Client.login(server);
        const anchor = await push(client, "anchor", [randomBytes(10_000)]);
        const flip = JSON.parse(anchor.manifest.toString()) as Record<string, unknown>;
        flip.annotations = { "org.example.flip": "yes" };
        for (let i = 0; i < 40; i++) {
          const pushed = await client.pushManifest("busy", "flip", flip, MEDIA.ociManifest);
          const got = await client.request("GET", `/v2/busy/manifests/${pushed.digest}`);
          assert.equal(got.status, 200, `round ${i}: ${got.body.toString()}`);
          assert.equal(sha256(got.body), pushed.digest);
          assert.equal((await client.request("DELETE", `/v2/busy/manifests/${pushed.digest}`)).status, 202);
        }
        const last = await client.pushManifest("busy", "flip", flip, MEDIA.ociManifest);
        return { anchor, last: last.digest };
      };
      const [flipped] = await Promise.all([flipper(), ...[0, 1, 2, 3].map(worker)]).finally(() => {
        pushing = false;
      });
      await collector;
      assert.ok(collections > 0);

      await registry.collectGarbage();
      const client = await V2Client.login(server);
      for (const { tag, image } of finished) {
        const byTag = await client.request("HEAD", `/v2/busy/manifests/${tag}`);
        assert.equal(byTag.headers.get("docker-content-digest"), image.digest, tag);
        await assertWhole(client, "busy", image);
      }
      assert.equal(finished.length, 48);
      const flip = await client.request("GET", "/v2/busy/manifests/flip");
      assert.equal(sha256(flip.body), flipped?.last);
      t.diagnostic(`${collections} collections; ${refused} pushes refused and pushed again`);
    } finally {
      await server.stop();
    }
  });

  it("collects unreferenced blobs once they are older than the grace period, and only those", async () => {
    let offset = 0;
    const server = await startTestServer({ clock: () => new Date(Date.now() + offset), gcGraceMs: 60_000 });
    try {
      await createRepository(server, "grace");
      const client = await V2Client.login(server);
      const kept = await pushImage(client, "grace", "kept");
      const loose = randomBytes(5000);
      const digest = await client.pushBlob("grace", loose);

      await server.registry.maintain();
      assert.equal((await client.request("HEAD", `/v2/grace/blobs/${digest}`)).status, 200, "young: kept");
      offset = 61_000;
      await server.registry.maintain();
      const head = await client.request("HEAD", `/v2/grace/blobs/${digest}`);
      assert.equal(head.status, 404, "old and unreferenced: collected");
      assert.deepEqual(errorCodes(await client.request("GET", `/v2/grace/blobs/${digest}`)), [
        "BLOB_UNKNOWN",
      ]);
      assert.equal(existsSync(blobFile(server.dataDir, digest)), false);
      await assertWhole(client, "grace", kept);
      // Pushed again, it is a blob like any other.
      await client.pushBlob("grace", loose);
      assert.deepEqual(await client.pullBlob("grace", digest), loose);
    } finally {
      await server.stop();
    }
  });

  it("reclaims the blobs of a repository deleted with force, but not those another repository uses", async () => {
    const server = await startTestServer({ gcGraceMs: 0 });
    const ecr = ecrClient(server);
    try {
      await createRepository(server, "doomed");
      await createRepository(server, "keeper");
      const client = await V2Client.login(server);
      const shared = randomBytes(50_000);
      const doomed = await pushImage(client, "doomed", "v1", { layers: [shared, randomBytes(60_000)] });
      const keeper = await pushImage(client, "keeper", "v1", { layers: [shared] });
      await ecr.send(new DeleteRepositoryCommand({ repositoryName: "doomed", force: true }));
      await server.registry.maintain();
      for (const digest of [doomed.digest, doomed.blobs[0] ?? "", doomed.blobs[2] ?? ""]) {
        assert.equal(existsSync(blobFile(server.dataDir, digest)), false, digest);
      }
      assert.ok(existsSync(blobFile(server.dataDir, sha256(shared))));
      await assertWhole(client, "keeper", keeper);
    } finally {
      ecr.destroy();
      await server.stop();
    }
  });
});

describe("encryption at rest", () => {
  /** Every file under `dir`, recursively. */
  function filesUnder(dir: string): string[] {
    return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
      const path = join(dir, entry.name);
      return entry.isDirectory() ? filesUnder(path) : entry.isFile() ? [path] : [];
    });
  }

  it("keeps no plaintext of a pushed layer anywhere under the data directory, and serves ranges", async () => {
    const server = await startTestServer();
    try {
      await createRepository(server, "secret");
      const client = await V2Client.login(server);
      const marker = "WHARF-AT-REST-MARKER-7f3a9c";
      const unit = Buffer.from(`${marker}|`);
      const layer = Buffer.alloc(2_621_440); // two and a half 1 MiB storage segments
      for (let offset = 0; offset < layer.length; offset += unit.length) unit.copy(layer, offset);
      const needles = [
        Buffer.from(marker),
        Buffer.from(marker, "utf16le"),
        Buffer.from(marker).toString("base64"),
      ];
      const scan = () => {
        const files = filesUnder(server.dataDir);
        for (const name of ["wharf.db", "wharf.db-wal"])
          assert.ok(files.includes(join(server.dataDir, name)), `${name} among ${files.join(", ")}`);
        for (const file of files) {
          const content = readFileSync(file);
          for (const needle of needles)
            assert.equal(content.indexOf(needle), -1, `${needle} found in ${file}`);
        }
        return files;
      };

      // Half the layer in an upload still in progress, then all of it, as layer and as config.
      const location = await startUpload(client, "secret");
      assert.equal((await patch(client, location, layer.subarray(0, 400_000), 0)).status, 202);
      scan();
      assert.equal((await patch(client, location, layer.subarray(400_000), 400_000)).status, 202);
      assert.equal((await client.request("PUT", `${location}?digest=${sha256(layer)}`)).status, 201);
      const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", note: marker }));
      await client.pushBlob("secret", config);
      await client.pushManifest(
        "secret",
        "v1",
        {
          schemaVersion: 2,
          mediaType: MEDIA.ociManifest,
          config: descriptor(MEDIA.ociConfig, config),
          layers: [descriptor(MEDIA.ociLayer, layer)],
        },
        MEDIA.ociManifest,
      );
      assert.ok(scan().length > 5);

      const digest = sha256(layer);
      for (const [start, end] of [
        [0, 99],
        [262_100, 262_200],
        [524_287, 524_288],
        [1_048_500, 1_048_700],
        [2_097_000, 2_200_000],
        [layer.length - 10, layer.length - 1],
      ] as const) {
        const reply = await client.request("GET", `/v2/secret/blobs/${digest}`, {
          headers: { range: `bytes=${start}-${end}` },
        });
        assert.equal(reply.status, 206);
        assert.deepEqual(reply.body, layer.subarray(start, end + 1), `${start}-${end}`);
      }
      assert.deepEqual(await client.pullBlob("secret", digest), layer);
    } finally {
      await server.stop();
    }
  });
});
