import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { parseExports, runWharf, spawnWharf, WHARF_BIN } from "./cli.ts";

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "wharf-cli-"));
  dirs.push(dir);
  return dir;
}

function sh(
  script: string,
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile("/bin/sh", ["-c", script], { env, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr });
    });
  });
}

describe("the wharf command", () => {
  it("lists its commands in --help", async () => {
    const help = await runWharf(["--help"]);
    assert.equal(help.code, 0, help.stderr);
    for (const command of ["up", "server", "agent", "env", "version"]) {
      assert.match(help.stdout, new RegExp(`^  ${command}\\b`, "m"), `${command} listed`);
    }
    const version = await runWharf(["version"]);
    assert.match(version.stdout, /^wharf \d+\.\d+\.\d+/);
  });

  it("up serves, env prepares a shell for the AWS CLI, SIGINT stops it cleanly", async () => {
    const dataDir = tempDir();
    const env = { ...process.env, WHARF_DATA_DIR: dataDir };
    const up = await spawnWharf(["up", "--no-agent", "--port", "0", "--log-level", "warn"], env);
    try {
      assert.match(up.output(), /wharf env/, "says how to get credentials");
      const health = await fetch(`${up.endpoint}/healthz`);
      assert.equal(health.status, 200, "/healthz needs no credentials");

      const printed = await runWharf(["env"], env);
      assert.equal(printed.code, 0, printed.stderr);
      const exports = parseExports(printed.stdout);
      assert.match(exports.AWS_ACCESS_KEY_ID ?? "", /^AKIA[A-Z2-7]{16}$/);
      assert.equal(exports.AWS_SECRET_ACCESS_KEY?.length, 40);
      assert.equal(exports.AWS_DEFAULT_REGION, "us-east-1");
      assert.equal(exports.WHARF_ENDPOINT, up.endpoint, "env points at the running server's port");
      assert.equal(statSync(join(dataDir, "master.key")).mode & 0o777, 0o600);

      const shell = await sh(
        `eval "$("${process.execPath}" "${WHARF_BIN}" env)" && /usr/bin/aws ecs create-cluster --cluster-name from-shell --endpoint-url "$WHARF_ENDPOINT" --output text --query cluster.status`,
        {
          ...env,
          HOME: dataDir,
          AWS_CONFIG_FILE: "/nonexistent",
          AWS_SHARED_CREDENTIALS_FILE: "/nonexistent",
        },
      );
      assert.equal(shell.code, 0, shell.stderr);
      assert.equal(shell.stdout.trim(), "ACTIVE");
    } finally {
      up.child.kill("SIGINT");
    }
    const [code] = await once(up.child, "exit");
    assert.equal(code, 0, up.output());
    assert.equal(existsSync(join(dataDir, "endpoint.json")), false, "the running-server marker is removed");
  });

  it("keeps the same admin key across restarts", async () => {
    const dataDir = tempDir();
    const first = parseExports((await runWharf(["env", "--data-dir", dataDir])).stdout);
    const second = parseExports((await runWharf(["env", "--data-dir", dataDir])).stdout);
    assert.equal(first.AWS_ACCESS_KEY_ID, second.AWS_ACCESS_KEY_ID);
    assert.equal(first.AWS_SECRET_ACCESS_KEY, second.AWS_SECRET_ACCESS_KEY);
  });

  it("refuses an invalid port with a clear message", async () => {
    const result = await runWharf(["server", "--port", "99999", "--data-dir", tempDir()]);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /invalid port/);
  });
});
