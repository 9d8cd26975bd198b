import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseParams, queryError, queryResponse, toXml, unflatten } from "./query.ts";

describe("Query protocol input", () => {
  it("unflattens members, nested structures and list order by index", () => {
    const params = parseParams(
      "Action=CreateTargetGroup&Version=2015-12-01&Name=web&Port=80" +
        "&Tags.member.2.Key=b&Tags.member.2.Value=2&Tags.member.1.Key=a&Tags.member.1.Value=1" +
        "&Matcher.HttpCode=200-299&Names.member.1=x&Names.member.10=z&Names.member.3=y",
    );
    assert.deepEqual(unflatten(params), {
      Name: "web",
      Port: "80",
      Tags: [
        { Key: "a", Value: "1" },
        { Key: "b", Value: "2" },
      ],
      Matcher: { HttpCode: "200-299" },
      Names: ["x", "y", "z"],
    });
  });

  it("decodes form encoding: + is a space, percent escapes are bytes of UTF-8", () => {
    const params = parseParams("Name=hello+world&Value=caf%C3%A9%2B1");
    assert.equal(params.get("Name"), "hello world");
    assert.equal(params.get("Value"), "café+1");
  });

  it("does not let a parameter named like a prototype key reach Object.prototype", () => {
    const out = unflatten(parseParams("__proto__.polluted=yes&constructor.prototype.x=1"));
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(typeof out, "object");
  });
});

describe("Query protocol output", () => {
  it("wraps results with the namespace and request id, lists as member items", () => {
    const xml = queryResponse(
      "DescribeThings",
      "https://example.com/doc/2015-12-01/",
      { Things: [{ A: 1 }, { A: 2 }] },
      "req-1",
    );
    assert.match(xml, /^<\?xml version="1.0" encoding="UTF-8"\?>/);
    assert.match(
      xml,
      /<DescribeThingsResponse xmlns="https:\/\/example.com\/doc\/2015-12-01\/"><DescribeThingsResult><Things><member><A>1<\/A><\/member><member><A>2<\/A><\/member><\/Things><\/DescribeThingsResult><ResponseMetadata><RequestId>req-1<\/RequestId><\/ResponseMetadata><\/DescribeThingsResponse>/,
    );
  });

  it("escapes text and dates come out as ISO 8601", () => {
    assert.equal(toXml("M", `<a href="x">&'`), "<M>&lt;a href=&quot;x&quot;&gt;&amp;&apos;</M>");
    assert.equal(toXml("T", new Date(Date.UTC(2026, 0, 2, 3, 4, 5))), "<T>2026-01-02T03:04:05.000Z</T>");
  });

  it("shapes errors as <ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/>", () => {
    const xml = queryError(
      { fault: "Sender", queryCode: "TargetGroupNotFound", message: "One or more target groups not found" },
      "ns",
      "r",
    );
    assert.match(
      xml,
      /<ErrorResponse xmlns="ns"><Error><Type>Sender<\/Type><Code>TargetGroupNotFound<\/Code><Message>One or more target groups not found<\/Message><\/Error><RequestId>r<\/RequestId><\/ErrorResponse>/,
    );
  });
});
