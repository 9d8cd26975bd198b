/**
 * Amazon ECR lifecycle policies: the pure core. Parsing and validating the
 * policy text PutLifecyclePolicy receives, and deciding which images a policy
 * expires now. No I/O and no clock: the caller passes `now` and applies the
 * returned plan (delete the images, or show them as a preview).
 *
 * Semantics follow the ECR User Guide ("Automate the cleanup of images by
 * using lifecycle policies", "Lifecycle policy properties", "Examples of
 * lifecycle policies"); the doc sentence behind each choice is quoted beside it.
 */

import { z } from "zod";
import { type AwsError, errorType } from "../aws/errors.ts";

const InvalidParameter = errorType("InvalidParameterException");

export interface LifecycleImage {
  digest: string;
  tags: string[];
  pushedAt: Date;
  sizeInBytes?: number;
}

export interface LifecycleRule {
  rulePriority: number;
  description?: string;
  selection: {
    tagStatus: "tagged" | "untagged" | "any";
    tagPrefixList?: string[];
    tagPatternList?: string[];
    countType: "imageCountMoreThan" | "sinceImagePushed";
    countUnit?: "days";
    countNumber: number;
  };
  action: { type: "expire" };
}

export interface LifecyclePolicy {
  rules: LifecycleRule[];
}

/** One image the policy expires, and the rule that expires it. */
export interface Expiration {
  digest: string;
  tags: string[];
  pushedAt: Date;
  rulePriority: number;
}

/** PutLifecyclePolicy: "lifecyclePolicyText … Maximum length of 30720." */
const MAX_POLICY_LENGTH = 30720;
/** "There is a maximum limit of four wildcards (*) per string." */
const MAX_PATTERN_WILDCARDS = 4;
const DAY_MS = 86_400_000;

// ---------------------------------------------------------------------------
// Validation

/**
 * The policy's JSON structure. ECR checks it with a JSON Schema validator and
 * answers with that validator's messages, so zod's issues are translated into
 * them below. countType/countUnit pairing is one `oneOf` in ECR's schema and
 * is checked after parsing (see `countOf`).
 */
const TagList = z.array(z.string()).min(1);
const SelectionSchema = z.strictObject({
  tagStatus: z.enum(["tagged", "untagged", "any"]),
  tagPrefixList: TagList.optional(),
  tagPatternList: TagList.optional(),
  countType: z.string(),
  countUnit: z.unknown().optional(),
  countNumber: z.int().min(1),
});
const RuleSchema = z.strictObject({
  rulePriority: z.int().min(1),
  description: z.string().optional(),
  selection: SelectionSchema,
  action: z.strictObject({ type: z.enum(["expire"]) }),
});
const PolicySchema = z.strictObject({ rules: z.array(RuleSchema).min(1) });

type ParsedSelection = z.output<typeof SelectionSchema>;
type ParsedRule = z.output<typeof RuleSchema>;
type Issue = z.core.$ZodIssue & { input?: unknown };
type Count = Pick<LifecycleRule["selection"], "countType" | "countUnit">;

/** ECR's wording when countType and countUnit do not pair up (its schema's `oneOf`). */
const COUNT_MISMATCH = "instance failed to match exactly one schema (matched 0 out of 2)";

/** ECR's envelope for every lifecycle policy validation failure. */
function invalidPolicy(detail: string): AwsError {
  return InvalidParameter(
    `Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: ${detail}'`,
  );
}

/** The JSON Schema name of a value's type, as ECR's validator prints it. */
function jsonType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

/** Every number in the policy schema is an integer, whatever zod calls it. */
function expectedType(expected: string): string {
  return expected === "number" || expected === "int" ? "integer" : expected;
}

