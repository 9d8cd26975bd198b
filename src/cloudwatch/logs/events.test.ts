import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { AwsError } from "../../aws/errors.ts";
import { SqliteStore } from "../../store/sqlite.ts";
import type { Store } from "../../store/store.ts";
import { expireAllGroups, expireGroupEvents, pageBounds, readStream, scanGroup } from "./events.ts";
import { findGroup, requireGroup, setRetention } from "./groups.ts";
import { appendLogEvents } from "./ingest.ts";
import { deleteStream, requireStream } from "./streams.ts";

const scope = { region: "us-east-1", accountId: "000000000000" };
const NOW = new Date("2024-06-01T12:00:00Z");
const T = NOW.getTime();

let store: Store;
before(async () => {
  store = await SqliteStore.open({ path: ":memory:" });
});
after(async () => {
  await store.close();
});

function messagesOf(events: Array<{ message: string }>): string[] {
  return events.map((event) => event.message);
}

describe("log events in the store", () => {
  it("appendLogEvents creates the group and stream, and stores events in time order", async () => {
    await appendLogEvents(
      store,
      scope,
      "/ecs/web",
      "web/app/1",
      [
        { timestamp: T - 2000, message: "two" },
        { timestamp: T - 3000, message: "one" },
        { timestamp: T - 1000, message: "three" },
        { timestamp: T - 500, message: "" },
        { timestamp: T - 20 * 86_400_000, message: "too old" },
      ],
      { createGroup: true, now: NOW },
    );
    const page = await store.read(async (tx) => {
      const group = await requireGroup(tx, scope, "/ecs/web");
      const stream = await requireStream(tx, group, "web/app/1");
      assert.equal(stream.firstEventTimestamp, T - 3000);
      assert.equal(stream.lastEventTimestamp, T - 1000);
      assert.equal(group.storedBytes, "onetwothree".length);
      return readStream(tx, group, stream, { direction: "f", limit: 100 });
    });
    assert.deepEqual(messagesOf(page), ["one", "two", "three"]);
  });

  it("appendLogEvents without createGroup refuses a missing group, and bad names", async () => {
    const missing = appendLogEvents(store, scope, "nope", "s", [{ timestamp: T, message: "x" }], {
      createGroup: false,
      now: NOW,
    });
    await assert.rejects(
      missing,
      (error) => error instanceof AwsError && error.code === "ResourceNotFoundException",
    );
    const badGroup = appendLogEvents(store, scope, "bad name", "s", [], { createGroup: true, now: NOW });
    await assert.rejects(
      badGroup,
      (error) => error instanceof AwsError && error.code === "InvalidParameterException",
    );
    const badStream = appendLogEvents(store, scope, "g", "a:b", [], { createGroup: true, now: NOW });
    await assert.rejects(
      badStream,
      (error) => error instanceof AwsError && error.code === "InvalidParameterException",
    );
    assert.equal(await store.read((tx) => findGroup(tx, scope, "g")), undefined);
  });

  it("pages a stream forwards and backwards between boundaries", async () => {
    const events = Array.from({ length: 7 }, (_, i) => ({ timestamp: T - 10_000 + i, message: `e${i}` }));
    await appendLogEvents(store, scope, "paging", "s", events, { createGroup: true, now: NOW });
    await store.read(async (tx) => {
      const group = await requireGroup(tx, scope, "paging");
      const stream = await requireStream(tx, group, "s");
      const tail = await readStream(tx, group, stream, { direction: "b", limit: 3 });
      assert.deepEqual(messagesOf(tail), ["e4", "e5", "e6"]);
      const bounds = pageBounds(tail);
      assert.ok(bounds !== undefined);
      const earlier = await readStream(tx, group, stream, { direction: "b", from: bounds.first, limit: 3 });
      assert.deepEqual(messagesOf(earlier), ["e1", "e2", "e3"]);
      const later = await readStream(tx, group, stream, { direction: "f", from: bounds.last, limit: 3 });
      assert.deepEqual(later, []);
      const head = await readStream(tx, group, stream, { direction: "f", limit: 3, startTime: T - 9998 });
      assert.deepEqual(messagesOf(head), ["e2", "e3", "e4"]);
      const window = await readStream(tx, group, stream, {
        direction: "f",
        limit: 10,
        startTime: T - 9999,
        endTime: T - 9996,
      });
      assert.deepEqual(messagesOf(window), ["e1", "e2", "e3"]);
    });
  });

  it("scans a group with bounded work and says where to resume", async () => {
    const events = Array.from({ length: 10 }, (_, i) => ({ timestamp: T - 5000 + i, message: `n${i}` }));
    await appendLogEvents(store, scope, "scan", "a", events.slice(0, 5), { createGroup: true, now: NOW });
    await appendLogEvents(store, scope, "scan", "b", events.slice(5), { createGroup: true, now: NOW });
    await store.read(async (tx) => {
      const group = await requireGroup(tx, scope, "scan");
      const odd = (message: string) => Number(message.slice(1)) % 2 === 1;
      const first = await scanGroup(tx, group, { matches: odd, limit: 100, budget: 4 });
      assert.deepEqual(messagesOf(first.events), ["n1", "n3"]);
      assert.ok(first.resumeAfter !== undefined);
      const rest = await scanGroup(tx, group, {
        after: first.resumeAfter,
        matches: odd,
        limit: 100,
        budget: 100,
      });
      assert.deepEqual(messagesOf(rest.events), ["n5", "n7", "n9"]);
      assert.equal(rest.resumeAfter, undefined);
    });
  });

  it("expires events past retention once, and deleting a stream gives its bytes back", async () => {
    const day = 86_400_000;
    await appendLogEvents(
      store,
      scope,
      "retained",
      "s",
      [
        { timestamp: T - 3 * day, message: "old" },
        { timestamp: T - 1000, message: "new" },
      ],
      { createGroup: true, now: NOW },
    );
    const later = T + 2 * day;
    const deleted = await store.transaction(async (tx) => {
      const group = await requireGroup(tx, scope, "retained");
      await setRetention(tx, group, 3);
      const retained = await requireGroup(tx, scope, "retained");
      const first = await expireGroupEvents(tx, retained, later);
      const second = await expireGroupEvents(tx, retained, later);
      return [first, second];
    });
    assert.deepEqual(deleted, [1, 0]);
    await store.transaction(async (tx) => {
      const group = await requireGroup(tx, scope, "retained");
      assert.equal(group.storedBytes, 3);
      await deleteStream(tx, await requireStream(tx, group, "s"));
      assert.equal((await requireGroup(tx, scope, "retained")).storedBytes, 0);
    });
  });

  it("expires the events of every group with a retention policy, written to or not", async () => {
    const day = 86_400_000;
    for (const name of ["swept-a", "swept-b", "kept-forever"]) {
      await appendLogEvents(
        store,
        scope,
        name,
        "s",
        [
          { timestamp: T - 10 * day, message: "ancient" },
          { timestamp: T - 1000, message: "fresh" },
        ],
        { createGroup: true, now: NOW },
      );
    }
    await store.transaction(async (tx) => {
      await setRetention(tx, await requireGroup(tx, scope, "swept-a"), 1);
      await setRetention(tx, await requireGroup(tx, scope, "swept-b"), 5);
    });
    const swept = await expireAllGroups(store, T);
    assert.ok(swept >= 2, `${swept} events swept`);
    assert.equal(await expireAllGroups(store, T), 0);
    for (const [name, expected] of [
      ["swept-a", ["fresh"]],
      ["swept-b", ["fresh"]],
      ["kept-forever", ["ancient", "fresh"]],
    ] as const) {
      const messages = await store.read(async (tx) => {
        const group = await requireGroup(tx, scope, name);
        const rows = await tx.all<{ message: string }>(
          "SELECT message FROM logs_events WHERE group_id = ? ORDER BY event_time",
          group.id,
        );
        return rows.map((r) => r.message);
      });
      assert.deepEqual(messages, expected, name);
    }
  });
});
