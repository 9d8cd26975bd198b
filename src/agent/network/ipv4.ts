/** IPv4 arithmetic for the node's task subnet. Pure: no I/O. */

import { invalidArgument } from "./errors.ts";

export interface Subnet {
  /** The network address as an unsigned 32-bit integer. */
  network: number;
  prefix: number;
}

export function parseAddress(text: string): number {
  const parts = text.split(".");
  if (parts.length !== 4) throw invalidArgument(`not an IPv4 address: ${text}`);
  let value = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) throw invalidArgument(`not an IPv4 address: ${text}`);
    value = value * 256 + Number(part);
  }
  return value;
}

export function formatAddress(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join(".");
}

export function isIPv4(text: string): boolean {
  try {
    parseAddress(text);
    return true;
  } catch {
    return false;
  }
}

/** Parses "a.b.c.d/n"; the address must be the network address and leave room for tasks. */
export function parseSubnet(cidr: string): Subnet {
  const [address, prefixText, ...rest] = cidr.split("/");
  if (address === undefined || prefixText === undefined || rest.length > 0 || !/^\d{1,2}$/.test(prefixText)) {
    throw invalidArgument(`not an IPv4 CIDR block: ${cidr}`);
  }
  const prefix = Number(prefixText);
  if (prefix < 8 || prefix > 30) throw invalidArgument(`subnet prefix must be between /8 and /30: ${cidr}`);
  const network = parseAddress(address);
  if ((network & ~maskOf(prefix)) >>> 0 !== 0) {
    throw invalidArgument(`${cidr} is not a network address (host bits set)`);
  }
  return { network, prefix };
}

function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export function formatSubnet(subnet: Subnet): string {
  return `${formatAddress(subnet.network)}/${subnet.prefix}`;
}

/** The bridge's own address: the first host address of the subnet. */
export function gatewayOf(subnet: Subnet): number {
  return subnet.network + 1;
}

export function contains(subnet: Subnet, address: number): boolean {
  return (address & maskOf(subnet.prefix)) >>> 0 === subnet.network;
}

/** Whether two CIDR blocks share any address. */
export function overlaps(a: Subnet, b: Subnet): boolean {
  const prefix = Math.min(a.prefix, b.prefix);
  return (a.network & maskOf(prefix)) >>> 0 === (b.network & maskOf(prefix)) >>> 0;
}

/**
 * The lowest task address of the subnet that is not taken: never the network
 * address, the gateway or the broadcast address. Undefined when the subnet is full.
 */
export function firstFreeAddress(subnet: Subnet, taken: ReadonlySet<number>): number | undefined {
  const broadcast = subnet.network + 2 ** (32 - subnet.prefix) - 1;
  for (let address = gatewayOf(subnet) + 1; address < broadcast; address++) {
    if (!taken.has(address)) return address;
  }
  return undefined;
}
