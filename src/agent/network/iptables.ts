/**
 * Wharf's iptables rules. Everything lives in dedicated chains that the
 * built-in chains jump to, and every rule carries a comment naming its owner
 * (`wharf:<bridge>` for a bridge's own rules, `wharf:<bridge>:<taskId>` for a
 * task's), so removal deletes exactly what was added and nothing else.
 */

import { CommandError, run, succeeds } from "./exec.ts";

export type Table = "nat" | "filter";

export const DNAT_CHAIN = "WHARF-DNAT";
export const POSTROUTING_CHAIN = "WHARF-POSTROUTING";
export const FORWARD_CHAIN = "WHARF-FORWARD";

interface Jump {
  table: Table;
  parent: string;
  chain: string;
  /** Insert at the top (ahead of rules such as Docker's FORWARD DROP policy helpers) or append. */
  insert: boolean;
}

const JUMPS: readonly Jump[] = [
  { table: "nat", parent: "PREROUTING", chain: DNAT_CHAIN, insert: false },
  { table: "nat", parent: "OUTPUT", chain: DNAT_CHAIN, insert: false },
  { table: "nat", parent: "POSTROUTING", chain: POSTROUTING_CHAIN, insert: true },
  { table: "filter", parent: "FORWARD", chain: FORWARD_CHAIN, insert: true },
];

function iptables(args: readonly string[]): Promise<string> {
  return run("iptables", ["-w", "5", ...args]);
}

/** One change for `iptables-restore`: append (`-A`) or delete (`-D`) a rule of a chain. */
export interface RuleChange {
  op: "-A" | "-D";
  chain: string;
  spec: RuleSpec;
}

/** Tokens of Wharf's rules are names, addresses, ports and flags: nothing to quote. */
const RESTORE_TOKEN = /^[A-Za-z0-9_.:/!,=+-]+$/;

/**
 * The input of `iptables-restore --noflush` that makes the changes in one table, in
 * one transaction. It declares no chain: a declared chain would be flushed.
 */
export function restoreInput(table: Table, changes: readonly RuleChange[]): string {
  const lines = [`*${table}`];
  for (const { op, chain, spec } of changes) {
    for (const token of [chain, ...spec]) {
      if (!RESTORE_TOKEN.test(token))
        throw new Error(`unsafe token for iptables-restore: ${JSON.stringify(token)}`);
    }
    lines.push([op, chain, ...spec].join(" "));
  }
  lines.push("COMMIT", "");
  return lines.join("\n");
}

/** Applies the changes to one table with a single `iptables-restore --noflush`: all or none. */
export async function restore(table: Table, changes: readonly RuleChange[]): Promise<void> {
  if (changes.length === 0) return;
  await run("iptables-restore", ["-w", "5", "--noflush"], { input: restoreInput(table, changes) });
}

export function bridgeComment(bridge: string): string {
  return `wharf:${bridge}`;
}

export function taskComment(bridge: string, taskId: string): string {
  return `wharf:${bridge}:${taskId}`;
}

/** A rule as `iptables -S` prints it, without the leading `-A CHAIN`. */
export type RuleSpec = readonly string[];

/** Creates Wharf's chains and the jumps into them; safe to repeat and to race with another agent. */
export async function ensureChains(): Promise<void> {
  for (const { table, chain } of JUMPS) {
    if (await chainExists(table, chain)) continue;
    try {
      await iptables(["-t", table, "-N", chain]);
    } catch (error) {
      if (!(await chainExists(table, chain))) throw error;
    }
  }
  for (const { table, parent, chain, insert } of JUMPS) {
    await ensureRule(table, parent, ["-j", chain], insert);
  }
}

export function chainExists(table: Table, chain: string): Promise<boolean> {
  return succeeds("iptables", ["-w", "5", "-t", table, "-S", chain]);
}

