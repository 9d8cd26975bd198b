/**
 * The mounts of a container: runc's standard set (/proc, /dev, /dev/pts,
 * /dev/shm, /dev/mqueue, /sys, the cgroup tree), then the container's tmpfs
 * and bind mounts, parents before children as Docker orders them.
 */

import { RuntimeError } from "./errors.ts";
import type { OciMount } from "./oci.ts";

export interface TmpfsMount {
  containerPath: string;
  /** MiB */
  size: number;
  mountOptions?: string[];
}

export interface MountsInput {
  privileged: boolean;
  /** /dev/shm size in MiB; Docker's 64 MiB when absent. */
  sharedMemorySize: number | undefined;
  tmpfs: TmpfsMount[];
  binds: { source: string; destination: string; readonly?: boolean }[];
  /** Host path of the init binary to bind at /sbin/docker-init. */
  init: string | undefined;
}

const DEFAULT_SHM_MIB = 64;
/** Where the init binary appears in the container, as with Docker's `--init`. */
export const INIT_DESTINATION = "/sbin/docker-init";

/** Options that cancel each other; the later one wins. */
const OPPOSITES: Record<string, string> = {
  ro: "rw",
  rw: "ro",
  exec: "noexec",
  noexec: "exec",
  suid: "nosuid",
  nosuid: "suid",
  dev: "nodev",
  nodev: "dev",
  atime: "noatime",
  noatime: "atime",
  diratime: "nodiratime",
  nodiratime: "diratime",
  relatime: "norelatime",
  norelatime: "relatime",
  strictatime: "nostrictatime",
  nostrictatime: "strictatime",
  sync: "async",
  async: "sync",
  mand: "nomand",
  nomand: "mand",
};

/** Docker's tmpfs defaults (rw, noexec, nosuid, nodev) merged with the user's options and the size. */
export function tmpfsOptions(sizeMiB: number, userOptions: readonly string[]): string[] {
  const options = ["rw", "noexec", "nosuid", "nodev"];
  const keyed = new Map<string, string>();
  for (const raw of userOptions) {
    const option = raw.trim();
    if (option === "" || option === "defaults") continue;
    const eq = option.indexOf("=");
    if (eq > 0) {
      keyed.set(option.slice(0, eq), option);
      continue;
    }
    const opposite = OPPOSITES[option];
    if (opposite !== undefined) {
      const at = options.indexOf(opposite);
      if (at >= 0) options.splice(at, 1);
    }
    if (!options.includes(option)) options.push(option);
  }
  if (!Number.isInteger(sizeMiB) || sizeMiB <= 0) {
    throw new RuntimeError("invalid_spec", "tmpfs size must be a positive number of MiB");
  }
  keyed.set("size", `size=${sizeMiB}m`);
  return [...options, ...keyed.values()];
}

function checkDestination(path: string): string {
  if (!path.startsWith("/") || path.split("/").includes("..")) {
    throw new RuntimeError(
      "invalid_spec",
      `mount destination must be an absolute path without "..": ${path}`,
    );
  }
  const clean = path.replace(/\/+/g, "/").replace(/(.)\/$/, "$1");
  if (clean === "/") {
    throw new RuntimeError("invalid_spec", "nothing can be mounted over the container's root");
  }
  return clean;
}

function depth(path: string): number {
  return path === "/" ? 0 : path.split("/").length - 1;
}

/** The standard mounts, as `runc spec` writes them (and Docker uses). */
function standardMounts(privileged: boolean, shmMiB: number): OciMount[] {
  const sysOptions = privileged ? ["nosuid", "noexec", "nodev"] : ["nosuid", "noexec", "nodev", "ro"];
  return [
    { destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"] },
    {
      destination: "/dev",
      type: "tmpfs",
      source: "tmpfs",
      options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
      destination: "/dev/pts",
      type: "devpts",
      source: "devpts",
      options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {
      destination: "/dev/shm",
      type: "tmpfs",
      source: "shm",
      options: ["nosuid", "noexec", "nodev", "mode=1777", `size=${shmMiB}m`],
    },
    { destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"] },
    { destination: "/sys", type: "sysfs", source: "sysfs", options: sysOptions },
    {
      destination: "/sys/fs/cgroup",
      type: "cgroup",
      source: "cgroup",
      options: ["nosuid", "noexec", "nodev", "relatime", privileged ? "rw" : "ro"],
    },
  ];
}

export function containerMounts(input: MountsInput): OciMount[] {
  const shm = input.sharedMemorySize ?? DEFAULT_SHM_MIB;
  if (!Number.isInteger(shm) || shm <= 0) {
    throw new RuntimeError("invalid_spec", "sharedMemorySize must be a positive number of MiB");
  }
  const user: OciMount[] = [];
  for (const t of input.tmpfs) {
    user.push({
      destination: checkDestination(t.containerPath),
      type: "tmpfs",
      source: "tmpfs",
      options: tmpfsOptions(t.size, t.mountOptions ?? []),
    });
  }
  for (const b of input.binds) {
    if (!b.source.startsWith("/")) {
      throw new RuntimeError("invalid_spec", `bind mount source must be an absolute path: ${b.source}`);
    }
    user.push({
      destination: checkDestination(b.destination),
      type: "bind",
      source: b.source,
      options: ["rbind", "rprivate", b.readonly === true ? "ro" : "rw"],
    });
  }
  if (input.init !== undefined) {
    if (!input.init.startsWith("/")) throw new RuntimeError("invalid_spec", "initPath must be absolute");
    user.push({ destination: INIT_DESTINATION, type: "bind", source: input.init, options: ["bind", "ro"] });
  }
  const seen = new Set<string>();
  for (const m of user) {
    if (seen.has(m.destination)) {
      throw new RuntimeError("invalid_spec", `two mounts share the destination ${m.destination}`);
    }
    seen.add(m.destination);
  }
  // A container mount replaces a standard mount at the same place (a tmpfs /dev/shm, say).
  const standard = standardMounts(input.privileged, shm).filter((m) => !seen.has(m.destination));
  // Stable sort: parents before children, so a child is not hidden by its parent's mount.
  const ordered = user
    .map((m, i) => ({ m, i }))
    .sort((a, b) => depth(a.m.destination) - depth(b.m.destination) || a.i - b.i);
  return [...standard, ...ordered.map(({ m }) => m)];
}
