import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { migrations as defaultMigrations } from "./migrations.ts";
import type { Migration, Row, SqlValue, Store, Tx } from "./store.ts";

export interface SqliteStoreOptions {
  /** Path of the database file, or ":memory:" for tests. */
  path: string;
  migrations?: Migration[];
  /**
   * `FULL` (the default) makes every acknowledged commit survive power loss;
   * `NORMAL` survives a killed process but not a lost machine.
   */
  synchronous?: "FULL" | "NORMAL";
}

type Statement = Database.Statement<SqlValue[]>;

/** One better-sqlite3 connection with its prepared statements. */
class Connection implements Tx {
  readonly db: Database.Database;
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
}

/**
 * Serialises async critical sections: SQLite allows one writer, and a
 * connection has one transaction at a time.
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
 * The embedded `Store`: SQLite in WAL mode. Writes go through one connection
 * and one queue; reads use a second connection so they see only committed
 * data and never wait for a writer.
 */
export class SqliteStore implements Store {
  private readonly writer: Connection;
  private readonly reader: Connection;
  private readonly writes = new Queue();
  private readonly reads = new Queue();

  private constructor(writer: Connection, reader: Connection) {
    this.writer = writer;
    this.reader = reader;
  }

  static async open(options: SqliteStoreOptions): Promise<SqliteStore> {
    const memory = options.path === ":memory:";
    if (!memory) mkdirSync(dirname(options.path), { recursive: true });
    const db = new Database(options.path);
    db.pragma("journal_mode = WAL");
    db.pragma(`synchronous = ${options.synchronous ?? "FULL"}`);
    db.pragma("foreign_keys = ON");
    db.pragma("busy_timeout = 5000");
    // An in-memory database is private to its connection, so it reads through the writer.
    const readDb = memory ? db : new Database(options.path, { readonly: true });
    if (!memory) readDb.pragma("busy_timeout = 5000");
    const store = new SqliteStore(new Connection(db), new Connection(readDb));
    await store.migrate(options.migrations ?? defaultMigrations);
    return store;
  }

  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.writes.run(async () => {
      const db = this.writer.db;
      db.exec("BEGIN IMMEDIATE");
      try {
        const result = await fn(this.writer);
        db.exec("COMMIT");
        return result;
      } catch (error) {
        if (db.inTransaction) db.exec("ROLLBACK");
        throw error;
      }
    });
  }

  read<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    if (this.reader === this.writer || this.reader.db === this.writer.db) return this.transaction(fn);
    return this.reads.run(async () => {
      const db = this.reader.db;
      db.exec("BEGIN");
      try {
        return await fn(this.reader);
      } finally {
        if (db.inTransaction) db.exec("COMMIT");
      }
    });
  }

  async close(): Promise<void> {
    // Let queued work finish first, so nothing acknowledged is cut off.
    await this.writes.run(async () => undefined);
    await this.reads.run(async () => undefined);
    if (this.reader.db !== this.writer.db) this.reader.db.close();
    this.writer.db.close();
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
