// The two registries under test, each started fresh as its own process on 127.0.0.1.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CreateRepositoryCommand, ECRClient, GetAuthorizationTokenCommand } from "@aws-sdk/client-ecr";
import { isAlive, killOnExit, release, SYSTEM_PATH, signalAll, waitFor } from "../../test/support/process.ts";
import { DOCKER_REGISTRY, freePort } from "../../test/support/registry.ts";
import { WHARF, WHARF_NODE_OPTIONS } from "../wharf-command.ts";

export type PeerName = "wharf" | "distribution";

export interface Peer {
  name: PeerName;
  /** What ran, e.g. "docker-registry github.com/docker/distribution 2.8.2+ds1". */
  version: string;
  url: string;
  /** The Authorization header to send, when the peer wants one. */
  authorization?: string;
  /** The server process, for CPU accounting. */
  pid: number;
  /** Makes `name` a repository the client may push to (a no-op for distribution). */
  createRepository(name: string): Promise<void>;
  /** Stops the process and deletes its data. Idempotent. */
  stop(): Promise<void>;
}

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

function execText(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { env, timeout: 60_000, cwd: ROOT }, (error, stdout, stderr) => {
      if (error === null) resolve(stdout);
      else reject(new Error(`${file} ${args.join(" ")}: ${error.message}\n${stderr}`));
    });
  });
}

/**
 * The environment for a Wharf child: ours, without any WHARF_* setting that would change what
 * runs, and with WHARF_NATIVE_GCM=0 when asked for node:crypto.
 */
function wharfEnv(nodeCrypto = false): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith("WHARF_") && !key.startsWith("AWS_") && key !== "NODE_OPTIONS") env[key] = value;
  }
  if (nodeCrypto) env.WHARF_NATIVE_GCM = "0";
  return env;
}

function parseExports(text: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const match of text.matchAll(/^export (\w+)='((?:[^']|'\\'')*)'$/gm)) {
    values.set(match[1] as string, (match[2] as string).replaceAll("'\\''", "'"));
  }
  return values;
}

function waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let seen = "";
    let errors = "";
    const timer = setTimeout(() => finish(new Error(`no "${pattern}" within ${timeoutMs} ms`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      seen += chunk.toString("utf8");
      const match = pattern.exec(seen);
      if (match !== null) finish(undefined, match);
    };
    const onError = (chunk: Buffer) => {
      errors = (errors + chunk.toString("utf8")).slice(-4000);
    };
    const onExit = (code: number | null) => finish(new Error(`exited ${code} before it was ready`));
    function finish(error: Error | undefined, match?: RegExpExecArray) {
      clearTimeout(timer);
      child.stdout?.off("data", onData);
      child.off("exit", onExit);
      if (match !== undefined) resolve(match);
      else reject(new Error(`${error?.message}\nstdout: ${seen}\nstderr: ${errors}`));
    }
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onError);
    child.once("exit", onExit);
  });
}

export interface WharfOptions {
  /** Runs the child with `node --cpu-prof`, writing the profile here when it stops. */
  cpuProfileDir?: string | undefined;
  /** More flags for the child's node, e.g. `--max-semi-space-size=64`. */
  nodeFlags?: string[] | undefined;
  /** Appends what the child prints on stdout here (e.g. `--trace-gc` output) instead of dropping it. */
  logFile?: string | undefined;
  /** Seal and open blobs with node:crypto instead of the AES-GCM addon (WHARF_NATIVE_GCM=0). */
  nodeCrypto?: boolean | undefined;
}

/**
 * `bin/wharf.js server` as a child process with a fresh data directory and the node options that
 * file's first line gives it; the client gets ECR credentials.
 */
