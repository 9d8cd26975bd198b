import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AwsError } from "../../aws/errors.ts";
import { checkBatch, planBatch } from "./batch.ts";

const NOW = Date.parse("2024-06-01T12:00:00Z");
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function event(timestamp: number, message = "m") {
  return { timestamp, message };
}

function refusal(fn: () => unknown): AwsError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof AwsError);
    assert.equal(error.code, "InvalidParameterException");
    return error;
  }
  assert.fail("expected InvalidParameterException");
}

describe("PutLogEvents batch rules", () => {
  it("accepts a batch within the window whole", () => {
    const batch = [event(NOW - HOUR), event(NOW), event(NOW + HOUR)];
    assert.deepEqual(planBatch(batch, NOW, null), { accepted: batch });
  });

  it("sets aside too old (exclusive end) and too new (inclusive start) events", () => {
    const batch = [event(NOW - 15 * DAY), event(NOW - 14 * DAY - 1), event(NOW), event(NOW + 3 * HOUR)];
    const plan = planBatch(batch, NOW, null);
    assert.deepEqual(plan.accepted, [event(NOW)]);
    assert.deepEqual(plan.rejected, { tooOldLogEventEndIndex: 2, tooNewLogEventStartIndex: 3 });
  });

  it("sets aside events older than the group's retention as expired", () => {
    const batch = [event(NOW - 3 * DAY), event(NOW - 2 * HOUR)];
    const plan = planBatch(batch, NOW, 1);
    assert.deepEqual(plan.accepted, [event(NOW - 2 * HOUR)]);
    assert.deepEqual(plan.rejected, { expiredLogEventEndIndex: 1 });
  });

  it("keeps the edges: exactly 14 days old and exactly 2 hours ahead are accepted", () => {
    assert.equal(planBatch([event(NOW - 14 * DAY)], NOW, null).accepted.length, 1);
    assert.equal(planBatch([event(NOW + 2 * HOUR)], NOW, null).accepted.length, 1);
    assert.equal(planBatch([event(NOW - DAY)], NOW, 1).accepted.length, 1);
  });

  it("fails accepted events spanning more than 24 hours", () => {
    const error = refusal(() => planBatch([event(NOW - 2 * DAY), event(NOW)], NOW, null));
    assert.equal(
      error.message,
      "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.",
    );
    // Events set aside do not count toward the span.
    assert.doesNotThrow(() => planBatch([event(NOW - 20 * DAY), event(NOW)], NOW, null));
  });

  it("fails a batch out of chronological order, too large, or too long", () => {
    assert.equal(
      refusal(() => checkBatch([event(2), event(1)])).message,
      "Log events in a single PutLogEvents request must be in chronological order.",
    );
    const big = "x".repeat(1_048_576 - 26);
    assert.doesNotThrow(() => checkBatch([event(1, big)]));
    assert.equal(
      refusal(() => checkBatch([event(1, `${big}é`)])).message,
      "Upload too large: 1048578 bytes exceeds limit of 1048576",
    );
    assert.match(
      refusal(() => checkBatch(Array.from({ length: 10_001 }, (_, i) => event(i)))).message,
      /Member must have length less than or equal to 10000$/,
    );
  });
});
