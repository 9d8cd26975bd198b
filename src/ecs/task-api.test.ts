import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { reusedCredentials, type TaskRegistryAccess } from "./task-api.ts";

describe("reusedCredentials", () => {
  it("gives the credentials issued to a key again for a minute after, then issues new ones", () => {
    let asked = 0;
    const registry: TaskRegistryAccess = {
      host: () => "registry.test",
      credentials: (accessKeyId, now) => {
        asked++;
        return { username: "AWS", password: `${accessKeyId}@${now.getTime()}#${asked}` };
      },
    };
    const reused = reusedCredentials(registry, 60_000);
    const at = (ms: number) => new Date(1_000 + ms);
    assert.equal(reused.host(), "registry.test");
    assert.deepEqual(reused.credentials("AKIA1", at(0)), { username: "AWS", password: "AKIA1@1000#1" });
    assert.deepEqual(reused.credentials("AKIA1", at(59_999)), { username: "AWS", password: "AKIA1@1000#1" });
    assert.equal(asked, 1);
    // A minute on, new ones; so for another key, and for a clock that went back.
    assert.deepEqual(reused.credentials("AKIA1", at(60_000)), { username: "AWS", password: "AKIA1@61000#2" });
    assert.deepEqual(reused.credentials("AKIA2", at(60_000)), { username: "AWS", password: "AKIA2@61000#3" });
    assert.deepEqual(reused.credentials("AKIA2", at(0)), { username: "AWS", password: "AKIA2@1000#4" });
  });
});
