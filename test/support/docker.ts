// A private Docker daemon for end-to-end tests: Debian's docker.io, its own
// directories and unix socket under one temp dir, no TCP, no host networking.
import { type ChildProcess, spawn } from "node:child_process";
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import {
  check,
  findProcesses,
  isAlive,
  killOnExit,
  type RunResult,
  release,
  run,
  SYSTEM_PATH,
  signalAll,
  waitFor,
  withDescendants,
} from "./process.ts";

/** Debian's binaries by path: a newer static `docker` in /usr/local/bin must not shadow them. */
export const DOCKERD = "/usr/sbin/dockerd";
export const DOCKER = "/usr/bin/docker";
export const BUSYBOX = "/bin/busybox";

const DIR_PREFIX = "wharf-dockerd-";

export interface Dockerd {
  /** e.g. unix:///tmp/wharf-dockerd-AbC123/docker.sock */
  host: string;
  /** A DOCKER_CONFIG dir private to this daemon's tests. */
  configDir: string;
  /** The temp dir holding everything the daemon owns; its name marks the daemon's processes. */
  root: string;
  /** The dockerd process id. */
  pid: number;
  storageDriver: "overlay2" | "vfs";
  /** Runs Debian's docker CLI against this daemon (legacy builder, isolated config), 120 s default timeout. */
  docker(args: string[], opts?: { input?: string; timeoutMs?: number }): Promise<RunResult>;
  /** Removes containers, stops the daemon and its children, unmounts and deletes `root`. Idempotent. */
  stop(): Promise<void>;
}

export interface StartDockerdOptions {
  /** How long to wait for `docker version` to answer (default 60 s). */
  readyTimeoutMs?: number;
  /** Storage drivers to try in order until one starts (default overlay2, then vfs). */
  storageDrivers?: Dockerd["storageDriver"][];
}

/**
 * Starts a private dockerd (own data-root, exec-root, pidfile, config file, containerd namespace
 * and unix socket under a fresh temp dir; no TCP listener; no bridge or iptables rules), trying
 * overlay2 then vfs, and waits until `docker version` answers. Cleans up leftovers of earlier runs.
 */
