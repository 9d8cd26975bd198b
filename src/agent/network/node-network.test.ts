// Real-kernel tests: namespaces, veths, a bridge and iptables rules, all under
// names unique to this run, removed in `after`. Traffic goes only to addresses
// of the bridges and namespaces made here, and to 127.0.0.1.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { access, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { NetworkError } from "./errors.ts";
import { run } from "./exec.ts";
import { chainExists } from "./iptables.ts";
import { formatAddress, formatSubnet, overlaps, parseAddress, parseSubnet, type Subnet } from "./ipv4.ts";
import { hostVethName, linkExists } from "./link.ts";
import { NodeNetwork, type TaskNetwork } from "./node-network.ts";

const BUSYBOX = "/bin/busybox";
const canRun = process.getuid?.() === 0 && (await exists(BUSYBOX)) && (await exists("/usr/sbin/iptables"));

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** A random start of 1000 ports outside the kernel's ephemeral range. */
function quietPortBase(): number {
  const text = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8");
  const [low = 32768, high = 60999] = text.trim().split(/\s+/).map(Number);
  const random = (span: number) => Math.floor(Math.random() * Math.max(1, span));
  if (65535 - high >= 1500) return high + 1 + random(65535 - high - 1000);
  return Math.max(1024, low - 1000 - random(Math.min(5000, low - 2024)));
}

/** A random 10.2xx.y.0/24 that no address or route on this host overlaps. */
async function freeSubnet(): Promise<Subnet> {
  const used: Subnet[] = [];
  const addrs = JSON.parse(await run("ip", ["-4", "-j", "addr"])) as {
    addr_info?: { local: string; prefixlen: number }[];
  }[];
  for (const a of addrs.flatMap((l) => l.addr_info ?? []))
    used.push({ network: parseAddress(a.local), prefix: a.prefixlen });
  const routes = JSON.parse(await run("ip", ["-4", "-j", "route", "show", "table", "all"])) as {
    dst?: string;
  }[];
  for (const { dst } of routes) {
    const match = dst && /^(\d+\.\d+\.\d+\.\d+)(?:\/(\d+))?$/.exec(dst);
    if (match?.[1]) used.push({ network: parseAddress(match[1]), prefix: Number(match[2] ?? 32) });
  }
  for (;;) {
    const candidate = parseSubnet(
      `10.${200 + ((randomBytes(1)[0] ?? 0) % 56)}.${randomBytes(1)[0] ?? 0}.0/24`,
    );
    if (!used.some((u) => overlaps(u, candidate))) return candidate;
  }
}

function httpGet(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path: "/", agent: false, timeout: 2000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () => resolve(body));
    });
    req.on("timeout", () => req.destroy(new Error(`timeout fetching ${host}:${port}`)));
    req.on("error", reject);
    req.end();
  });
}

