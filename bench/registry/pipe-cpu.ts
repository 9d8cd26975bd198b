// Where the server's CPU goes when it pulls: pipes one sealed file (in the page cache) through
// `pipeSealed` into HTTP responses read by a separate client process that only counts bytes,
// and prints this process's CPU per GB by thread (user and system) and its page faults.
//
//   node --import tsx bench/registry/pipe-cpu.ts [--file-mib 256] [--gets 8] [--streams 3] [--runs 3]
//     [--verify] (the client hashes what it reads) [--segment-kib 1024] (the file's segment size)
//     [--direct] (sendSealed, the addon's thread, instead of pipeSealed and the workers)
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { SealPool } from "../../src/registry/seal-pool.ts";
import { SealedAppender } from "../../src/registry/sealed-file.ts";
import { pipeSealed } from "../../src/registry/sealed-pipe.ts";
import { sendSealed } from "../../src/registry/sealed-send.ts";

const { values } = parseArgs({
  options: {
    "file-mib": { type: "string", default: "256" },
    gets: { type: "string", default: "8" },
    streams: { type: "string", default: "3" },
    runs: { type: "string", default: "3" },
    verify: { type: "boolean", default: false },
    direct: { type: "boolean", default: false },
    "segment-kib": { type: "string", default: "1024" },
  },
});
const fileBytes = Number(values["file-mib"]) * 1024 * 1024;
const gets = Number(values.gets);
const streams = Number(values.streams);
const runs = Number(values.runs);

const TICK_S = 0.01; // USER_HZ

interface ThreadCpu {
  name: string;
  user: number;
  system: number;
  minflt: number;
}

function statFields(text: string): string[] {
  // comm may hold spaces; the fields after it are space-separated.
  const close = text.lastIndexOf(")");
  return [text.slice(text.indexOf("(") + 1, close), ...text.slice(close + 2).split(" ")];
}

function threads(): Map<string, ThreadCpu> {
  const out = new Map<string, ThreadCpu>();
  for (const tid of readdirSync("/proc/self/task")) {
    try {
      const f = statFields(readFileSync(`/proc/self/task/${tid}/stat`, "utf8"));
      // f[0] comm, then from field 3 (state) on: index = field number - 2
      out.set(tid, {
        name: f[0] as string,
        minflt: Number(f[8]),
        user: Number(f[12]) * TICK_S,
        system: Number(f[13]) * TICK_S,
      });
    } catch {
      // the thread ended
    }
  }
  return out;
}

const dir = mkdtempSync(join(tmpdir(), "wharf-pipe-cpu-"));
const key = randomBytes(32);
const pool = new SealPool();
const path = join(dir, "blob");
{
  const appender = await SealedAppender.open(path, key, 0, Number(values["segment-kib"]) * 1024);
  for (let left = fileBytes; left > 0; left -= 4 * 1024 * 1024) {
    await appender.write(randomBytes(Math.min(left, 4 * 1024 * 1024)));
  }
  await appender.close();
}

const server = createServer((request, response) => {
  response.writeHead(200, { "content-length": String(fileBytes) });
  const send = values.direct
    ? sendSealed(path, key, fileBytes, 0, fileBytes - 1, response)
    : pipeSealed(path, key, fileBytes, 0, fileBytes - 1, response, pool);
  send.then(
    () => response.end(),
    (error: unknown) => {
      console.error(error);
      response.destroy();
    },
  );
  request.resume();
});
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
const port = (server.address() as AddressInfo).port;

const client = `
const http = require("node:http");
const { createHash } = require("node:crypto");
const agent = new http.Agent({ keepAlive: true });
let left = ${gets}, bytes = 0, reads = 0;
function one() {
  if (left-- <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    http.get({ host: "127.0.0.1", port: ${port}, path: "/", agent }, (res) => {
      const hash = ${values.verify ? 'createHash("sha256")' : "undefined"};
      res.on("data", (c) => { bytes += c.length; reads++; hash?.update(c); });
      res.on("end", () => { hash?.digest(); resolve(); });
      res.on("error", reject);
    }).on("error", reject);
  }).then(one);
}
const t0 = process.hrtime.bigint();
Promise.all(Array.from({ length: ${streams} }, one)).then(() => {
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage();
  const status = require("node:fs").readFileSync("/proc/self/status", "utf8");
  const switches = (name) => Number(status.split(name + ":")[1].trim().split("\\n")[0]);
  console.log(JSON.stringify({ bytes, reads, s, clientCpu: (cpu.user + cpu.system) / 1e6, clientUser: cpu.user / 1e6,
    voluntary: switches("voluntary_ctxt_switches"), involuntary: switches("nonvoluntary_ctxt_switches") }));
  agent.destroy();
});`;

async function run(): Promise<{
  bytes: number;
  reads: number;
  s: number;
  clientCpu: number;
  clientUser: number;
  voluntary: number;
  involuntary: number;
}> {
  const child = spawn(process.execPath, ["-e", client], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (c: Buffer) => {
    out += c.toString();
  });
  await new Promise((resolve) => child.on("exit", resolve));
  return JSON.parse(out);
}

await run(); // warm-up
for (let i = 0; i < runs; i++) {
  const before = threads();
  const selfBefore = process.cpuUsage();
  const result = await run();
  const after = threads();
  const self = process.cpuUsage(selfBefore);
  const gb = result.bytes / 1e9;
  const byName = new Map<string, ThreadCpu>();
  for (const [tid, now] of after) {
    const was = before.get(tid) ?? { name: now.name, user: 0, system: 0, minflt: 0 };
    const name = tid === String(process.pid) ? "main" : `${now.name}/${tid}`;
    const sum = byName.get(name) ?? { name, user: 0, system: 0, minflt: 0 };
    sum.user += now.user - was.user;
    sum.system += now.system - was.system;
    sum.minflt += now.minflt - was.minflt;
    byName.set(name, sum);
  }
  const parts = [...byName.values()]
    .filter((t) => t.user + t.system > 0.02 * gb || t.minflt > 0.1 * gb * 1000)
    .map(
      (t) =>
        `${t.name}: ${(t.user / gb).toFixed(2)}u+${(t.system / gb).toFixed(2)}s ${Math.round(t.minflt / gb / 1000)}k flt`,
    );
  console.log(
    `${(result.bytes / 1e6 / result.s).toFixed(0)} MB/s, server ${((self.user + self.system) / 1e6 / gb).toFixed(2)} s/GB ` +
      `(${(self.user / 1e6 / gb).toFixed(2)}u+${(self.system / 1e6 / gb).toFixed(2)}s), client ${(result.clientCpu / gb).toFixed(2)} s/GB (${(result.clientUser / gb).toFixed(2)}u), switches ${Math.round(result.voluntary / gb)}+${Math.round(result.involuntary / gb)}/GB, ${Math.round(result.bytes / result.reads / 1024)} KiB a read | ${parts.join(" | ")}`,
  );
}
server.close();
await pool.close();
rmSync(dir, { recursive: true, force: true });
