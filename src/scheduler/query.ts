/**
 * ECS's cluster query language, as memberOf constraints and
 * ListContainerInstances filters use it:
 *
 *   attribute:ecs.instance-type == t2.small and attribute:color in [blue, green]
 *   not(attribute:stack exists) or (runningTasksCount < 2 and agentConnected == true)
 *   attribute:ecs.availability-zone =~ us-east-1.*
 *   registeredAt < 2018-06-07 and agentVersion >= 1.20.0
 *
 * Pure: parse once, evaluate against any subject lookup.
 */

export type Subjects = (subject: string) => string | string[] | undefined;

type Op = "==" | "!=" | ">" | ">=" | "<" | "<=" | "=~" | "!~" | "in" | "!in" | "exists" | "!exists";

export type Expr =
  | { kind: "and" | "or"; left: Expr; right: Expr }
  | { kind: "not"; operand: Expr }
  | { kind: "compare"; subject: string; op: Op; values: string[] };

export class QueryError extends Error {}

const OPERATORS = ["==", "!=", ">=", "<=", "=~", "!~", ">", "<"] as const;

/**
 * The operators the subjects ECS compares in order take: those ECS lists for them (no list or
 * pattern) and `exists`, which Wharf also allows for them (an instance may have no agent version).
 */
const ORDERED: readonly Op[] = ["==", "!=", ">", ">=", "<", "<=", "exists", "!exists"];
const SUBJECT_OPERATORS: Record<string, readonly Op[] | undefined> = {
  agentVersion: ORDERED,
  registeredAt: ORDERED,
  runningTasksCount: ORDERED,
};

/** ECS's word spellings of the operators. */
const WORD_OPERATORS: Record<string, Op> = {
  equals: "==",
  not_equals: "!=",
  greater_than: ">",
  greater_than_equal: ">=",
  less_than: "<",
  less_than_equal: "<=",
  matches: "=~",
  not_matches: "!~",
};

/** Tokens that are syntax, never a bare value. */
const PUNCTUATION = new Set<string>(["(", ")", "[", "]", ",", ...OPERATORS]);

/** Splits an expression into tokens: words, quoted strings, operators, brackets. */
function tokenize(text: string): string[] {
  const tokens: string[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i] as string;
    if (/\s/.test(c)) {
      i++;
    } else if ("()[],".includes(c)) {
      tokens.push(c);
      i++;
    } else if (c === "'" || c === '"') {
      const end = text.indexOf(c, i + 1);
      if (end < 0) throw new QueryError("unterminated quoted string");
      tokens.push(`\u0000${text.slice(i + 1, end)}`);
      i = end + 1;
    } else {
      const op = OPERATORS.find((o) => text.startsWith(o, i));
      if (op !== undefined) {
        tokens.push(op);
        i += op.length;
        continue;
      }
      let j = i;
      while (
        j < text.length &&
        !/[\s()[\],]/.test(text[j] as string) &&
        !OPERATORS.some((o) => text.startsWith(o, j))
      )
        j++;
      tokens.push(text.slice(i, j));
      i = j;
    }
  }
  return tokens;
}

function literal(token: string | undefined): string {
  if (token === undefined) throw new QueryError("expression ends too early");
  if (PUNCTUATION.has(token)) throw new QueryError(`unexpected '${token}'`);
  return token.startsWith("\u0000") ? token.slice(1) : token;
}

/** A `matches` pattern, anchored at both ends as Java's `Pattern.matches` is. */
function pattern(value: string): RegExp {
  try {
    return new RegExp(`^(?:${value})$`);
  } catch {
    throw new QueryError(`invalid pattern '${value}'`);
  }
}

class Parser {
  private i = 0;
  constructor(private readonly tokens: string[]) {}

  private peek(): string | undefined {
    return this.tokens[this.i];
  }

  private next(): string | undefined {
    return this.tokens[this.i++];
  }

  private expect(token: string): void {
    if (this.next() !== token) throw new QueryError(`expected '${token}'`);
  }

  parse(): Expr {
    const expr = this.or();
    if (this.i < this.tokens.length) throw new QueryError(`unexpected '${literal(this.peek())}'`);
    return expr;
  }

  private or(): Expr {
    let left = this.and();
    while (this.peek()?.toLowerCase() === "or" || this.peek() === "||") {
      this.next();
      left = { kind: "or", left, right: this.and() };
    }
    return left;
  }

  private and(): Expr {
    let left = this.unary();
    while (this.peek()?.toLowerCase() === "and" || this.peek() === "&&") {
      this.next();
      left = { kind: "and", left, right: this.unary() };
    }
    return left;
  }

  private unary(): Expr {
    const token = this.peek();
    if (token?.toLowerCase() === "not" || token === "!") {
      this.next();
      this.expect("(");
      const operand = this.or();
      this.expect(")");
      return { kind: "not", operand };
    }
    if (token === "(") {
      this.next();
      const inner = this.or();
      this.expect(")");
      return inner;
    }
    return this.comparison();
  }

  private comparison(): Expr {
    const subject = literal(this.next());
    const opToken = this.next();
    if (opToken === undefined) throw new QueryError(`'${subject}' needs an operator`);
    const expr = this.operation(subject, opToken);
    const allowed = SUBJECT_OPERATORS[subject];
    if (expr.kind === "compare" && allowed !== undefined && !allowed.includes(expr.op))
      throw new QueryError(`'${subject}' does not take '${opToken}'`);
    return expr;
  }

