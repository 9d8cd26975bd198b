import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { JsonTemplate, jsonText, RawJson } from "./json-text.ts";

describe("jsonText", () => {
  it("sends a RawJson as it is and serializes anything else", () => {
    assert.equal(jsonText(new RawJson('{"a":1}')), '{"a":1}');
    assert.equal(jsonText({ a: [1, "b"] }), '{"a":[1,"b"]}');
    assert.equal(jsonText(undefined), "{}");
  });
});

describe("JsonTemplate", () => {
  const shape = (id: unknown, owner: unknown, note?: string) => ({
    id,
    items: [{ id, owner, n: 1.5 }],
    owner,
    ...(note === undefined ? {} : { note }),
    fixed: 'a \u0001 "quoted" \\ string',
  });
  const [id, owner] = [0, 1].map(JsonTemplate.marker) as [string, string];

  it("fills each hole with its value's JSON text, wherever and however often the hole appears", () => {
    const template = JsonTemplate.of(JSON.stringify(shape(id, owner)));
    for (const [a, b] of [
      ["x", "y"],
      ['q"uote', "back\\slash"],
      ["new\nline \u0001 \u2028", "ünïcödé 🚢"],
      ["", 12.5],
      [null, { nested: [1] }],
    ] as const) {
      const filled = template.fill([JSON.stringify(a), JSON.stringify(b)]);
      assert.equal(filled, JSON.stringify(shape(a, b)));
      assert.deepEqual(JSON.parse(filled), shape(a, b));
    }
  });

  it("ignores values for holes the prototype does not show, and strings that only look like markers", () => {
    // A marker of another process (another nonce) is an ordinary string.
    const stranger = `\u00010123456789abcdef:${id.slice(1, 17)}:0\u0001`;
    const template = JsonTemplate.of(JSON.stringify(shape(id, owner, stranger)));
    assert.equal(template.fill(['"1"', '"2"', '"3"']), JSON.stringify(shape("1", "2", stranger)));
  });
});
