import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  answerFrame,
  FrameReader,
  isOversized,
  type Oversized,
  readAnswer,
  readRequest,
  requestFrame,
} from "./agent-frames.ts";

describe("agent channel frames", () => {
  it("reads back a request and an answer as written, bodies in UTF-8", () => {
    const body = JSON.stringify({ reports: [{ taskArn: "arn:aws:ecs:…/täsk", lastStatus: "RUNNING" }] });
    const [request] = new FrameReader(1024).push(requestFrame(7, "/agent/v1/reports", body));
    assert.ok(Buffer.isBuffer(request));
    const read = readRequest(request);
    assert.deepEqual(
      { id: read?.id, path: read?.path, body: read?.body.toString("utf8") },
      { id: 7, path: "/agent/v1/reports", body },
    );
    const [answer] = new FrameReader(1024).push(answerFrame(0xffffffff, 404, '{"message":"ünknown"}'));
    assert.ok(Buffer.isBuffer(answer));
    assert.deepEqual(readAnswer(answer), { id: 0xffffffff, status: 404, text: '{"message":"ünknown"}' });
  });

  it("cuts frames however the bytes arrive: one at a time, several in one piece, split across pieces", () => {
    const frames = [
      requestFrame(1, "/agent/v1/poll", '{"known":{}}'),
      requestFrame(2, "/agent/v1/reports", `{"reports":[${'"x",'.repeat(300)}"y"]}`),
      requestFrame(3, "/agent/v1/stats", ""),
    ];
    const all = Buffer.concat(frames);
    const expected = frames.map((frame) => Buffer.from(frame.subarray(4)));
    const bytewise = new FrameReader(4096);
    const one: Array<Buffer | Oversized> = [];
    for (let i = 0; i < all.length; i++) one.push(...bytewise.push(all.subarray(i, i + 1)));
    assert.deepEqual(one, expected);
    assert.deepEqual(new FrameReader(4096).push(all), expected);
    // Pieces that end inside a length, inside a head, and inside a body.
    for (const cut of [2, 6, 20, frames[0]?.length ?? 0, all.length - 3]) {
      const reader = new FrameReader(4096);
      assert.deepEqual([...reader.push(all.subarray(0, cut)), ...reader.push(all.subarray(cut))], expected);
    }
    assert.equal(readRequest(expected[2] as Buffer)?.body.length, 0);
  });

  it("passes over a frame longer than the limit, giving its id and length, and reads on", () => {
    const big = requestFrame(5, "/agent/v1/logs", "x".repeat(5_000));
    const next = requestFrame(6, "/agent/v1/poll", "{}");
    const all = Buffer.concat([big, next]);
    const expected = [{ oversized: true, id: 5, length: big.length - 4 }, Buffer.from(next.subarray(4))];
    for (const size of [1, 3, 7, 1000, all.length]) {
      const reader = new FrameReader(100);
      const frames = [];
      for (let at = 0; at < all.length; at += size) frames.push(...reader.push(all.subarray(at, at + size)));
      assert.deepEqual(frames, expected, `pieces of ${size}`);
    }
    assert.equal(isOversized(expected[0] as Oversized), true);
    assert.equal(isOversized(expected[1] as Buffer), false);
  });

  it("says a frame too short for its head is not one", () => {
    assert.equal(readRequest(Buffer.from([0, 0, 0, 1])), undefined);
    assert.equal(readRequest(Buffer.from([0, 0, 0, 1, 9, 47])), undefined, "a path longer than the frame");
    assert.equal(readAnswer(Buffer.from([0, 0, 0, 1, 0])), undefined);
  });
});