export async function startDockerd(options: StartDockerdOptions = {}): Promise<Dockerd> {
  for (const path of [DOCKERD, DOCKER]) {
    if (!existsSync(path)) throw new Error(`${path} is missing: apt-get install docker.io`);
  }
  await sweepLeftovers();
  const root = mkdtempSync(join(tmpdir(), DIR_PREFIX));
  writeFileSync(join(root, "owner"), `${process.pid}\n`);
  // the longest unix socket the daemon makes; Linux allows 107 bytes
  if (join(root, "exec/containerd/containerd-debug.sock").length > 107) {
    rmSync(root, { recursive: true, force: true });
    throw new Error(`TMPDIR ${tmpdir()} is too long for dockerd's unix sockets`);
  }
  const configDir = join(root, "config");
  mkdirSync(configDir);
  writeFileSync(join(configDir, "config.json"), "{}\n");
  const host = `unix://${join(root, "docker.sock")}`;
  const env = {
    PATH: SYSTEM_PATH,
    HOME: configDir,
    DOCKER_HOST: host,
    DOCKER_CONFIG: configDir,
    DOCKER_BUILDKIT: "0",
    DOCKER_CLI_HINTS: "false",
  };
  const docker = (args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> =>
    run(DOCKER, args, { env, ...opts });

  const failures: string[] = [];
  for (const storageDriver of options.storageDrivers ?? ["overlay2", "vfs"]) {
    const started = Date.now();
    const daemon = launch(root, storageDriver);
    const ready = await waitUntilReady(daemon, docker, options.readyTimeoutMs ?? 60_000);
    if (ready === "ready") {
      return {
        host,
        configDir,
        root,
        pid: daemon.pid,
        storageDriver,
        docker,
        stop: once(() => stopDaemon(daemon, docker)),
      };
    }
    await stopDaemon(daemon, docker, { keepRoot: true });
    failures.push(
      `--storage-driver=${storageDriver}: ${ready} after ${Date.now() - started} ms; daemon log:\n${summarise(daemon.log)}`,
    );
    // a daemon that hung (rather than refusing the driver) will not do better with vfs
    if (ready === "timed out") break;
    rmSync(join(root, "data"), { recursive: true, force: true });
  }
  await removeRoot(root);
  throw new Error(`dockerd did not start:\n${failures.join("\n\n")}`);
}

interface Daemon {
  child: ChildProcess;
  pid: number;
  root: string;
  log: string;
  exited: boolean;
}

function launch(root: string, storageDriver: string): Daemon {
  const marker = basename(root);
  const log = join(root, `dockerd-${storageDriver}.log`);
  // the daemon's identity key would otherwise land in /etc/docker/key.json
  writeFileSync(
    join(root, "daemon.json"),
    `${JSON.stringify({ "deprecated-key-path": join(root, "key.json") })}\n`,
  );
  const logFd = openSync(log, "a");
  const child = spawn(
    DOCKERD,
    [
      `--config-file=${join(root, "daemon.json")}`,
      `--data-root=${join(root, "data")}`,
      `--exec-root=${join(root, "exec")}`,
      `--pidfile=${join(root, "dockerd.pid")}`,
      `--host=unix://${join(root, "docker.sock")}`,
      `--containerd-namespace=${marker}`,
      `--containerd-plugins-namespace=${marker}-plugins`,
      `--storage-driver=${storageDriver}`,
      "--bridge=none",
      "--iptables=false",
      "--ip6tables=false",
      "--ip-forward=false",
      "--ip-masq=false",
      "--userland-proxy=false",
    ],
    { env: { PATH: SYSTEM_PATH }, stdio: ["ignore", logFd, logFd] },
  );
  closeSync(logFd);
  child.unref();
  if (child.pid === undefined) throw new Error(`could not spawn ${DOCKERD}`);
  const daemon: Daemon = { child, pid: child.pid, root, log, exited: false };
  // killed if this process dies first; the next startDockerd sweeps what that leaves
  killOnExit(child.pid);
  child.on("exit", () => {
    daemon.exited = true;
    release(daemon.pid);
  });
  child.on("error", () => {
    daemon.exited = true;
  });
  return daemon;
}

async function waitUntilReady(
  daemon: Daemon,
  docker: Dockerd["docker"],
  timeoutMs: number,
): Promise<"ready" | "exited" | "timed out"> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (daemon.exited) return "exited";
    const version = await docker(["version", "--format", "{{.Server.Version}}"], { timeoutMs: 5_000 });
    if (version.code === 0) return "ready";
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return "timed out";
}

async function stopDaemon(
  daemon: Daemon,
  docker: Dockerd["docker"],
  options: { keepRoot?: boolean } = {},
): Promise<void> {
  if (!daemon.exited) {
    // running containers would leave shims and mounts behind
    const ids = await docker(["ps", "-aq"], { timeoutMs: 15_000 });
    const containers = ids.code === 0 ? ids.stdout.split("\n").filter((id) => id !== "") : [];
    if (containers.length > 0) await docker(["rm", "-f", ...containers], { timeoutMs: 30_000 });
    signalAll([daemon.pid], "SIGTERM");
    if (!(await waitFor(() => daemon.exited, 20_000))) signalAll([daemon.pid], "SIGKILL");
    await waitFor(() => daemon.exited, 5_000);
  }
  await killMarked(basename(daemon.root), 2_000);
  if (options.keepRoot === true) {
    await unmountUnder(daemon.root);
  } else {
    await removeRoot(daemon.root);
  }
}

/**
 * Stops the processes whose command line names this daemon's dir or namespace (dockerd,
 * containerd, shims) and everything they started (containers outlive their shim otherwise).
 */
async function killMarked(marker: string, graceMs: number): Promise<void> {
  const pids = withDescendants(findProcesses(marker));
  if (pids.length === 0) return;
  if (graceMs > 0) {
    signalAll(pids, "SIGTERM");
    if (await waitFor(() => pids.every((pid) => !isAlive(pid)), graceMs)) return;
  }
  signalAll(pids, "SIGKILL");
  await waitFor(() => pids.every((pid) => !isAlive(pid)), 5_000);
}

