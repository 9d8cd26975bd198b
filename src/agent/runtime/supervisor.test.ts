import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { bundleFiles, decodeStatus, lastRuncError, signalName, spawnSupervisor } from "./supervisor.ts";
import { waitUntil } from "./wait-until.ts";

describe("supervisor helpers", () => {
  it("decodes the shell's status: 128+n is signal n", () => {
    assert.deepEqual(decodeStatus(0), { exitCode: 0 });
    assert.deepEqual(decodeStatus(3), { exitCode: 3 });
    assert.deepEqual(decodeStatus(128), { exitCode: 128 });
    assert.deepEqual(decodeStatus(137), { exitCode: 137, signal: "SIGKILL" });
    assert.deepEqual(decodeStatus(143), { exitCode: 143, signal: "SIGTERM" });
    assert.deepEqual(decodeStatus(134), { exitCode: 134, signal: "SIGABRT" });
    assert.deepEqual(decodeStatus(255), { exitCode: 255 });
  });

  it("normalises signal names and numbers", () => {
    assert.equal(signalName("TERM"), "SIGTERM");
    assert.equal(signalName("sigquit"), "SIGQUIT");
    assert.equal(signalName("SIGUSR1"), "SIGUSR1");
    assert.equal(signalName("9"), "SIGKILL");
    assert.equal(signalName("SIGNOPE"), undefined);
    assert.equal(signalName("99"), undefined);
  });

  it("finds runc's last error in its JSON log", () => {
    const log = [
      '{"level":"warning","msg":"ignoring","time":"t"}',
      '{"level":"error","msg":"first","time":"t"}',
      '{"level":"error","msg":"runc run failed: boom","time":"t"}',
      "",
    ].join("\n");
    assert.equal(lastRuncError(log), "runc run failed: boom");
    assert.equal(lastRuncError(""), undefined);
    assert.equal(lastRuncError("plain text failure\n"), "plain text failure");
  });
});

describe("the supervisor script, with a stand-in for runc", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "wharf-supervisor-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("passes its arguments through untouched and records runc's status atomically", async () => {
    const fake = join(dir, "fake-runc");
    // Prints its arguments one a line, writes the pid file, and exits 7.
    await writeFile(
      fake,
      '#!/bin/sh\nfor a in "$@"; do echo "arg:$a"; done\necho oops >&2\nshift 9\nprintf %s $$ > "$1/pid.tmp" && mv "$1/pid.tmp" "$1/pid"\nexit 7\n',
    );
    await chmod(fake, 0o755);
    const bundle = join(dir, "a bundle $(touch pwned) ;");
    await mkdir(bundle);
    const out = join(dir, "out.log");
    await writeFile(out, "earlier\n");
    spawnSupervisor({
      runcPath: fake,
      root: join(dir, "root"),
      bundleDir: bundle,
      id: "c1",
      stdout: out,
      stderr: join(dir, "err.log"),
    });
    const files = bundleFiles(bundle);
    const status = await waitUntil(
      async () => (await readFile(files.exit, "utf8").catch(() => undefined))?.trim(),
      {
        watchDir: bundle,
        pollMs: 20,
        timeoutMs: 10_000,
        what: "supervisor",
      },
    );
    assert.equal(status, "7");
    const args = (await readFile(out, "utf8")).split("\n");
    assert.equal(args[0], "earlier", "appends to the log");
    assert.deepEqual(args.slice(1, 13), [
      `arg:--root`,
      `arg:${join(dir, "root")}`,
      "arg:--log",
      `arg:${bundle}/runc.log`,
      "arg:--log-format",
      "arg:json",
      "arg:run",
      "arg:--keep",
      "arg:--bundle",
      `arg:${bundle}`,
      "arg:--pid-file",
      `arg:${bundle}/pid`,
    ]);
    assert.equal(await readFile(join(dir, "err.log"), "utf8"), "oops\n");
    assert.match(await readFile(files.pid, "utf8"), /^[0-9]+$/);
    await assert.rejects(readFile(join(dir, "pwned")), "nothing was spliced into the script");
    await assert.rejects(readFile(join(bundle, "pwned")));
    await assert.rejects(readFile(files.exitTmp));
  });
});
