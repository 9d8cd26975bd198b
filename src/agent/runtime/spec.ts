/**
 * Builds the OCI runtime spec (a bundle's config.json) for one ECS container,
 * following what Docker would do for the same container definition on an
 * ECS instance. Pure: everything it needs comes in through the input.
 */

import { ULIMIT_NAMES } from "../../shared/ulimits.ts";
import { effectiveCapabilities } from "./capabilities.ts";
import { assertContainerId, RuntimeError } from "./errors.ts";
import { containerMounts, INIT_DESTINATION } from "./mounts.ts";
import {
  CONTAINER_ID_ANNOTATION,
  OCI_VERSION,
  type OciNamespace,
  type OciResources,
  type OciRlimit,
  type OciSpec,
  STOP_SIGNAL_ANNOTATION,
} from "./oci.ts";
import { resolveUser } from "./users.ts";

export { INIT_DESTINATION };

export interface ImageConfig {
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  WorkingDir?: string;
  User?: string;
  StopSignal?: string;
}

export interface ContainerDefinition {
  command?: string[];
  entryPoint?: string[];
  environment?: { name: string; value: string }[];
  workingDirectory?: string;
  user?: string;
  cpu?: number;
  memory?: number;
  memoryReservation?: number;
  ulimits?: { name: string; softLimit: number; hardLimit: number }[];
  linuxParameters?: {
    capabilities?: { add?: string[]; drop?: string[] };
    initProcessEnabled?: boolean;
    sharedMemorySize?: number;
    tmpfs?: { containerPath: string; size: number; mountOptions?: string[] }[];
  };
  privileged?: boolean;
  hostname?: string;
  dockerLabels?: Record<string, string>;
}

export interface BindMount {
  source: string;
  destination: string;
  readonly?: boolean;
}

export interface ContainerSpecInput {
  /** Container id, unique on the node; also the runc id. */
  id: string;
  /** Absolute path of the container's root (an overlay mount prepared by the caller). */
  rootfs: string;
  readonlyRootfs?: boolean;
  image: ImageConfig;
  container: ContainerDefinition;
  /** Contents of the image's /etc/passwd and /etc/group, to resolve user names. */
  passwd?: string;
  group?: string;
  hostname: string;
  /** Join this network namespace. Undefined means the host's network, unless `newNetns`. */
  netnsPath?: string;
  /** Without `netnsPath`: give the container a fresh namespace with only loopback instead of the host's. */
  newNetns?: boolean;
  /** Bind mounts: volumes, and /etc/hosts, /etc/resolv.conf, /etc/hostname when the caller made them. */
  mounts?: BindMount[];
  /** e.g. "/wharf/<task>/<container>". */
  cgroupsPath: string;
  /** Caps a container that has no `memory` of its own. */
  taskMemoryLimitMiB?: number;
  /** Host path of a static init (tini) used when `initProcessEnabled`; Docker calls it docker-init. */
  initPath?: string;
  /** Capabilities the agent can grant (`boundingCapabilities()`); all of them when absent. */
  availableCapabilities?: string[];
}

export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/** The ECS agent's floor for CPU shares (the kernel refuses less than 2). */
export const MIN_CPU_SHARES = 2;
const MAX_CPU_SHARES = 262144;
const MIB = 1024 * 1024;

const ULIMITS: ReadonlySet<string> = new Set(ULIMIT_NAMES);

/** Docker's merge of image and container entrypoint/command. */
export function processArgs(image: ImageConfig, container: ContainerDefinition): string[] {
  const entryPoint = container.entryPoint ?? [];
  const command = container.command ?? [];
  let args: string[];
  if (entryPoint.length > 0) {
    // A container-level entrypoint resets the image's Cmd.
    args = [...entryPoint, ...command];
  } else {
    args = [...(image.Entrypoint ?? []), ...(command.length > 0 ? command : (image.Cmd ?? []))];
  }
  if (args.length === 0) {
    throw new RuntimeError("invalid_spec", "no command: neither the container nor the image sets one");
  }
  return args;
}

/** PATH and HOSTNAME defaults, overlaid by the image's Env, overlaid by the container's environment. */
export function processEnv(image: ImageConfig, container: ContainerDefinition, hostname: string): string[] {
  const env = new Map<string, string>([
    ["PATH", `PATH=${DEFAULT_PATH}`],
    ["HOSTNAME", `HOSTNAME=${hostname}`],
  ]);
  for (const entry of image.Env ?? []) {
    const eq = entry.indexOf("=");
    env.set(eq < 0 ? entry : entry.slice(0, eq), entry);
  }
  for (const { name, value } of container.environment ?? []) {
    if (name === "" || name.includes("=")) {
      throw new RuntimeError("invalid_spec", `invalid environment variable name ${JSON.stringify(name)}`);
    }
    env.set(name, `${name}=${value}`);
  }
  return [...env.values()];
}

function rlimits(container: ContainerDefinition): OciRlimit[] {
  // Limits not set here are inherited from the agent, as Docker's containers inherit dockerd's.
  const limits = new Map<string, OciRlimit>();
  for (const { name, softLimit, hardLimit } of container.ulimits ?? []) {
    if (!ULIMITS.has(name)) throw new RuntimeError("invalid_spec", `unknown ulimit "${name}"`);
    if (!Number.isInteger(softLimit) || !Number.isInteger(hardLimit) || softLimit < -1 || hardLimit < -1) {
      throw new RuntimeError("invalid_spec", `ulimit "${name}" needs integer limits`);
    }
    // -1 means unlimited, as in Docker.
    const soft = softLimit === -1 ? Number.MAX_SAFE_INTEGER : softLimit;
    const hard = hardLimit === -1 ? Number.MAX_SAFE_INTEGER : hardLimit;
    if (soft > hard) {
      throw new RuntimeError(
        "invalid_spec",
        `ulimit "${name}": soft limit ${softLimit} exceeds hard limit ${hardLimit}`,
      );
    }
    limits.set(name, { type: `RLIMIT_${name.toUpperCase()}`, soft, hard });
  }
  return [...limits.values()];
}

