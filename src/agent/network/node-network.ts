/**
 * Per-task networking for the ECS network modes on one node:
 *
 * - awsvpc: the task gets its own namespace and an address on the node's bridge.
 * - bridge: the same, plus port mappings published on the node's host ports through DNAT.
 * - host: the task shares the node's namespace; its container ports are its host ports.
 * - none: its own namespace with only loopback.
 *
 * Addresses and host ports are reserved in a state directory before any kernel
 * state is made, so they survive agent restarts and recover() can find them again.
 */

import { join } from "node:path";
import { invalidArgument, NetworkError } from "./errors.ts";
import { run } from "./exec.ts";
import { filesExist, readHostResolvConf, writeFiles } from "./files.ts";
import type { RuleSpec } from "./iptables.ts";
import * as iptables from "./iptables.ts";
import {
  firstFreeAddress,
  formatAddress,
  formatSubnet,
  gatewayOf,
  isIPv4,
  parseAddress,
  parseSubnet,
  type Subnet,
} from "./ipv4.ts";
import * as link from "./link.ts";
import { allocatePorts } from "./port-allocator.ts";
import { defaultEphemeralRange, type Protocol, validPort } from "./ports.ts";
import { type BindingRecord, type NetworkMode, StateStore, type TaskRecord, validTaskId } from "./state.ts";

export const DEFAULT_BRIDGE = "wharf0";

export interface NodeNetworkConfig {
  /** The bridge tasks join; default "wharf0". */
  bridge?: string;
  /** This node's task subnet, e.g. "172.31.0.0/24"; the bridge gets its first address. */
  subnet: string;
  /** Where address and port reservations are persisted (they survive agent restarts). */
  stateDir: string;
  /** Dynamic host port range; default the kernel's ephemeral range, or 49153–65535, as the ECS agent does. */
  ephemeralPorts?: [number, number];
  /** Node addresses that published ports answer on (plus 127.0.0.1); default every local address. */
  hostAddresses?: string[];
  /** MTU of the bridge and veths; default the MTU of the interface carrying the default route. */
  mtu?: number;
}

export interface PortMapping {
  containerPort: number;
  hostPort?: number;
  protocol: Protocol;
}

export interface NetworkBinding {
  bindIP: string;
  containerPort: number;
  hostPort: number;
  protocol: Protocol;
}

export interface TaskNetwork {
  mode: NetworkMode;
  /** The namespace to join (runc's `linux.namespaces[{type:"network",path}]`); absent in host mode. */
  netnsPath?: string;
  ipv4Address?: string;
  macAddress?: string;
  gateway?: string;
  /** One per port mapping, in the order given (bridge and host modes; empty otherwise, as ECS reports). */
  bindings: NetworkBinding[];
  hostsFile: string;
  resolvConf: string;
  hostnameFile: string;
}

const MODES: readonly NetworkMode[] = ["awsvpc", "bridge", "host", "none"];
const INTERFACE_NAME = /^[A-Za-z0-9_-]{1,15}$/;

export class NodeNetwork {
  private readonly bridge: string;
  private readonly subnet: Subnet;
  private readonly gateway: string;
  private readonly hostAddresses: readonly string[] | undefined;
  private readonly store: StateStore;
  private readonly configuredRange: [number, number] | undefined;
  private readonly configuredMtu: number | undefined;
  /** The MTU of the bridge and veths, found once by init(). */
  private mtu: number | undefined;
  private readonly lastAssigned = new Map<Protocol, number>();
  /** setup/teardown/recover run one at a time, so reservations never race. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(config: NodeNetworkConfig) {
    this.bridge = config.bridge ?? DEFAULT_BRIDGE;
    if (!INTERFACE_NAME.test(this.bridge)) throw invalidArgument(`invalid bridge name: ${this.bridge}`);
    this.subnet = parseSubnet(config.subnet);
    this.gateway = formatAddress(gatewayOf(this.subnet));
    for (const address of config.hostAddresses ?? []) {
      if (!isIPv4(address)) throw invalidArgument(`host address is not IPv4: ${address}`);
    }
    this.hostAddresses = config.hostAddresses;
    const range = config.ephemeralPorts;
    if (range && !(validPort(range[0]) && validPort(range[1]) && range[0] <= range[1])) {
      throw invalidArgument(`invalid ephemeral port range: ${range.join("-")}`);
    }
    this.configuredRange = range;
    if (config.mtu !== undefined && !(Number.isInteger(config.mtu) && config.mtu >= 576)) {
      throw invalidArgument(`invalid MTU: ${config.mtu}`);
    }
    this.configuredMtu = config.mtu;
    this.store = new StateStore(config.stateDir);
  }

  /** Creates the bridge with its address, enables forwarding, route_localnet and the NAT rules; idempotent. */
  async init(): Promise<void> {
    const mtu = this.configuredMtu ?? (await link.uplinkMtu());
    this.mtu = mtu;
    await link.ensureBridge(this.bridge, `${this.gateway}/${this.subnet.prefix}`, mtu);
    await sysctl("net.ipv4.ip_forward", "1");
    // Lets OUTPUT-DNATed packets from 127.0.0.1 leave through the bridge.
    await sysctl(`net.ipv4.conf.${this.bridge}.route_localnet`, "1");
    await iptables.ensureChains();
    for (const { table, chain, spec } of iptables.bridgeRules(this.bridge, formatSubnet(this.subnet))) {
      await iptables.ensureRule(table, chain, spec);
    }
  }