/** Adds the rule unless an identical one is already there. */
export async function ensureRule(table: Table, chain: string, spec: RuleSpec, insert = false): Promise<void> {
  if (await succeeds("iptables", ["-w", "5", "-t", table, "-C", chain, ...spec])) return;
  await iptables(["-t", table, insert ? "-I" : "-A", chain, ...(insert ? ["1"] : []), ...spec]);
}

/** The rules of one chain, each as its tokens after `-A CHAIN`; empty when the chain does not exist. */
export async function listRules(table: Table, chain: string): Promise<RuleSpec[]> {
  let text: string;
  try {
    text = await iptables(["-t", table, "-S", chain]);
  } catch (error) {
    if (error instanceof CommandError && !(await chainExists(table, chain))) return [];
    throw error;
  }
  const rules: RuleSpec[] = [];
  for (const line of text.split("\n")) {
    const tokens = tokenize(line);
    if (tokens[0] === "-A" && tokens[1] === chain) rules.push(tokens.slice(2));
  }
  return rules;
}

/** The value of a rule's `--comment`, if it has one. */
export function commentOf(spec: RuleSpec): string | undefined {
  const at = spec.indexOf("--comment");
  return at >= 0 ? spec[at + 1] : undefined;
}

/** Deletes every rule of the chain that the predicate picks, and checks that none is left. */
export async function deleteRules(
  table: Table,
  chain: string,
  pick: (spec: RuleSpec) => boolean,
): Promise<void> {
  const doomed = (await listRules(table, chain)).filter(pick);
  if (doomed.length === 0) return;
  for (const spec of doomed) {
    // Another agent may have removed it meanwhile; the check below decides.
    await succeeds("iptables", ["-w", "5", "-t", table, "-D", chain, ...spec]);
  }
  const left = (await listRules(table, chain)).filter(pick);
  if (left.length > 0) {
    throw new Error(`iptables: could not delete ${left.length} rule(s) from ${table}/${chain}`);
  }
}

/**
 * Deletes the rules of one chain that carry the comment: one listing, then one
 * `iptables-restore` for all of them, or rule by rule when that fails (another
 * agent removed one meanwhile).
 */
export async function deleteTaskRules(chain: string, comment: string): Promise<void> {
  const doomed = (await listRules("nat", chain)).filter((spec) => commentOf(spec) === comment);
  if (doomed.length === 0) return;
  try {
    await restore(
      "nat",
      doomed.map((spec) => ({ op: "-D", chain, spec })),
    );
  } catch {
    await deleteRules("nat", chain, (spec) => commentOf(spec) === comment);
  }
}

/** Deletes the rules owned by a comment, in all of Wharf's chains. */
export async function deleteOwned(comment: string | ((comment: string) => boolean)): Promise<void> {
  const matches = typeof comment === "string" ? (c: string) => c === comment : comment;
  for (const { table, chain } of uniqueChains()) {
    await deleteRules(table, chain, (spec) => {
      const value = commentOf(spec);
      return value !== undefined && matches(value);
    });
  }
}

/**
 * Removes Wharf's chains and their jumps once none of them holds a rule (the
 * last bridge on this network namespace went away). While any bridge remains,
 * every chain stays, even an empty one, for that bridge's agent to use.
 */
export async function removeChainsIfEmpty(): Promise<void> {
  for (const { table, chain } of uniqueChains()) {
    if ((await listRules(table, chain)).length > 0) return;
  }
  for (const { table, chain } of uniqueChains()) {
    if (!(await chainExists(table, chain))) continue;
    for (const jump of JUMPS.filter((j) => j.table === table && j.chain === chain)) {
      await deleteRules(
        table,
        jump.parent,
        (spec) => spec.length === 2 && spec[0] === "-j" && spec[1] === chain,
      );
    }
    if (!(await succeeds("iptables", ["-w", "5", "-t", table, "-X", chain]))) {
      // Another agent added a rule meanwhile: put the jumps back and leave the rest.
      await ensureChains();
      return;
    }
  }
}