/** One zod issue in the JSON Schema validator's words. */
function describeIssue(issue: Issue): string {
  switch (issue.code) {
    case "invalid_type":
      return `instance type (${jsonType(issue.input)}) does not match any allowed primitive type (allowed: ["${expectedType(issue.expected)}"])`;
    case "unrecognized_keys":
      return `object instance has properties which are not allowed by the schema: ${JSON.stringify([...issue.keys].sort())}`;
    case "too_small":
      return issue.origin === "array"
        ? `array is too short: must have at least ${issue.minimum} elements but instance has ${Array.isArray(issue.input) ? issue.input.length : 0} elements`
        : `numeric instance is lower than the required minimum (minimum: ${issue.minimum}, found: ${String(issue.input)})`;
    case "invalid_value":
      return `instance value (${JSON.stringify(issue.input)}) not found in enum (possible values: ${JSON.stringify(issue.values)})`;
    default:
      return issue.message;
  }
}

/** A required member that is absent: JSON has no `undefined`, so an issue without input is one. */
function isMissing(issue: Issue): boolean {
  return issue.input === undefined && issue.path.length > 0;
}

/**
 * All schema failures, one line each as ECR lists them; absent members of
 * one object are named together: `object has missing required properties (["a","b"])`.
 */
function schemaFailures(issues: readonly Issue[]): string[] {
  const missing = new Map<string, string[]>();
  const lines: Array<string | string[]> = [];
  for (const issue of issues) {
    if (!isMissing(issue)) {
      lines.push(describeIssue(issue));
      continue;
    }
    const parent = JSON.stringify(issue.path.slice(0, -1));
    let names = missing.get(parent);
    if (names === undefined) {
      names = [];
      missing.set(parent, names);
      lines.push(names);
    }
    names.push(String(issue.path.at(-1)));
  }
  return lines.map((line) =>
    typeof line === "string"
      ? line
      : `object has missing required properties (${JSON.stringify([...line].sort())})`,
  );
}

/** Parses the text as a JSON object, or fails as ECR does when it cannot. */
function parseJsonObject(text: string): unknown {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw invalidPolicy("Could not map policyString into LifecyclePolicy.");
  }
  return json;
}

/**
 * The count settings, when they pair up: "If countType is set to
 * imageCountMoreThan, you also specify countNumber…"; countUnit "should only
 * be specified when countType is sinceImagePushed; an error will occur if you
 * specify a count unit when countType is any other value"; for
 * sinceImagePushed "Specify a count unit of days".
 */
function countOf(selection: ParsedSelection): Count | undefined {
  if (selection.countType === "imageCountMoreThan" && selection.countUnit === undefined) {
    return { countType: "imageCountMoreThan" };
  }
  if (selection.countType === "sinceImagePushed" && selection.countUnit === "days") {
    return { countType: "sinceImagePushed", countUnit: "days" };
  }
  return undefined;
}

/**
 * "If you specify tagged, then you must also specify a tagPrefixList value or
 * a tagPatternList value. If you specify untagged, then you must omit both
 * tagPrefixList and tagPatternList." A rule uses one list, not both.
 */
function tagFilterFailure({ tagStatus, tagPrefixList, tagPatternList }: ParsedSelection): string | undefined {
  if (tagStatus === "tagged") {
    if (tagPrefixList === undefined && tagPatternList === undefined) {
      return "Must specify tagPrefixList or tagPatternList when tagStatus=TAGGED.";
    }
    if (tagPrefixList !== undefined && tagPatternList !== undefined) {
      return "If policy has a tagged rule, it must specify only one of tagPrefixList or tagPatternList.";
    }
    return undefined;
  }
  const list =
    tagPrefixList !== undefined ? "tagPrefixList" : tagPatternList !== undefined ? "tagPatternList" : "";
  return list === "" ? undefined : `Cannot specify ${list} when tagStatus=${tagStatus.toUpperCase()}.`;
}