export async function startWharf(options: WharfOptions = {}): Promise<Peer> {
  const dataDir = mkdtempSync(join(tmpdir(), "wharf-bench-"));
  const nodeFlags: string[] = [...WHARF_NODE_OPTIONS, ...(options.nodeFlags ?? [])];
  if (options.cpuProfileDir !== undefined) {
    mkdirSync(options.cpuProfileDir, { recursive: true });
    nodeFlags.push("--cpu-prof", "--cpu-prof-dir", options.cpuProfileDir);
  }
  const args = [WHARF, "server", "--host", "127.0.0.1", "--port", "0", "--data-dir", dataDir];
  const child = spawn(process.execPath, [...nodeFlags, ...args, "--log-level", "warn"], {
    cwd: ROOT,
    env: wharfEnv(options.nodeCrypto),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const server = watch(child);
  const pid = server.pid;
  const stop = async () => {
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    const ready = await waitForLine(child, /registry at (http:\/\/127\.0\.0\.1:\d+)/, 60_000);
    // Keep draining the pipes so the child never blocks on a full one.
    const log = options.logFile;
    if (log === undefined) child.stdout?.resume();
    else child.stdout?.on("data", (chunk: Buffer) => appendFileSync(log, chunk));
    child.stderr?.on("data", (chunk: Buffer) => process.stderr.write(`[wharf] ${chunk.toString("utf8")}`));
    const url = ready[1] as string;
    const exports = parseExports(
      await execText(process.execPath, [WHARF, "env", "--data-dir", dataDir], wharfEnv()),
    );
    const accessKeyId = exports.get("AWS_ACCESS_KEY_ID");
    const secretAccessKey = exports.get("AWS_SECRET_ACCESS_KEY");
    if (accessKeyId === undefined || secretAccessKey === undefined)
      throw new Error("wharf env printed no keys");
    const ecr = new ECRClient({
      endpoint: url,
      region: exports.get("AWS_DEFAULT_REGION") ?? "us-east-1",
      credentials: { accessKeyId, secretAccessKey },
      maxAttempts: 1,
    });
    const token = (await ecr.send(new GetAuthorizationTokenCommand({}))).authorizationData?.[0]
      ?.authorizationToken;
    if (token === undefined) throw new Error("GetAuthorizationToken returned no token");
    const version = (await execText(process.execPath, [WHARF, "version"], wharfEnv())).trim();
    return {
      name: "wharf",
      version: `${version} (${await gitDescribe()})`,
      url,
      authorization: `Basic ${token}`,
      pid,
      async createRepository(name) {
        await ecr.send(new CreateRepositoryCommand({ repositoryName: name }));
      },
      async stop() {
        ecr.destroy();
        await stop();
      },
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function gitDescribe(): Promise<string> {
  try {
    return (await execText("git", ["describe", "--always", "--dirty"], { PATH: SYSTEM_PATH })).trim();
  } catch {
    return "unknown commit";
  }
}

/**
 * Debian's docker-registry (CNCF distribution 2.8) as Debian and upstream ship
 * its configuration (filesystem storage, the in-memory blob descriptor cache),
 * on 127.0.0.1 with plain HTTP, no auth and no access log.
 */
export async function startDistribution(): Promise<Peer> {
  if (!existsSync(DOCKER_REGISTRY))
    throw new Error(`${DOCKER_REGISTRY} is missing: apt-get install docker-registry`);
  const version = (await execText(DOCKER_REGISTRY, ["--version"], { PATH: SYSTEM_PATH })).trim();
  const root = mkdtempSync(join(tmpdir(), "wharf-bench-distribution-"));
  try {
    for (let attempt = 0; ; attempt++) {
      const port = await freePort();
      const config = join(root, "config.yml");
      writeFileSync(config, distributionConfig(join(root, "data"), `127.0.0.1:${port}`));
      const child = spawn(DOCKER_REGISTRY, ["serve", config], {
        env: { PATH: SYSTEM_PATH },
        stdio: ["ignore", "ignore", "pipe"],
      });
      const stop = watch(child);
      let errors = "";
      child.stderr?.on("data", (chunk: Buffer) => {
        errors = (errors + chunk.toString("utf8")).slice(-4000);
      });
      const url = `http://127.0.0.1:${port}`;
      if (await answers(`${url}/v2/`, 20_000, () => stop.exited)) {
        return {
          name: "distribution",
          version,
          url,
          pid: stop.pid,
          async createRepository() {
            // distribution creates repositories on first push
          },
          async stop() {
            await stop.stop();
            rmSync(root, { recursive: true, force: true });
          },
        };
      }
      await stop.stop();
      if (attempt === 2) throw new Error(`docker-registry did not start:\n${errors}`);
    }
  } catch (error) {
    rmSync(root, { recursive: true, force: true });
    throw error;
  }
}

function distributionConfig(data: string, addr: string): string {
  return [
    "version: 0.1",
    "log:",
    "  level: warn",
    "  accesslog:",
    "    disabled: true",
    "storage:",
    "  cache:",
    "    blobdescriptor: inmemory",
    "  filesystem:",
    `    rootdirectory: ${data}`,
    "  delete:",
    "    enabled: true",
    "http:",
    `  addr: ${addr}`,
    "  headers:",
    "    X-Content-Type-Options: [nosniff]",
    "",
  ].join("\n");
}

/** Tracks a child until it exits; `stop()` sends SIGTERM, then SIGKILL, and waits. */
function watch(child: ChildProcess): { pid: number; exited: boolean; stop(): Promise<void> } {
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not spawn ${child.spawnfile}`);
  killOnExit(pid);
  let stopping: Promise<void> | undefined;
  const state = {
    pid,
    exited: false,
    stop() {
      stopping ??= (async () => {
        signalAll([pid], "SIGTERM");
        if (!(await waitFor(() => state.exited || !isAlive(pid), 15_000))) signalAll([pid], "SIGKILL");
        await waitFor(() => state.exited || !isAlive(pid), 5_000);
      })();
      return stopping;
    },
  };
  child.on("exit", () => {
    state.exited = true;
    release(pid);
  });
  return state;
}

/** Polls `url` until it answers 200, the process exits, or `timeoutMs` passes. */
async function answers(url: string, timeoutMs: number, exited: () => boolean): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!exited() && Date.now() < deadline) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      await response.arrayBuffer();
      if (response.status === 200) return true;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}

/** USER_HZ: 100 on every Linux the project runs on. */
export const CLOCK_TICKS = 100;

/**
 * User and system CPU seconds each thread of a process has used so far (from
 * /proc/<pid>/task/<tid>/stat), by thread id; threads that ended are missing.
 */
export function threadCpuSeconds(pid: number): Map<number, { user: number; system: number }> {
  const threads = new Map<number, { user: number; system: number }>();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return threads;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      threads.set(Number(tid), {
        user: Number(fields[11]) / CLOCK_TICKS,
        system: Number(fields[12]) / CLOCK_TICKS,
      });
    } catch {
      // the thread ended meanwhile
    }
  }
  return threads;
}

/** User and system CPU seconds a process has used so far (from /proc/<pid>/stat). */
export function processCpuSeconds(pid: number): { user: number; system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // after the command name: state(0) ppid(1) … utime(11) stime(12), in clock ticks
  return { user: Number(fields[11]) / CLOCK_TICKS, system: Number(fields[12]) / CLOCK_TICKS };
}
