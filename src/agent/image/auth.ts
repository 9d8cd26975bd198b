/** One challenge of a `WWW-Authenticate` header: its scheme (lowercase) and parameters (names lowercase). */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

const TOKEN = /[!#$%&'*+\-.^_`|~0-9A-Za-z]+/y;
const SPACE = /[ \t]*/y;

/**
 * Parses `WWW-Authenticate` values (RFC 7235): one or more challenges, each a scheme and
 * comma-separated `name=value` parameters, values being tokens or quoted strings, e.g.
 * `Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull"`.
 * Unparseable parts end the parse; what was read so far is returned.
 */
export function parseChallenges(values: string[]): Challenge[] {
  const challenges: Challenge[] = [];
  for (const value of values) {
    let pos = 0;
    const match = (pattern: RegExp): string | undefined => {
      pattern.lastIndex = pos;
      const found = pattern.exec(value);
      if (found === null) return undefined;
      pos = pattern.lastIndex;
      return found[0];
    };
    const skip = (): void => {
      while (pos < value.length && (value[pos] === "," || value[pos] === " " || value[pos] === "\t")) pos++;
    };
    /** A `name=` at `pos`: consumes it and returns the name; otherwise leaves `pos` alone. */
    const paramName = (): string | undefined => {
      const start = pos;
      const name = match(TOKEN);
      match(SPACE);
      if (name !== undefined && value[pos] === "=") {
        pos++;
        match(SPACE);
        return name.toLowerCase();
      }
      pos = start;
      return undefined;
    };
    const paramValue = (): string | undefined => {
      if (value[pos] !== '"') return match(TOKEN);
      let out = "";
      for (pos++; pos < value.length; pos++) {
        const char = value[pos];
        if (char === '"') {
          pos++;
          return out;
        }
        if (char === "\\") pos++;
        out += value[pos] ?? "";
      }
      return undefined; // unterminated
    };

    skip();
    while (pos < value.length) {
      const scheme = match(TOKEN);
      if (scheme === undefined) break;
      const challenge: Challenge = { scheme: scheme.toLowerCase(), params: {} };
      challenges.push(challenge);
      match(SPACE);
      for (let name = paramName(); name !== undefined; name = paramName()) {
        const param = paramValue();
        if (param === undefined) return challenges;
        challenge.params[name] = param;
        match(SPACE);
        if (value[pos] !== ",") break;
        skip();
      }
      skip();
    }
  }
  return challenges;
}
