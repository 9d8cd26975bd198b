import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { NetworkError } from "./errors.ts";
import { contains, firstFreeAddress, formatAddress, overlaps, parseAddress, parseSubnet } from "./ipv4.ts";

describe("ipv4", () => {
  it("parses and formats addresses", () => {
    assert.equal(formatAddress(parseAddress("172.31.0.1")), "172.31.0.1");
    assert.equal(parseAddress("255.255.255.255"), 0xffffffff);
    for (const bad of ["1.2.3", "1.2.3.256", "a.b.c.d", "1.2.3.4.5", ""]) {
      assert.throws(() => parseAddress(bad), NetworkError);
    }
  });

  it("accepts network addresses only, /8 to /30", () => {
    assert.deepEqual(parseSubnet("172.31.0.0/24"), { network: parseAddress("172.31.0.0"), prefix: 24 });
    assert.throws(() => parseSubnet("172.31.0.1/24"), /host bits/);
    assert.throws(() => parseSubnet("10.0.0.0/31"), /prefix/);
    assert.throws(() => parseSubnet("10.0.0.0"), /CIDR/);
  });

  it("hands out the lowest free task address, never network, gateway or broadcast", () => {
    const subnet = parseSubnet("10.9.8.0/30");
    assert.equal(formatAddress(firstFreeAddress(subnet, new Set()) ?? 0), "10.9.8.2");
    assert.equal(firstFreeAddress(subnet, new Set([parseAddress("10.9.8.2")])), undefined);
    const wide = parseSubnet("10.9.8.0/24");
    const taken = new Set([parseAddress("10.9.8.2"), parseAddress("10.9.8.4")]);
    assert.equal(formatAddress(firstFreeAddress(wide, taken) ?? 0), "10.9.8.3");
  });

  it("tells containment and overlap", () => {
    assert.ok(contains(parseSubnet("10.9.8.0/24"), parseAddress("10.9.8.77")));
    assert.ok(!contains(parseSubnet("10.9.8.0/24"), parseAddress("10.9.9.1")));
    assert.ok(overlaps(parseSubnet("10.9.0.0/16"), parseSubnet("10.9.8.0/24")));
    assert.ok(!overlaps(parseSubnet("10.9.7.0/24"), parseSubnet("10.9.8.0/24")));
  });
});