  private operation(subject: string, opToken: string): Expr {
    const lower = opToken.toLowerCase();
    if (lower === "exists") return { kind: "compare", subject, op: "exists", values: [] };
    if (lower === "!exists" || lower === "not_exists")
      return { kind: "compare", subject, op: "!exists", values: [] };
    if (lower === "in" || lower === "!in" || lower === "not_in") {
      this.expect("[");
      const values: string[] = [];
      while (this.peek() !== "]") {
        values.push(literal(this.next()));
        if (this.peek() === ",") this.next();
        else if (this.peek() !== "]") throw new QueryError("expected ',' or ']'");
      }
      this.expect("]");
      return { kind: "compare", subject, op: lower === "in" ? "in" : "!in", values };
    }
    const op =
      WORD_OPERATORS[lower] ?? ((OPERATORS as readonly string[]).includes(opToken) ? opToken : undefined);
    if (op === undefined) throw new QueryError(`unknown operator '${opToken}'`);
    const value = literal(this.next());
    if (op === "=~" || op === "!~") pattern(value);
    if (subject === "registeredAt" && dateOf(value) === undefined)
      throw new QueryError(`invalid date '${value}'`);
    return { kind: "compare", subject, op: op as Op, values: [value] };
  }
}

/** Parses an expression; throws QueryError with a short reason when it is not valid. */
export function parseQuery(text: string): Expr {
  if (text.trim() === "") throw new QueryError("empty expression");
  return new Parser(tokenize(text)).parse();
}

const DATE = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/;

/** A `registeredAt` date (`2018-06-07`, `2018-06-07T10:00:00Z`, `…+02:00`; UTC unless a zone is given) in ms. */
export function dateOf(text: string): number | undefined {
  if (!DATE.test(text)) return undefined;
  const zoned = text.length <= 10 || /(?:Z|[+-]\d{2}:?\d{2})$/.test(text.slice(10)) ? text : `${text}Z`;
  const ms = Date.parse(zoned.replace(/([+-]\d{2})(\d{2})$/, "$1:$2"));
  return Number.isNaN(ms) ? undefined : ms;
}

function compareOrdered(actual: string, expected: string): number {
  const a = Number(actual);
  const b = Number(expected);
  if (!Number.isNaN(a) && !Number.isNaN(b)) return a - b;
  return actual < expected ? -1 : actual > expected ? 1 : 0;
}

/** Dotted versions part by part, numerically where both parts are numbers (`1.9.0` < `1.20.0`). */
function compareVersions(actual: string, expected: string): number {
  const a = actual.replace(/^v/, "").split(".");
  const b = expected.replace(/^v/, "").split(".");
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const order = compareOrdered(a[i] ?? "0", b[i] ?? "0");
    if (order !== 0) return order;
  }
  return 0;
}

function compareDates(actual: string, expected: string): number {
  const a = dateOf(actual);
  const b = dateOf(expected);
  return a === undefined || b === undefined ? compareOrdered(actual, expected) : a - b;
}

/** How a subject's values are ordered: dates and agent versions as ECS defines them, others as numbers or text. */
function orderOf(subject: string): ((actual: string, expected: string) => number) | undefined {
  if (subject === "registeredAt") return compareDates;
  if (subject === "agentVersion") return compareVersions;
  return undefined;
}

function wildcard(pattern: string): RegExp {
  return new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replaceAll("*", ".*")}$`);
}

function test(
  op: Op,
  actual: string,
  values: string[],
  order?: (actual: string, expected: string) => number,
): boolean {
  const [value = ""] = values;
  const compare = order ?? compareOrdered;
  switch (op) {
    case "==":
      if (order !== undefined) return order(actual, value) === 0;
      return value.includes("*") ? wildcard(value).test(actual) : actual === value;
    case "!=":
      if (order !== undefined) return order(actual, value) !== 0;
      return value.includes("*") ? !wildcard(value).test(actual) : actual !== value;
    case ">":
      return compare(actual, value) > 0;
    case ">=":
      return compare(actual, value) >= 0;
    case "<":
      return compare(actual, value) < 0;
    case "<=":
      return compare(actual, value) <= 0;
    case "=~":
      return pattern(value).test(actual);
    case "!~":
      return !pattern(value).test(actual);
    case "in":
      return values.includes(actual);
    case "!in":
      return !values.includes(actual);
    case "exists":
      return true;
    case "!exists":
      return false;
  }
}

export function evaluate(expr: Expr, subjects: Subjects): boolean {
  switch (expr.kind) {
    case "and":
      return evaluate(expr.left, subjects) && evaluate(expr.right, subjects);
    case "or":
      return evaluate(expr.left, subjects) || evaluate(expr.right, subjects);
    case "not":
      return !evaluate(expr.operand, subjects);
    case "compare": {
      const actual = subjects(expr.subject);
      if (actual === undefined)
        return expr.op === "!=" || expr.op === "!in" || expr.op === "!~" || expr.op === "!exists";
      const values = Array.isArray(actual) ? actual : [actual];
      // A subject with several values (task:group) matches a negation only if every value does.
      const negated = expr.op === "!=" || expr.op === "!in" || expr.op === "!~" || expr.op === "!exists";
      const order = orderOf(expr.subject);
      return negated
        ? values.every((v) => test(expr.op, v, expr.values, order))
        : values.some((v) => test(expr.op, v, expr.values, order));
    }
  }
}
