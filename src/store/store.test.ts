import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { SqliteStore } from "./sqlite.ts";
import type { Migration, Store } from "./store.ts";

const schema: Migration[] = [
  { version: 1, name: "items", statements: ["CREATE TABLE items (id TEXT PRIMARY KEY, n INTEGER NOT NULL)"] },
];

/**
 * The contract every Store implementation must keep. A PostgreSQL store
 * runs this same suite.
 */
function storeContract(name: string, open: (migrations: Migration[]) => Promise<Store>): void {
  describe(`Store contract: ${name}`, () => {
    it("commits everything a transaction wrote, together", async () => {
      const store = await open(schema);
      await store.transaction(async (tx) => {
        await tx.run("INSERT INTO items (id, n) VALUES (?, ?)", "a", 1);
        await tx.run("INSERT INTO items (id, n) VALUES (?, ?)", "b", 2);
      });
      const rows = await store.read((tx) =>
        tx.all<{ id: string; n: number }>("SELECT id, n FROM items ORDER BY id"),
      );
      assert.deepEqual(rows, [
        { id: "a", n: 1 },
        { id: "b", n: 2 },
      ]);
      await store.close();
    });

    it("keeps nothing of a transaction that throws", async () => {
      const store = await open(schema);
      await assert.rejects(
        store.transaction(async (tx) => {
          await tx.run("INSERT INTO items (id, n) VALUES (?, ?)", "x", 1);
          throw new Error("changed my mind");
        }),
        /changed my mind/,
      );
      const row = await store.read((tx) => tx.get("SELECT id FROM items WHERE id = ?", "x"));
      assert.equal(row, undefined);
      await store.close();
    });

    it("runs concurrent transactions one after another (no lost update)", async () => {
      const store = await open(schema);
      await store.transaction((tx) => tx.run("INSERT INTO items (id, n) VALUES ('counter', 0)"));
      await Promise.all(
        Array.from({ length: 50 }, () =>
          store.transaction(async (tx) => {
            const row = await tx.get<{ n: number }>("SELECT n FROM items WHERE id = 'counter'");
            await new Promise((resolve) => setImmediate(resolve));
            await tx.run("UPDATE items SET n = ? WHERE id = 'counter'", (row?.n ?? 0) + 1);
          }),
        ),
      );
      const row = await store.read((tx) => tx.get<{ n: number }>("SELECT n FROM items WHERE id = 'counter'"));
      assert.equal(row?.n, 50);
      await store.close();
    });

    it("fails a transaction that throws alone when others commit with it", async () => {
      const store = await open(schema);
      const results = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) =>
          store.transaction(async (tx) => {
            await tx.run("INSERT INTO items (id, n) VALUES (?, ?)", `item-${i}`, i);
            await new Promise((resolve) => setImmediate(resolve));
            if (i % 3 === 0) throw new Error(`no ${i}`);
            return i;
          }),
        ),
      );
      for (const [i, result] of results.entries()) {
        if (i % 3 === 0) assert.equal(result.status, "rejected");
        else assert.deepEqual(result, { status: "fulfilled", value: i });
      }
      const rows = await store.read((tx) => tx.all<{ n: number }>("SELECT n FROM items ORDER BY n"));
      assert.deepEqual(
        rows.map((r) => r.n),
        Array.from({ length: 20 }, (_, i) => i).filter((i) => i % 3 !== 0),
      );
      await store.close();
    });

    it("runs afterCommit hooks once committed, in order, and never for a rollback", async () => {
      const store = await open(schema);
      const seen: string[] = [];
      await Promise.allSettled([
        store.transaction(async (tx) => {
          tx.afterCommit(() => seen.push("a1"));
          await tx.run("INSERT INTO items (id, n) VALUES ('a', 1)");
          tx.afterCommit(() => seen.push("a2"));
          assert.deepEqual(seen, []);
        }),
        store.transaction(async (tx) => {
          tx.afterCommit(() => seen.push("b"));
          throw new Error("rolled back");
        }),
        store.transaction(async (tx) => {
          tx.afterCommit(() => seen.push("c"));
        }),
      ]);
      assert.deepEqual(seen, ["a1", "a2", "c"]);
      await store.close();
    });

    it("runs onRollback hooks, last first, only for a transaction whose writes are undone", async () => {
      const store = await open(schema);
      const seen: string[] = [];
      await Promise.allSettled([
        store.transaction(async (tx) => {
          tx.onRollback(() => seen.push("kept"));
        }),
        store.transaction(async (tx) => {
          tx.onRollback(() => seen.push("first"));
          tx.onRollback(() => seen.push("second"));
          throw new Error("undone");
        }),
      ]);
      assert.deepEqual(seen, ["second", "first"]);
      await store.close();
    });

    it("runs a transaction's hooks before any later transaction starts", async () => {
      const store = await open(schema);
      let applied = 0;
      const seenByLater: number[] = [];
      await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          store.transaction(async (tx) => {
            seenByLater.push(applied);
            await tx.run("INSERT INTO items (id, n) VALUES (?, ?)", `h-${i}`, i);
            if (i % 2 === 0) tx.afterCommit(() => applied++);
          }),
        ),
      );
      assert.deepEqual(seenByLater, [0, 1, 1, 2, 2, 3, 3, 4, 4, 5]);
      await store.close();
    });

    it("reports how many rows a statement changed", async () => {
      const store = await open(schema);
      const changed = await store.transaction(async (tx) => {
        await tx.run("INSERT INTO items (id, n) VALUES ('p', 1), ('q', 1), ('r', 2)");
        return tx.run("UPDATE items SET n = 9 WHERE n = 1");
      });
      assert.equal(changed, 2);
      await store.close();
    });
  });
}

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
function freshPath(): string {
  const dir = mkdtempSync(join(tmpdir(), "wharf-store-"));
  dirs.push(dir);
  return join(dir, "db.sqlite");
}