function uniqueChains(): { table: Table; chain: string }[] {
  const seen = new Map<string, { table: Table; chain: string }>();
  for (const { table, chain } of JUMPS) seen.set(`${table}/${chain}`, { table, chain });
  return [...seen.values()];
}

/** Splits one line of `iptables -S` into tokens, honouring double quotes and backslash escapes. */
export function tokenize(line: string): string[] {
  const tokens: string[] = [];
  let current = "";
  let inToken = false;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const char = line[i] as string;
    if (char === "\\" && i + 1 < line.length) {
      current += line[++i];
      inToken = true;
    } else if (char === '"') {
      quoted = !quoted;
      inToken = true;
    } else if (!quoted && /\s/.test(char)) {
      if (inToken) tokens.push(current);
      current = "";
      inToken = false;
    } else {
      current += char;
      inToken = true;
    }
  }
  if (inToken) tokens.push(current);
  return tokens;
}

export interface ChainRule {
  table: Table;
  chain: string;
  spec: RuleSpec;
}

/** A bridge's own rules: outbound NAT, answers to 127.0.0.1, hairpin, and forwarding. */
export function bridgeRules(bridge: string, subnet: string): ChainRule[] {
  const comment = ["-m", "comment", "--comment", bridgeComment(bridge)];
  const masquerade = [...comment, "-j", "MASQUERADE"];
  const nat = (spec: RuleSpec): ChainRule => ({ table: "nat", chain: POSTROUTING_CHAIN, spec });
  const accept = (spec: RuleSpec): ChainRule => ({ table: "filter", chain: FORWARD_CHAIN, spec });
  return [
    // Tasks reaching beyond the bridge leave with the node's address.
    nat(["-s", subnet, "!", "-o", bridge, ...masquerade]),
    // 127.0.0.1:<hostPort> DNATed into a task: it must answer the bridge's address, not its own loopback.
    nat(["-s", "127.0.0.0/8", "-o", bridge, ...masquerade]),
    // Hairpin: a task reaching a published port of a task on the same bridge.
    nat(["-s", subnet, "-o", bridge, "-m", "conntrack", "--ctstate", "DNAT", ...masquerade]),
    // Forwarding to and from tasks, even where FORWARD's policy is DROP (as Docker sets it).
    accept(["-i", bridge, ...comment, "-j", "ACCEPT"]),
    accept(["-o", bridge, ...comment, "-j", "ACCEPT"]),
  ];
}

export interface DnatTarget {
  protocol: string;
  hostPort: number;
  address: string;
  containerPort: number;
}

/**
 * The DNAT rules that publish one host port: on every local address (Docker's
 * way), or on the given addresses only.
 */
export function dnatRules(
  target: DnatTarget,
  comment: string,
  hostAddresses?: readonly string[],
): RuleSpec[] {
  const destinations = hostAddresses
    ? hostAddresses.map((a) => ["-d", `${a}/32`])
    : [["-m", "addrtype", "--dst-type", "LOCAL"]];
  return destinations.map((destination) => [
    "-p",
    target.protocol,
    ...destination,
    "--dport",
    String(target.hostPort),
    "-m",
    "comment",
    "--comment",
    comment,
    "-j",
    "DNAT",
    "--to-destination",
    `${target.address}:${target.containerPort}`,
  ]);
}

export interface PublishedPort {
  protocol: string;
  port: number;
  comment: string | undefined;
}

/** The host ports that DNAT rules in Wharf's chain publish, whichever agent on this network namespace made them. */
export async function publishedPorts(): Promise<PublishedPort[]> {
  const ports: PublishedPort[] = [];
  for (const spec of await listRules("nat", DNAT_CHAIN)) {
    const protocol = spec[spec.indexOf("-p") + 1];
    const port = Number(spec[spec.indexOf("--dport") + 1]);
    if (spec.includes("-p") && spec.includes("--dport") && protocol && Number.isInteger(port)) {
      ports.push({ protocol, port, comment: commentOf(spec) });
    }
  }
  return ports;
}