/** Lazily unmounts everything mounted at or below `dir`, deepest first. */
async function unmountUnder(dir: string): Promise<void> {
  const mountPoints = readFileSync("/proc/self/mounts", "utf8")
    .split("\n")
    .map((line) => (line.split(" ")[1] ?? "").replace(/\\040/g, " "))
    .filter((point) => point === dir || point.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const point of mountPoints) {
    await run("/bin/umount", ["-l", point], { env: { PATH: SYSTEM_PATH }, timeoutMs: 10_000 });
  }
}

async function removeRoot(root: string): Promise<void> {
  await unmountUnder(root);
  rmSync(root, { recursive: true, force: true });
}

/** Removes the dirs, processes and mounts of earlier runs whose owning process has died. */
async function sweepLeftovers(): Promise<void> {
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(DIR_PREFIX)) continue;
    const root = join(tmpdir(), name);
    let owner = 0;
    try {
      owner = Number.parseInt(readFileSync(join(root, "owner"), "utf8"), 10);
    } catch {
      // no owner file: another run between mkdtemp and writing it, or one that crashed there
      if (Date.now() - statSync(root).mtimeMs < 60_000) continue;
    }
    if (owner > 0 && isAlive(owner)) continue;
    await killMarked(name, 0);
    await removeRoot(root);
  }
}

/** The daemon log's warnings and errors (the reason it failed is among them), then its last lines. */
function summarise(path: string): string {
  let lines: string[];
  try {
    lines = readFileSync(path, "utf8").trimEnd().split("\n");
  } catch {
    return "(no log)";
  }
  const important = lines.filter((line) => !line.includes("level=info") && !line.includes("level=debug"));
  return [...important.slice(-20), "--- last lines ---", ...lines.slice(-10)].join("\n");
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => {
    done ??= fn();
    return done;
  };
}

/** Whether an ELF file has no program interpreter, i.e. runs in an empty image. */
function isStaticElf(path: string): boolean {
  const elf = readFileSync(path);
  if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) return false; // 64-bit little-endian
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    if (elf.readUInt32LE(phoff + i * phentsize) === 3) return false; // PT_INTERP
  }
  return true;
}

/** The busybox applets linked into test images. */
export const BUSYBOX_APPLETS = [
  "sh",
  "sleep",
  "echo",
  "cat",
  "httpd",
  "true",
  "false",
  "head",
  "tr",
  "wget",
  "ls",
  "id",
  "dd",
  "kill",
  "ps",
] as const;

/**
 * Builds a tiny image FROM scratch: /bin/busybox (Debian's busybox-static) with symlinks for
 * BUSYBOX_APPLETS and /hello.txt holding `content`, tagged `tag`, with the legacy builder
 * (offline, no RUN step so no container is needed). Returns the image id.
 */
export async function buildBusyboxImage(
  d: Dockerd,
  tag: string,
  content = "hello from wharf\n",
): Promise<string> {
  if (!existsSync(BUSYBOX) || !isStaticElf(BUSYBOX)) {
    throw new Error(`${BUSYBOX} is missing or not a static 64-bit binary: apt-get install busybox-static`);
  }
  const context = mkdtempSync(join(d.root, "build-"));
  try {
    const bin = join(context, "rootfs", "bin");
    mkdirSync(bin, { recursive: true });
    copyFileSync(BUSYBOX, join(bin, "busybox"));
    for (const applet of BUSYBOX_APPLETS) symlinkSync("busybox", join(bin, applet));
    writeFileSync(join(context, "rootfs", "hello.txt"), content);
    writeFileSync(join(context, "Dockerfile"), 'FROM scratch\nCOPY rootfs/ /\nCMD ["/bin/sh"]\n');
    check(`docker build -t ${tag}`, await d.docker(["build", "--quiet", "--tag", tag, context]));
    const inspect = check(
      `docker image inspect ${tag}`,
      await d.docker(["image", "inspect", "--format", "{{.Id}}", tag], { timeoutMs: 30_000 }),
    );
    return inspect.stdout.trim();
  } finally {
    rmSync(context, { recursive: true, force: true });
  }
}