  /**
   * Sets up one task's network, first tearing down whatever an earlier setup of
   * the same task left. Bindings follow `portMappings` in order.
   *
   * A task this node has no record of needs no teardown first: records are written
   * before any kernel state and removed after all of it, so there is nothing to
   * remove, unless something outside Wharf's records left a namespace or veth of
   * that name; then the first attempt fails, the leftovers go, and it is tried again.
   */
  async setup(
    taskId: string,
    mode: NetworkMode,
    portMappings: PortMapping[],
    hostname: string,
  ): Promise<TaskNetwork> {
    this.validate(taskId, mode, portMappings);
    return await this.exclusive(() =>
      this.setupLocked(taskId, mode, portMappings, hostname || link.defaultHostname(taskId)),
    );
  }

  /** Removes everything setup() made for the task; idempotent, tolerates partial state. */
  async teardown(taskId: string): Promise<void> {
    if (!validTaskId(taskId)) throw invalidArgument(`invalid task id: ${taskId}`);
    await this.exclusive(() => this.teardownLocked(taskId));
  }

  /**
   * After an agent restart: the networks of tasks whose namespace still exists,
   * with their published ports re-ensured. Records whose kernel state is gone are
   * torn down, and DNAT rules of this bridge that no record owns are deleted.
   */
  recover(): Promise<Map<string, TaskNetwork>> {
    return this.exclusive(async () => {
      await iptables.ensureChains();
      const networks = new Map<string, TaskNetwork>();
      for (const record of await this.store.list()) {
        const network = await this.recoverOne(record);
        if (network) networks.set(record.taskId, network);
        else await this.teardownLocked(record.taskId);
      }
      const prefix = `${iptables.bridgeComment(this.bridge)}:`;
      await iptables.deleteOwned((c) => c.startsWith(prefix) && !networks.has(c.slice(prefix.length)));
      return networks;
    });
  }

  /** Host ports held by this node's tasks (bridge and host modes), for RESOURCE:PORTS. */
  async usedPorts(): Promise<{ tcp: number[]; udp: number[] }> {
    const used: Record<Protocol, Set<number>> = { tcp: new Set(), udp: new Set() };
    for (const record of await this.store.list()) {
      for (const binding of record.bindings) used[binding.protocol].add(binding.hostPort);
    }
    const sorted = (ports: Set<number>) => [...ports].sort((a, b) => a - b);
    return { tcp: sorted(used.tcp), udp: sorted(used.udp) };
  }

