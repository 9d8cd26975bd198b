import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { prng } from "../../test/support/prng.ts";
import { AGENT_TIMEOUT_MS, POLL_TIMEOUT_MS } from "../ecs/instances.ts";
import { idlePollMs } from "./agent-channel.ts";

describe("idlePollMs", () => {
  it("holds an idle poll for 80-100% of the poll timeout, spread, never past half the agent timeout", () => {
    const longest = Math.min(POLL_TIMEOUT_MS, AGENT_TIMEOUT_MS / 2);
    assert.equal(
      idlePollMs(() => 0),
      longest,
    );
    assert.equal(
      idlePollMs(() => 0.999999),
      Math.round(longest * 0.8),
    );
    const random = prng(11);
    const waits = Array.from({ length: 5000 }, () => idlePollMs(random));
    for (const wait of waits) assert.ok(wait >= longest * 0.8 && wait <= longest, String(wait));
    // A fleet's polls come back spread over the whole window, not in one instant.
    const seconds = new Set(waits.map((wait) => Math.floor(wait / 1000)));
    assert.ok(seconds.size >= Math.floor((longest * 0.2) / 1000), `spread over ${seconds.size} seconds`);
  });
});
