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
  {
    version: 3,
    name: "registry",
    statements: [
      `CREATE TABLE registry_repositories (
        name TEXT PRIMARY KEY,
        arn TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        tag_mutability TEXT NOT NULL,
        scan_on_push INTEGER NOT NULL,
        encryption_type TEXT NOT NULL,
        kms_key TEXT,
        policy TEXT,
        lifecycle_policy TEXT,
        lifecycle_updated_at INTEGER
      )`,
      `CREATE TABLE registry_blobs (
        digest TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        touched_at INTEGER NOT NULL
      )`,
      `CREATE TABLE registry_repo_blobs (
        repo TEXT NOT NULL,
        digest TEXT NOT NULL,
        PRIMARY KEY (repo, digest)
      )`,
      "CREATE INDEX registry_repo_blobs_digest ON registry_repo_blobs (digest)",
      `CREATE TABLE registry_manifests (
        repo TEXT NOT NULL,
        digest TEXT NOT NULL,
        media_type TEXT NOT NULL,
        artifact_type TEXT,
        subject TEXT,
        size INTEGER NOT NULL,
        image_size INTEGER NOT NULL,
        annotations TEXT,
        pushed_at INTEGER NOT NULL,
        last_pulled_at INTEGER,
        PRIMARY KEY (repo, digest)
      )`,
      "CREATE INDEX registry_manifests_subject ON registry_manifests (repo, subject)",
      `CREATE TABLE registry_manifest_refs (
        repo TEXT NOT NULL,
        manifest TEXT NOT NULL,
        ref TEXT NOT NULL,
        PRIMARY KEY (repo, manifest, ref)
      )`,
      "CREATE INDEX registry_manifest_refs_ref ON registry_manifest_refs (ref)",
      `CREATE TABLE registry_tags (
        repo TEXT NOT NULL,
        tag TEXT NOT NULL,
        digest TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (repo, tag)
      )`,
      "CREATE INDEX registry_tags_digest ON registry_tags (repo, digest)",
      `CREATE TABLE registry_uploads (
        id TEXT PRIMARY KEY,
        repo TEXT NOT NULL,
        length INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      )`,
      `CREATE TABLE registry_lifecycle_previews (
        repo TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        policy TEXT NOT NULL,
        results TEXT NOT NULL,
        created_at INTEGER NOT NULL
      )`,
    ],
  },
  {
    version: 4,
    name: "ecs task definitions",
    statements: [
      `CREATE TABLE ecs_task_definitions (
        arn TEXT PRIMARY KEY,
        family TEXT NOT NULL,
        revision INTEGER NOT NULL,
        status TEXT NOT NULL,
        body TEXT NOT NULL,
        registered_at INTEGER NOT NULL,
        deregistered_at INTEGER,
        UNIQUE (family, revision)
      )`,
      "CREATE INDEX ecs_task_definitions_status ON ecs_task_definitions (status, family, revision)",
    ],
  },
  {
    version: 5,
    name: "ecs container instances and tasks",
    statements: [
      `CREATE TABLE ecs_container_instances (
        arn TEXT PRIMARY KEY,
        cluster_arn TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        status TEXT NOT NULL,
        agent_connected INTEGER NOT NULL,
        last_heartbeat INTEGER NOT NULL,
        registered_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        token_hash TEXT NOT NULL,
        body TEXT NOT NULL
      )`,
      "CREATE INDEX ecs_container_instances_cluster ON ecs_container_instances (cluster_arn, status)",
      `CREATE TABLE ecs_tasks (
        arn TEXT PRIMARY KEY,
        cluster_arn TEXT NOT NULL,
        container_instance_arn TEXT,
        task_definition_arn TEXT NOT NULL,
        family TEXT NOT NULL,
        last_status TEXT NOT NULL,
        desired_status TEXT NOT NULL,
        started_by TEXT,
        service_name TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        stopped_at INTEGER,
        version INTEGER NOT NULL,
        body TEXT NOT NULL
      )`,
      "CREATE INDEX ecs_tasks_cluster ON ecs_tasks (cluster_arn, desired_status, last_status)",
      "CREATE INDEX ecs_tasks_instance ON ecs_tasks (container_instance_arn, desired_status)",
    ],
  },
  {
    version: 6,
    name: "cloudwatch logs",
    statements: [
      `CREATE TABLE logs_groups (
        id INTEGER PRIMARY KEY,
        region TEXT NOT NULL,
        account_id TEXT NOT NULL,
        name TEXT NOT NULL,
        arn TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        retention_days INTEGER,
        log_group_class TEXT NOT NULL,
        kms_key_id TEXT,
        stored_bytes INTEGER NOT NULL,
        next_seq INTEGER NOT NULL,
        UNIQUE (region, account_id, name)
      )`,
      `CREATE TABLE logs_streams (
        id INTEGER PRIMARY KEY,
        group_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        first_event_ts INTEGER,
        last_event_ts INTEGER,
        last_ingestion_time INTEGER,
        uploads INTEGER NOT NULL,
        stored_bytes INTEGER NOT NULL,
        UNIQUE (group_id, name)
      )`,
      `CREATE TABLE logs_events (
        group_id INTEGER NOT NULL,
        stream_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        event_time INTEGER NOT NULL,
        ingestion_time INTEGER NOT NULL,
        message TEXT NOT NULL,
        PRIMARY KEY (group_id, seq)
      )`,
      "CREATE INDEX logs_events_stream ON logs_events (group_id, stream_id, event_time, seq)",
      "CREATE INDEX logs_events_time ON logs_events (group_id, event_time, seq)",
    ],
  },
  {
    version: 7,
    name: "ecs services",
    statements: [
      `CREATE TABLE ecs_services (
        arn TEXT PRIMARY KEY,
        cluster_arn TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        launch_type TEXT NOT NULL,
        scheduling_strategy TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        body TEXT NOT NULL
      )`,
      "CREATE INDEX ecs_services_cluster ON ecs_services (cluster_arn, status, arn)",
      `CREATE TABLE ecs_service_events (
        service_arn TEXT NOT NULL,
        seq INTEGER NOT NULL,
        id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        message TEXT NOT NULL,
        PRIMARY KEY (service_arn, seq)
      )`,
      // The scheduler reads a service's tasks, a deployment's tasks, and what changed since it last looked.
      "CREATE INDEX ecs_tasks_service ON ecs_tasks (cluster_arn, service_name, last_status)",
      "CREATE INDEX ecs_tasks_started_by ON ecs_tasks (started_by, last_status)",
      "CREATE INDEX ecs_tasks_updated ON ecs_tasks (updated_at)",
      "CREATE INDEX ecs_container_instances_updated ON ecs_container_instances (updated_at)",
    ],
  },
  {
    version: 8,
    name: "agent tokens and changed service tasks looked up by index",
    statements: [
      // Every agent request finds its instance by token: without an index, a scan of every instance.
      "CREATE INDEX ecs_container_instances_token ON ecs_container_instances (token_hash)",
      // The service controller looks for changed service tasks four times a second; through the
      // index on updated_at alone it walked every task changed since it started, service's or not.
      "CREATE INDEX ecs_tasks_service_updated ON ecs_tasks (updated_at) WHERE service_name IS NOT NULL",
    ],
  },
  {
    version: 9,
    name: "fewer task index entries per write",
    statements: [
      // Every task insert wrote seven B-trees and every RUNNING report moved four index entries.
      // The indexes that only some tasks' queries use now hold only those tasks; a report that
      // changes only the last status (PENDING → RUNNING) of a task RunTask started (no service,
      // no startedBy) then moves one index entry (the cluster's), not four. Every query keeps the
      // plan it had (src/ecs/task-indexes.test.ts).
      "DROP INDEX ecs_tasks_updated",
      // Only the purge of STOPPED tasks orders by updated_at (the service controller has its own).
      "CREATE INDEX ecs_tasks_stopped ON ecs_tasks (updated_at) WHERE last_status = 'STOPPED'",
      "DROP INDEX ecs_tasks_service",
      "CREATE INDEX ecs_tasks_service ON ecs_tasks (cluster_arn, service_name, last_status) WHERE service_name IS NOT NULL",
      "DROP INDEX ecs_tasks_started_by",
      "CREATE INDEX ecs_tasks_started_by ON ecs_tasks (started_by, last_status) WHERE started_by IS NOT NULL",
    ],
  },
  {
    version: 10,
    name: "task assignments in a column of their own",
    statements: [
      // What a task's agent runs is fixed when the task is made, while the rest of its body changes
      // with every report: apart, a report reads, parses and rewrites only the part that changes.
      "ALTER TABLE ecs_tasks ADD COLUMN assignment TEXT NOT NULL DEFAULT '{}'",
    ],
    rewrite: async (tx) => {
      const rows = await tx.all<{ arn: string; body: string }>("SELECT arn, body FROM ecs_tasks");
      for (const row of rows) {
        const { assignment, ...rest } = JSON.parse(row.body) as { assignment?: unknown };
        await tx.run(
          "UPDATE ecs_tasks SET body = ?, assignment = ? WHERE arn = ?",
          JSON.stringify(rest),
          JSON.stringify(assignment ?? {}),
          row.arn,
        );
      }
    },
  },
  {
    version: 11,
    name: "a service's task counts from its index alone",
    statements: [
      // DescribeServices counts a service's tasks by deployment and status: with the desired
      // status and startedBy in the service index, from the index alone, not a row per task
      // (a 10,000-task service: 26 ms a call before, 3 after). A report moves this entry already
      // (its key has the last status); a stop, which changes the desired status, now moves it too.
      "DROP INDEX ecs_tasks_service",
      `CREATE INDEX ecs_tasks_service ON ecs_tasks (cluster_arn, service_name, last_status, desired_status, started_by)
         WHERE service_name IS NOT NULL`,
    ],
  },
  {
    version: 12,
    name: "changed service tasks from the scheduler's state",
    statements: [
      // The service controller learns which services' tasks were written from the scheduler's
      // state, which sees every task write, instead of looking for rows by updated_at: this index
      // cost every service task's insert and every report an entry to write or move.
      "DROP INDEX ecs_tasks_service_updated",
    ],
  },
  {
    version: 13,
    name: "RunTask client tokens",
    statements: [
      // RunTask's clientToken makes a call idempotent: the same token in the same cluster answers
      // with the tasks the first call started (SDKs fill one in and send it again on a retry).
      `CREATE TABLE ecs_run_task_tokens (
        cluster_arn TEXT NOT NULL,
        token TEXT NOT NULL,
        request TEXT NOT NULL,
        task_arns TEXT NOT NULL,
        failures TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (cluster_arn, token)
      )`,
      "CREATE INDEX ecs_run_task_tokens_created ON ecs_run_task_tokens (created_at)",
    ],
  },
];
