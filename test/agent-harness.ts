import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent } from "../src/agent/agent.ts";
import { defaultAgentConfig } from "../src/agent/config.ts";
import { aws, type TestServer } from "./helpers.ts";
import { skopeo, writeMultiPlatformLayout } from "./support/oci.ts";

/** A task subnet no interface on this machine uses, for one test run. */
export function freeSubnet(): string {
  const used = execFileSync("ip", ["-o", "-4", "addr"], { encoding: "utf8", timeout: 10_000 });
  for (;;) {
    const candidate = `10.${200 + ((randomBytes(1)[0] ?? 0) % 50)}.${(randomBytes(1)[0] ?? 0) % 250}`;
    if (!used.includes(` ${candidate}.`)) return `${candidate}.0/24`;
  }
}

export interface TestAgent {
  agent: Agent;
  dataDir: string;
  bridge: string;
  subnet: string;
  /** Stops the agent (tasks keep running). */
  stop(): Promise<void>;
  /** Starts a fresh agent process-equivalent on the same data directory (an agent restart). */
  restart(): Promise<TestAgent>;
}

/** A real node agent (runc, netns) in this process, joined to `cluster`, with its own bridge and subnet. */
export async function startTestAgent(
  server: TestServer,
  options: {
    cluster?: string;
    dataDir?: string;
    bridge?: string;
    subnet?: string;
    attributes?: Array<{ name: string; value?: string }>;
    zone?: string;
    /** "FARGATE": Wharf-managed capacity for every cluster's FARGATE tasks instead of a container instance. */
    capacity?: "EC2" | "FARGATE";
  } = {},
): Promise<TestAgent> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), "wharf-agent-"));
  const bridge = options.bridge ?? `wt${randomBytes(4).toString("hex")}`;
  const subnet = options.subnet ?? freeSubnet();
  const config = defaultAgentConfig({
    server: server.endpoint,
    credentials: server.credentials,
    cluster: options.cluster ?? "default",
    dataDir,
    bridge,
    subnet,
    attributes: options.attributes ?? [],
    availabilityZone: options.zone ?? "us-east-1a",
    capacity: options.capacity ?? "EC2",
  });
  const verbose = process.env.WHARF_TEST_VERBOSE === "1";
  const quiet = {
    info: (f: Record<string, unknown>, m: string) => (verbose ? console.error(m, f) : undefined),
    warn: (f: Record<string, unknown>, m: string) => (verbose ? console.error(m, f) : undefined),
    error: (f: Record<string, unknown>, m: string) => console.error(m, f),
  };
  const agent = new Agent(config, quiet);
  await agent.start();
  const handle: TestAgent = {
    agent,
    dataDir,
    bridge,
    subnet,
    stop: () => agent.stop(),
    restart: async () => {
      await agent.stop();
      return startTestAgent(server, { ...options, dataDir, bridge, subnet });
    },
  };
  return handle;
}

/** Removes what a test agent left on the machine: containers, mounts, netns, the bridge, its files. */
export async function cleanupAgent(handle: TestAgent): Promise<void> {
  const runcRoot = join(handle.dataDir, "runc");
  try {
    const ids = execFileSync("runc", ["--root", runcRoot, "list", "-q"], {
      encoding: "utf8",
      timeout: 10_000,
    })
      .split("\n")
      .filter(Boolean);
    for (const id of ids)
      execFileSync("runc", ["--root", runcRoot, "delete", "--force", id], {
        timeout: 10_000,
        stdio: "ignore",
      });
  } catch {
    // nothing left
  }
  const mounts = execFileSync("cat", ["/proc/self/mounts"], { encoding: "utf8" });
  for (const line of mounts.split("\n")) {
    const target = line.split(" ")[1];
    if (target?.startsWith(handle.dataDir)) {
      try {
        execFileSync("umount", ["-l", target], { timeout: 10_000, stdio: "ignore" });
      } catch {
        // already gone
      }
    }
  }
  await handle.agent.destroyNetwork().catch(() => undefined);
  rmSync(handle.dataDir, { recursive: true, force: true });
}

/** Creates repository `name` and pushes the busybox test image to it as `:latest`; returns the image URI. */
export async function pushBusybox(
  server: Pick<TestServer, "endpoint" | "credentials">,
  name: string,
): Promise<string> {
  const created = await aws(server, ["ecr", "create-repository", "--repository-name", name]);
  if (created.code !== 0 && !created.stderr.includes("RepositoryAlreadyExists"))
    throw new Error(created.stderr);
  const password = (await aws(server, ["ecr", "get-login-password"])).stdout.trim();
  const dir = mkdtempSync(join(tmpdir(), "wharf-layout-"));
  try {
    await writeMultiPlatformLayout(dir, "hello from wharf\n");
    const host = new URL(server.endpoint).host;
    const copied = await skopeo([
      "copy",
      "--all",
      `oci:${dir}:latest`,
      `docker://${host}/${name}:latest`,
      "--dest-tls-verify=false",
      "--dest-creds",
      `AWS:${password}`,
    ]);
    if (copied.code !== 0) throw new Error(copied.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return `localhost:${new URL(server.endpoint).port}/${name}:latest`;
}

/** Polls `check` until it returns a value, or fails after `timeoutMs`. */
/**
 * A TCP port for a task's static host port: below the kernel's ephemeral range (where a
 * busy machine's outgoing connections would make a random pick collide) and free right now.
 */
export async function unusedStaticPort(): Promise<number> {
  for (;;) {
    const port = 20_000 + (randomBytes(2).readUInt16BE() % 12_000);
    const free = await new Promise<boolean>((resolve) => {
      const probe = createServer();
      probe.once("error", () => resolve(false));
      probe.listen({ port, host: "0.0.0.0", exclusive: true }, () => probe.close(() => resolve(true)));
    });
    if (free) return port;
  }
}

export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last === undefined ? "" : `: ${String(last)}`}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
