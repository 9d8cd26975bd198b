import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runCommand } from "./command.ts";
import { RuntimeError } from "./errors.ts";

function code(expected: string) {
  return (error: unknown) => error instanceof RuntimeError && error.code === expected;
}

describe("runCommand", () => {
  it("gives the exit code and both streams, in order and apart", async () => {
    const result = await runCommand("/bin/sh", ["-c", "echo out; echo err >&2; exit 4"], {
      timeoutMs: 10_000,
    });
    assert.equal(result.code, 4);
    assert.equal(result.stdout, "out\n");
    assert.equal(result.stderr, "err\n");
    assert.match(result.combined, /out\n/);
    assert.match(result.combined, /err\n/);
  });
  it("reports death by signal", async () => {
    const result = await runCommand("/bin/sh", ["-c", "kill -9 $$"], { timeoutMs: 10_000 });
    assert.equal(result.code, null);
    assert.equal(result.signal, "SIGKILL");
  });
  it("keeps only the tail of a flood of output", async () => {
    const result = await runCommand("/bin/sh", ["-c", "head -c 300000 /dev/zero | tr '\\0' a; echo END"], {
      timeoutMs: 10_000,
      maxOutputBytes: 1000,
    });
    assert.equal(result.stdout.length, 1000);
    assert.ok(result.stdout.endsWith("aEND\n"));
  });
  it("kills a child that overruns its deadline", async () => {
    const began = Date.now();
    await assert.rejects(runCommand("/bin/sleep", ["30"], { timeoutMs: 200 }), code("timeout"));
    assert.ok(Date.now() - began < 5000);
  });
  it("kills a child when the signal fires, and refuses to start after it", async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    await assert.rejects(
      runCommand("/bin/sleep", ["30"], { timeoutMs: 10_000, signal: controller.signal }),
      code("aborted"),
    );
    await assert.rejects(
      runCommand("/bin/true", [], { timeoutMs: 10_000, signal: controller.signal }),
      code("aborted"),
    );
  });
  it("rejects when the program does not exist", async () => {
    await assert.rejects(runCommand("/no/such/program", [], { timeoutMs: 10_000 }), /ENOENT/);
  });
});
