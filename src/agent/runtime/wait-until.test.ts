import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { RuntimeError } from "./errors.ts";
import { waitUntil } from "./wait-until.ts";

function code(expected: string) {
  return (error: unknown) => error instanceof RuntimeError && error.code === expected;
}

describe("waitUntil", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "wharf-wait-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("notices a file soon after it appears, long before the polling interval", async () => {
    const file = join(dir, "flag");
    const began = Date.now();
    setTimeout(() => void writeFile(file, "x"), 50);
    const value = await waitUntil(async () => (existsSync(file) ? "seen" : undefined), {
      watchDir: dir,
      pollMs: 10_000,
      timeoutMs: 5000,
      what: "flag",
    });
    assert.equal(value, "seen");
    assert.ok(Date.now() - began < 2000);
  });
  it("polls where it cannot watch", async () => {
    let calls = 0;
    const value = await waitUntil(async () => (++calls >= 3 ? calls : undefined), {
      watchDir: join(dir, "missing"),
      pollMs: 10,
      what: "count",
    });
    assert.equal(value, 3);
  });
  it("times out, aborts, and passes the probe's errors on", async () => {
    const never = async () => undefined;
    await assert.rejects(waitUntil(never, { pollMs: 10, timeoutMs: 50, what: "never" }), code("timeout"));
    await assert.rejects(
      waitUntil(never, { pollMs: 10, signal: AbortSignal.timeout(50), what: "never" }),
      code("aborted"),
    );
    await assert.rejects(
      waitUntil(never, { pollMs: 10, signal: AbortSignal.abort(), what: "never" }),
      code("aborted"),
    );
    const failing = async () => {
      throw new Error("probe broke");
    };
    await assert.rejects(waitUntil(failing, { pollMs: 10, what: "failing" }), /probe broke/);
  });
});
