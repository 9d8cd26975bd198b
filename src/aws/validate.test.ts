import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { z } from "zod";
import { AwsError, errorType } from "./errors.ts";
import { decodeToken, encodeToken, toPage } from "./pagination.ts";
import { parseInput } from "./validate.ts";

const Invalid = errorType("InvalidParameterException");
const Shape = z.object({
  name: z.string().max(5),
  count: z.number().int().min(1).max(10).optional(),
  tags: z.array(z.object({ key: z.string() })).optional(),
});

function caught(fn: () => unknown): AwsError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof AwsError);
    return error;
  }
  assert.fail("expected an error");
}

describe("parseInput", () => {
  it("returns the typed input when it fits", () => {
    assert.deepEqual(parseInput(Shape, { name: "abc", count: 2 }, Invalid), { name: "abc", count: 2 });
  });

  it("reports constraint violations with Coral's message and the service's own error", () => {
    const error = caught(() => parseInput(Shape, { name: "abcdefg", count: 11 }, Invalid));
    assert.equal(error.code, "InvalidParameterException");
    assert.equal(
      error.message,
      "2 validation errors detected: Value 'abcdefg' at 'name' failed to satisfy constraint: Member must have length less than or equal to 5; " +
        "Value '11' at 'count' failed to satisfy constraint: Member must have value less than or equal to 10",
    );
  });

  it("reports a missing required member as null", () => {
    const error = caught(() => parseInput(Shape, {}, Invalid));
    assert.equal(
      error.message,
      "1 validation error detected: Value null at 'name' failed to satisfy constraint: Member must not be null",
    );
  });

  it("answers a value of the wrong type with SerializationException, naming the list member", () => {
    const error = caught(() => parseInput(Shape, { name: "a", tags: [{ key: 5 }] }, Invalid));
    assert.equal(error.code, "SerializationException");
    assert.match(error.message, /tags\.1\.member\.key/);
  });
});

describe("pagination", () => {
  it("pages with a token that resumes after the last key", () => {
    const page = toPage(["a", "b", "c"], 2, (k) => k);
    assert.deepEqual(page.items, ["a", "b"]);
    assert.equal(
      decodeToken(page.nextToken, () => new Error("bad")),
      "b",
    );
    assert.deepEqual(
      toPage(["a", "b"], 2, (k) => k),
      { items: ["a", "b"] },
    );
  });

  it("refuses a token it did not issue", () => {
    assert.throws(() => decodeToken("not-a-token", () => Invalid("Invalid NextToken")), /Invalid NextToken/);
    assert.throws(
      () => decodeToken(encodeToken("x").slice(3), () => Invalid("Invalid NextToken")),
      /Invalid NextToken/,
    );
  });
});
