import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { onceCredentials, type TaskRegistryAccess } from "./task-api.ts";

describe("onceCredentials", () => {
  it("gives what the registry gives, asking it once per key and time", () => {
    let asked = 0;
    const registry: TaskRegistryAccess = {
      host: () => "registry.test",
      credentials: (accessKeyId, now) => {
        asked++;
        return { username: "AWS", password: `${accessKeyId}@${now.getTime()}#${asked}` };
      },
    };
    const once = onceCredentials(registry);
    const t = new Date(1_000);
    assert.equal(once.host(), "registry.test");
    assert.deepEqual(once.credentials("AKIA1", t), { username: "AWS", password: "AKIA1@1000#1" });
    assert.deepEqual(once.credentials("AKIA1", new Date(1_000)), {
      username: "AWS",
      password: "AKIA1@1000#1",
    });
    assert.equal(asked, 1);
    assert.deepEqual(once.credentials("AKIA2", t), { username: "AWS", password: "AKIA2@1000#2" });
    assert.deepEqual(once.credentials("AKIA2", new Date(2_000)), {
      username: "AWS",
      password: "AKIA2@2000#3",
    });
  });
});
