import { randomBytes } from "node:crypto";

/** A response body already serialized: sent as it is, not passed to JSON.stringify. */
export class RawJson {
  constructor(readonly json: string) {}
}

/** The body an operation's output is sent as. */
export function jsonText(output: unknown): string {
  return output instanceof RawJson ? output.json : JSON.stringify(output ?? {});
}

/** What marks a hole: random per process, so that no string a user sends can pass for one. */
const NONCE = randomBytes(8).toString("hex");
/** How a marker starts and ends once serialized (`\u0001` is escaped in JSON). */
const OPEN = `"\\u0001${NONCE}:`;
const CLOSE = `\\u0001"`;

/**
 * JSON text with holes for values that differ between values of one shape, serialized once.
 *
 * Many values that differ only in a few strings (the tasks of one RunTask call, which differ in
 * their ARNs and instance) cost one `JSON.stringify` of a prototype instead of one each: the
 * prototype carries a marker string where each hole is (`JsonTemplate.marker(i)`), and `fill`
 * puts each value's JSON text in place of the markers. A hole the prototype does not show (a
 * field its shape leaves out) is ignored.
 */
export class JsonTemplate {
  private constructor(
    private readonly parts: readonly string[],
    private readonly holes: readonly number[],
  ) {}

  /** The string that marks hole `i` in a prototype. */
  static marker(i: number): string {
    return `\u0001${NONCE}:${i}\u0001`;
  }

  /** The template of `json`, the serialization of a prototype with markers in its holes. */
  static of(json: string): JsonTemplate {
    const parts: string[] = [];
    const holes: number[] = [];
    let at = 0;
    for (let open = json.indexOf(OPEN); open !== -1; open = json.indexOf(OPEN, at)) {
      const digits = open + OPEN.length;
      const close = json.indexOf(CLOSE, digits);
      if (close === -1) break;
      const hole = Number(json.slice(digits, close));
      parts.push(json.slice(at, open));
      holes.push(hole);
      at = close + CLOSE.length;
    }
    parts.push(json.slice(at));
    return new JsonTemplate(parts, holes);
  }

  /** The JSON text with hole `i` holding `texts[i]`, itself JSON text (`JSON.stringify` of the value). */
  fill(texts: readonly string[]): string {
    let text = this.parts[0] as string;
    for (let i = 0; i < this.holes.length; i++) {
      text += (texts[this.holes[i] as number] as string) + (this.parts[i + 1] as string);
    }
    return text;
  }
}
