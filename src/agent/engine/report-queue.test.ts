import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { jittered, ReportQueue } from "./report-queue.ts";

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

const tick = () => new Promise((resolve) => setImmediate(resolve));

class Refused extends Error {}

/** Retries that the test lets go by hand, recording how long each would have waited. */
function manualSleep() {
  const waits: number[] = [];
  const wakes: Array<() => void> = [];
  const sleep = (ms: number, signal: AbortSignal) =>
    new Promise<void>((resolve) => {
      waits.push(ms);
      wakes.push(resolve);
      signal.addEventListener("abort", () => resolve(), { once: true });
    });
  const wake = async () => {
    wakes.shift()?.();
    await tick();
    await tick();
  };
  return { waits, sleep, wake };
}

describe("jittered", () => {
  it("waits between half the backoff and all of it", () => {
    assert.equal(
      jittered(1000, () => 0),
      500,
    );
    assert.equal(
      jittered(1000, () => 0.5),
      750,
    );
    assert.equal(
      jittered(1000, () => 0.999),
      1000,
    );
    const waits = Array.from({ length: 200 }, () => jittered(10_000));
    assert.ok(waits.every((ms) => ms >= 5000 && ms <= 10_000));
    assert.ok(new Set(waits).size > 100, "spread, not one value");
  });
});

describe("ReportQueue", () => {
  it("sends at once when idle, one at a time, and only the newest of those that waited", async () => {
    const { sent, send, release } = gatedSend();
    const queue = new ReportQueue<string>({
      send,
      retryable: () => true,
      failed: () => assert.fail("no failure expected"),
    });
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
    await tick();
    assert.equal(flushed, false);
    await release();
    await flush;
    assert.equal(flushed, true);
    queue.push("STOPPED");
    await release();
    assert.equal(await queue.flush(), true);
    assert.deepEqual(sent, ["PENDING", "RUNNING", "STOPPED"]);
  });

  it("retries a report the server did not get, with growing backoff, until it is acknowledged", async () => {
    const { waits, sleep, wake } = manualSleep();
    const sent: string[] = [];
    let down = true;
    const failures: string[] = [];
    const queue = new ReportQueue<string>({
      send: async (report) => {
        sent.push(report);
        if (down) throw new Error("connect ECONNREFUSED");
      },
      retryable: (error) => !(error instanceof Refused),
      failed: (error, report, retrying) =>
        failures.push(`${report} ${retrying}: ${(error as Error).message}`),
      sleep,
      firstBackoffMs: 100,
      maxBackoffMs: 300,
      // Each wait falls between half the backoff and all of it: here, three quarters of the way.
      random: () => 0.5,
    });
    queue.push("RUNNING");
    await tick();
    await wake();
    await wake();
    await wake();
    assert.deepEqual(sent, ["RUNNING", "RUNNING", "RUNNING", "RUNNING"]);
    assert.deepEqual(waits, [75, 150, 225, 225]);
    assert.deepEqual(failures, ["RUNNING true: connect ECONNREFUSED"], "told once per run of failures");
    let flushed: boolean | undefined;
    void queue.flush().then((settled) => {
      flushed = settled;
    });
    down = false;
    await wake();
    assert.deepEqual(sent, ["RUNNING", "RUNNING", "RUNNING", "RUNNING", "RUNNING"]);
    assert.equal(flushed, true, "flushed once the server acknowledged it");
  });

  it("sends the newest report in place of one waiting to be retried", async () => {
    const { sleep, wake } = manualSleep();
    const sent: string[] = [];
    let down = true;
    const queue = new ReportQueue<string>({
      send: async (report) => {
        sent.push(report);
        if (down) throw new Error("socket hang up");
      },
      retryable: () => true,
      failed: () => undefined,
      sleep,
    });
    queue.push("RUNNING");
    await tick();
    queue.push("STOPPING");
    queue.push("STOPPED");
    down = false;
    await wake();
    assert.equal(await queue.flush(), true);
    assert.deepEqual(sent, ["RUNNING", "STOPPED"]);
  });

  it("drops a report the server refused and goes on with the next", async () => {
    const failures: string[] = [];
    const sent: string[] = [];
    const queue = new ReportQueue<string>({
      send: async (report) => {
        sent.push(report);
        if (report === "bad") throw new Refused("The task is not assigned to this container instance.");
      },
      retryable: (error) => !(error instanceof Refused),
      failed: (error, report, retrying) =>
        failures.push(`${report} ${retrying}: ${(error as Error).message}`),
      sleep: () => assert.fail("a refused report is not retried"),
    });
    queue.push("bad");
    assert.equal(await queue.flush(), true, "a refused report counts as settled");
    queue.push("good");
    assert.equal(await queue.flush(), true);
    assert.deepEqual(sent, ["bad", "good"]);
    assert.deepEqual(failures, ["bad false: The task is not assigned to this container instance."]);
    assert.equal(await queue.flush(), true, "idle: resolves at once");
  });

  it("stops retrying when closed, and says a report is left undelivered", async () => {
    const { sleep } = manualSleep();
    const sent: string[] = [];
    const queue = new ReportQueue<string>({
      send: async (report) => {
        sent.push(report);
        throw new Error("connect ECONNREFUSED");
      },
      retryable: () => true,
      failed: () => undefined,
      sleep,
    });
    queue.push("STOPPED");
    await tick();
    queue.close();
    assert.equal(await queue.flush(), false);
    queue.push("STOPPED again");
    assert.equal(await queue.flush(), false);
    assert.deepEqual(sent, ["STOPPED"]);
  });
});
