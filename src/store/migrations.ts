import type { Migration } from "./store.ts";

/**
 * The schema, one versioned step at a time. Never edit a step that has
 * shipped: add a new one. Statements stay portable between SQLite and
 * PostgreSQL (TEXT, INTEGER, BIGINT-sized integers, JSON kept as TEXT).
 */
export const migrations: Migration[] = [
  {
    version: 1,
    name: "access keys",
    statements: [
      `CREATE TABLE access_keys (
        access_key_id TEXT PRIMARY KEY,
        secret_sealed TEXT NOT NULL,
        user_name TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at INTEGER NOT NULL
      )`,
    ],
  },
  {
    version: 2,
    name: "ecs clusters and resource tags",
    statements: [
      `CREATE TABLE ecs_clusters (
        arn TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL,
        settings TEXT NOT NULL,
        configuration TEXT,
        service_connect_defaults TEXT,
        capacity_providers TEXT NOT NULL,
        default_strategy TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      )`,
      `CREATE TABLE resource_tags (
        arn TEXT NOT NULL,
        tag_key TEXT NOT NULL,
        tag_value TEXT NOT NULL,
        PRIMARY KEY (arn, tag_key)
      )`,
    ],
  },
];