function positiveMiB(what: string, value: number | undefined): number | undefined {
  if (value === undefined || value === 0) return undefined;
  if (!Number.isFinite(value) || value < 0) {
    throw new RuntimeError("invalid_spec", `${what} must be positive`);
  }
  return Math.floor(value * MIB);
}

function resources(input: ContainerSpecInput): OciResources {
  const { container } = input;
  const privileged = container.privileged === true;
  const res: OciResources = {
    devices: [privileged ? { allow: true, access: "rwm" } : { allow: false, access: "rwm" }],
  };
  const shares = Math.floor(container.cpu ?? 0);
  res.cpu = { shares: Math.min(MAX_CPU_SHARES, Math.max(MIN_CPU_SHARES, shares)) };
  const limit = positiveMiB("memory", container.memory || input.taskMemoryLimitMiB);
  const reservation = positiveMiB("memoryReservation", container.memoryReservation);
  if (limit !== undefined && reservation !== undefined && reservation > limit) {
    throw new RuntimeError("invalid_spec", "memoryReservation must not exceed memory");
  }
  if (limit !== undefined || reservation !== undefined) {
    res.memory = {};
    // swap equal to the limit: no swap on top of the memory limit, so OOM kills are predictable.
    if (limit !== undefined) res.memory = { limit, swap: limit };
    if (reservation !== undefined) res.memory.reservation = reservation;
  }
  return res;
}

function namespaces(input: ContainerSpecInput): OciNamespace[] {
  const list: OciNamespace[] = [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }];
  if (input.netnsPath !== undefined) {
    if (!input.netnsPath.startsWith("/")) {
      throw new RuntimeError("invalid_spec", `netnsPath must be absolute: ${input.netnsPath}`);
    }
    list.push({ type: "network", path: input.netnsPath });
  } else if (input.newNetns === true) {
    list.push({ type: "network" });
  }
  return list;
}

/** runc's default masked paths, plus the powercap tree Docker masks since CVE-2020-8694. */
const MASKED_PATHS = [
  "/proc/acpi",
  "/proc/asound",
  "/proc/kcore",
  "/proc/keys",
  "/proc/latency_stats",
  "/proc/timer_list",
  "/proc/timer_stats",
  "/proc/sched_debug",
  "/sys/firmware",
  "/proc/scsi",
  "/sys/devices/virtual/powercap",
];
const READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

export function buildSpec(input: ContainerSpecInput): OciSpec {
  assertContainerId(input.id);
  const { image, container } = input;
  if (!input.rootfs.startsWith("/")) {
    throw new RuntimeError("invalid_spec", "rootfs must be an absolute path");
  }
  if (!input.cgroupsPath.startsWith("/")) {
    throw new RuntimeError("invalid_spec", "cgroupsPath must be absolute");
  }
  const privileged = container.privileged === true;
  const linuxParameters = container.linuxParameters ?? {};

  let args = processArgs(image, container);
  if (linuxParameters.initProcessEnabled === true) {
    if (input.initPath === undefined) {
      throw new RuntimeError(
        "invalid_spec",
        "initProcessEnabled needs an init binary on the node (initPath)",
      );
    }
    args = [INIT_DESTINATION, "--", ...args];
  }
  const cwd = container.workingDirectory || image.WorkingDir || "/";
  if (!cwd.startsWith("/")) {
    throw new RuntimeError("invalid_spec", `working directory must be absolute: ${cwd}`);
  }
  const user = resolveUser(container.user || image.User || "", input.passwd, input.group);
  const caps = effectiveCapabilities({
    add: linuxParameters.capabilities?.add,
    drop: linuxParameters.capabilities?.drop,
    privileged,
    available: input.availableCapabilities,
  });

  const annotations: Record<string, string> = { ...container.dockerLabels };
  if (image.StopSignal) annotations[STOP_SIGNAL_ANNOTATION] = image.StopSignal;
  annotations[CONTAINER_ID_ANNOTATION] = input.id;

  return {
    ociVersion: OCI_VERSION,
    process: {
      terminal: false,
      user: {
        uid: user.uid,
        gid: user.gid,
        ...(user.additionalGids.length > 0 ? { additionalGids: user.additionalGids } : {}),
      },
      args,
      env: processEnv(image, container, input.hostname),
      cwd,
      capabilities: { bounding: caps, effective: caps, permitted: caps, inheritable: [], ambient: [] },
      rlimits: rlimits(container),
      noNewPrivileges: !privileged,
    },
    root: { path: input.rootfs, readonly: input.readonlyRootfs === true },
    hostname: input.hostname,
    mounts: containerMounts({
      privileged,
      sharedMemorySize: linuxParameters.sharedMemorySize,
      tmpfs: linuxParameters.tmpfs ?? [],
      binds: input.mounts ?? [],
      init: linuxParameters.initProcessEnabled === true ? input.initPath : undefined,
    }),
    annotations,
    linux: {
      resources: resources(input),
      cgroupsPath: input.cgroupsPath,
      namespaces: namespaces(input),
      maskedPaths: privileged ? [] : [...MASKED_PATHS],
      readonlyPaths: privileged ? [] : [...READONLY_PATHS],
    },
  };
}
