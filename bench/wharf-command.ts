// How the benchmarks start Wharf: bin/wharf.js, with the node options its first line gives it.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";

export const WHARF = resolve(import.meta.dirname, "../bin/wharf.js");

/**
 * The node options on bin/wharf.js's `#!/usr/bin/env -S node …` line (every word after `node`):
 * a benchmark's server runs with them, as `npm start` and the `wharf` command run it.
 */
export const WHARF_NODE_OPTIONS: readonly string[] = nodeOptions(readFileSync(WHARF, "utf8"));

function nodeOptions(script: string): string[] {
  const words = (script.split("\n", 1)[0] ?? "").trim().split(/\s+/);
  const node = words.indexOf("node");
  return node < 0 ? [] : words.slice(node + 1);
}
