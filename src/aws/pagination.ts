/**
 * `nextToken`/`maxResults` pagination over a key-ordered listing. A token is
 * the last key returned, opaque to clients (base64url JSON).
 */

export interface PageRequest {
  maxResults?: number | undefined;
  nextToken?: string | undefined;
}

export interface Page<T> {
  items: T[];
  nextToken?: string;
}

export function encodeToken(after: string): string {
  return Buffer.from(JSON.stringify({ after }), "utf8").toString("base64url");
}

/** The key to continue after; undefined for the first page; throws `invalid()` on a token we did not issue. */
export function decodeToken(token: string | undefined, invalid: () => Error): string | undefined {
  if (token === undefined || token === "") return undefined;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    if (
      typeof parsed === "object" &&
      parsed !== null &&
      "after" in parsed &&
      typeof parsed.after === "string"
    ) {
      return parsed.after;
    }
  } catch {
    // fall through
  }
  throw invalid();
}

/**
 * Turns rows fetched with `LIMIT limit + 1` into one page: the extra row, if
 * present, proves there is more and yields the token.
 */
export function toPage<T>(rows: T[], limit: number, keyOf: (item: T) => string): Page<T> {
  if (rows.length <= limit) return { items: rows };
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return last === undefined ? { items } : { items, nextToken: encodeToken(keyOf(last)) };
}