  /**
   * Tears down every task, then removes the bridge and its rules, and Wharf's
   * chains once no other bridge uses them. For uninstalling and for tests.
   */
  destroy(): Promise<void> {
    return this.exclusive(async () => {
      for (const record of await this.store.list()) await this.teardownLocked(record.taskId);
      const own = iptables.bridgeComment(this.bridge);
      await iptables.deleteOwned((c) => c === own || c.startsWith(`${own}:`));
      await link.deleteLink(this.bridge);
      await iptables.removeChainsIfEmpty();
    });
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const result = this.queue.then(work, work);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private validate(taskId: string, mode: NetworkMode, mappings: readonly PortMapping[]): void {
    if (!validTaskId(taskId)) throw invalidArgument(`invalid task id: ${taskId}`);
    if (!MODES.includes(mode)) throw invalidArgument(`unknown network mode: ${mode}`);
    if (mode === "none" && mappings.length > 0) {
      throw invalidArgument("network mode none takes no port mappings");
    }
    for (const m of mappings) {
      if (!validPort(m.containerPort)) throw invalidArgument(`invalid container port: ${m.containerPort}`);
      if (m.protocol !== "tcp" && m.protocol !== "udp") {
        throw invalidArgument(`invalid protocol: ${m.protocol}`);
      }
      const hostPort = m.hostPort ?? 0;
      if (hostPort !== 0 && !validPort(hostPort)) throw invalidArgument(`invalid host port: ${hostPort}`);
      if ((mode === "host" || mode === "awsvpc") && hostPort !== 0 && hostPort !== m.containerPort) {
        throw invalidArgument(
          `in ${mode} mode the host port must equal the container port (${m.containerPort})`,
        );
      }
    }
  }

  private async setupLocked(
    taskId: string,
    mode: NetworkMode,
    mappings: readonly PortMapping[],
    hostname: string,
  ): Promise<TaskNetwork> {
    // Whatever an earlier setup of this task left goes first.
    if ((await this.store.get(taskId)) !== undefined) await this.teardownLocked(taskId);
    const others = await this.store.list();
    const record: TaskRecord = { version: 1, taskId, mode, bridge: this.bridge, bindings: [], hostname };
    if (mode === "awsvpc" || mode === "bridge") {
      const address = allocateAddress(this.subnet, others);
      record.ipv4Address = formatAddress(address);
      record.prefix = this.subnet.prefix;
      record.gateway = this.gateway;
    }
    if (mode === "bridge" || mode === "host") {
      record.bindings = await this.allocateBindings(taskId, mode, mappings, others);
    }
    // Reserve first: from here on, a crash leaves a record that teardown/recover clean up.
    await this.store.put(record);
    try {
      const files = readHostResolvConf(mode !== "host").then((resolvConf) =>
        writeFiles(this.store.filesDir(taskId), record, resolvConf),
      );
      // Settled before anything else happens, so a failure leaves no write behind the teardown.
      const [built, written] = await Promise.allSettled([this.buildOrReplace(record), files]);
      if (built.status === "rejected") throw built.reason;
      if (written.status === "rejected") throw written.reason;
    } catch (error) {
      await this.teardownLocked(taskId).catch(() => undefined);
      throw error;
    }
    return this.toNetwork(record);
  }

  private async allocateBindings(
    taskId: string,
    mode: NetworkMode,
    mappings: readonly PortMapping[],
    others: readonly TaskRecord[],
  ): Promise<BindingRecord[]> {
    if (mappings.length === 0) return [];
    const taken: Record<Protocol, Set<number>> = { tcp: new Set(), udp: new Set() };
    for (const other of others) {
      for (const binding of other.bindings) taken[binding.protocol].add(binding.hostPort);
    }
    // Ports other agents on this network namespace publish.
    const own = iptables.taskComment(this.bridge, taskId);
    for (const published of await iptables.publishedPorts()) {
      if (published.comment === own) continue;
      if (published.protocol === "tcp" || published.protocol === "udp") {
        taken[published.protocol].add(published.port);
      }
    }
    const requests = mappings.map((m) => ({
      containerPort: m.containerPort,
      hostPort: mode === "host" ? m.containerPort : (m.hostPort ?? 0),
      protocol: m.protocol,
    }));
    const range = this.configuredRange ?? (await defaultEphemeralRange());
    const hostPorts = await allocatePorts(requests, { range, taken, lastAssigned: this.lastAssigned });
    return mappings.map((m, i) => ({
      bindIP: "0.0.0.0",
      containerPort: m.containerPort,
      hostPort: hostPorts[i] ?? m.containerPort,
      protocol: m.protocol,
    }));
  }

  /**
   * Makes the kernel state of a reserved record. When a namespace or veth of the
   * task's name is in the way (left by something outside Wharf's records), it is
   * removed and the build tried once more.
   */
  private async buildOrReplace(record: TaskRecord): Promise<void> {
    try {
      await this.build(record);
    } catch (error) {
      if (!(await this.kernelLeftovers(record.taskId))) throw error;
      await this.removeKernelState(record.taskId, undefined);
      await this.build(record);
    }
  }

  private async kernelLeftovers(taskId: string): Promise<boolean> {
    return (
      (await link.netnsExists(link.netnsName(taskId))) ||
      (await link.linkExists(link.hostVethName(this.bridge, taskId)))
    );
  }

  /** The namespace and veth (two `ip -batch` runs), then the published ports (one `iptables-restore`). */
  private async build(record: TaskRecord): Promise<void> {
    if (record.mode === "host") return;
    const links: link.TaskLinks = { netns: link.netnsName(record.taskId) };
    if (record.ipv4Address && record.gateway) {
      links.veth = {
        hostName: link.hostVethName(this.bridge, record.taskId),
        netns: links.netns,
        bridge: this.bridge,
        cidr: `${record.ipv4Address}/${record.prefix ?? this.subnet.prefix}`,
        gateway: record.gateway,
        mac: link.macForAddress(parseAddress(record.ipv4Address)),
        mtu: this.mtu ?? this.configuredMtu ?? (await link.uplinkMtu()),
      };
    }
    await link.createTaskLinks(links);
    await this.publishNew(record);
  }

  /** The DNAT rules of a bridge-mode task's bindings: none for other modes or without port mappings. */
  private dnatRules(record: TaskRecord): RuleSpec[] {
    const address = record.ipv4Address;
    if (record.mode !== "bridge" || !address) return [];
    const comment = iptables.taskComment(this.bridge, record.taskId);
    const hostAddresses = this.hostAddresses && [...new Set([...this.hostAddresses, "127.0.0.1"])];
    return record.bindings.flatMap((b) =>
      iptables.dnatRules(
        { protocol: b.protocol, hostPort: b.hostPort, address, containerPort: b.containerPort },
        comment,
        hostAddresses,
      ),
    );
  }

  /** Adds the DNAT rules of a task that has none yet, in one `iptables-restore`. */
  private async publishNew(record: TaskRecord): Promise<void> {
    const changes = this.dnatRules(record).map((spec) => ({
      op: "-A" as const,
      chain: iptables.DNAT_CHAIN,
      spec,
    }));
    if (changes.length === 0) return;
    try {
      await iptables.restore("nat", changes);
    } catch {
      // Self-healing if another agent's cleanup removed the chains meanwhile.
      await iptables.ensureChains();
      await iptables.restore("nat", changes);
    }
  }

  /** Ensures the DNAT rules of a recovered task, adding only those missing (idempotent). */
  private async publish(record: TaskRecord): Promise<void> {
    const rules = this.dnatRules(record);
    if (rules.length === 0) return;
    await iptables.ensureChains();
    for (const rule of rules) await iptables.ensureRule("nat", iptables.DNAT_CHAIN, rule);
  }

  private async teardownLocked(taskId: string): Promise<void> {
    await this.removeKernelState(taskId, await this.store.get(taskId));
    await this.store.delete(taskId);
  }

  /**
   * Removes a task's rules, veth and namespace. With its record, only what the
   * record says was made is looked at; without one, everything the task's name could own.
   */
  private async removeKernelState(taskId: string, record: TaskRecord | undefined): Promise<void> {
    const comment = iptables.taskComment(this.bridge, taskId);
    if (record === undefined) await iptables.deleteOwned(comment);
    else if (this.dnatRules(record).length > 0) await iptables.deleteTaskRules(iptables.DNAT_CHAIN, comment);
    if (record?.mode === "host") return;
    await link.deleteTaskLinks(
      link.hostVethName(this.bridge, taskId),
      link.netnsName(taskId),
      record === undefined || record.ipv4Address !== undefined,
    );
  }

  /** The network of a recorded task if its kernel state is intact; undefined when it is not. */
  private async recoverOne(record: TaskRecord): Promise<TaskNetwork | undefined> {
    if (record.mode !== "host" && !(await link.netnsExists(link.netnsName(record.taskId)))) return undefined;
    let macAddress: string | undefined;
    if (record.ipv4Address) {
      const state = await link.readTaskInterface(link.netnsName(record.taskId));
      if (!state || state.ipv4Address !== record.ipv4Address) return undefined;
      if (!(await link.linkExists(link.hostVethName(this.bridge, record.taskId)))) return undefined;
      macAddress = state.mac;
      await this.publish(record);
    }
    const dir = this.store.filesDir(record.taskId);
    if (!(await filesExist(dir))) {
      await writeFiles(dir, record, await readHostResolvConf(record.mode !== "host"));
    }
    return this.toNetwork(record, macAddress);
  }

  private toNetwork(record: TaskRecord, macAddress?: string): TaskNetwork {
    const dir = this.store.filesDir(record.taskId);
    const ip = record.ipv4Address;
    return {
      mode: record.mode,
      ...(record.mode !== "host" ? { netnsPath: link.netnsPath(record.taskId) } : {}),
      ...(ip ? { ipv4Address: ip, macAddress: macAddress ?? link.macForAddress(parseAddress(ip)) } : {}),
      ...(record.gateway ? { gateway: record.gateway } : {}),
      bindings: record.bindings.map((b) => ({ ...b })),
      hostsFile: join(dir, "hosts"),
      resolvConf: join(dir, "resolv.conf"),
      hostnameFile: join(dir, "hostname"),
    };
  }
}

async function sysctl(key: string, value: string): Promise<void> {
  await run("sysctl", ["-q", "-w", `${key}=${value}`]);
}

/** The lowest free task address, skipping the addresses other records hold. */
function allocateAddress(subnet: Subnet, records: readonly TaskRecord[]): number {
  const taken = new Set<number>();
  for (const record of records) if (record.ipv4Address) taken.add(parseAddress(record.ipv4Address));
  const address = firstFreeAddress(subnet, taken);
  if (address === undefined) {
    throw new NetworkError("NO_FREE_ADDRESS", `no free address in ${formatSubnet(subnet)}`);
  }
  return address;
}

export type { NetworkMode };
export { NetworkError };
