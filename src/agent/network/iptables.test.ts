import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { commentOf, dnatRules, restoreInput, tokenize } from "./iptables.ts";

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

describe("iptables-restore input", () => {
  it("appends a task's DNAT rules in one transaction, declaring no chain", () => {
    const rules = dnatRules(
      { protocol: "tcp", hostPort: 49200, address: "10.0.0.2", containerPort: 80 },
      "wharf:wt0:t1",
      ["192.0.2.10", "127.0.0.1"],
    );
    assert.equal(
      restoreInput(
        "nat",
        rules.map((spec) => ({ op: "-A", chain: "WHARF-DNAT", spec })),
      ),
      [
        "*nat",
        "-A WHARF-DNAT -p tcp -d 192.0.2.10/32 --dport 49200 -m comment --comment wharf:wt0:t1 -j DNAT --to-destination 10.0.0.2:80",
        "-A WHARF-DNAT -p tcp -d 127.0.0.1/32 --dport 49200 -m comment --comment wharf:wt0:t1 -j DNAT --to-destination 10.0.0.2:80",
        "COMMIT",
        "",
      ].join("\n"),
    );
  });

  it("deletes rules as iptables -S lists them, and refuses tokens it would have to quote", () => {
    const listed = tokenize(
      '-A WHARF-DNAT -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 8080 -m comment --comment "wharf:wt0:t1" -j DNAT --to-destination 10.0.0.2:80',
    ).slice(2);
    assert.match(
      restoreInput("nat", [{ op: "-D", chain: "WHARF-DNAT", spec: listed }]),
      /^-D WHARF-DNAT -p tcp .* --comment wharf:wt0:t1 -j DNAT/m,
    );
    for (const comment of ["a b", "a\nCOMMIT", 'x"y', ""]) {
      assert.throws(
        () => restoreInput("nat", [{ op: "-A", chain: "WHARF-DNAT", spec: ["--comment", comment] }]),
        /unsafe token/,
      );
    }
  });
});
