import { closeSync, fdatasync, fstatSync, mkdirSync, openSync, statSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { Checkpointer } from "./checkpointer.ts";
import { migrations as defaultMigrations } from "./migrations.ts";
import type { Migration, Row, SqlValue, Store, Tx } from "./store.ts";

export interface SqliteStoreOptions {
  /** Path of the database file, or ":memory:" for tests. */
  path: string;
  migrations?: Migration[];
  /**
   * `FULL` (the default) makes every acknowledged commit survive power loss
   * (SQLite writes the log, the store syncs it off the event loop: `WalSync`);
   * `NORMAL` survives a killed process but not a lost machine.
   */
  synchronous?: "FULL" | "NORMAL";
  /** Tests: what becomes of each sync of the log (`FULL` only), e.g. held until they say. */
  onLogSync?: (sync: Promise<void>) => Promise<void>;
}

type Statement = Database.Statement<SqlValue[]>;

/** One better-sqlite3 connection with its prepared statements. */
class Connection implements Tx {
  readonly db: Database.Database;
  /** The transaction running on this connection, for its afterCommit and onRollback hooks. */
  current: Pending | undefined;
  private readonly statements = new Map<string, Statement>();

  constructor(db: Database.Database) {
    this.db = db;
  }

  private prepare(sql: string): Statement {
    let statement = this.statements.get(sql);
    if (statement === undefined) {
      statement = this.db.prepare<SqlValue[]>(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  async get<T extends Row = Row>(sql: string, ...params: SqlValue[]): Promise<T | undefined> {
    return this.prepare(sql).get(...params) as T | undefined;
  }

  async all<T extends Row = Row>(sql: string, ...params: SqlValue[]): Promise<T[]> {
    return this.prepare(sql).all(...params) as T[];
  }

  async run(sql: string, ...params: SqlValue[]): Promise<number> {
    return this.prepare(sql).run(...params).changes;
  }

  afterCommit(fn: () => void): void {
    if (this.current === undefined) throw new Error("afterCommit is only for write transactions");
    this.current.hooks.push(fn);
  }

  onRollback(fn: () => void): void {
    if (this.current === undefined) throw new Error("onRollback is only for write transactions");
    this.current.undo.push(fn);
  }
}

/** One transaction waiting for its turn. */
interface Pending {
  fn: (tx: Tx) => Promise<unknown>;
  resolve(value: unknown): void;
  reject(error: unknown): void;
  hooks: Array<() => void>;
  undo: Array<() => void>;
}

/** Runs a transaction's onRollback hooks, last first. */
function undo(entry: Pending): void {
  for (const fn of entry.undo.reverse()) fn();
  entry.undo.length = 0;
  entry.hooks.length = 0;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** A committed transaction's function, once run: it is not kept. */
const COMMITTED = async () => undefined;

/** At most this many queued transactions share one commit, so the first of them is not kept waiting long. */
const MAX_GROUP = 64;

/**
 * Page cache of the writer and of the reader connection, KiB. The writer's is kept small on
 * purpose: the end of a commit can walk the cache's whole hash table (`pcache1TruncateUnsafe`
 * under `pager_end_transaction`), a cost that grows with the cache (2% of the server's CPU at
 * 64 MiB while tasks were being started, 0.6% at 16 MiB; 15% of a micro-benchmark's at 256 MiB),
 * while what the writer reads again is mostly pages it has just written (new task ARNs sort by
 * time) and the indexes' upper levels.
 */
const WRITER_CACHE_KIB = 16 * 1024;
const READER_CACHE_KIB = 32 * 1024;

/** Log pages after which a commit checkpoints on the event loop, when the checkpoint worker fell behind. */
const BACKSTOP_PAGES = 8000;

/**
 * The write-ahead log, made durable off the event loop. SQLite itself then
 * writes commits without syncing them (`synchronous = NORMAL`, which still
 * syncs around checkpoints and when the log starts over); after each commit
 * the store syncs the log with fdatasync on libuv's thread pool and only then
 * acknowledges the commit, so what is acknowledged is as durable as with
 * `FULL`, and the event loop serves requests while the disk works.
 */
class WalSync {
  private fd: number | undefined;
  private ino = -1;
  /** The sync running now, and the next one, which everyone asking meanwhile shares. */
  private running: Promise<void> | undefined;
  private following: Promise<void> | undefined;

  constructor(
    private readonly path: string,
    private readonly onSync: (sync: Promise<void>) => Promise<void> = (sync) => sync,
  ) {}

  /**
   * Resolves once the log as it is now is on disk (fails, never throws). One sync runs at a time:
   * whoever asks while one runs shares the next, which starts when it ends and covers every
   * commit made before it starts (one fdatasync covers the whole file). The next fails if the
   * one it followed did: what was committed meanwhile may rest on what that one did not make
   * durable. Whoever asks once a failure is known starts afresh.
   */
  sync(): Promise<void> {
    if (this.running === undefined) return this.start();
    this.following ??= this.running.then(
      () => {
        this.following = undefined;
        return this.start();
      },
      (error: unknown) => {
        this.following = undefined;
        // Synced all the same (the rows are there), and failed with the earlier one.
        return this.start().then(
          () => Promise.reject(error),
          () => Promise.reject(error),
        );
      },
    );
    return this.following;
  }

  /** Settles once every sync asked for so far has, whether or not it succeeded. */
  settled(): Promise<void> {
    return (this.following ?? this.running ?? Promise.resolve()).then(settledAnyway, settledAnyway);
  }

  private start(): Promise<void> {
    const sync = this.syncNow();
    this.running = sync;
    void sync.then(settledAnyway, settledAnyway).then(() => {
      if (this.running === sync) this.running = undefined;
    });
    return sync;
  }

  private async syncNow(): Promise<void> {
    const fd = this.open();
    return this.onSync(
      new Promise((resolve, reject) =>
        fdatasync(fd, (error) => (error === null ? resolve() : reject(error))),
      ),
    );
  }

  /** The log's descriptor, opened again if SQLite ever replaced the file. */
  private open(): number {
    const ino = statSync(this.path).ino;
    if (this.fd === undefined || ino !== this.ino) {
      if (this.fd !== undefined) closeSync(this.fd);
      this.fd = openSync(this.path, "r");
      this.ino = fstatSync(this.fd).ino;
    }
    return this.fd;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

function settledAnyway(): void {}

/**
 * Serialises async critical sections: a connection has one transaction at a
 * time.
 */
class Queue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn, fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/**
 * The embedded `Store`: SQLite in WAL mode. Writes go through one connection,
 * one at a time; reads use a second connection so they see only committed
 * data and never wait for a writer.
 *
 * Group commit: the write transactions that queue up while one batch runs
 * make the next batch. A batch is one SQLite transaction (one WAL sync with
 * `synchronous = FULL`) in which each caller's transaction runs inside its own
 * savepoint: one that throws is rolled back to its savepoint and fails alone;
 * the others resolve only once the batch has committed. Under load this turns
 * a sync per write into a sync per batch; alone, a transaction commits at once.
 * A transaction that added afterCommit hooks ends its batch, so the hooks run
 * before any later transaction starts and in-memory views never lag behind.
 *
 * With `synchronous = FULL` the log is synced after each batch's commit off
 * the event loop (`WalSync`), and the batch is acknowledged once that sync
 * and every earlier one are done. The next batch runs meanwhile: the disk
 * syncs one batch while the event loop runs the next (they took turns, and
 * a sync of a batch of new tasks takes as long as a third of the batch's
 * own work). One sync runs at a time; the batches that commit while it
 * runs share the next. A later batch may build on an earlier one that is not yet
 * durable, which is safe because the log is written in order: no sync can
 * make the later one durable without the earlier, and none of its callers
 * is answered before both are. A read likewise answers only once what it
 * saw is durable. A batch with afterCommit hooks is the exception: the next
 * one waits for its sync, so hooks still run before any later transaction.
 */
export class SqliteStore implements Store {
  private readonly writer: Connection;
  private readonly reader: Connection;
  private readonly reads = new Queue();
  private pending: Pending[] = [];
  private draining: Promise<void> | undefined;
  /** Syncs the log after each commit, when commits must be durable before they are acknowledged. */
  private readonly wal: WalSync | undefined;

  /** Checkpoints the log off the event loop (file databases). */
  private readonly checkpointer: Checkpointer | undefined;

  private constructor(
    writer: Connection,
    reader: Connection,
    wal: WalSync | undefined,
    checkpointer: Checkpointer | undefined,
  ) {
    this.writer = writer;
    this.reader = reader;
    this.wal = wal;
    this.checkpointer = checkpointer;
  }

  static async open(options: SqliteStoreOptions): Promise<SqliteStore> {
    const memory = options.path === ":memory:";
    if (!memory) mkdirSync(dirname(options.path), { recursive: true });
    const db = new Database(options.path);
    db.pragma("journal_mode = WAL");
    // FULL: SQLite writes, the store syncs (WalSync) before it acknowledges.
    const full = (options.synchronous ?? "FULL") === "FULL";
    db.pragma(`synchronous = ${full && !memory ? "NORMAL" : (options.synchronous ?? "FULL")}`);
    db.pragma("foreign_keys = ON");
    db.pragma("busy_timeout = 5000");
    // Pages kept in memory (SQLite's default is 2 MiB; see WRITER_CACHE_KIB).
    db.pragma(`cache_size = -${WRITER_CACHE_KIB}`);
    // Each transaction of a group runs in a savepoint, whose journal of the pages it changes is a
    // temporary file by default: written through the kernel for every page, and thrown away at
    // the commit. In memory it is a copy of each page a group changes (a heartbeat flush over
    // 5,000 instances changes a few thousand).
    db.pragma("temp_store = MEMORY");
    // An in-memory database is private to its connection, so it reads through the writer.
    const readDb = memory ? db : new Database(options.path, { readonly: true });
    if (!memory) readDb.pragma("busy_timeout = 5000");
    if (!memory) readDb.pragma(`cache_size = -${READER_CACHE_KIB}`);
    const wal = full && !memory ? new WalSync(`${options.path}-wal`, options.onLogSync) : undefined;
    // SQLite's own checkpoint (inside a COMMIT, on the event loop) only as a backstop.
    if (!memory) db.pragma(`wal_autocheckpoint = ${BACKSTOP_PAGES}`);
    const checkpointer = memory ? undefined : new Checkpointer(options.path);
    const store = new SqliteStore(new Connection(db), new Connection(readDb), wal, checkpointer);
    await store.migrate(options.migrations ?? defaultMigrations);
    return store;
  }

  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ fn, resolve: resolve as (value: unknown) => void, reject, hooks: [], undo: [] });
      this.draining ??= this.drain();
    });
  }

  private async drain(): Promise<void> {
    try {
      while (this.pending.length > 0) {
        await this.commitGroup();
        // Let what the group's callers do next (send their replies) happen before the next group
        // runs: a long transaction is one chain of microtasks that nothing else interrupts.
        await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      this.draining = undefined;
    }
  }

  /**
   * Runs queued transactions in one SQLite transaction, each in a savepoint, and commits them
   * together. Before committing it lets the event loop turn once, so that requests already
   * waiting on their sockets can join the group rather than wait for a commit of their own.
   */
  private async commitGroup(): Promise<void> {
    const db = this.writer.db;
    const group: Pending[] = [];
    try {
      db.exec("BEGIN IMMEDIATE");
    } catch (error) {
      for (const entry of this.pending.splice(0)) entry.reject(error);
      return;
    }
    const outcomes: Outcome[] = [];
    let ended = false;
    while (!ended && group.length < MAX_GROUP) {
      const entry = this.pending.shift();
      if (entry === undefined) {
        await new Promise((resolve) => setImmediate(resolve));
        if (this.pending.length === 0) break;
        continue;
      }
      group.push(entry);
      db.exec("SAVEPOINT wharf_tx");
      this.writer.current = entry;
      try {
        const value = await entry.fn(this.writer);
        db.exec("RELEASE wharf_tx");
        outcomes.push({ ok: true, value });
        // Hooks keep in-memory views equal to what is committed: they run before the next transaction.
        if (entry.hooks.length > 0) ended = true;
      } catch (error) {
        undo(entry);
        outcomes.push({ ok: false, error });
        if (!db.inTransaction) {
          // SQLite gave up the whole transaction (e.g. disk full): the earlier ones are lost with it.
          this.settle(group, outcomes, { error });
          return;
        }
        db.exec("ROLLBACK TO wharf_tx");
        db.exec("RELEASE wharf_tx");
      } finally {
        this.writer.current = undefined;
      }
    }
    try {
      db.exec("COMMIT");
    } catch (error) {
      if (db.inTransaction) db.exec("ROLLBACK");
      this.settle(group, outcomes, { error });
      return;
    }
    this.checkpointer?.committed();
    // Committed: nothing of the group is undone from here on. What its undo hooks and functions
    // hold (every record they wrote) is let go now rather than once the log's sync is done, which
    // under load is after the next group's: long enough for the young generation's collections
    // to copy it, and to keep it as old.
    for (const entry of group) {
      entry.undo.length = 0;
      entry.fn = COMMITTED;
    }
    if (this.wal === undefined) {
      this.settle(group, outcomes, undefined);
      return;
    }
    // Durable once its sync is done, which follows every earlier one (and fails with one that did).
    const settled = this.wal.sync().then(
      () => this.settle(group, outcomes, undefined),
      // Committed (and visible) but perhaps not durable: no one is told it is, nothing is undone,
      // and the afterCommit hooks run (the rows are there; views must stay equal to them).
      (error: unknown) => this.settle(group, outcomes, undefined, { error }),
    );
    // Hooks run before any later transaction starts: such a batch is settled before the next runs.
    if (group.some((entry) => entry.hooks.length > 0)) await settled;
  }

  /**
   * Resolves or rejects each transaction of a group; `lost` is why those that succeeded were not
   * committed, `unsynced` why those that committed are rejected all the same (after their hooks).
   */
  private settle(
    group: Pending[],
    outcomes: Outcome[],
    lost: { error: unknown } | undefined,
    unsynced?: { error: unknown },
  ): void {
    if (lost !== undefined) for (let i = outcomes.length - 1; i >= 0; i--) undo(group[i] as Pending);
    for (const [i, outcome] of outcomes.entries()) {
      const entry = group[i] as Pending;
      if (!outcome.ok) {
        entry.reject(outcome.error);
      } else if (lost !== undefined) {
        entry.reject(lost.error);
      } else {
        for (const hook of entry.hooks) {
          try {
            hook();
          } catch (error) {
            // The transaction did commit; a hook that fails must not keep its caller (or the others) waiting.
            process.emitWarning(`afterCommit hook failed: ${String(error)}`);
          }
        }
        if (unsynced === undefined) entry.resolve(outcome.value);
        else entry.reject(unsynced.error);
      }
    }
  }

  async read<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    if (this.reader === this.writer || this.reader.db === this.writer.db) return this.transaction(fn);
    const value = await this.reads.run(async () => {
      const db = this.reader.db;
      db.exec("BEGIN");
      try {
        return await fn(this.reader);
      } finally {
        if (db.inTransaction) db.exec("COMMIT");
      }
    });
    // What the read saw is answered once it is durable, as is every batch committed by now. (After
    // a failed sync the rows are there all the same, and read as they are.)
    await this.wal?.settled();
    return value;
  }

  async close(): Promise<void> {
    // Let queued work finish first, so nothing acknowledged is cut off.
    while (this.draining !== undefined) await this.draining;
    await this.wal?.settled();
    await this.reads.run(async () => undefined);
    await this.checkpointer?.close();
    if (this.reader.db !== this.writer.db) this.reader.db.close();
    this.writer.db.close();
    this.wal?.close();
  }

  private async migrate(migrations: Migration[]): Promise<void> {
    this.writer.db.exec(
      "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    );
    const ordered = [...migrations].sort((a, b) => a.version - b.version);
    for (const migration of ordered) {
      await this.transaction(async (tx) => {
        const applied = await tx.get(
          "SELECT version FROM schema_migrations WHERE version = ?",
          migration.version,
        );
        if (applied !== undefined) return;
        for (const statement of migration.statements) await tx.run(statement);
        await migration.rewrite?.(tx);
        await tx.run(
          "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
          migration.version,
          migration.name,
          Date.now(),
        );
      });
    }
  }
}