/** "There is a maximum limit of four wildcards (*) per string." */
function patternFailure({ tagPatternList = [] }: ParsedSelection): string | undefined {
  const tooWild = tagPatternList.find((pattern) => pattern.split("*").length - 1 > MAX_PATTERN_WILDCARDS);
  return tooWild === undefined
    ? undefined
    : `Invalid tag pattern provided: '${tooWild}' has more than ${MAX_PATTERN_WILDCARDS} wildcards (*).`;
}

/** What is wrong with one rule on its own, if anything. */
function ruleFailure(rule: ParsedRule): string | undefined {
  if (countOf(rule.selection) === undefined) return COUNT_MISMATCH;
  return tagFilterFailure(rule.selection) ?? patternFailure(rule.selection);
}

/**
 * What is wrong across the rules, if anything. "you must give them each a
 * unique value for rulePriority"; "Only one rule is allowed to select untagged
 * images"; "A rule with a tagStatus value of any must have the highest value
 * for rulePriority and be evaluated last" (so, priorities being unique, at
 * most one rule can be `any`).
 */
function policyFailure(rules: readonly ParsedRule[]): string | undefined {
  const seen = new Set<number>();
  for (const { rulePriority } of rules) {
    if (seen.has(rulePriority)) {
      return `Duplicate rulePriority ${rulePriority}: each rule must have a unique rulePriority.`;
    }
    seen.add(rulePriority);
  }
  if (rules.filter((rule) => rule.selection.tagStatus === "untagged").length > 1) {
    return "Only one rule can select Untagged images.";
  }
  const highest = Math.max(...seen);
  const anyNotLast = rules.some(
    (rule) => rule.selection.tagStatus === "any" && rule.rulePriority !== highest,
  );
  return anyNotLast ? "Rule for tagStatus=ANY must have the lowest priority." : undefined;
}

/** Converts a validated rule into the internal type, keeping only what was given. */
function toRule(rule: ParsedRule): LifecycleRule {
  const { tagStatus, tagPrefixList, tagPatternList, countNumber } = rule.selection;
  const count = countOf(rule.selection);
  if (count === undefined) throw invalidPolicy(COUNT_MISMATCH);
  return {
    rulePriority: rule.rulePriority,
    ...(rule.description === undefined ? {} : { description: rule.description }),
    selection: {
      tagStatus,
      ...(tagPrefixList === undefined ? {} : { tagPrefixList }),
      ...(tagPatternList === undefined ? {} : { tagPatternList }),
      ...count,
      countNumber,
    },
    action: { type: rule.action.type },
  };
}

/**
 * Parses and validates lifecycle policy text (a JSON string, as
 * PutLifecyclePolicy receives it). Throws `InvalidParameterException` with
 * ECR's messages: "Invalid parameter at 'LifecyclePolicyText' failed to
 * satisfy constraint: 'Lifecycle policy validation failure: …'".
 */
export function parseLifecyclePolicy(text: string): LifecyclePolicy {
  if (text.length > MAX_POLICY_LENGTH) {
    throw InvalidParameter(
      `1 validation error detected: Value '${text}' at 'lifecyclePolicyText' failed to satisfy constraint: Member must have length less than or equal to ${MAX_POLICY_LENGTH}`,
    );
  }
  const result = PolicySchema.safeParse(parseJsonObject(text), { reportInput: true });
  if (!result.success) throw invalidPolicy(schemaFailures(result.error.issues as Issue[]).join("\n"));
  const { rules } = result.data;
  for (const rule of rules) {
    const failure = ruleFailure(rule);
    if (failure !== undefined) throw invalidPolicy(failure);
  }
  const failure = policyFailure(rules);
  if (failure !== undefined) throw invalidPolicy(failure);
  return { rules: rules.map(toRule) };
}

// ---------------------------------------------------------------------------
// Evaluation

/**
 * Newest first by push time; among equal push times the smaller digest counts
 * as the newer, so every ordering (and so every outcome) is deterministic.
 */
function newestFirst(a: LifecycleImage, b: LifecycleImage): number {
  const byTime = b.pushedAt.getTime() - a.pushedAt.getTime();
  if (byTime !== 0) return byTime;
  return a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0;
}

