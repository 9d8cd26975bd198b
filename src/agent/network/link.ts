/**
 * Links and network namespaces through iproute2: the node's bridge, a task's
 * named namespace, and the veth pair that joins them.
 */

import { createHash } from "node:crypto";
import { access } from "node:fs/promises";
import { run, succeeds } from "./exec.ts";

const NETNS_DIR = "/run/netns";
/** The interface name a task sees inside its namespace. */
export const TASK_INTERFACE = "eth0";

export function netnsName(taskId: string): string {
  return `wharf-${taskId}`;
}

export function netnsPath(taskId: string): string {
  return `${NETNS_DIR}/${netnsName(taskId)}`;
}

/**
 * A task's hostname when its definition names none: 12 hex digits of its ID, as Docker takes 12
 * of a container's. The last 12, which are random: the first ones are the time the task was made
 * at, the same for every task one RunTask call starts.
 */
export function defaultHostname(taskId: string): string {
  return taskId.slice(-12);
}

/** The host end of a task's veth: short (IFNAMSIZ is 16) and the same every time for a bridge and task. */
export function hostVethName(bridge: string, taskId: string): string {
  return `wv${createHash("sha256").update(`${bridge}\0${taskId}`).digest("hex").slice(0, 11)}`;
}

/** A locally administered MAC derived from the IPv4 address, as Docker does: no stale ARP entries on reuse. */
export function macForAddress(address: number): string {
  const bytes = [0x02, 0x42, address >>> 24, (address >>> 16) & 255, (address >>> 8) & 255, address & 255];
  return bytes.map((b) => b.toString(16).padStart(2, "0")).join(":");
}

/** A stable locally administered MAC for the bridge, so it does not follow its ports' addresses. */
function bridgeMac(bridge: string): string {
  const hash = createHash("sha256").update(`wharf-bridge\0${bridge}`).digest();
  const bytes = [0x02, ...hash.subarray(0, 5)];
  return bytes.map((b) => b.toString(16).padStart(2, "0")).join(":");
}

function ip(args: readonly string[]): Promise<string> {
  return run("ip", args);
}

export function linkExists(name: string, netns?: string): Promise<boolean> {
  return succeeds("ip", [...(netns ? ["-n", netns] : []), "-o", "link", "show", "dev", name]);
}

export async function netnsExists(name: string): Promise<boolean> {
  try {
    await access(`${NETNS_DIR}/${name}`);
    return true;
  } catch {
    return false;
  }
}

/** Creates the bridge if missing, gives it the gateway address and brings it up. */
export async function ensureBridge(bridge: string, gatewayCidr: string, mtu: number): Promise<void> {
  if (!(await linkExists(bridge))) {
    try {
      await ip([
        "link",
        "add",
        "name",
        bridge,
        "address",
        bridgeMac(bridge),
        "mtu",
        String(mtu),
        "type",
        "bridge",
      ]);
    } catch (error) {
      if (!(await linkExists(bridge))) throw error;
    }
  }
  await ip(["addr", "replace", gatewayCidr, "dev", bridge]);
  await ip(["link", "set", "dev", bridge, "up"]);
}

/** The MTU of the interface that carries the default route, or 1500. */
export async function uplinkMtu(): Promise<number> {
  try {
    const routes = JSON.parse(await ip(["-j", "route", "show", "default"])) as { dev?: string }[];
    const dev = routes[0]?.dev;
    if (!dev) return 1500;
    const links = JSON.parse(await ip(["-j", "link", "show", "dev", dev])) as { mtu?: number }[];
    return links[0]?.mtu ?? 1500;
  } catch {
    return 1500;
  }
}

export interface VethOptions {
  hostName: string;
  netns: string;
  bridge: string;
  cidr: string;
  gateway: string;
  mac: string;
  mtu: number;
}

/** A task's namespace, and the veth pair that joins it to the bridge when it has an address. */
export interface TaskLinks {
  netns: string;
  veth?: VethOptions;
}

/** Batch tokens are names, addresses and numbers: nothing `ip -batch` would split, quote or skip. */
const BATCH_TOKEN = /^[A-Za-z0-9_.:/@-]+$/;

function batchLine(tokens: readonly string[]): string {
  for (const token of tokens) {
    if (!BATCH_TOKEN.test(token)) throw new Error(`unsafe token for ip -batch: ${JSON.stringify(token)}`);
  }
  return tokens.join(" ");
}

/**
 * The `ip -batch` lines run in the node's namespace: the task's namespace, and the
 * veth pair with its host end on the bridge (hairpin on: a task may reach its own
 * published port through the node's address) and its task end inside the namespace.
 */
