// What is timed: pushing the images, pulling them back, and a burst of manifest requests.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import type { RegistryClient } from "./client.ts";
import { type Image, layerChunks, MEDIA } from "./layers.ts";
import { CLOCK_TICKS, processCpuSeconds, threadCpuSeconds } from "./peers.ts";

export interface PhaseResult {
  /** Layer and config bytes moved (0 for the manifest phase). */
  bytes: number;
  requests: number;
  seconds: number;
  /** CPU the registry process used during the phase. */
  serverCpuSeconds: number;
  /** The part of it spent in the kernel (syscalls, page faults). */
  serverSystemCpuSeconds: number;
  /**
   * The server's CPU by thread: its main thread (Wharf's event loop), its two busiest other
   * threads (Wharf's sealing workers) and the rest (GC helpers, libuv's pool; for a Go
   * program these are just its busiest threads), and threads that ended during the phase
   * (Wharf's direct sends, one thread per blob pulled over plain HTTP: the process's CPU less
   * its living threads').
   */
  serverThreads: { main: CpuSplit; busiest: CpuSplit; rest: CpuSplit; ended: CpuSplit };
  /** CPU this (client) process used during the phase, and the part of it in the kernel. */
  clientCpuSeconds: number;
  clientSystemCpuSeconds: number;
  /**
   * The client's context switches during the phase: voluntary (it waited for bytes) and
   * involuntary (another thread took its core).
   */
  clientSwitches: { voluntary: number; involuntary: number };
  /** CPU every other process on the machine used during the phase. */
  backgroundCpuSeconds: number;
  /** Per-request latency percentiles in milliseconds (manifest phase). */
  latencyMs?: { p50: number; p99: number };
}

export interface CpuSplit {
  user: number;
  system: number;
}

function threadSplit(
  pid: number,
  before: Map<number, CpuSplit>,
  after: Map<number, CpuSplit>,
  process: CpuSplit,
): PhaseResult["serverThreads"] {
  const used = [...after].map(([tid, now]) => {
    const was = before.get(tid) ?? { user: 0, system: 0 };
    return { tid, user: now.user - was.user, system: now.system - was.system };
  });
  const sum = (threads: CpuSplit[]) =>
    threads.reduce((total, t) => ({ user: total.user + t.user, system: total.system + t.system }), {
      user: 0,
      system: 0,
    });
  const others = used.filter((t) => t.tid !== pid).sort((a, b) => b.user + b.system - (a.user + a.system));
  const living = sum(used);
  return {
    main: sum(used.filter((t) => t.tid === pid)),
    busiest: sum(others.slice(0, 2)),
    rest: sum(others.slice(2)),
    ended: {
      user: Math.max(0, process.user - living.user),
      system: Math.max(0, process.system - living.system),
    },
  };
}

/** Runs `work` with `concurrency` workers taking items in order. */
async function pool<T>(items: T[], concurrency: number, work: (item: T, index: number) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    for (let index = next++; index < items.length; index = next++) await work(items[index] as T, index);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, worker));
}

/** Flushes dirty pages so one phase's write-back does not land in the next one's timing. */
export function settle(): void {
  execFileSync("sync");
}

/** Busy and total CPU seconds of the whole machine so far (from /proc/stat). */
function machineCpu(): { busy: number; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
  // cpu user nice system idle iowait irq softirq steal …, in clock ticks
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = ticks.reduce((sum, t) => sum + t, 0);
  const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
  return { busy: (total - idle) / CLOCK_TICKS, total: total / CLOCK_TICKS };
}

/**
 * Waits until the rest of the machine is quiet: a one-second window in which
 * other processes use less than `maxCores` of CPU. Other work on a two-core
 * machine would otherwise decide the figures. False when it gave up.
 */
export async function waitForQuiet(maxCores: number, timeoutMs: number, onWait: (cores: number) => void) {
  const deadline = Date.now() + timeoutMs;
  let warned = false;
  for (;;) {
    const before = machineCpu();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const after = machineCpu();
    const cores = ((after.busy - before.busy) / Math.max(after.total - before.total, 1e-9)) * cpus().length;
    if (cores < maxCores) return true;
    if (Date.now() >= deadline) return false;
    if (!warned) onWait(cores);
    warned = true;
  }
}

