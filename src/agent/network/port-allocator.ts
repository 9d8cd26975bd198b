/**
 * Chooses the host ports of one task's port mappings: static ports are checked
 * (not another task's, not held by a socket on the host), dynamic ones are
 * picked from the ephemeral range.
 */

import { NetworkError } from "./errors.ts";
import { canBind, dynamicCandidates, hostSocketPorts, type Protocol } from "./ports.ts";

export interface PortRequest {
  containerPort: number;
  /** 0 or undefined: pick one from the range. */
  hostPort?: number;
  protocol: Protocol;
}

export interface PortAllocatorDeps {
  range: readonly [number, number];
  /** Host ports other tasks hold, by protocol. */
  taken: Record<Protocol, ReadonlySet<number>>;
  /** The last dynamic port handed out, by protocol (updated in place). */
  lastAssigned: Map<Protocol, number>;
}

export class PortInUseError extends NetworkError {
  readonly port: number;
  readonly protocol: Protocol;

  constructor(port: number, protocol: Protocol, holder: string) {
    super("PORT_IN_USE", `host port ${port}/${protocol} is already in use ${holder}`);
    this.port = port;
    this.protocol = protocol;
  }
}

/** The host port for each request, in order. */
export async function allocatePorts(
  requests: readonly PortRequest[],
  deps: PortAllocatorDeps,
): Promise<number[]> {
  const chosen: Record<Protocol, Set<number>> = { tcp: new Set(), udp: new Set() };
  const result: number[] = [];
  // Static ports first, so a dynamic pick never takes a port a later static mapping names.
  for (const request of requests) {
    const port = request.hostPort ?? 0;
    if (port === 0) continue;
    const { protocol } = request;
    if (chosen[protocol].has(port)) {
      throw new PortInUseError(port, protocol, "by another mapping of this task");
    }
    if (deps.taken[protocol].has(port)) throw new PortInUseError(port, protocol, "by another task");
    if (!(await canBind(protocol, port))) throw new PortInUseError(port, protocol, "on the host");
    chosen[protocol].add(port);
  }
  // The ports no dynamic pick may take, per protocol: made once, grown with each pick (a port
  // range is hundreds of mappings).
  const skips: Partial<Record<Protocol, Set<number>>> = {};
  for (const request of requests) {
    const { protocol } = request;
    if (request.hostPort) {
      result.push(request.hostPort);
      continue;
    }
    let skip = skips[protocol];
    if (skip === undefined) {
      const sockets = await hostSocketPorts(protocol);
      skip = new Set([...deps.taken[protocol], ...chosen[protocol], ...sockets]);
      skips[protocol] = skip;
    }
    let picked: number | undefined;
    for (const candidate of dynamicCandidates(deps.range, deps.lastAssigned.get(protocol), skip)) {
      if (await canBind(protocol, candidate)) {
        picked = candidate;
        break;
      }
    }
    if (picked === undefined) {
      throw new NetworkError("NO_FREE_PORT", `no free ${protocol} host port in ${deps.range.join("-")}`);
    }
    chosen[protocol].add(picked);
    skip.add(picked);
    deps.lastAssigned.set(protocol, picked);
    result.push(picked);
  }
  return result;
}