export function hostBatch(links: TaskLinks): string[] {
  const lines = [batchLine(["netns", "add", links.netns])];
  const o = links.veth;
  if (o === undefined) return lines;
  const mtu = String(o.mtu);
  const peer = ["peer", "name", TASK_INTERFACE, "address", o.mac, "mtu", mtu, "netns", o.netns];
  lines.push(
    batchLine(["link", "add", o.hostName, "mtu", mtu, "master", o.bridge, "up", "type", "veth", ...peer]),
    batchLine(["link", "set", "dev", o.hostName, "type", "bridge_slave", "hairpin", "on"]),
  );
  return lines;
}

/** The `ip -n <netns> -batch` lines run inside the task's namespace: loopback, address, default route. */
export function namespaceBatch(links: TaskLinks): string[] {
  const lines = [batchLine(["link", "set", "dev", "lo", "up"])];
  const o = links.veth;
  if (o === undefined) return lines;
  lines.push(
    batchLine(["addr", "add", o.cidr, "dev", TASK_INTERFACE]),
    batchLine(["link", "set", "dev", TASK_INTERFACE, "up"]),
    batchLine(["route", "add", "default", "via", o.gateway, "dev", TASK_INTERFACE]),
  );
  return lines;
}

/**
 * Runs the host batch ($1), then the namespace batch ($2) in namespace $3. The batches come as
 * arguments, never spliced into the script text.
 */
const TASK_LINKS_SCRIPT = 'printf "%s\\n" "$1" | ip -batch - && printf "%s\\n" "$2" | ip -n "$3" -batch -';

/**
 * Makes a task's namespace and veth pair: two `ip -batch` runs (one per namespace) under one
 * small shell, so that the agent forks once (a fork of the agent's large process is what costs).
 */
export async function createTaskLinks(links: TaskLinks): Promise<void> {
  const host = hostBatch(links).join("\n");
  const namespace = namespaceBatch(links).join("\n");
  await run("/bin/sh", ["-c", TASK_LINKS_SCRIPT, "wharf-links", host, namespace, links.netns]);
}

export interface InterfaceState {
  mac: string;
  ipv4Address?: string;
  prefix?: number;
}

/** The task's interface as the kernel has it, or undefined when it is gone. */
export async function readTaskInterface(netns: string): Promise<InterfaceState | undefined> {
  let text: string;
  try {
    text = await ip(["-n", netns, "-j", "addr", "show", "dev", TASK_INTERFACE]);
  } catch {
    return undefined;
  }
  const links = JSON.parse(text) as {
    address?: string;
    addr_info?: { family?: string; local?: string; prefixlen?: number }[];
  }[];
  const link = links[0];
  if (!link?.address) return undefined;
  const inet = link.addr_info?.find((a) => a.family === "inet");
  return {
    mac: link.address,
    ...(inet?.local ? { ipv4Address: inet.local } : {}),
    ...(inet?.prefixlen !== undefined ? { prefix: inet.prefixlen } : {}),
  };
}

/** Deletes a link if it exists (deleting one end of a veth removes both). */
export async function deleteLink(name: string): Promise<void> {
  if (!(await linkExists(name))) return;
  try {
    await ip(["link", "del", "dev", name]);
  } catch (error) {
    if (await linkExists(name)) throw error;
  }
}

/**
 * Deletes a task's veth (when it may have one) and namespace with one `ip -batch`;
 * whatever was already gone is fine, whatever is left is an error.
 */
export async function deleteTaskLinks(veth: string, netns: string, mayHaveVeth: boolean): Promise<void> {
  const lines: string[] = [];
  // The veth first: deleting the namespace removes it too, but only once the kernel gets to it.
  if (mayHaveVeth) lines.push(batchLine(["link", "del", "dev", veth]));
  if (await netnsExists(netns)) lines.push(batchLine(["netns", "del", netns]));
  if (lines.length === 0) return;
  try {
    await run("ip", ["-force", "-batch", "-"], { input: `${lines.join("\n")}\n` });
  } catch (error) {
    if ((mayHaveVeth && (await linkExists(veth))) || (await netnsExists(netns))) throw error;
  }
}

/** Deletes a named namespace if it exists; its interfaces go with it once no process holds it. */
export async function deleteNetns(name: string): Promise<void> {
  if (!(await netnsExists(name))) return;
  try {
    await ip(["netns", "del", name]);
  } catch (error) {
    if (await netnsExists(name)) throw error;
  }
}
