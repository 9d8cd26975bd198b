import type { Tx } from "../store/store.ts";

/** A resource tag, service-neutral; each service maps its own wire shape (`key`/`value` or `Key`/`Value`). */
export interface Tag {
  key: string;
  value: string;
}

export interface TagLimits {
  maxTags: number;
  maxKeyLength: number;
  maxValueLength: number;
}

/** The limits most AWS services share. */
export const defaultTagLimits: TagLimits = { maxTags: 50, maxKeyLength: 128, maxValueLength: 256 };

/**
 * Checks tags as AWS does; returns a message for the first problem, or
 * undefined. `existing` counts toward the limit (TagResource adds to them).
 */
export function tagProblem(
  tags: Tag[],
  existing: Tag[] = [],
  limits: TagLimits = defaultTagLimits,
): string | undefined {
  const keys = new Set(existing.map((tag) => tag.key));
  for (const tag of tags) {
    if (tag.key.length < 1 || tag.key.length > limits.maxKeyLength) {
      return `Tag keys must be between 1 and ${limits.maxKeyLength} characters.`;
    }
    if (tag.value.length > limits.maxValueLength) {
      return `Tag values must be at most ${limits.maxValueLength} characters.`;
    }
    if (tag.key.toLowerCase().startsWith("aws:")) {
      return "Tag keys prefixed with 'aws:' are reserved for AWS use and cannot be used.";
    }
    if (
      !/^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$/u.test(tag.key) ||
      !/^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$/u.test(tag.value)
    ) {
      return "Tags may only contain letters, numbers, spaces, and the characters _ . : / = + - @";
    }
    keys.add(tag.key);
  }
  if (keys.size > limits.maxTags) return `A resource can have at most ${limits.maxTags} tags.`;
  return undefined;
}

export async function tagsOf(tx: Tx, arn: string): Promise<Tag[]> {
  const rows = await tx.all<{ tag_key: string; tag_value: string }>(
    "SELECT tag_key, tag_value FROM resource_tags WHERE arn = ? ORDER BY tag_key",
    arn,
  );
  return rows.map((row) => ({ key: row.tag_key, value: row.tag_value }));
}

/** Adds or overwrites tags. */
export async function putTags(tx: Tx, arn: string, tags: Tag[]): Promise<void> {
  for (const tag of tags) {
    await tx.run(
      "INSERT INTO resource_tags (arn, tag_key, tag_value) VALUES (?, ?, ?) ON CONFLICT (arn, tag_key) DO UPDATE SET tag_value = excluded.tag_value",
      arn,
      tag.key,
      tag.value,
    );
  }
}

export async function removeTags(tx: Tx, arn: string, keys: string[]): Promise<void> {
  for (const key of keys) await tx.run("DELETE FROM resource_tags WHERE arn = ? AND tag_key = ?", arn, key);
}

export async function removeAllTags(tx: Tx, arn: string): Promise<void> {
  await tx.run("DELETE FROM resource_tags WHERE arn = ?", arn);
}

/** ECS's `{key, value}` wire tags into tags. */
export function toTags(tags: Array<{ key: string; value?: string }>): Tag[] {
  return tags.map((tag) => ({ key: tag.key, value: tag.value ?? "" }));
}
