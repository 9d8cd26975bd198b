import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { commentOf, tokenize } from "./iptables.ts";

describe("iptables -S parsing", () => {
  it("splits a rule and keeps quoted comments whole", () => {
    const line =
      '-A WHARF-DNAT -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 8080 -m comment --comment "wharf:wt0:a b" -j DNAT --to-destination 10.0.0.2:80';
    const tokens = tokenize(line);
    assert.equal(tokens[0], "-A");
    assert.equal(tokens[1], "WHARF-DNAT");
    assert.equal(commentOf(tokens.slice(2)), "wharf:wt0:a b");
    assert.equal(tokens.at(-1), "10.0.0.2:80");
  });

  it("handles escapes, unquoted comments and rules without one", () => {
    assert.deepEqual(tokenize('-A X -m comment --comment "say \\"hi\\"" -j ACCEPT'), [
      "-A",
      "X",
      "-m",
      "comment",
      "--comment",
      'say "hi"',
      "-j",
      "ACCEPT",
    ]);
    assert.equal(commentOf(tokenize("-m comment --comment wharf:x -j ACCEPT")), "wharf:x");
    assert.equal(commentOf(tokenize("-j ACCEPT")), undefined);
    assert.deepEqual(tokenize('--comment ""'), ["--comment", ""]);
  });
});
