/**
 * CloudWatch Logs filter patterns for unstructured events, the term syntax:
 *
 *   ERROR                every event containing ERROR (terms are case-sensitive)
 *   ERROR Exception      both terms (AND)
 *   "Internal error"     the exact phrase; `\"` and `\\` escape inside quotes
 *   ?ERROR ?WARN         either term (OR)
 *   ERROR -retrying      ERROR but not retrying
 *   ""                   (or the empty pattern) every event
 *
 * A `?` term starts a new alternative; the plain and `-` terms after it join
 * that alternative, so `?"a" "b" ?"c"` means (a AND b) OR c, as CDK's
 * `anyTermGroup` writes it. JSON (`{ $.x = 1 }`), space-delimited (`[a, b]`)
 * and regular-expression (`%re%`) patterns are refused with
 * InvalidParameterException rather than matched wrongly.
 */
import { InvalidParameter } from "./errors.ts";

export type EventMatcher = (message: string) => boolean;

interface Term {
  text: string;
  negated: boolean;
}

const UNSUPPORTED =
  "Invalid filter pattern: only term patterns are supported here (terms, quoted phrases, ?term, -term); JSON, space-delimited and regular-expression patterns are not.";

function invalid(detail: string): Error {
  return InvalidParameter(`Invalid filter pattern: ${detail}`);
}

/** Reads a quoted phrase starting at `start` (the opening quote); returns its text and where it ends. */
function readQuoted(pattern: string, start: number): { text: string; end: number } {
  let text = "";
  let i = start + 1;
  while (i < pattern.length) {
    const char = pattern[i];
    if (char === "\\" && i + 1 < pattern.length) {
      text += pattern[i + 1];
      i += 2;
      continue;
    }
    if (char === '"') return { text, end: i + 1 };
    text += char;
    i++;
  }
  throw invalid("a quoted phrase is not closed.");
}

/** Splits a pattern into alternatives of terms. */
function parse(pattern: string): Term[][] {
  const alternatives: Term[][] = [[]];
  let i = 0;
  while (i < pattern.length) {
    const char = pattern[i] ?? "";
    if (/\s/.test(char)) {
      i++;
      continue;
    }
    let optional = false;
    let negated = false;
    if (char === "?") {
      optional = true;
      i++;
    }
    if (pattern[i] === "-") {
      negated = true;
      i++;
    }
    let text: string;
    if (pattern[i] === '"') {
      const quoted = readQuoted(pattern, i);
      text = quoted.text;
      i = quoted.end;
      if (i < pattern.length && !/\s/.test(pattern[i] ?? "")) {
        throw invalid("a quoted phrase must be followed by a space.");
      }
    } else {
      const start = i;
      while (i < pattern.length && !/\s/.test(pattern[i] ?? "")) i++;
      text = pattern.slice(start, i);
      if (text === "") throw invalid(`'${optional ? "?" : "-"}' must be followed by a term.`);
    }
    if (optional) {
      // The first `?` opens the first alternative unless plain terms came before it.
      const current = alternatives[alternatives.length - 1];
      if (current !== undefined && current.length > 0) alternatives.push([]);
    }
    alternatives[alternatives.length - 1]?.push({ text, negated });
  }
  return alternatives.filter((terms) => terms.length > 0);
}

/** Compiles a filter pattern into a matcher, or throws InvalidParameterException. */
export function compileFilterPattern(pattern: string): EventMatcher {
  const trimmed = pattern.trim();
  if (trimmed === "") return () => true;
  if (trimmed.startsWith("{") || trimmed.startsWith("[") || /^%.*%$/s.test(trimmed)) {
    throw InvalidParameter(UNSUPPORTED);
  }
  const alternatives = parse(trimmed);
  if (alternatives.length === 0) return () => true;
  return (message) =>
    alternatives.some((terms) =>
      terms.every((term) => (term.negated ? !message.includes(term.text) : message.includes(term.text))),
    );
}
