import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InstanceNotifier } from "./notifier.ts";

describe("InstanceNotifier.wait", () => {
  it("ends at the instance's next notify, at its timeout, or when cancelled, and says which", async () => {
    const notifier = new InstanceNotifier();
    const ended: string[] = [];
    const notified = notifier.wait("i-1", 60_000);
    const other = notifier.wait("i-2", 60_000);
    const timed = notifier.wait("i-3", 10);
    const cancelled = notifier.wait("i-4", 60_000);
    for (const [name, wait] of Object.entries({ notified, other, timed, cancelled })) {
      void wait.done.then(() => ended.push(name));
    }
    notifier.notify("i-1");
    cancelled.cancel();
    await Promise.all([notified.done, cancelled.done]);
    await timed.done;
    assert.deepEqual(ended.sort(), ["cancelled", "notified", "timed"]);
    assert.deepEqual([notified.cancelled, timed.cancelled, cancelled.cancelled], [false, false, true]);
    // A wait that ended is no longer notified; the one still waiting is.
    notifier.notify("i-4");
    notifier.notify("i-2");
    await other.done;
    assert.deepEqual(ended.sort(), ["cancelled", "notified", "other", "timed"]);
  });
});
