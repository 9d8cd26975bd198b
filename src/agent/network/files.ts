/**
 * The /etc/hosts, /etc/resolv.conf and /etc/hostname a task's containers get.
 * Content builders are pure; the I/O is at the end.
 */

import { access, readFile } from "node:fs/promises";
import { join } from "node:path";
import { type TaskRecord, writeAtomically } from "./state.ts";

export function hostsFile(hostname: string, ipv4Address: string | undefined): string {
  const lines = [
    ipv4Address ? "127.0.0.1\tlocalhost" : `127.0.0.1\tlocalhost ${hostname}`,
    "::1\tlocalhost ip6-localhost ip6-loopback",
    "fe00::0\tip6-localnet",
    "ff00::0\tip6-mcastprefix",
    "ff02::1\tip6-allnodes",
    "ff02::2\tip6-allrouters",
  ];
  if (ipv4Address) lines.push(`${ipv4Address}\t${hostname}`);
  return `${lines.join("\n")}\n`;
}

function isLoopbackNameserver(line: string): boolean {
  const match = /^\s*nameserver\s+(\S+)/.exec(line);
  if (!match?.[1]) return false;
  const address = match[1];
  return address.startsWith("127.") || address === "::1" || address.startsWith("::1%");
}

function nameserverCount(text: string): number {
  return text.split("\n").filter((line) => /^\s*nameserver\s+\S+/.test(line)).length;
}

/**
 * The resolv.conf for a task in its own namespace: the host's, without loopback
 * nameservers (they would point at the task's own loopback).
 */
export function taskResolvConf(hostResolvConf: string): string {
  const kept = hostResolvConf.split("\n").filter((line) => !isLoopbackNameserver(line));
  const text = kept.join("\n").trimEnd();
  return text ? `${text}\n` : "";
}

/**
 * The host's resolver configuration. When /etc/resolv.conf names only a local
 * stub (systemd-resolved's 127.0.0.53), the upstream list systemd-resolved keeps is used instead.
 */
export async function readHostResolvConf(forNamespace: boolean): Promise<string> {
  const etc = await readFile("/etc/resolv.conf", "utf8").catch(() => "");
  if (!forNamespace) return etc;
  const filtered = taskResolvConf(etc);
  if (nameserverCount(filtered) > 0 || nameserverCount(etc) === 0) return filtered;
  const upstream = await readFile("/run/systemd/resolve/resolv.conf", "utf8").catch(() => "");
  const upstreamFiltered = taskResolvConf(upstream);
  return nameserverCount(upstreamFiltered) > 0 ? upstreamFiltered : filtered;
}

/** A container's /etc/hosts: the task's, with its `extraHosts` appended as Docker's --add-host does. */
export function withExtraHosts(
  hosts: string,
  entries: ReadonlyArray<{ hostname: string; ipAddress: string }>,
): string {
  if (entries.length === 0) return hosts;
  const base = hosts === "" || hosts.endsWith("\n") ? hosts : `${hosts}\n`;
  return `${base}${entries.map((e) => `${e.ipAddress}\t${e.hostname}`).join("\n")}\n`;
}

/** A container's /etc/resolv.conf with its `dnsServers` in place of the nameservers (Docker's --dns); search and options stay. */
export function withNameservers(resolvConf: string, servers: readonly string[]): string {
  if (servers.length === 0) return resolvConf;
  const kept = resolvConf.split("\n").filter((line) => line !== "" && !/^\s*nameserver\s/.test(line));
  return `${[...servers.map((server) => `nameserver ${server}`), ...kept].join("\n")}\n`;
}

export function hostnameFile(hostname: string): string {
  return `${hostname}\n`;
}

const NAMES = ["hosts", "resolv.conf", "hostname"] as const;

export async function writeFiles(dir: string, record: TaskRecord, resolvConf: string): Promise<void> {
  // Host mode shares the node's network, so its containers see the node's hosts file (as Docker does).
  const hosts =
    record.mode === "host"
      ? await readFile("/etc/hosts", "utf8").catch(() => hostsFile(record.hostname, undefined))
      : hostsFile(record.hostname, record.ipv4Address);
  await writeAtomically(join(dir, "hosts"), hosts);
  await writeAtomically(join(dir, "resolv.conf"), resolvConf);
  await writeAtomically(join(dir, "hostname"), hostnameFile(record.hostname));
}

export async function filesExist(dir: string): Promise<boolean> {
  try {
    for (const name of NAMES) await access(join(dir, name));
    return true;
  } catch {
    return false;
  }
}
