import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

/** The arguments both take: key, nonce, associated data, input range, output range, tag. */
type GcmArguments = [
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  input: Uint8Array,
  inputOffset: number,
  output: Uint8Array,
  outputOffset: number,
  length: number,
  tag: Uint8Array,
];

/**
 * AES-256-GCM that writes into a given buffer (native/aesgcm.c, built by scripts/bootstrap.sh
 * into build/aesgcm.node). `node:crypto` always allocates its output, which cost a pulled
 * segment an allocation, a zero-fill and a copy into the buffer the socket is written from.
 *
 * Both take the same arguments: the key (32 bytes), the nonce (12), the associated data, the
 * input range, the output range (the same bytes as the input, or bytes apart from them) and
 * the tag (16). Ranges outside their buffers throw.
 */
export interface NativeGcm {
  /**
   * Decrypts and authenticates; false (with the output range zeroed) when the tag does not
   * match. The output holds unauthenticated plaintext while this runs: nothing may read it
   * unless this returned true.
   */
  open(...args: GcmArguments): boolean;
  /** Encrypts, and writes the tag into `tag`. */
  seal(...args: GcmArguments): void;
}

/** How a direct send ended: no error when every byte went (see native/send-sealed.c). */
export type SendSealedDone = (
  error: string | undefined,
  kind: "sealed" | "socket" | "stalled" | "cancelled" | "memory" | undefined,
  sent: number,
) => void;

/** A direct send in progress, to cancel. */
export type SendSealedToken = { readonly sendSealedToken: unique symbol };

/**
 * A sealed blob's plaintext straight to a socket on a thread of the addon's own
 * (native/send-sealed.c): both descriptors are duplicated before `sendSealed` returns, bytes
 * [start, end] of the `length` the file holds are sent segment by segment, each authenticated
 * first, and `done` is called once on this thread. Nothing else may write to the socket until
 * then; `cancelSend` ends it early ("cancelled").
 */
export interface SealedSender {
  sendSealed(
    fileFd: number,
    socketFd: number,
    key: Buffer,
    segmentBytes: number,
    length: number,
    start: number,
    end: number,
    stallMs: number,
    done: SendSealedDone,
  ): SendSealedToken;
  cancelSend(token: SendSealedToken): void;
}

/** The addon: the two functions, which code they run on this CPU, and OpenSSL's beside them. */
export interface NativeGcmAddon extends NativeGcm, Partial<SealedSender> {
  /** "vaes" (native/gcm-vaes.c, where the CPU has VAES and VPCLMULQDQ) or "openssl". */
  engine: "vaes" | "openssl";
  /** The same functions, always through Node's OpenSSL. */
  openssl: NativeGcm & Partial<SealedSender>;
}

export const ADDON_PATH = fileURLToPath(new URL("../../build/aesgcm.node", import.meta.url));

function load(): { gcm: NativeGcmAddon | undefined; how: string } {
  if (process.env.WHARF_NATIVE_GCM === "0")
    return { gcm: undefined, how: "through node:crypto (WHARF_NATIVE_GCM=0)" };
  if (!existsSync(ADDON_PATH))
    return {
      gcm: undefined,
      how: `through node:crypto (${ADDON_PATH} is not built; see scripts/bootstrap.sh)`,
    };
  try {
    const gcm = createRequire(import.meta.url)(ADDON_PATH) as NativeGcmAddon;
    const engine = gcm.engine === "vaes" ? "VAES and VPCLMULQDQ" : "OpenSSL";
    return { gcm, how: `in place with ${engine} (${ADDON_PATH})` };
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return { gcm: undefined, how: `through node:crypto (${ADDON_PATH} did not load: ${reason})` };
  }
}

const loaded = load();

/** The addon in this thread, or undefined: then node:crypto does the work. */
export const nativeGcm: NativeGcm | undefined = loaded.gcm;
/** The addon's direct send, or undefined (no addon, or one built before it had it). */
export const sealedSender: SealedSender | undefined =
  loaded.gcm?.sendSealed !== undefined && loaded.gcm.cancelSend !== undefined
    ? (loaded.gcm as NativeGcmAddon & SealedSender)
    : undefined;
/** Which AES-256-GCM this thread uses, and why, for the log. */
export const nativeGcmStatus: string = loaded.how;
