// Where the server's CPU went: self and inclusive time per function from its .cpuprofile files.
import { readdir, readFile } from "node:fs/promises";
import { basename, join } from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/**
 * A span of the monotonic clock in microseconds. V8 stamps a profile's samples with
 * CLOCK_MONOTONIC, the clock of `process.hrtime` in every process on the machine, so the
 * benchmark's own readings say which samples fell inside its timed phases.
 */
export interface Span {
  fromUs: number;
  toUs: number;
}

/** Now on the clock a profile's samples are stamped with. */
export function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

export interface FunctionTime {
  name: string;
  ms: number;
  percent: number;
}

const IDLE = new Set(["(idle)", "(root)"]);

function nameOf(node: ProfileNode): string {
  const frame = node.callFrame;
  if (frame.url === "") return frame.functionName || "(anonymous)";
  const file = frame.url.includes("/src/")
    ? frame.url.slice(frame.url.indexOf("/src/") + 1)
    : basename(frame.url);
  return `${frame.functionName || "(anonymous)"} ${file}:${frame.lineNumber + 1}`;
}

/**
 * Self time (top 25) and inclusive time (top 30) over every profile in `dir`, idle left out;
 * with `spans`, only the samples taken inside one of them.
 */
export async function summarizeProfiles(dir: string, spans?: readonly Span[]) {
  const counted = (us: number) =>
    spans === undefined || spans.some((span) => us >= span.fromUs && us <= span.toUs);
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let busy = 0;
  for (const file of (await readdir(dir)).filter((f) => f.endsWith(".cpuprofile"))) {
    const profile = JSON.parse(await readFile(join(dir, file), "utf8")) as CpuProfile;
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
    let stamp = profile.startTime;
    profile.samples.forEach((id, i) => {
      const node = byId.get(id);
      const ms = (profile.timeDeltas[i] ?? 0) / 1000;
      stamp += profile.timeDeltas[i] ?? 0;
      if (!counted(stamp)) return;
      if (node === undefined || IDLE.has(node.callFrame.functionName)) return;
      busy += ms;
      const name = nameOf(node);
      self.set(name, (self.get(name) ?? 0) + ms);
      const seen = new Set<string>();
      for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
        const frame = byId.get(at);
        if (frame === undefined || IDLE.has(frame.callFrame.functionName)) continue;
        const key = nameOf(frame);
        if (seen.has(key)) continue;
        seen.add(key);
        inclusive.set(key, (inclusive.get(key) ?? 0) + ms);
      }
    });
  }
  const top = (map: Map<string, number>, n: number): FunctionTime[] =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, ms]) => ({ name, ms: Math.round(ms), percent: Math.round((ms / busy) * 1000) / 10 }));
  return { busyMs: Math.round(busy), self: top(self, 25), inclusive: top(inclusive, 30) };
}
