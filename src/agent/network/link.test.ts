import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { defaultHostname, hostBatch, namespaceBatch, type TaskLinks } from "./link.ts";

const veth: TaskLinks = {
  netns: "wharf-abc123",
  veth: {
    hostName: "wv0123456789a",
    netns: "wharf-abc123",
    bridge: "wharf0",
    cidr: "172.31.250.2/24",
    gateway: "172.31.250.1",
    mac: "02:42:ac:1f:fa:02",
    mtu: 1500,
  },
};

describe("ip -batch lines of a task's links", () => {
  it("a namespace joined to the bridge: two batches, host side then namespace side", () => {
    assert.deepEqual(hostBatch(veth), [
      "netns add wharf-abc123",
      "link add wv0123456789a mtu 1500 master wharf0 up type veth peer name eth0 address 02:42:ac:1f:fa:02 mtu 1500 netns wharf-abc123",
      "link set dev wv0123456789a type bridge_slave hairpin on",
    ]);
    assert.deepEqual(namespaceBatch(veth), [
      "link set dev lo up",
      "addr add 172.31.250.2/24 dev eth0",
      "link set dev eth0 up",
      "route add default via 172.31.250.1 dev eth0",
    ]);
  });

  it("a namespace with only loopback (network mode none)", () => {
    assert.deepEqual(hostBatch({ netns: "wharf-n" }), ["netns add wharf-n"]);
    assert.deepEqual(namespaceBatch({ netns: "wharf-n" }), ["link set dev lo up"]);
  });

  it("refuses a token that would split or comment a batch line", () => {
    for (const netns of ["a b", "a\nlink del wharf0", "a#b", 'a"b', ""]) {
      assert.throws(() => hostBatch({ netns }), /unsafe token/);
    }
  });
});

describe("defaultHostname", () => {
  it("is the random end of the task ID: tasks made in the same millisecond get different names", () => {
    // Task IDs begin with 12 hex digits of the time they were made at.
    const first = "019ad2c3b4a5e1f2a3b4c5d6e7f8a9b0";
    const second = "019ad2c3b4a5a0b1c2d3e4f5a6b7c8d9";
    assert.equal(defaultHostname(first), "c5d6e7f8a9b0");
    assert.notEqual(defaultHostname(first), defaultHostname(second));
    assert.match(defaultHostname(second), /^[0-9a-f]{12}$/);
  });
});
