import { join, resolve } from "node:path";

/** Every file Wharf keeps under its data directory, named in one place. */
export interface DataPaths {
  root: string;
  /** The control-plane database (SQLite, WAL). */
  database: string;
  /** 32 random bytes, mode 0600: seals secrets kept in the database. */
  masterKey: string;
  /** Where a running server says how to reach it, for `wharf env`. */
  endpoint: string;
}

export function dataPaths(dataDir: string): DataPaths {
  const root = resolve(dataDir);
  return {
    root,
    database: join(root, "wharf.db"),
    masterKey: join(root, "master.key"),
    endpoint: join(root, "endpoint.json"),
  };
}
