// Reading a V8 .cpuprofile (node --cpu-prof): self time by area and by function, counting only
// samples inside the measured windows (RunTask sent → RUNNING seen). V8 stamps samples with the
// monotonic clock that process.hrtime uses, so windows taken in the benchmark process line up.
import { readFile } from "node:fs/promises";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** [start, end] in µs of the monotonic clock. */
export type Window = readonly [number, number];

export interface ProfileSummary {
  /** Wall time inside the windows, ms. */
  windowMs: number;
  /** Sampled time that was not idle inside the windows, ms: JS, GC, native and blocking calls. */
  busyMs: number;
  areas: Array<{ area: string; ms: number }>;
  functions: Array<{ name: string; area: string; ms: number }>;
}

const SPECIAL = new Set(["(idle)", "(program)", "(garbage collector)", "(root)"]);

function areaOf(frame: CallFrame): string {
  if (frame.url === "" && SPECIAL.has(frame.functionName)) return frame.functionName;
  const url = frame.url;
  const wharf = /\/src\/([a-z-]+)\//.exec(url);
  if (wharf !== null && !url.includes("/node_modules/")) return `wharf ${wharf[1]}`;
  const modules = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (modules !== null) return modules[1] as string;
  if (url.startsWith("node:")) return "node internals";
  if (url.includes("/test/")) return "wharf test harness";
  return url === "" ? "native" : url;
}

function shortUrl(url: string): string {
  const at = url.search(/\/(src|node_modules|test)\//);
  return at >= 0 ? url.slice(at + 1) : url;
}

/** Summarises `path` over `windows` (sorted, non-overlapping), with the `top` heaviest functions. */
export async function summarizeProfile(
  path: string,
  windows: readonly Window[],
  top = 15,
): Promise<ProfileSummary> {
  const profile = JSON.parse(await readFile(path, "utf8")) as CpuProfile;
  const nodes = new Map<number, CallFrame>();
  for (const node of profile.nodes) nodes.set(node.id, node.callFrame);
  const areas = new Map<string, number>();
  const functions = new Map<string, { name: string; area: string; ms: number }>();
  let busyMs = 0;
  let time = profile.startTime;
  let w = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    time += profile.timeDeltas[i] ?? 0;
    // A sample stands for the time until the next one.
    const weightMs = (profile.timeDeltas[i + 1] ?? 1000) / 1000;
    while (w < windows.length && (windows[w]?.[1] ?? 0) < time) w++;
    const window = windows[w];
    if (window === undefined) break;
    if (time < window[0]) continue;
    const frame = nodes.get(profile.samples[i] ?? -1);
    if (frame === undefined) continue;
    const area = areaOf(frame);
    areas.set(area, (areas.get(area) ?? 0) + weightMs);
    if (area === "(idle)") continue;
    busyMs += weightMs;
    // tsx compiles TypeScript without mapping profile lines back: name the file alone for .ts.
    const where = frame.url.endsWith(".ts")
      ? shortUrl(frame.url)
      : `${shortUrl(frame.url)}:${frame.lineNumber + 1}`;
    const name = `${frame.functionName || "(anonymous)"} ${where}`;
    const entry = functions.get(name) ?? { name, area, ms: 0 };
    entry.ms += weightMs;
    functions.set(name, entry);
  }
  const windowMs = windows.reduce((sum, [from, to]) => sum + (to - from) / 1000, 0);
  return {
    windowMs,
    busyMs,
    areas: [...areas].map(([area, ms]) => ({ area, ms })).sort((a, b) => b.ms - a.ms),
    functions: [...functions.values()].sort((a, b) => b.ms - a.ms).slice(0, top),
  };
}
