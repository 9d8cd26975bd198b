/**
 * The control-plane state store.
 *
 * Callers speak portable SQL (`?` placeholders, TEXT/INTEGER columns, JSON as
 * TEXT) inside transactions; every method is asynchronous so that a
 * PostgreSQL implementation can follow without touching callers. A write is
 * acknowledged only after its transaction commits durably.
 */

export type SqlValue = string | number | bigint | null | Buffer;
export type Row = Record<string, SqlValue>;

/** Reads and writes inside one transaction. */
export interface Tx {
  /** The first row of a query, or undefined. */
  get<T extends Row = Row>(sql: string, ...params: SqlValue[]): Promise<T | undefined>;
  /** Every row of a query. */
  all<T extends Row = Row>(sql: string, ...params: SqlValue[]): Promise<T[]>;
  /** A statement; returns how many rows it changed. */
  run(sql: string, ...params: SqlValue[]): Promise<number>;
  /**
   * Runs `fn` once this transaction has committed durably, and never if it
   * rolls back: how in-memory views of the state (caches, indexes) follow
   * exactly what was committed. Hooks run in the order they were added,
   * before the next transaction starts (an implementation that groups
   * commits ends the group there). Only in a write transaction.
   */
  afterCommit(fn: () => void): void;
  /**
   * Runs `fn` if this transaction's writes are undone: it throws, or its
   * commit fails. Hooks run last first. With it, an in-memory view can follow
   * each write at once (so later transactions read it as they would read the
   * rows) and take the write back when the rows go. Only in a write transaction.
   */
  onRollback(fn: () => void): void;
}

export interface Store {
  /**
   * Runs `fn` in one serialisable transaction: everything it wrote commits
   * together when it resolves, nothing when it throws. Transactions run one
   * at a time; an implementation may commit several that queued up together
   * (group commit), but each still succeeds or fails on its own.
   */
  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  /** A read-only snapshot; cheaper than a transaction and never blocks writers. */
  read<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** One schema step. Applied in order, each in its own transaction, exactly once. */
export interface Migration {
  version: number;
  name: string;
  /** Portable DDL statements. */
  statements: string[];
  /** Moves existing rows into the new shape, in portable SQL, after the statements (same transaction). */
  rewrite?: (tx: Tx) => Promise<void>;
}
