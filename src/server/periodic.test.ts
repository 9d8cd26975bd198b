import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Periodic } from "./periodic.ts";

describe("a periodic housekeeping job", () => {
  it("runs its pass on every tick, logs a failing pass and goes on, and close waits for a pass in flight", async () => {
    const warnings: string[] = [];
    let passes = 0;
    let finished = 0;
    const job = new Periodic(
      "test job",
      5,
      async () => {
        passes += 1;
        if (passes === 1) throw new Error("disk full");
        await new Promise((resolve) => setTimeout(resolve, 20));
        finished += 1;
      },
      { warn: (fields, message) => warnings.push(`${message}: ${String(fields.error)}`) },
    );
    job.start();
    while (passes < 2) await new Promise((resolve) => setTimeout(resolve, 5));
    await job.close();
    assert.deepEqual(warnings, ["test job failed; retrying on the next pass: Error: disk full"]);
    assert.equal(
      finished,
      passes - 1,
      "every pass that started after the failure finished before close returned",
    );
    const after = passes;
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.equal(passes, after, "no pass after close");
  });
});