async function eventually<T>(attempt: () => Promise<T>, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

function hasCode(code: string): (error: unknown) => boolean {
  return (error) => error instanceof NetworkError && error.code === code;
}

describe("NodeNetwork on the kernel", {
  skip: canRun ? false : "needs root, iptables and busybox-static",
}, () => {
  const id = randomBytes(3).toString("hex");
  const bridge = `wt${id}`;
  const task = (name: string) => `wt${id}-${name}`;
  // Ports this test publishes: [base, base+999], away from the kernel's ephemeral
  // range, where client sockets of tests running alongside would collide with them.
  const base = quietPortBase();
  const range: [number, number] = [base, base + 99];
  const children: ChildProcess[] = [];
  let subnet: Subnet;
  let stateDir: string;
  let webRoot: string;
  let net: NodeNetwork;

  async function serve(network: TaskNetwork, name: string, port = 8080): Promise<void> {
    const netns = network.netnsPath?.split("/").at(-1);
    assert.ok(netns);
    const dir = join(webRoot, name);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "index.html"), `hello from ${name}\n`);
    const child = spawn(
      "ip",
      ["netns", "exec", netns, BUSYBOX, "httpd", "-f", "-p", String(port), "-h", dir],
      {
        stdio: "ignore",
        timeout: 120_000,
        killSignal: "SIGKILL",
      },
    );
    children.push(child);
    // Ready when it answers inside its own namespace.
    await eventually(() =>
      run("ip", ["netns", "exec", netns, BUSYBOX, "wget", "-q", "-O", "-", `http://127.0.0.1:${port}/`]),
    );
  }

  function wgetFrom(network: TaskNetwork, url: string): Promise<string> {
    const netns = network.netnsPath?.split("/").at(-1);
    assert.ok(netns);
    // (Debian's static busybox wget crashes with -T; the run timeout bounds it instead.)
    return run("ip", ["netns", "exec", netns, BUSYBOX, "wget", "-q", "-O", "-", url], { timeoutMs: 5000 });
  }

  before(async () => {
    subnet = await freeSubnet();
    stateDir = await mkdtemp(join(tmpdir(), "wharf-net-"));
    webRoot = await mkdtemp(join(tmpdir(), "wharf-www-"));
    net = new NodeNetwork({ bridge, subnet: formatSubnet(subnet), stateDir, ephemeralPorts: range });
    await net.init();
    await net.init(); // idempotent
  });

  after(async () => {
    for (const child of children) child.kill("SIGKILL");
    await net?.destroy();
    await rm(stateDir, { recursive: true, force: true });
    await rm(webRoot, { recursive: true, force: true });
  });

  const gateway = () => formatAddress(subnet.network + 1);

  it("awsvpc: an address on the bridge, reachable from the host", async () => {
    const a = await net.setup(task("a"), "awsvpc", [{ containerPort: 8080, protocol: "tcp" }], "alpha");
    assert.equal(a.mode, "awsvpc");
    assert.equal(a.ipv4Address, formatAddress(subnet.network + 2));
    assert.equal(a.gateway, gateway());
    assert.match(a.macAddress ?? "", /^02:42(:[0-9a-f]{2}){4}$/);
    assert.deepEqual(a.bindings, []);
    assert.equal(a.netnsPath, `/run/netns/wharf-${task("a")}`);
    assert.match(await readFile(a.hostsFile, "utf8"), new RegExp(`^${a.ipv4Address}\\talpha$`, "m"));
    assert.equal(await readFile(a.hostnameFile, "utf8"), "alpha\n");
    assert.doesNotMatch(await readFile(a.resolvConf, "utf8"), /nameserver 127\./);
    await serve(a, "a");
    assert.equal(await httpGet(a.ipv4Address ?? "", 8080), "hello from a\n");
  });

  it("two tasks on the bridge reach each other", async () => {
    const b = await net.setup(task("b"), "awsvpc", [], "beta");
    assert.equal(b.ipv4Address, formatAddress(subnet.network + 3));
    const a = (await net.recover()).get(task("a"));
    assert.ok(a?.ipv4Address);
    assert.equal(await wgetFrom(b, `http://${a.ipv4Address}:8080/`), "hello from a\n");
    await serve(b, "b");
    assert.equal(await wgetFrom(a, `http://${b.ipv4Address}:8080/`), "hello from b\n");
  });

  let staticPort = 0;
  it("bridge: a static host port answers on 127.0.0.1 and on the bridge's address", async () => {
    staticPort = base + 100 + Math.floor(Math.random() * 500);
    const c = await net.setup(
      task("c"),
      "bridge",
      [{ containerPort: 8080, hostPort: staticPort, protocol: "tcp" }],
      "c",
    );
    assert.deepEqual(c.bindings, [
      { bindIP: "0.0.0.0", containerPort: 8080, hostPort: staticPort, protocol: "tcp" },
    ]);
    await serve(c, "c");
    assert.equal(await httpGet("127.0.0.1", staticPort), "hello from c\n");
    assert.equal(await httpGet(gateway(), staticPort), "hello from c\n");
    // Hairpin: another task, and the task itself, through the node's address.
    const b = (await net.recover()).get(task("b"));
    assert.ok(b);
    assert.equal(await wgetFrom(b, `http://${gateway()}:${staticPort}/`), "hello from c\n");
    assert.equal(await wgetFrom(c, `http://${gateway()}:${staticPort}/`), "hello from c\n");
  });

  it("bridge: a dynamic host port comes from the range and answers the same way", async () => {
    const d = await net.setup(
      task("d"),
      "bridge",
      [
        { containerPort: 8080, hostPort: 0, protocol: "tcp" },
        { containerPort: 5353, protocol: "udp" },
      ],
      "d",
    );
    const [web, dns] = d.bindings;
    assert.ok(web && dns);
    for (const binding of [web, dns]) {
      assert.ok(binding.hostPort >= range[0] && binding.hostPort <= range[1], `${binding.hostPort} in range`);
    }
    assert.equal(dns.protocol, "udp");
    await serve(d, "d");
    assert.equal(await httpGet("127.0.0.1", web.hostPort), "hello from d\n");
    assert.equal(await httpGet(gateway(), web.hostPort), "hello from d\n");
    const used = await net.usedPorts();
    assert.ok(used.tcp.includes(staticPort) && used.tcp.includes(web.hostPort));
    assert.deepEqual(used.udp, [dns.hostPort]);
  });

  it("refuses a static host port that a host socket or another task holds", async () => {
    await assert.rejects(
      net.setup(task("e"), "bridge", [{ containerPort: 80, hostPort: staticPort, protocol: "tcp" }], "e"),
      hasCode("PORT_IN_USE"),
    );
    const server = createServer();
    const port = await new Promise<number>((resolve) => {
      server.listen({ port: 0, host: "0.0.0.0" }, () => {
        const address = server.address();
        resolve(address && typeof address === "object" ? address.port : 0);
      });
    });
    try {
      await assert.rejects(
        net.setup(task("e"), "bridge", [{ containerPort: 80, hostPort: port, protocol: "tcp" }], "e"),
        hasCode("PORT_IN_USE"),
      );
      await assert.rejects(
        net.setup(task("e"), "host", [{ containerPort: port, protocol: "tcp" }], "e"),
        hasCode("PORT_IN_USE"),
      );
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    // A refused setup leaves nothing behind.
    assert.equal(await exists(`/run/netns/wharf-${task("e")}`), false);
    assert.doesNotMatch(await run("iptables-save", []), new RegExp(task("e")));
  });

  it("none: a namespace with only loopback", async () => {
    const n = await net.setup(task("n"), "none", [], "nothing");
    assert.equal(n.ipv4Address, undefined);
    const netns = n.netnsPath?.split("/").at(-1) ?? "";
    const links = JSON.parse(await run("ip", ["-n", netns, "-j", "link", "show"])) as {
      ifname: string;
      flags: string[];
    }[];
    assert.deepEqual(
      links.map((l) => l.ifname),
      ["lo"],
    );
    assert.ok(links[0]?.flags.includes("UP"));
    await assert.rejects(
      net.setup(task("n2"), "none", [{ containerPort: 1, protocol: "tcp" }], "x"),
      hasCode("INVALID_ARGUMENT"),
    );
  });

  it("host: no namespace, container ports are host ports", async () => {
    const h = await net.setup(task("h"), "host", [{ containerPort: base + 700, protocol: "tcp" }], "");
    assert.equal(h.netnsPath, undefined);
    assert.deepEqual(h.bindings, [
      { bindIP: "0.0.0.0", containerPort: base + 700, hostPort: base + 700, protocol: "tcp" },
    ]);
    assert.ok((await net.usedPorts()).tcp.includes(base + 700));
  });

  it("concurrent setups get distinct addresses and ports; a leftover namespace is replaced", async () => {
    await run("ip", ["netns", "add", `wharf-${task("l")}`]); // as a crashed earlier run might leave it
    const dynamic = [{ containerPort: 80, protocol: "tcp" as const }];
    const [k, l] = await Promise.all([
      net.setup(task("k"), "bridge", dynamic, "k"),
      net.setup(task("l"), "bridge", dynamic, "l"),
    ]);
    assert.notEqual(k.ipv4Address, l.ipv4Address);
    assert.notEqual(k.bindings[0]?.hostPort, l.bindings[0]?.hostPort);
    await Promise.all([net.teardown(task("k")), net.teardown(task("l"))]);
  });

  it("a second setup of a task replaces the first; a leftover veth without a record is replaced", async () => {
    const first = await net.setup(task("r"), "bridge", [{ containerPort: 80, protocol: "tcp" }], "r");
    const again = await net.setup(task("r"), "bridge", [{ containerPort: 80, protocol: "tcp" }], "r");
    assert.equal(again.ipv4Address, first.ipv4Address);
    const rules = (await run("iptables-save", ["-t", "nat"])).split("\n");
    assert.equal(rules.filter((line) => line.includes(`:${task("r")}"`)).length, 1, "one DNAT rule, not two");
    await net.teardown(task("r"));
    // As something outside Wharf's records might leave it: the veth of a task never set up.
    const veth = hostVethName(bridge, task("v"));
    await run("ip", ["link", "add", veth, "type", "veth", "peer", "name", `${veth}p`]);
    const v = await net.setup(task("v"), "awsvpc", [], "v");
    assert.ok(v.ipv4Address);
    assert.equal(await linkExists(`${veth}p`), false);
    await net.teardown(task("v"));
    assert.equal(await linkExists(veth), false);
    assert.equal(await exists(`/run/netns/wharf-${task("v")}`), false);
  });

  it("teardown removes namespace, veth and rules, and frees the address and port", async () => {
    const c = task("c");
    await net.teardown(c);
    await net.teardown(c); // idempotent
    assert.equal(await exists(`/run/netns/wharf-${c}`), false);
    assert.equal(await linkExists(hostVethName(bridge, c)), false);
    assert.doesNotMatch(await run("iptables-save", []), new RegExp(c));
    assert.ok(!(await net.usedPorts()).tcp.includes(staticPort));
    await assert.rejects(httpGet("127.0.0.1", staticPort));
    // The lowest free address (c's) and its static port go to the next task.
    const f = await net.setup(
      task("f"),
      "bridge",
      [{ containerPort: 8080, hostPort: staticPort, protocol: "tcp" }],
      "f",
    );
    assert.equal(f.ipv4Address, formatAddress(subnet.network + 4));
  });

  it("recover: a new NodeNetwork on the same state finds the surviving tasks", async () => {
    // Simulate a task whose namespace vanished while the agent was down.
    await run("ip", ["netns", "del", `wharf-${task("f")}`]);
    const restarted = new NodeNetwork({
      bridge,
      subnet: formatSubnet(subnet),
      stateDir,
      ephemeralPorts: range,
    });
    await restarted.init();
    const networks = await restarted.recover();
    assert.deepEqual(
      [...networks.keys()].sort(),
      [task("a"), task("b"), task("d"), task("h"), task("n")].sort(),
    );
    const d = networks.get(task("d"));
    assert.ok(d?.bindings[0]);
    assert.equal(d.ipv4Address, formatAddress(subnet.network + 5));
    assert.equal(await httpGet("127.0.0.1", d.bindings[0].hostPort), "hello from d\n");
    assert.equal(networks.get(task("a"))?.macAddress, (await net.recover()).get(task("a"))?.macAddress);
    // f's leftovers went with it.
    assert.doesNotMatch(await run("iptables-save", []), new RegExp(task("f")));
    assert.equal(await linkExists(hostVethName(bridge, task("f"))), false);
    assert.ok(!(await restarted.usedPorts()).tcp.includes(staticPort));
  });

  it("hostAddresses: publishes on the listed addresses and 127.0.0.1 only", async () => {
    const other = await freeSubnet();
    const otherBridge = `wu${id}`;
    const otherState = await mkdtemp(join(tmpdir(), "wharf-net-"));
    const otherGateway = formatAddress(other.network + 1);
    const scoped = new NodeNetwork({
      bridge: otherBridge,
      subnet: formatSubnet(other),
      stateDir: otherState,
      ephemeralPorts: [base + 800, base + 899],
      hostAddresses: [otherGateway],
    });
    try {
      await scoped.init();
      const g = await scoped.setup(task("g"), "bridge", [{ containerPort: 8080, protocol: "tcp" }], "g");
      const port = g.bindings[0]?.hostPort ?? 0;
      await serve(g, "g");
      assert.equal(await httpGet("127.0.0.1", port), "hello from g\n");
      assert.equal(await httpGet(otherGateway, port), "hello from g\n");
      await assert.rejects(httpGet(gateway(), port)); // not a listed address: nothing listens there
      // The first network sees this agent's port as taken.
      await assert.rejects(
        net.setup(task("i"), "bridge", [{ containerPort: 80, hostPort: port, protocol: "tcp" }], "i"),
        hasCode("PORT_IN_USE"),
      );
    } finally {
      await scoped.destroy();
      await rm(otherState, { recursive: true, force: true });
    }
    assert.doesNotMatch(await run("iptables-save", []), new RegExp(otherBridge));
    // The first network's bridge still uses Wharf's chains: they all stay.
    for (const [table, chain] of [
      ["nat", "WHARF-DNAT"],
      ["nat", "WHARF-POSTROUTING"],
      ["filter", "WHARF-FORWARD"],
    ] as const) {
      assert.ok(await chainExists(table, chain), `${table}/${chain} kept`);
    }
  });
});
