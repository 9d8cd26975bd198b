import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ReportQueue } from "./report-queue.ts";

/** A send the test releases by hand, one call at a time. */
function gatedSend() {
  const sent: string[] = [];
  const gates: Array<() => void> = [];
  const send = (report: string) =>
    new Promise<void>((resolve) => {
      sent.push(report);
      gates.push(resolve);
    });
  const release = async () => {
    gates.shift()?.();
    // let the queue take the next report
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { sent, send, release };
}

describe("ReportQueue", () => {
  it("sends at once when idle, one at a time, and only the newest of those that waited", async () => {
    const { sent, send, release } = gatedSend();
    const queue = new ReportQueue<string>(send, () => assert.fail("no failure expected"));
    queue.push("PENDING");
    assert.deepEqual(sent, ["PENDING"]);
    queue.push("PENDING+pull");
    queue.push("RUNNING");
    assert.deepEqual(sent, ["PENDING"], "nothing more while one is in flight");
    await release();
    assert.deepEqual(sent, ["PENDING", "RUNNING"]);
    let flushed = false;
    const flush = queue.flush().then(() => {
      flushed = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(flushed, false);
    await release();
    await flush;
    assert.equal(flushed, true);
    queue.push("STOPPED");
    await release();
    await queue.flush();
    assert.deepEqual(sent, ["PENDING", "RUNNING", "STOPPED"]);
  });

  it("goes on after a failed send, telling which report failed", async () => {
    const failures: string[] = [];
    const sent: string[] = [];
    const queue = new ReportQueue<string>(
      async (report) => {
        sent.push(report);
        if (report === "bad") throw new Error("server down");
      },
      (error, report) => failures.push(`${report}: ${(error as Error).message}`),
    );
    queue.push("bad");
    queue.push("good");
    await queue.flush();
    assert.deepEqual(sent, ["bad", "good"]);
    assert.deepEqual(failures, ["bad: server down"]);
    await queue.flush(); // idle: resolves at once
  });
});
