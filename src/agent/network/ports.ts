/**
 * Host ports: which are taken on the host, the bind test for one port, and the
 * choice of a dynamic port from the ephemeral range.
 */

import { createSocket } from "node:dgram";
import { readFile } from "node:fs/promises";
import { createServer } from "node:net";

export type Protocol = "tcp" | "udp";

/** The Linux ECS agent's fallback when the kernel's ephemeral range cannot be read. */
export const ECS_DEFAULT_EPHEMERAL_RANGE: [number, number] = [49153, 65535];

/**
 * The dynamic host port range as the ECS agent picks it on Linux: the kernel's
 * `net.ipv4.ip_local_port_range`, or 49153–65535 when that is unreadable.
 */
export async function defaultEphemeralRange(): Promise<[number, number]> {
  try {
    const text = await readFile("/proc/sys/net/ipv4/ip_local_port_range", "utf8");
    const [low, high] = text.trim().split(/\s+/).map(Number);
    if (low !== undefined && high !== undefined && validPort(low) && validPort(high) && low <= high) {
      return [low, high];
    }
  } catch {
    // fall through to the ECS default
  }
  return [...ECS_DEFAULT_EPHEMERAL_RANGE];
}

export function validPort(port: number): boolean {
  return Number.isInteger(port) && port >= 1 && port <= 65535;
}

/**
 * Ports that sockets of this network namespace hold: listening TCP sockets and
 * bound UDP sockets, IPv4 and IPv6, read from /proc/net.
 */
export async function hostSocketPorts(protocol: Protocol): Promise<Set<number>> {
  const ports = new Set<number>();
  for (const file of [`/proc/net/${protocol}`, `/proc/net/${protocol}6`]) {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      const local = fields[1];
      const state = fields[3];
      if (local === undefined || state === undefined) continue;
      // TCP: only LISTEN (0A) holds a port against newcomers; UDP: any bound socket.
      if (protocol === "tcp" && state !== "0A") continue;
      const port = Number.parseInt(local.slice(local.lastIndexOf(":") + 1), 16);
      if (port > 0) ports.add(port);
    }
  }
  return ports;
}

/** Whether a socket can bind the port on all IPv4 addresses right now (the socket is closed again). */
export function canBind(protocol: Protocol, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (protocol === "tcp") {
      const server = createServer();
      server.once("error", () => resolve(false));
      server.listen({ port, host: "0.0.0.0", exclusive: true }, () => {
        server.close(() => resolve(true));
      });
      return;
    }
    const socket = createSocket({ type: "udp4" });
    socket.once("error", () => {
      socket.close();
      resolve(false);
    });
    socket.bind({ port, address: "0.0.0.0", exclusive: true }, () => {
      socket.close(() => resolve(true));
    });
  });
}

/**
 * Candidate dynamic ports in the order to try them: sequentially after the last
 * one handed out (as the ECS agent does), wrapping around the range, skipping
 * the ports in `taken`. Pure.
 */
export function* dynamicCandidates(
  range: readonly [number, number],
  lastAssigned: number | undefined,
  taken: ReadonlySet<number>,
): Generator<number> {
  const [low, high] = range;
  const size = high - low + 1;
  const start =
    lastAssigned !== undefined && lastAssigned >= low && lastAssigned < high ? lastAssigned + 1 : low;
  for (let i = 0; i < size; i++) {
    const port = low + ((start - low + i) % size);
    if (!taken.has(port)) yield port;
  }
}
