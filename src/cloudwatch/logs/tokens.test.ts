import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeEventToken, encodeEventToken } from "./tokens.ts";

describe("GetLogEvents tokens", () => {
  it("round-trips in the service's f/…/s and b/…/s form", () => {
    const forward = encodeEventToken("f", { timestamp: 1_717_243_200_000, seq: 42 });
    assert.match(forward, /^f\/\d{56}\/s$/);
    assert.deepEqual(decodeEventToken(forward), {
      direction: "f",
      at: { timestamp: 1_717_243_200_000, seq: 42 },
    });
    const backward = encodeEventToken("b", { timestamp: 0, seq: 0 });
    assert.equal(backward, `b/${"0".repeat(56)}/s`);
    assert.deepEqual(decodeEventToken(backward), { direction: "b", at: { timestamp: 0, seq: 0 } });
  });

  it("refuses anything else", () => {
    for (const token of ["", "f/123/s", `x/${"0".repeat(56)}/s`, `f/${"9".repeat(56)}/s`, "garbage"]) {
      assert.equal(decodeEventToken(token), undefined, token);
    }
  });
});
