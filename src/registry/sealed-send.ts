import { open } from "node:fs/promises";
import type { ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { isMainThread } from "node:worker_threads";
import { type SealedSender, type SendSealedDone, type SendSealedToken, sealedSender } from "./native-gcm.ts";
import { readHeader, SealedFileError } from "./sealed-format.ts";

/** Direct sends at once, each a thread and a segment's buffer; past this, pulls go through the workers. */
const MAX_SENDS = 32;
/** A direct send whose socket takes nothing for this long fails. */
const STALL_MS = 120_000;

let sending = 0;
const EMPTY = Buffer.alloc(0);

/** The socket's own descriptor, when it is plain TCP (not TLS) and open. */
function socketFd(socket: Socket | null): number | undefined {
  if (socket === null || socket.destroyed || (socket as { encrypted?: boolean }).encrypted === true) return;
  // Node keeps the descriptor on the socket's libuv handle; it documents no other way to it.
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === "number" && fd >= 0 ? fd : undefined;
}

/**
 * Whether `sendSealed` can send to `response`: this is the main thread (Node 20 frees a
 * threadsafe function when a worker's environment is torn down, even while the addon's thread
 * still holds it: nodejs/node#55706), the addon has the direct send, the response's socket is
 * plain TCP and open, its headers frame a body that is raw bytes (not a HEAD request's, not
 * chunked), and fewer than MAX_SENDS are under way. Nothing of the body may be written yet.
 */
export function canSendSealed(response: ServerResponse, sender = sealedSender): boolean {
  return (
    isMainThread &&
    sender !== undefined &&
    sending < MAX_SENDS &&
    (response as { chunkedEncoding?: boolean }).chunkedEncoding !== true &&
    response.req?.method !== "HEAD" &&
    socketFd(response.socket) !== undefined
  );
}

/**
 * Resolves once everything queued on the socket (the headers) is in the kernel: the callback of
 * an empty write comes after every write before it. ("drain" would not do: it comes only after
 * a write that found the socket over its high-water mark.) Rejects when the socket closes first,
 * or after `timeoutMs`.
 */
export function flushed(socket: Socket, timeoutMs: number): Promise<void> {
  if (socket.writableLength === 0) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const settle = (error?: Error | null) => {
      clearTimeout(timer);
      socket.off("close", onClose);
      if (error == null) resolve();
      else reject(error);
    };
    const onClose = () => settle(new Error("the socket closed"));
    const timer = setTimeout(() => settle(new Error("the socket took nothing for too long")), timeoutMs);
    socket.on("close", onClose);
    socket.write(EMPTY, settle);
  });
}

/**
 * Sends plaintext bytes [start, end] (inclusive) of the sealed file at `path`, holding `length`
 * bytes, as the body of `response`, whose status and headers are set, Content-Length among them
 * (see `canSendSealed` first). The headers go out through Node; then, with nothing left queued
 * on the socket, the addon's thread reads, opens and sends each segment itself, so the bytes
 * never reach the event loop. The caller ends the response after this resolves (Node then
 * writes nothing more: the length was in the headers); after a rejection only a prefix was
 * sent, every byte of it authenticated, and the caller must destroy the response. Closing the
 * socket cancels the send.
 * Node sees none of the body's writes: an idle timeout on the socket would fire mid-send (Wharf
 * sets none; the thread's own `stallMs` stands in for one).
 */
export async function sendSealed(
  path: string,
  masterKey: Buffer,
  length: number,
  start: number,
  end: number,
  response: ServerResponse,
  sender: SealedSender | undefined = sealedSender,
  stallMs = STALL_MS,
): Promise<void> {
  if (sender === undefined) throw new Error("the addon has no direct send");
  sending++;
  try {
    const handle = await open(path, "r");
    let started: Promise<void>;
    try {
      const { key, segmentBytes } = await readHeader(handle, masterKey);
      const socket = response.socket;
      if (socket === null) throw new Error("the response has no socket");
      response.flushHeaders();
      await flushed(socket, stallMs);
      const fd = socketFd(socket);
      if (fd === undefined) throw new Error("the socket closed");
      const fileFd = handle.fd;
      started = untilSent(sender, socket, (done) =>
        sender.sendSealed(fileFd, fd, key, segmentBytes, length, start, end, stallMs, done),
      );
      started.catch(() => undefined); // awaited below, once the file is closed
    } finally {
      // The addon's thread has its own copy of the descriptor. Closing a file only read cannot
      // lose anything, and a failure here must not end this while the thread still sends.
      await handle.close().catch(() => undefined);
    }
    await started;
  } finally {
    sending--;
  }
}

/**
 * Runs `start` (the addon's send, given its `done`); settles when the addon's thread is done,
 * cancelling the send if the socket closes first.
 */
function untilSent(
  sender: SealedSender,
  socket: Socket,
  start: (done: SendSealedDone) => SendSealedToken,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let token: SendSealedToken | undefined;
    const onClose = () => {
      if (token !== undefined) sender.cancelSend(token);
    };
    token = start((error, kind) => {
      socket.off("close", onClose);
      token = undefined;
      if (error === undefined) resolve();
      else reject(kind === "sealed" ? new SealedFileError(error) : new Error(error));
    });
    socket.on("close", onClose);
  });
}