/** Escapes a literal piece of a tag pattern for use inside a RegExp. */
function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** A tag pattern matches a whole tag; `*` stands for any run of characters, the empty one included. */
function patternRegExp(pattern: string): RegExp {
  return new RegExp(`^${pattern.split("*").map(escapeRegExp).join(".*")}$`, "s");
}

/**
 * Which images a rule identifies, from their tags. "When using the
 * tagPrefixList, an image is successfully matched if *all* of the tags in the
 * tagPrefixList value are matched against any of the image's tags"; likewise
 * for patterns: "When multiple tag patterns are specified on a single rule,
 * images must match all listed tag patterns." A tagged rule without either
 * list (which validation refuses) identifies nothing.
 */
function tagMatcher(selection: LifecycleRule["selection"]): (tags: readonly string[]) => boolean {
  const { tagStatus, tagPrefixList, tagPatternList } = selection;
  if (tagStatus === "any") return () => true;
  if (tagStatus === "untagged") return (tags) => tags.length === 0;
  if (tagPrefixList !== undefined) {
    return (tags) => tagPrefixList.every((prefix) => tags.some((tag) => tag.startsWith(prefix)));
  }
  if (tagPatternList !== undefined) {
    const patterns = tagPatternList.map(patternRegExp);
    return (tags) => patterns.every((pattern) => tags.some((tag) => pattern.test(tag)));
  }
  return () => false;
}

/**
 * The images a rule would expire among those it identifies (newest first).
 * "With countType = imageCountMoreThan, images are sorted from youngest to
 * oldest based on pushed_at_time and then all images greater than the
 * specified count are expired." "With countType = sinceImagePushed, all images
 * whose pushed_at_time is older than the specified number of days based on
 * countNumber are expired." Age is measured exactly, not in whole days: older
 * than N days means pushed more than N × 24 hours before `now`.
 */
function expiring(
  selection: LifecycleRule["selection"],
  identified: readonly LifecycleImage[],
  now: Date,
): LifecycleImage[] {
  if (selection.countType === "imageCountMoreThan") return identified.slice(selection.countNumber);
  const limit = selection.countNumber * DAY_MS;
  return identified.filter((image) => now.getTime() - image.pushedAt.getTime() > limit);
}

/**
 * Which images the policy expires now. "All rules are evaluated at the same
 * time, regardless of rule priority. After all rules are evaluated, they are
 * then applied based on rule priority." Each rule counts every image it
 * identifies — "Rules can never mark images that are marked by higher priority
 * rules, but can still identify them as if they haven't been expired" — but
 * "An image that matches the tagging requirements of a rule cannot be expired
 * by a rule with a lower priority", so an image identified by an earlier rule
 * is never expired by a later one, and "An image is expired by exactly one or
 * zero rules." The result is ordered oldest first: "Expiration is always
 * ordered by pushed_at_time, and always expires older images before newer
 * ones." Image digests are assumed unique.
 */
export function evaluateLifecyclePolicy(
  policy: LifecyclePolicy,
  images: readonly LifecycleImage[],
  now: Date,
): Expiration[] {
  const newestToOldest = [...images].sort(newestFirst);
  const rules = [...policy.rules].sort((a, b) => a.rulePriority - b.rulePriority);
  const claimed = new Set<string>();
  const expired: Expiration[] = [];
  for (const rule of rules) {
    const matches = tagMatcher(rule.selection);
    const identified = newestToOldest.filter((image) => matches(image.tags));
    for (const image of expiring(rule.selection, identified, now)) {
      if (claimed.has(image.digest)) continue;
      expired.push({
        digest: image.digest,
        tags: [...image.tags],
        pushedAt: image.pushedAt,
        rulePriority: rule.rulePriority,
      });
    }
    for (const image of identified) claimed.add(image.digest);
  }
  return expired.sort((a, b) => newestFirst(b, a));
}
