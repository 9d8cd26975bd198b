import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { WorkQueue } from "./work-queue.ts";

describe("WorkQueue", () => {
  it("hands out a key once however often it was added, in order", async () => {
    const queue = new WorkQueue();
    queue.add("a");
    queue.add("b");
    queue.add("a");
    assert.equal(queue.length, 2);
    assert.equal(await queue.get(), "a");
    assert.equal(await queue.get(), "b");
  });

  it("queues a key added while it is processed again once it is done, never to two workers", async () => {
    const queue = new WorkQueue();
    queue.add("a");
    const key = await queue.get();
    queue.add("a");
    assert.equal(queue.length, 0, "not handed out while in progress");
    const next = queue.get();
    queue.done(key ?? "");
    assert.equal(await next, "a");
    queue.done("a");
    assert.equal(queue.length, 0);
  });

  it("wakes waiting workers with undefined when shut down", async () => {
    const queue = new WorkQueue();
    const waiting = queue.get();
    queue.shutDown();
    assert.equal(await waiting, undefined);
    queue.add("late");
    assert.equal(await queue.get(), undefined);
  });
});
