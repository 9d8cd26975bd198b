/**
 * Linux capabilities the way Docker grants them: a default set, then
 * `add`/`drop` (with "ALL"), or everything when privileged.
 */

import { readFile } from "node:fs/promises";
import { RuntimeError } from "./errors.ts";

/** Every capability up to Linux 5.9 (CAP_CHECKPOINT_RESTORE, number 40), in kernel order. */
export const ALL_CAPABILITIES: readonly string[] = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_DAC_READ_SEARCH",
  "CAP_FOWNER",
  "CAP_FSETID",
  "CAP_KILL",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETPCAP",
  "CAP_LINUX_IMMUTABLE",
  "CAP_NET_BIND_SERVICE",
  "CAP_NET_BROADCAST",
  "CAP_NET_ADMIN",
  "CAP_NET_RAW",
  "CAP_IPC_LOCK",
  "CAP_IPC_OWNER",
  "CAP_SYS_MODULE",
  "CAP_SYS_RAWIO",
  "CAP_SYS_CHROOT",
  "CAP_SYS_PTRACE",
  "CAP_SYS_PACCT",
  "CAP_SYS_ADMIN",
  "CAP_SYS_BOOT",
  "CAP_SYS_NICE",
  "CAP_SYS_RESOURCE",
  "CAP_SYS_TIME",
  "CAP_SYS_TTY_CONFIG",
  "CAP_MKNOD",
  "CAP_LEASE",
  "CAP_AUDIT_WRITE",
  "CAP_AUDIT_CONTROL",
  "CAP_SETFCAP",
  "CAP_MAC_OVERRIDE",
  "CAP_MAC_ADMIN",
  "CAP_SYSLOG",
  "CAP_WAKE_ALARM",
  "CAP_BLOCK_SUSPEND",
  "CAP_AUDIT_READ",
  "CAP_PERFMON",
  "CAP_BPF",
  "CAP_CHECKPOINT_RESTORE",
];

/** Docker's default set (moby `caps.DefaultCapabilities`). */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_MKNOD",
  "CAP_NET_RAW",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
  "CAP_AUDIT_WRITE",
];

const KNOWN = new Set(ALL_CAPABILITIES);

/** "sys_admin", "SYS_ADMIN" and "CAP_SYS_ADMIN" all name CAP_SYS_ADMIN; "ALL" stays "ALL". */
function normalize(names: readonly string[]): string[] {
  return names.map((raw) => {
    const upper = raw.trim().toUpperCase();
    if (upper === "ALL") return upper;
    const name = upper.startsWith("CAP_") ? upper : `CAP_${upper}`;
    if (!KNOWN.has(name)) {
      throw new RuntimeError("invalid_spec", `unknown capability "${raw}"`);
    }
    return name;
  });
}

/**
 * The capability set a container gets, following moby's `TweakCapabilities`.
 * `available` is what the agent itself can grant (its bounding set; all when
 * absent): privileged and "ALL" mean all of those, the defaults are trimmed to
 * them, and asking for one outside them is an error rather than a start failure.
 */
export function effectiveCapabilities(options: {
  add?: readonly string[] | undefined;
  drop?: readonly string[] | undefined;
  privileged?: boolean;
  available?: readonly string[] | undefined;
}): string[] {
  const available = options.available ?? ALL_CAPABILITIES;
  if (options.privileged === true) return ALL_CAPABILITIES.filter((c) => available.includes(c));
  const add = normalize(options.add ?? []);
  const drop = normalize(options.drop ?? []);
  for (const cap of add) {
    if (cap !== "ALL" && !available.includes(cap)) {
      throw new RuntimeError("invalid_spec", `capability ${cap} is not available on this node`);
    }
  }
  let caps: string[];
  if (add.includes("ALL")) {
    caps = ALL_CAPABILITIES.filter((c) => available.includes(c) && !drop.includes(c));
  } else if (drop.includes("ALL")) {
    caps = add;
  } else {
    caps = [...DEFAULT_CAPABILITIES.filter((c) => available.includes(c) && !drop.includes(c)), ...add];
  }
  return [...new Set(caps)];
}

/** Capability names in a hexadecimal mask as /proc/<pid>/status shows it (bit n = capability n). */
export function capabilitiesInMask(hex: string): string[] {
  const mask = BigInt(`0x${hex.trim()}`);
  return ALL_CAPABILITIES.filter((_, bit) => ((mask >> BigInt(bit)) & 1n) === 1n);
}

/** The capabilities this process can hand to a container: its bounding set. */
export async function boundingCapabilities(statusPath = "/proc/self/status"): Promise<string[]> {
  const status = await readFile(statusPath, "utf8");
  const hex = /^CapBnd:\s*([0-9a-fA-F]+)$/m.exec(status)?.[1];
  if (hex === undefined) throw new Error(`${statusPath} has no CapBnd line`);
  return capabilitiesInMask(hex);
}
