import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { newTaskArn } from "./tasks.ts";
import { TEST_SCOPE, testCluster } from "./testing.ts";

describe("newTaskArn", () => {
  it("names each task with 32 fresh hex digits, across refills of its entropy", () => {
    const ids = Array.from({ length: 1000 }, () => newTaskArn(TEST_SCOPE, testCluster.arn));
    for (const arn of ids) {
      assert.match(arn, new RegExp(`^arn:aws:ecs:us-east-1:\\d{12}:task/${testCluster.name}/[0-9a-f]{32}$`));
    }
    assert.equal(new Set(ids).size, ids.length);
    // Every hex digit turns up in every position, as it would from independent random bytes.
    for (let position = 0; position < 32; position++) {
      const digits = new Set(ids.map((arn) => arn.slice(-32)[position]));
      assert.equal(digits.size, 16, `position ${position}`);
    }
  });
});
