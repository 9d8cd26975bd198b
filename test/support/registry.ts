// Debian's docker-registry (CNCF distribution 2.8) on a loopback port: the peer that
// registry tests and benchmarks compare Wharf with.
import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isAlive, killOnExit, release, SYSTEM_PATH, signalAll, waitFor } from "./process.ts";

export const DOCKER_REGISTRY = "/usr/bin/docker-registry";

export interface PeerRegistry {
  /** host:port for image references, e.g. 127.0.0.1:40123 */
  host: string;
  /** Base URL, e.g. http://127.0.0.1:40123 */
  url: string;
  pid: number;
  /** Temp dir holding the config, log and storage. */
  root: string;
  /** Kills the registry and deletes `root`. Idempotent. */
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (free when asked; the caller retries if it loses the race). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * A user for a registry that wants Basic auth: the htpasswd line (bcrypt, cost 4, made once with
 * Python's crypt.crypt and crypt.METHOD_BLOWFISH) and the password it hashes.
 */
export const HTPASSWD_USER = {
  username: "wharf",
  password: "wharf-private-pass",
  line: "wharf:$2b$04$Ybv8oNaTVkRANtzxHzlsreJt.NwgA2K4Dq0C87UxtMobMzfoyTSHW",
} as const;

/**
 * Starts `docker-registry serve` with plain HTTP on 127.0.0.1 and filesystem storage in a temp dir;
 * with `htpasswd`, every request needs Basic auth as HTPASSWD_USER.
 */
export async function startDockerRegistry(
  options: { readyTimeoutMs?: number; htpasswd?: boolean } = {},
): Promise<PeerRegistry> {
  if (!existsSync(DOCKER_REGISTRY))
    throw new Error(`${DOCKER_REGISTRY} is missing: apt-get install docker-registry`);
  const root = mkdtempSync(join(tmpdir(), "wharf-peer-registry-"));
  const log = join(root, "registry.log");
  const failures: string[] = [];
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const config = join(root, "config.yml");
    writeFileSync(
      config,
      [
        "version: 0.1",
        "log:",
        "  level: warn",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        `    rootdirectory: ${join(root, "data")}`,
        "  delete:",
        "    enabled: true",
        "http:",
        `  addr: ${host}`,
        ...(options.htpasswd === true
          ? ["auth:", "  htpasswd:", "    realm: wharf-test", `    path: ${join(root, "htpasswd")}`]
          : []),
        "",
      ].join("\n"),
    );
    if (options.htpasswd === true) writeFileSync(join(root, "htpasswd"), `${HTPASSWD_USER.line}\n`);
    const logFd = openSync(log, "w");
    // no REGISTRY_* variables from our environment may override the config
    const child = spawn(DOCKER_REGISTRY, ["serve", config], {
      env: { PATH: SYSTEM_PATH },
      stdio: ["ignore", logFd, logFd],
    });
    closeSync(logFd);
    child.unref();
    const pid = child.pid;
    if (pid === undefined) throw new Error(`could not spawn ${DOCKER_REGISTRY}`);
    killOnExit(pid);
    let exited = false;
    child.on("exit", () => {
      exited = true;
      release(pid);
    });
    const url = `http://${host}`;
    const deadline = Date.now() + (options.readyTimeoutMs ?? 20_000);
    while (!exited && Date.now() < deadline) {
      if (await answers(`${url}/v2/`, options.htpasswd === true ? 401 : 200)) {
        let stopped: Promise<void> | undefined;
        return {
          host,
          url,
          pid,
          root,
          stop() {
            stopped ??= (async () => {
              signalAll([pid], "SIGTERM");
              if (!(await waitFor(() => exited || !isAlive(pid), 5_000))) signalAll([pid], "SIGKILL");
              await waitFor(() => exited || !isAlive(pid), 5_000);
              rmSync(root, { recursive: true, force: true });
            })();
            return stopped;
          },
        };
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    signalAll([pid], "SIGKILL");
    await waitFor(() => exited, 5_000);
    failures.push(`${host}: ${exited ? "exited" : "no answer"}:\n${readFileSync(log, "utf8").trimEnd()}`);
  }
  rmSync(root, { recursive: true, force: true });
  throw new Error(`docker-registry did not start:\n${failures.join("\n\n")}`);
}

async function answers(url: string, status: number): Promise<boolean> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    await response.arrayBuffer();
    return response.status === status;
  } catch {
    return false;
  }
}