storeContract("SQLite file", (migrations) => SqliteStore.open({ path: freshPath(), migrations }));
storeContract("SQLite in memory", (migrations) => SqliteStore.open({ path: ":memory:", migrations }));

describe("SqliteStore", () => {
  it("keeps committed writes across a reopen and applies each migration once", async () => {
    const path = freshPath();
    const first = await SqliteStore.open({ path, migrations: schema });
    await first.transaction((tx) => tx.run("INSERT INTO items (id, n) VALUES ('kept', 7)"));
    await first.close();
    const more: Migration[] = [
      ...schema,
      { version: 2, name: "more", statements: ["ALTER TABLE items ADD COLUMN label TEXT"] },
    ];
    const second = await SqliteStore.open({ path, migrations: more });
    const row = await second.read((tx) => tx.get("SELECT id, n, label FROM items"));
    assert.deepEqual(row, { id: "kept", n: 7, label: null });
    const versions = await second.read((tx) =>
      tx.all("SELECT version FROM schema_migrations ORDER BY version"),
    );
    assert.deepEqual(versions, [{ version: 1 }, { version: 2 }]);
    await second.close();
    // A third open with the same migrations changes nothing and does not fail on the ALTER.
    const third = await SqliteStore.open({ path, migrations: more });
    await third.close();
  });

  it("rolls back a migration that fails and leaves the schema where it was", async () => {
    const path = freshPath();
    const broken: Migration[] = [
      ...schema,
      { version: 2, name: "half", statements: ["CREATE TABLE half (id TEXT)", "THIS IS NOT SQL"] },
    ];
    await assert.rejects(SqliteStore.open({ path, migrations: broken }));
    const store = await SqliteStore.open({ path, migrations: schema });
    const half = await store.read((tx) => tx.get("SELECT name FROM sqlite_master WHERE name = 'half'"));
    assert.equal(half, undefined);
    await store.close();
  });

  it("rewrites existing rows in a migration's own transaction, once, and not at all if the rewrite fails", async () => {
    const path = freshPath();
    const first = await SqliteStore.open({ path, migrations: schema });
    await first.transaction(async (tx) => {
      await tx.run("INSERT INTO items (id, n) VALUES ('a', 1)");
      await tx.run("INSERT INTO items (id, n) VALUES ('b', 2)");
    });
    await first.close();
    const step = (fail: boolean): Migration => ({
      version: 2,
      name: "doubled",
      statements: ["ALTER TABLE items ADD COLUMN doubled INTEGER"],
      rewrite: async (tx) => {
        for (const row of await tx.all<{ id: string; n: number }>("SELECT id, n FROM items ORDER BY id")) {
          await tx.run("UPDATE items SET doubled = ? WHERE id = ?", row.n * 2, row.id);
          if (fail) throw new Error("rewrite failed half-way");
        }
      },
    });
    await assert.rejects(SqliteStore.open({ path, migrations: [...schema, step(true)] }), /half-way/);
    const columns = async (store: SqliteStore) =>
      (await store.read((tx) => tx.all<{ name: string }>("SELECT name FROM pragma_table_info('items')"))).map(
        (c) => c.name,
      );
    const unchanged = await SqliteStore.open({ path, migrations: schema });
    assert.deepEqual(await columns(unchanged), ["id", "n"]);
    await unchanged.close();
    const second = await SqliteStore.open({ path, migrations: [...schema, step(false)] });
    assert.deepEqual(await second.read((tx) => tx.all("SELECT id, doubled FROM items ORDER BY id")), [
      { id: "a", doubled: 2 },
      { id: "b", doubled: 4 },
    ]);
    await second.transaction((tx) => tx.run("UPDATE items SET doubled = 0"));
    await second.close();
    // Applied once: opening again does not rewrite the rows.
    const third = await SqliteStore.open({ path, migrations: [...schema, step(false)] });
    assert.deepEqual(await third.read((tx) => tx.all("SELECT doubled FROM items")), [
      { doubled: 0 },
      { doubled: 0 },
    ]);
    await third.close();
  });

  it("acknowledges a commit, and lets readers see it, only once the log is synced", async () => {
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let holding = false;
    const store = await SqliteStore.open({
      path: freshPath(),
      migrations: schema,
      onLogSync: (sync) => (holding ? sync.then(() => held) : sync),
    });
    holding = true;
    let acknowledged = false;
    const writing = store
      .transaction((tx) => tx.run("INSERT INTO items (id, n) VALUES ('synced', 1)"))
      .then(() => {
        acknowledged = true;
      });
    // The commit has happened (the write ran at once, alone); its sync is held.
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(acknowledged, false);
    let seen: unknown = "not yet";
    const reading = store
      .read((tx) => tx.get("SELECT id FROM items WHERE id = 'synced'"))
      .then((row) => {
        seen = row;
      });
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(seen, "not yet");
    release();
    await Promise.all([writing, reading]);
    assert.equal(acknowledged, true);
    assert.deepEqual(seen, { id: "synced" });
    await store.close();
  });

  /** A store whose log syncs are each held until the test settles them, in the order they start. */
  async function heldSyncs() {
    const syncs: Array<{ settle: (error?: Error) => void }> = [];
    let holding = false;
    const store = await SqliteStore.open({
      path: freshPath(),
      migrations: schema,
      onLogSync: (sync) => {
        if (!holding) return sync;
        return new Promise<void>((resolve, reject) => {
          syncs.push({
            settle: (error) => {
              void sync.then(() => (error === undefined ? resolve() : reject(error)), reject);
            },
          });
        });
      },
    });
    holding = true;
    return { store, syncs };
  }

  const turn = () => new Promise((resolve) => setTimeout(resolve, 20));

  it("runs and commits the next batch while the last one's sync runs, syncs it next, and acknowledges each in order once its sync and every earlier one are done", async () => {
    const { store, syncs } = await heldSyncs();
    const acknowledged: string[] = [];
    const first = store
      .transaction((tx) => tx.run("INSERT INTO items (id, n) VALUES ('first', 1)"))
      .then(() => acknowledged.push("first"));
    await turn();
    assert.equal(syncs.length, 1);
    // The second batch runs, sees the first (committed, not yet durable) and commits; the third
    // commits too. One sync runs at a time: theirs, one for both, starts when the first's ends.
    const second = store
      .transaction(async (tx) => {
        const row = await tx.get<{ n: number }>("SELECT n FROM items WHERE id = 'first'");
        await tx.run("INSERT INTO items (id, n) VALUES ('second', ?)", (row?.n ?? 0) + 1);
      })
      .then(() => acknowledged.push("second"));
    await turn();
    const third = store
      .transaction((tx) => tx.run("INSERT INTO items (id, n) VALUES ('third', 3)"))
      .then(() => acknowledged.push("third"));
    await turn();
    assert.equal(syncs.length, 1, "no second sync while the first runs");
    let seen: unknown = "not yet";
    const reading = store
      .read((tx) => tx.get("SELECT n FROM items WHERE id = 'second'"))
      .then((row) => {
        seen = row;
      });
    await turn();
    assert.deepEqual(acknowledged, []);
    assert.equal(seen, "not yet", "a read answers once what it saw is durable");
    syncs[0]?.settle();
    await first;
    await turn();
    assert.deepEqual(acknowledged, ["first"]);
    assert.equal(syncs.length, 2, "the next sync, shared by the two batches committed meanwhile");
    assert.equal(seen, "not yet");
    syncs[1]?.settle();
    await Promise.all([second, third, reading]);
    assert.deepEqual(acknowledged, ["first", "second", "third"]);
    assert.deepEqual(seen, { n: 2 });
    assert.equal(syncs.length, 2);
    await store.close();
  });

  it("fails a batch committed while an earlier batch's sync ran when that sync fails, and not the batches after", async () => {
    const { store, syncs } = await heldSyncs();
    const first = store.transaction((tx) => tx.run("INSERT INTO items (id, n) VALUES ('first', 1)"));
    await turn();
    const second = store.transaction((tx) => tx.run("INSERT INTO items (id, n) VALUES ('second', 2)"));
    await turn();
    syncs[0]?.settle(new Error("EIO: sync failed"));
    await assert.rejects(first, /EIO: sync failed/);
    await turn();
    // The second's own sync succeeds; it rests on the first, so it fails with it.
    syncs[1]?.settle();
    await assert.rejects(second, /EIO: sync failed/);
    // Committed after the failure was known: it rests on rows that are there, and stands alone.
    const third = store.transaction((tx) => tx.run("INSERT INTO items (id, n) VALUES ('third', 3)"));
    await turn();
    syncs[2]?.settle();
    await third;
    assert.deepEqual(await store.read((tx) => tx.all("SELECT id FROM items ORDER BY n")), [
      { id: "first" },
      { id: "second" },
      { id: "third" },
    ]);
    await store.close();
  });

  it("starts no transaction after a batch with afterCommit hooks until that batch is synced and its hooks ran", async () => {
    const { store, syncs } = await heldSyncs();
    const order: string[] = [];
    const first = store.transaction(async (tx) => {
      await tx.run("INSERT INTO items (id, n) VALUES ('first', 1)");
      tx.afterCommit(() => order.push("hook"));
    });
    await turn();
    const second = store.transaction(async () => {
      order.push("second runs");
    });
    await turn();
    assert.deepEqual(order, []);
    syncs[0]?.settle();
    await first;
    await turn();
    syncs[1]?.settle();
    await second;
    assert.deepEqual(order, ["hook", "second runs"]);
    await store.close();
  });

  it("rejects a commit whose log sync fails, still runs its afterCommit hooks, and carries on", async () => {
    let failing = false;
    const store = await SqliteStore.open({
      path: freshPath(),
      migrations: schema,
      onLogSync: (sync) => (failing ? sync.then(() => Promise.reject(new Error("EIO: sync failed"))) : sync),
    });
    failing = true;
    let hookRan = false;
    await assert.rejects(
      store.transaction(async (tx) => {
        await tx.run("INSERT INTO items (id, n) VALUES ('unsynced', 1)");
        tx.afterCommit(() => {
          hookRan = true;
        });
      }),
      /EIO: sync failed/,
    );
    // Committed and visible, though nobody was told it is durable; in-memory views followed it.
    assert.equal(hookRan, true);
    failing = false;
    assert.deepEqual(await store.read((tx) => tx.get("SELECT id FROM items WHERE id = 'unsynced'")), {
      id: "unsynced",
    });
    await store.transaction((tx) => tx.run("INSERT INTO items (id, n) VALUES ('after', 2)"));
    assert.deepEqual(await store.read((tx) => tx.get("SELECT n FROM items WHERE id = 'after'")), { n: 2 });
    await store.close();
  });

  it("lets readers see only committed data while a write is under way", async () => {
    const store = await SqliteStore.open({ path: freshPath(), migrations: schema });
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const writing = store.transaction(async (tx) => {
      await tx.run("INSERT INTO items (id, n) VALUES ('pending', 1)");
      await gate;
    });
    await new Promise((resolve) => setImmediate(resolve));
    const during = await store.read((tx) => tx.get("SELECT id FROM items WHERE id = 'pending'"));
    assert.equal(during, undefined);
    release();
    await writing;
    const afterCommit = await store.read((tx) => tx.get("SELECT id FROM items WHERE id = 'pending'"));
    assert.deepEqual(afterCommit, { id: "pending" });
    await store.close();
  });
});
