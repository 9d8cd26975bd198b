import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AwsError } from "../../aws/errors.ts";
import { compileFilterPattern } from "./filter-pattern.ts";

const messages = [
  "ERROR db connection refused",
  "ERROR disk full on /var",
  "WARN disk almost full",
  "INFO request served",
  'said "hello" twice',
];

function matching(pattern: string): string[] {
  const matches = compileFilterPattern(pattern);
  return messages.filter((message) => matches(message));
}

describe("filter patterns (term syntax)", () => {
  it("matches every event for the empty pattern and for a quoted empty phrase", () => {
    assert.deepEqual(matching(""), messages);
    assert.deepEqual(matching("   "), messages);
    assert.deepEqual(matching('""'), messages);
  });

  it("ANDs terms, case-sensitively", () => {
    assert.deepEqual(matching("ERROR"), [messages[0], messages[1]]);
    assert.deepEqual(matching("ERROR disk"), [messages[1]]);
    assert.deepEqual(matching("error"), []);
  });

  it("matches a quoted phrase exactly, with escapes", () => {
    assert.deepEqual(matching('"disk full"'), [messages[1]]);
    assert.deepEqual(matching('"\\"hello\\""'), [messages[4]]);
  });

  it("ORs ? terms, and joins the plain terms after a ? to its alternative", () => {
    assert.deepEqual(matching("?WARN ?INFO"), [messages[2], messages[3]]);
    assert.deepEqual(matching('?"ERROR" "db" ?"INFO"'), [messages[0], messages[3]]);
  });

  it("excludes - terms", () => {
    assert.deepEqual(matching("ERROR -db"), [messages[1]]);
    assert.deepEqual(matching('-"disk"'), [messages[0], messages[3], messages[4]]);
  });

  it("refuses JSON, space-delimited and regular-expression patterns, and broken ones", () => {
    for (const pattern of [
      '{ $.level = "ERROR" }',
      "[ip, user, status=500]",
      "%ERR.R%",
      '"open',
      "ERROR -",
      "?",
    ]) {
      assert.throws(
        () => compileFilterPattern(pattern),
        (error) => error instanceof AwsError && error.code === "InvalidParameterException",
        pattern,
      );
    }
  });
});
