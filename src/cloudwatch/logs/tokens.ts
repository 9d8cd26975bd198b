/**
 * GetLogEvents' tokens, in the service's form: `f/<56 digits>/s` to read
 * forwards, `b/<56 digits>/s` to read backwards. The digits are a boundary
 * between events: 28 for a timestamp, 28 for a sequence number. A forward
 * token reads the events at or after its boundary, a backward token the
 * events before it, so the boundary after the last event read is where the
 * next forward page starts and the one before the first is where the next
 * backward page ends.
 */

/** A place between events: before the event at (timestamp, seq) and after every earlier one. */
export interface Boundary {
  timestamp: number;
  seq: number;
}

export type Direction = "f" | "b";

export interface EventToken {
  direction: Direction;
  at: Boundary;
}

/** Before every event. */
export const START: Boundary = { timestamp: 0, seq: 0 };

const DIGITS = 28;
const FORM = /^([fb])\/(\d{28})(\d{28})\/s$/;

export function encodeEventToken(direction: Direction, at: Boundary): string {
  return `${direction}/${String(at.timestamp).padStart(DIGITS, "0")}${String(at.seq).padStart(DIGITS, "0")}/s`;
}

/** The token's direction and boundary; undefined for anything we did not issue. */
export function decodeEventToken(token: string): EventToken | undefined {
  const match = FORM.exec(token);
  if (match === null) return undefined;
  const [, direction, timestamp, seq] = match as unknown as [string, Direction, string, string];
  const at = { timestamp: Number(timestamp), seq: Number(seq) };
  if (!Number.isSafeInteger(at.timestamp) || !Number.isSafeInteger(at.seq)) return undefined;
  return { direction, at };
}

/** The boundary just after an event. */
export function after(event: Boundary): Boundary {
  return { timestamp: event.timestamp, seq: event.seq + 1 };
}

/** The boundary just before an event. */
export function before(event: Boundary): Boundary {
  return { timestamp: event.timestamp, seq: event.seq };
}
