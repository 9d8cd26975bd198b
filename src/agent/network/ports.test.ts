import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { describe, it } from "node:test";
import { canBind, defaultEphemeralRange, dynamicCandidates, hostSocketPorts } from "./ports.ts";

function listen(server: Server, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port: 0, host }, () => {
      const address = server.address();
      if (address && typeof address === "object") resolve(address.port);
      else reject(new Error("no port"));
    });
  });
}

describe("host ports", () => {
  it("picks dynamic ports after the last one, wrapping, skipping taken ones", () => {
    assert.deepEqual([...dynamicCandidates([100, 104], undefined, new Set([101]))], [100, 102, 103, 104]);
    assert.deepEqual([...dynamicCandidates([100, 104], 102, new Set())], [103, 104, 100, 101, 102]);
    assert.deepEqual([...dynamicCandidates([100, 104], 104, new Set())], [100, 101, 102, 103, 104]);
  });

  it("defaults to the kernel's ephemeral range, as the ECS agent does", async () => {
    const [low, high] = (await readFile("/proc/sys/net/ipv4/ip_local_port_range", "utf8"))
      .trim()
      .split(/\s+/);
    assert.deepEqual(await defaultEphemeralRange(), [Number(low), Number(high)]);
  });

  it("sees TCP listeners, even on 127.0.0.1 only", async () => {
    const server = createServer();
    const port = await listen(server, "127.0.0.1");
    try {
      assert.equal(await canBind("tcp", port), false);
      assert.ok((await hostSocketPorts("tcp")).has(port));
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    assert.equal(await canBind("tcp", port), true);
  });

  it("sees bound UDP sockets", async () => {
    const socket = createSocket("udp4");
    await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
    const { port } = socket.address();
    try {
      assert.equal(await canBind("udp", port), false);
      assert.ok((await hostSocketPorts("udp")).has(port));
    } finally {
      await new Promise<void>((resolve) => socket.close(resolve));
    }
    assert.equal(await canBind("udp", port), true);
  });
});
