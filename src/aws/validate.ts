import type { z } from "zod";
import { type AwsError, Serialization } from "./errors.ts";

type Issue = z.core.$ZodIssue & { input?: unknown };

/** Coral's path form: `tags.1.member.key` (list indexes count from 1). */
function pathOf(issue: Issue): string {
  return issue.path
    .map((segment) => (typeof segment === "number" ? `${segment + 1}.member` : String(segment)))
    .join(".");
}

function constraintOf(issue: Issue): string {
  switch (issue.code) {
    case "too_big":
      return issue.origin === "string"
        ? `Member must have length less than or equal to ${issue.maximum}`
        : issue.origin === "array"
          ? `Member must have length less than or equal to ${issue.maximum}`
          : `Member must have value less than or equal to ${issue.maximum}`;
    case "too_small":
      return issue.origin === "string" || issue.origin === "array"
        ? `Member must have length greater than or equal to ${issue.minimum}`
        : `Member must have value greater than or equal to ${issue.minimum}`;
    case "invalid_value":
      return `Member must satisfy enum value set: [${issue.values.map(String).join(", ")}]`;
    case "invalid_format":
      return issue.format === "regex" && "pattern" in issue
        ? `Member must satisfy regular expression pattern: ${String(issue.pattern)}`
        : `Member must be a valid ${issue.format}`;
    case "invalid_type":
      return "Member must not be null";
    default:
      return issue.message;
  }
}

function describeValue(value: unknown): string {
  if (value === undefined || value === null) return "null";
  if (typeof value === "string") return `'${value}'`;
  return `'${JSON.stringify(value)}'`;
}

/**
 * Validates decoded wire input against a zod shape. A value of the wrong
 * type is a `SerializationException`, as the real services answer; a value
 * that breaks a constraint becomes the service's own validation error with
 * Coral's message ("1 validation error detected: Value … at '…' failed to
 * satisfy constraint: …").
 */
export function parseInput<S extends z.ZodType>(
  schema: S,
  input: unknown,
  invalid: (message: string) => AwsError,
): z.output<S> {
  const result = schema.safeParse(input, { reportInput: true });
  if (result.success) return result.data;
  const issues = result.error.issues as Issue[];
  const wrongType = issues.find((issue) => issue.code === "invalid_type" && issue.input !== undefined);
  if (wrongType !== undefined) {
    const expected = wrongType.code === "invalid_type" ? wrongType.expected : "value";
    throw Serialization(
      `Expected ${expected} at '${pathOf(wrongType)}', found ${describeValue(wrongType.input)}`,
    );
  }
  const details = issues.map(
    (issue) =>
      `Value ${describeValue(issue.input)} at '${pathOf(issue)}' failed to satisfy constraint: ${constraintOf(issue)}`,
  );
  const count =
    details.length === 1 ? "1 validation error detected" : `${details.length} validation errors detected`;
  throw invalid(`${count}: ${details.join("; ")}`);
}
