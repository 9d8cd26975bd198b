/**
 * The agent channel: one connection per agent that carries its polls, reports, logs and stats as
 * frames, instead of an HTTP request each. The agent opens it with
 *
 *   GET /agent/v1/channel   Connection: Upgrade, Upgrade: wharf-agent/1, Bearer <node token>
 *
 * and the server answers 101 Switching Protocols. From then on each side writes frames:
 *
 *   request  u32 length of what follows | u32 id | u8 path length | path (ASCII) | JSON body
 *   answer   u32 length of what follows | u32 id | u16 HTTP status | JSON body
 *
 * A request is what the same POST to its path would be (same body, same node token, the one the
 * channel was opened with); its answer carries the id, the status and the body that POST would
 * have had (errors in the AWS JSON shape). Requests may overlap (a poll waits while reports go);
 * answers come as each is ready. Before its answer a request may have interim ones, with the
 * same id and a 1xx status (`INTERIM`, as HTTP's informational responses come before the final
 * one), each with a body: a poll that asked to `follow` gets its changes so. Registration stays
 * a signed POST. Lengths are big-endian.
 * Types and pure functions only, no I/O.
 */

export const CHANNEL_PATH = "/agent/v1/channel";
export const CHANNEL_PROTOCOL = "wharf-agent/1";

/** The status of an interim answer: the request's own answer is still to come. */
export const INTERIM = 100;

/** Whether an answer's status says it is interim (1xx). */
export function isInterim(status: number): boolean {
  return status < 200;
}

const LENGTH = 4;
const REQUEST_HEAD = LENGTH + 4 + 1;
/** The most a request frame holds besides its body: id, path length, the longest path. */
export const MAX_REQUEST_HEAD = 4 + 1 + 255;
const ANSWER_HEAD = LENGTH + 4 + 2;

/** A request frame, its length first. */
export function requestFrame(id: number, path: string, body: string): Buffer {
  const pathBytes = Buffer.byteLength(path, "latin1");
  if (pathBytes > 255) throw new RangeError(`path too long for a frame: ${path}`);
  const frame = Buffer.allocUnsafe(REQUEST_HEAD + pathBytes + Buffer.byteLength(body));
  frame.writeUInt32BE(frame.length - LENGTH, 0);
  frame.writeUInt32BE(id, 4);
  frame.writeUInt8(pathBytes, 8);
  frame.write(path, REQUEST_HEAD, "latin1");
  frame.write(body, REQUEST_HEAD + pathBytes, "utf8");
  return frame;
}

/** An answer frame, its length first. */
export function answerFrame(id: number, status: number, body: string): Buffer {
  const frame = Buffer.allocUnsafe(ANSWER_HEAD + Buffer.byteLength(body));
  frame.writeUInt32BE(frame.length - LENGTH, 0);
  frame.writeUInt32BE(id, 4);
  frame.writeUInt16BE(status, 8);
  frame.write(body, ANSWER_HEAD, "utf8");
  return frame;
}

export interface FrameRequest {
  id: number;
  path: string;
  body: Buffer;
}

/** A request frame as `FrameReader` gives it (without its length); undefined when it is too short. */
export function readRequest(frame: Buffer): FrameRequest | undefined {
  if (frame.length < REQUEST_HEAD - LENGTH) return undefined;
  const pathBytes = frame.readUInt8(4);
  const start = REQUEST_HEAD - LENGTH + pathBytes;
  if (frame.length < start) return undefined;
  return { id: frame.readUInt32BE(0), path: frame.toString("latin1", 5, start), body: frame.subarray(start) };
}

export interface FrameAnswer {
  id: number;
  status: number;
  text: string;
}

/** An answer frame as `FrameReader` gives it (without its length); undefined when it is too short. */
export function readAnswer(frame: Buffer): FrameAnswer | undefined {
  if (frame.length < ANSWER_HEAD - LENGTH) return undefined;
  return {
    id: frame.readUInt32BE(0),
    status: frame.readUInt16BE(4),
    text: frame.toString("utf8", ANSWER_HEAD - LENGTH),
  };
}

/** A frame longer than the reader takes: skipped unread, but for the id it starts with. */
export interface Oversized {
  oversized: true;
  id: number;
  length: number;
}

/**
 * Cuts the bytes a connection delivers, in whatever pieces, into frames (each without its
 * length). A frame longer than `maxFrame` is not kept: once its id has come (the four bytes
 * every frame starts with) it is given as `Oversized` and the rest of it is passed over, so that
 * the connection carries on with the next frame.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private length = 0;
  /** The length of the frame being read, its own four bytes included, once they have come. */
  private need: number | undefined;
  /** Bytes of an oversized frame still to pass over. */
  private skip = 0;

  constructor(private readonly maxFrame: number) {}

  /** The frames completed by `chunk`, in order. */
  push(chunk: Buffer): Array<Buffer | Oversized> {
    if (this.skip > 0) {
      const skipped = Math.min(this.skip, chunk.length);
      this.skip -= skipped;
      chunk = chunk.subarray(skipped);
      if (chunk.length === 0) return [];
    }
    this.chunks.push(chunk);
    this.length += chunk.length;
    const frames: Array<Buffer | Oversized> = [];
    for (;;) {
      if (this.need === undefined) {
        if (this.length < LENGTH) break;
        const first = this.chunks[0] as Buffer;
        this.need = LENGTH + (first.length >= LENGTH ? first : this.whole()).readUInt32BE(0);
      }
      const oversized = this.need - LENGTH > this.maxFrame;
      // Of an oversized frame, only its length and id are waited for.
      if (this.length < (oversized ? Math.min(this.need, LENGTH + 4) : this.need)) break;
      const whole = this.whole();
      const end = Math.min(this.need, whole.length);
      if (oversized) {
        frames.push({
          oversized: true,
          id: this.need >= LENGTH + 4 ? whole.readUInt32BE(LENGTH) : 0,
          length: this.need - LENGTH,
        });
        this.skip = this.need - end;
      } else {
        frames.push(whole.subarray(LENGTH, end));
      }
      const rest = whole.subarray(end);
      this.chunks = rest.length === 0 ? [] : [rest];
      this.length = rest.length;
      this.need = undefined;
      if (this.skip > 0) break;
    }
    return frames;
  }

  /** What has come and is not yet a frame, as one buffer (joined only when a frame is complete). */
  private whole(): Buffer {
    if (this.chunks.length !== 1) this.chunks = [Buffer.concat(this.chunks, this.length)];
    return this.chunks[0] as Buffer;
  }
}

/** Whether `frame` is one `FrameReader` passed over. */
export function isOversized(frame: Buffer | Oversized): frame is Oversized {
  return !Buffer.isBuffer(frame);
}
