/**
 * The Query protocol's wire forms: flattened parameters in (`Tags.member.1.Key=a`),
 * XML out. Operations see plain nested objects either way.
 */

/** Reads `application/x-www-form-urlencoded` parameters; later duplicates win, as AWS does. */
export function parseParams(encoded: string): Map<string, string> {
  const params = new Map<string, string>();
  for (const [key, value] of new URLSearchParams(encoded)) params.set(key, value);
  return params;
}

type Node = Record<string, unknown>;

const LIST_MARKERS = new Set(["member", "entry"]);
/** No AWS parameter is named like these; they would reach object prototypes. */
const FORBIDDEN = new Set(["__proto__", "constructor", "prototype"]);

/**
 * Unflattens Query parameters: `A.B=x` → `{A: {B: "x"}}`,
 * `L.member.2.K=v` → `{L: [<hole>, {K: "v"}]}` compacted to the listed items in
 * index order. Keys that clash (a value and a structure at one path) keep the
 * structure.
 */
export function unflatten(params: Map<string, string>): Node {
  const root: Node = {};
  for (const [key, value] of params) {
    if (key === "Action" || key === "Version" || key.startsWith("X-Amz-")) continue;
    const segments = key.split(".");
    if (segments.some((segment) => FORBIDDEN.has(segment))) continue;
    let node: Node = root;
    for (let i = 0; i < segments.length; i++) {
      const segment = segments[i] as string;
      const last = i === segments.length - 1;
      if (last) {
        if (!(segment in node)) node[segment] = value;
        break;
      }
      const next = segments[i + 1] as string;
      const child = node[segment];
      if (LIST_MARKERS.has(next) && i + 2 < segments.length) {
        const list = child instanceof ListBuilder ? child : new ListBuilder();
        node[segment] = list;
        const index = segments[i + 2] as string;
        if (i + 3 === segments.length) {
          list.set(index, value);
          break;
        }
        node = list.node(index);
        i += 2;
        continue;
      }
      const object: Node =
        typeof child === "object" && child !== null && !(child instanceof ListBuilder) ? (child as Node) : {};
      node[segment] = object;
      node = object;
    }
  }
  return finish(root) as Node;
}

/** Collects `member.N` items until unflattening ends, then orders them by N. */
class ListBuilder {
  private readonly items = new Map<number, unknown>();

  set(index: string, value: unknown): void {
    this.items.set(Number.parseInt(index, 10) || 0, value);
  }

  node(index: string): Node {
    const key = Number.parseInt(index, 10) || 0;
    const existing = this.items.get(key);
    if (typeof existing === "object" && existing !== null) return existing as Node;
    const created: Node = {};
    this.items.set(key, created);
    return created;
  }

  toArray(): unknown[] {
    return [...this.items.entries()].sort(([a], [b]) => a - b).map(([, value]) => finish(value));
  }
}

function finish(value: unknown): unknown {
  if (value instanceof ListBuilder) return value.toArray();
  if (typeof value === "object" && value !== null) {
    const out: Node = {};
    for (const [key, child] of Object.entries(value)) out[key] = finish(child);
    return out;
  }
  return value;
}

// XML output.

// biome-ignore lint/suspicious/noControlCharactersInRegex: these are exactly the characters XML 1.0 forbids.
const INVALID_XML = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g;

export function escapeXml(text: string): string {
  return text
    .replace(INVALID_XML, "\uFFFD")
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&apos;");
}

/** Serialises a value as the Query protocol does: lists as `<member>` items, dates as ISO 8601. */
export function toXml(name: string, value: unknown): string {
  if (value === undefined || value === null) return "";
  if (Array.isArray(value))
    return `<${name}>${value.map((item) => toXml("member", item)).join("")}</${name}>`;
  if (value instanceof Date) return `<${name}>${value.toISOString()}</${name}>`;
  if (typeof value === "object") {
    const children = Object.entries(value)
      .map(([key, child]) => toXml(key, child))
      .join("");
    return `<${name}>${children}</${name}>`;
  }
  return `<${name}>${escapeXml(String(value))}</${name}>`;
}

export function queryResponse(action: string, namespace: string, result: unknown, requestId: string): string {
  const body = result === undefined || result === null ? "" : toXml(`${action}Result`, result);
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="${escapeXml(namespace)}">${body}<ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata></${action}Response>\n`;
}

export function queryError(
  error: { fault: string; queryCode: string; message: string },
  namespace: string | undefined,
  requestId: string,
): string {
  const xmlns = namespace === undefined ? "" : ` xmlns="${escapeXml(namespace)}"`;
  return `<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse${xmlns}><Error><Type>${error.fault}</Type><Code>${escapeXml(error.queryCode)}</Code><Message>${escapeXml(error.message)}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>\n`;
}
