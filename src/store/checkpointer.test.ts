import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import Database from "better-sqlite3";
import { Checkpointer } from "./checkpointer.ts";

const dir = mkdtempSync(join(tmpdir(), "wharf-checkpoint-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("Checkpointer", () => {
  it("copies the whole log into the database from its worker, once asked, and closes", async () => {
    const path = join(dir, "db.sqlite");
    const db = new Database(path);
    db.pragma("journal_mode = WAL");
    db.pragma("wal_autocheckpoint = 0");
    db.exec("CREATE TABLE t (n INTEGER)");
    const insert = db.prepare("INSERT INTO t (n) VALUES (?)");
    for (let i = 0; i < 200; i++) insert.run(i);
    // [busy, frames in the log, frames checkpointed], as a no-op checkpoint reports them.
    const state = () => db.prepare("PRAGMA wal_checkpoint(PASSIVE)").raw().get() as number[];
    const checkpointer = new Checkpointer(path);
    checkpointer.committed(Number.POSITIVE_INFINITY);
    await checkpointer.idle();
    const [, frames, copied] = state();
    assert.ok((frames ?? 0) > 0);
    assert.equal(copied, frames);
    // Asked again at once, it waits for its interval.
    checkpointer.committed(Number.POSITIVE_INFINITY);
    await checkpointer.close();
    await checkpointer.close();
    db.close();
    const reopened = new Database(path, { readonly: true });
    assert.deepEqual(reopened.prepare("SELECT count(*) AS n FROM t").get(), { n: 200 });
    reopened.close();
  });
});