async function timed(
  pid: number,
  run: () => Promise<{ bytes: number; requests: number }>,
): Promise<PhaseResult> {
  const machine0 = machineCpu();
  const server0 = processCpuSeconds(pid);
  const threads0 = threadCpuSeconds(pid);
  const client0 = process.cpuUsage();
  const switches0 = process.resourceUsage();
  const t0 = process.hrtime.bigint();
  const { bytes, requests } = await run();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const client = process.cpuUsage(client0);
  const switches = process.resourceUsage();
  const server = processCpuSeconds(pid);
  const serverThreads = threadSplit(pid, threads0, threadCpuSeconds(pid), {
    user: server.user - server0.user,
    system: server.system - server0.system,
  });
  const serverSystemCpuSeconds = server.system - server0.system;
  const serverCpuSeconds = server.user - server0.user + serverSystemCpuSeconds;
  const clientCpuSeconds = (client.user + client.system) / 1e6;
  const machineBusy = machineCpu().busy - machine0.busy;
  return {
    bytes,
    requests,
    seconds,
    serverCpuSeconds,
    serverSystemCpuSeconds,
    serverThreads,
    clientCpuSeconds,
    clientSystemCpuSeconds: client.system / 1e6,
    clientSwitches: {
      voluntary: switches.voluntaryContextSwitches - switches0.voluntaryContextSwitches,
      involuntary: switches.involuntaryContextSwitches - switches0.involuntaryContextSwitches,
    },
    backgroundCpuSeconds: Math.max(0, machineBusy - serverCpuSeconds - clientCpuSeconds),
  };
}

/** Every blob (layers and configs) with `streams` uploads in flight, then each image's manifest by tag. */
export function push(
  client: RegistryClient,
  pid: number,
  repository: string,
  images: Image[],
  streams: number,
): Promise<PhaseResult> {
  return timed(pid, async () => {
    const blobs = images.flatMap((image) => [
      ...image.layers.map((layer) => ({
        digest: layer.digest,
        size: layer.size,
        content: () => layerChunks(layer),
      })),
      { digest: image.config.digest, size: image.config.size, content: () => [image.config.bytes] },
    ]);
    // Largest first, as a client with several uploads in flight would finish soonest.
    blobs.sort((a, b) => b.size - a.size);
    await pool(blobs, streams, (blob) => client.pushBlob(repository, blob.digest, blob.size, blob.content()));
    for (const image of images)
      await client.putManifest(repository, image.tag, MEDIA.manifest, image.manifest.bytes);
    return {
      bytes: blobs.reduce((sum, blob) => sum + blob.size, 0),
      requests: blobs.length * 3 + images.length,
    };
  });
}

/** Each image's manifest by tag, then every blob with `streams` downloads in flight, verifying sha256. */
export function pull(
  client: RegistryClient,
  pid: number,
  repository: string,
  images: Image[],
  streams: number,
  verify = true,
): Promise<PhaseResult> {
  return timed(pid, async () => {
    for (const image of images) await client.manifest("GET", repository, image.tag, image.manifest.digest);
    const blobs = images.flatMap((image) => [image.config, ...image.layers]);
    blobs.sort((a, b) => b.size - a.size);
    await pool(blobs, streams, (blob) => client.pullBlob(repository, blob.digest, blob.size, verify));
    return { bytes: blobs.reduce((sum, blob) => sum + blob.size, 0), requests: images.length + blobs.length };
  });
}

/** `total` manifest requests, `inFlight` at a time, cycling GET/HEAD by tag/by digest over the images. */
export async function manifests(
  client: RegistryClient,
  pid: number,
  repository: string,
  images: Image[],
  total: number,
  inFlight: number,
): Promise<PhaseResult> {
  const latencies = new Float64Array(total);
  const requests = Array.from({ length: total }, (_, i) => i);
  const result = await timed(pid, async () => {
    await pool(requests, inFlight, async (i) => {
      const image = images[Math.floor(i / 4) % images.length] as Image;
      const method = i % 2 === 0 ? "GET" : "HEAD";
      const reference = i % 4 < 2 ? image.tag : image.manifest.digest;
      const t0 = process.hrtime.bigint();
      await client.manifest(method, repository, reference, image.manifest.digest);
      latencies[i] = Number(process.hrtime.bigint() - t0) / 1e6;
    });
    return { bytes: 0, requests: total };
  });
  latencies.sort();
  const at = (q: number) => latencies[Math.min(total - 1, Math.floor(q * total))] ?? 0;
  return { ...result, latencyMs: { p50: at(0.5), p99: at(0.99) } };
}
