// What the agent's building blocks cost on this machine, measured the way the agent uses them
// (one child process per command, from Node): the figures the per-phase breakdown is read against.
import { execFile } from "node:child_process";
import { closeSync, fsyncSync, openSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { unmountUnder } from "./cleanup.ts";
import { type Summary, summarize } from "./stats.ts";

export interface Primitive {
  name: string;
  what: string;
  summary: Summary | undefined;
}

/** Runs a command to completion; resolves with its exit code (a failure is a result, not an error). */
function command(file: string, args: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 15_000 }, (error) => {
      if (error === null) resolve(0);
      else if (typeof error.code === "number") resolve(error.code);
      else reject(error);
    });
  });
}

/** `ip [options] -batch -` with `lines` on its standard input. */
function batch(options: readonly string[], lines: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile("ip", [...options, "-batch", "-"], { timeout: 15_000 }, (error) =>
      error === null ? resolve() : reject(error),
    );
    child.stdin?.end(`${lines.join("\n")}\n`);
  });
}

async function timed(
  reps: number,
  once: (i: number) => Promise<void> | void,
  after?: (i: number) => Promise<void>,
): Promise<Summary | undefined> {
  const values: number[] = [];
  for (let i = 0; i < reps; i++) {
    const started = performance.now();
    await once(i);
    values.push(performance.now() - started);
    await after?.(i);
  }
  return summarize(values);
}

async function expect(file: string, args: readonly string[], codes: readonly number[]): Promise<void> {
  const code = await command(file, args);
  if (!codes.includes(code)) throw new Error(`${file} ${args.join(" ")}: exit ${code}`);
}

/**
 * The granularity (ms) of the birth time of a new file: the kernel stamps new inodes from its
 * coarse clock, so file-time marks are up to one tick early. Creates files for 100 ms, then
 * reads their stamps (reading a stamp in between would make the next ones fine-grained), and
 * returns the smallest step between distinct stamps.
 */
export function fileTimeGranularity(dir: string): number {
  const paths: string[] = [];
  const deadline = performance.now() + 100;
  while (performance.now() < deadline) {
    const path = join(dir, `granularity-${paths.length}`);
    writeFileSync(path, "x");
    paths.push(path);
  }
  const stamps = new Set(paths.map((path) => Number(statSync(path, { bigint: true }).birthtimeNs) / 1e6));
  for (const path of paths) rmSync(path);
  const sorted = [...stamps].sort((a, b) => a - b);
  const steps = sorted.slice(1).map((t, i) => t - (sorted[i] as number));
  return steps.length === 0 ? 0 : Math.min(...steps);
}

/** Times each primitive `reps` times in `dir` (a scratch directory on the data disk). */
export async function measurePrimitives(dir: string, reps: number): Promise<Primitive[]> {
  await mkdir(dir, { recursive: true });
  const netns = `wharf-bench-prim-${process.pid}`;
  const veth = `wbp${process.pid % 1_000_000}`;
  const results: Primitive[] = [];
  const add = (name: string, what: string, summary: Summary | undefined) =>
    results.push({ name, what, summary });
  try {
    add(
      "spawn /bin/true",
      "a child process from Node",
      await timed(reps, () => expect("/bin/true", [], [0])),
    );
    add(
      "sh -c true",
      "the supervisor's shell",
      await timed(reps, () => expect("/bin/sh", ["-c", "true"], [0])),
    );
    add(
      "ip link show",
      "one `ip` exec (a bridge task's network setup ran 12 before batching)",
      await timed(reps, () => expect("ip", ["-o", "link", "show", "dev", "lo"], [0])),
    );
    add(
      "iptables -S",
      "one `iptables` exec (… and 12 of these; none now without port mappings)",
      await timed(reps, () => expect("iptables", ["-w", "5", "-t", "nat", "-S", "POSTROUTING"], [0])),
    );
    add(
      "iptables -C (absent)",
      "an ensureRule check",
      await timed(reps, () =>
        expect(
          "iptables",
          ["-w", "5", "-t", "nat", "-C", "POSTROUTING", "-m", "comment", "--comment", netns, "-j", "RETURN"],
          [1, 2],
        ),
      ),
    );
    add(
      "ip netns add + del",
      "a named network namespace",
      await timed(reps, async () => {
        await expect("ip", ["netns", "add", netns], [0]);
        await expect("ip", ["netns", "del", netns], [0]);
      }),
    );
    // A task's namespace and veth the way the agent made them before (one exec per step), and the
    // same steps in two `ip -batch` execs, as the agent makes them now (under one `sh`).
    const inside = [
      "link set dev lo up",
      "addr add 10.254.253.2/24 dev eth0",
      "link set dev eth0 up",
      "route add default via 10.254.253.1 dev eth0",
    ];
    const outside = [`link add ${veth} type veth peer name eth0 netns ${netns}`, `link set dev ${veth} up`];
    const removeVeth = async () => {
      await command("ip", ["link", "del", "dev", veth]);
      await command("ip", ["netns", "del", netns]);
    };
    add(
      "netns + veth, 7 × ip",
      "as the agent ran them before, one exec each",
      await timed(
        reps,
        async () => {
          await expect("ip", ["netns", "add", netns], [0]);
          await expect("ip", ["-n", netns, ...(inside[0] as string).split(" ")], [0]);
          for (const line of outside) await expect("ip", line.split(" "), [0]);
          for (const line of inside.slice(1)) await expect("ip", ["-n", netns, ...line.split(" ")], [0]);
        },
        removeVeth,
      ),
    );
    add(
      "netns + veth, ip -batch",
      "the same steps in two execs (the agent's way now)",
      await timed(
        reps,
        async () => {
          await batch([], [`netns add ${netns}`, ...outside]);
          await batch(["-n", netns], inside);
        },
        removeVeth,
      ),
    );
    const lower = join(dir, "lower");
    await mkdir(lower, { recursive: true });
    add(
      "mount overlay + umount",
      "the rootfs mount (two execs)",
      await timed(
        reps,
        async (i) => {
          const base = join(dir, `overlay-${i}`);
          for (const sub of ["upper", "work", "rootfs"]) await mkdir(join(base, sub), { recursive: true });
          const options = `lowerdir=${lower},upperdir=${join(base, "upper")},workdir=${join(base, "work")}`;
          await expect("mount", ["-t", "overlay", "overlay", "-o", options, join(base, "rootfs")], [0]);
          await expect("umount", [join(base, "rootfs")], [0]);
        },
        (i) => rm(join(dir, `overlay-${i}`), { recursive: true, force: true }),
      ),
    );
    const runcRoot = join(dir, "runc-root");
    add(
      "runc list",
      "one short runc exec (Go start-up)",
      await timed(reps, () => expect("runc", ["--root", runcRoot, "list", "-q"], [0])),
    );
    const file = join(dir, "fsync");
    const block = Buffer.alloc(4096, 1);
    add(
      "write 4 KiB + fsync",
      "one durable write on the data disk",
      await timed(reps, () => {
        const fd = openSync(file, "w");
        try {
          writeSync(fd, block);
          fsyncSync(fd);
        } finally {
          closeSync(fd);
        }
      }),
    );
  } finally {
    await command("ip", ["link", "del", "dev", veth]).catch(() => undefined);
    await command("ip", ["netns", "del", netns]).catch(() => undefined);
    await unmountUnder(dir);
    await rm(dir, { recursive: true, force: true });
  }
  return results;
}
