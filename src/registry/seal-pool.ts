import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { nativeGcm } from "./native-gcm.ts";
import type { OpenSegment, SealReply, SealRequest, SealSegment, WorkerOptions } from "./seal-protocol.ts";
import { SealedFileError } from "./sealed-format.ts";

export class SealWorkerError extends Error {}

/** A request that waits longer than this for its worker is failed, and the worker is stopped. */
const JOB_TIMEOUT_MS = 60_000;
/**
 * Plaintext buffers kept shared with the workers, in bytes at most; past this, a buffer is
 * used once and dropped (a worker keeps every buffer it has been given a number for).
 */
const MAX_SHARED_BYTES = 64 * 1024 * 1024;

/** A request as made, before `send` numbers it (`job` 0). */
type Job = SealRequest & { upload?: string | undefined };

interface Pending {
  resolve(reply: SealReply): void;
  reject(error: Error): void;
  /** When it was sent (`performance.now()`). */
  sent: number;
}

/**
 * One worker thread and the requests it has not answered yet. A worker answers in the order it
 * was asked, so the oldest request is the first pending: one watchdog per worker checks it,
 * rather than a timer per request (a pull sends a request per segment).
 */
class Slot {
  readonly worker: Worker;
  /** In the order sent. */
  readonly pending = new Map<number, Pending>();
  /** Shared plaintext buffers this worker has been given, by number. */
  readonly knows = new Set<number>();
  /** Set once the worker has stopped: nothing it was given will be answered or touched any more. */
  dead = false;
  /** Set once the worker is being stopped: it keeps the process alive until it has. */
  private stopping = false;
  private readonly watchdog: NodeJS.Timeout;

  constructor(options: WorkerOptions, jobTimeoutMs: number, onExit: (slot: Slot) => void) {
    this.worker = new Worker(new URL("./seal-worker.mjs", import.meta.url), { workerData: options });
    this.worker.unref();
    this.worker.on("message", (reply: SealReply) => {
      const pending = this.pending.get(reply.job);
      if (pending === undefined) return;
      this.pending.delete(reply.job);
      if (this.pending.size === 0 && !this.stopping) this.worker.unref();
      pending.resolve(reply);
    });
    this.worker.on("error", () => undefined); // "exit" follows and fails what is pending
    this.worker.on("exit", (code) => {
      this.dead = true;
      clearInterval(this.watchdog);
      for (const pending of this.pending.values())
        pending.reject(new SealWorkerError(`sealing worker stopped (exit code ${code})`));
      this.pending.clear();
      onExit(this);
    });
    // The worker may still be inside the oldest request: stop it; "exit" fails what it held.
    this.watchdog = setInterval(
      () => {
        const oldest = this.pending.values().next().value as Pending | undefined;
        if (oldest !== undefined && !this.stopping && performance.now() - oldest.sent >= jobTimeoutMs)
          void this.stop();
      },
      Math.max(1, Math.ceil(jobTimeoutMs / 8)),
    );
    this.watchdog.unref();
  }

  /** Sends `request`, answered through `pending`. */
  send(id: number, request: SealRequest, transfer: ArrayBuffer[], pending: Pending): void {
    // An idle worker does not keep the process alive; a busy one does.
    if (this.pending.size === 0) this.worker.ref();
    this.pending.set(id, pending);
    this.worker.postMessage(request, transfer);
  }

  /**
   * Stops the worker; resolves once it has. Until then it stays referenced, even when a
   * reply arrives meanwhile: an unreferenced worker's exit would not keep the event loop
   * alive, and a process with nothing else to do would end with this still pending.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    this.worker.ref();
    await this.worker.terminate();
  }
}

/**
 * A segment's plaintext buffer, shared with the workers: a worker opens a segment into it and
 * the event loop writes it to a socket, and neither copies it or moves it. It belongs to one
 * side at a time: the worker's from `open` until its answer, the caller's otherwise.
 */
export interface SharedBuffer {
  /** Its number in the workers' maps; 0 for one used only once (past MAX_SHARED_BYTES). */
  readonly id: number;
  readonly bytes: Buffer;
}

/**
 * Worker threads that hash and seal uploads off the event loop, so that a
 * push uses both cores: the event loop reads the socket and copies bytes into
 * segment buffers, which travel to a worker and back without being copied.
 *
 * An upload keeps to one worker while its running hash lives there. When a
 * worker stops (a crash, or a request that timed out), everything it had not
 * answered fails, the running hashes it held are gone (`digest` answers
 * undefined and the caller reads the upload back instead), and the next
 * request starts a fresh worker. A file descriptor given with a request stays
 * in use until that request is answered or its worker has stopped.
 */
export class SealPool {
  private readonly size: number;
  private readonly slots: Array<Slot | undefined>;
  private readonly assigned = new Map<string, Slot>();
  private nextJob = 1;
  /** Shared buffers free for use, by size; `sharedBytes` counts those given out too. */
  private readonly spare = new Map<number, SharedBuffer[]>();
  private sharedBytes = 0;
  private nextShared = 1;
  private nextSlot = 0;
  private closed = false;
  /** Whether the workers use the in-place cipher (native-gcm.ts) rather than node:crypto. */
  readonly nativeGcm: boolean;

  /** `useNativeGcm` false keeps the workers on node:crypto even when the addon is there. */
  constructor(
    size = Math.min(2, availableParallelism()),
    private readonly maxSharedBytes = MAX_SHARED_BYTES,
    useNativeGcm = true,
    /** A request unanswered for this long (checked every eighth of it) fails, and its worker is stopped. */
    private readonly jobTimeoutMs = JOB_TIMEOUT_MS,
  ) {
    this.size = Math.max(1, size);
    this.nativeGcm = useNativeGcm && nativeGcm !== undefined;
    this.slots = new Array<Slot | undefined>(this.size).fill(undefined);
  }

  /** The worker holding an upload's running hash, or the next one in turn (for any other request). */
  private slotFor(upload: string | undefined): Slot {
    const assigned = upload === undefined ? undefined : this.assigned.get(upload);
    if (assigned !== undefined && !assigned.dead) return assigned;
    if (this.closed) throw new SealWorkerError("the sealing pool is closed");
    const at = this.nextSlot++ % this.size;
    let slot = this.slots[at];
    if (slot === undefined || slot.dead) {
      slot = new Slot({ nativeGcm: this.nativeGcm }, this.jobTimeoutMs, (stopped) => {
        for (const [id, owner] of this.assigned) if (owner === stopped) this.assigned.delete(id);
        if (this.slots[at] === stopped) this.slots[at] = undefined;
      });
      this.slots[at] = slot;
    }
    if (upload !== undefined) this.assigned.set(upload, slot);
    return slot;
  }

  private send(job: Job, transfer: ArrayBuffer[] = [], slot = this.slotFor(job.upload)): Promise<SealReply> {
    const id = this.nextJob++;
    job.job = id;
    return new Promise<SealReply>((resolve, reject) => {
      slot.send(id, job, transfer, { resolve, reject, sent: performance.now() });
    });
  }

  /** Hashes and seals one segment; resolves with its buffer once it is written. */
  async seal(request: Omit<SealSegment, "op" | "job">): Promise<ArrayBuffer> {
    const reply = await this.send({ op: "seal", ...request, job: 0 }, [request.buffer]);
    if (reply.error !== undefined) throw new SealWorkerError(reply.error);
    if (reply.buffer === undefined) throw new SealWorkerError("sealing worker kept the buffer");
    return reply.buffer;
  }

  /**
   * A buffer for one segment's plaintext, to `open` into; give it back with `giveShared` once
   * nothing reads it any more (a socket has called back for it, say).
   */
  takeShared(bytes: number): SharedBuffer {
    const spare = this.spare.get(bytes)?.pop();
    if (spare !== undefined) return spare;
    const memory = new SharedArrayBuffer(bytes);
    if (this.sharedBytes + bytes > this.maxSharedBytes) return { id: 0, bytes: Buffer.from(memory) };
    this.sharedBytes += bytes;
    return { id: this.nextShared++, bytes: Buffer.from(memory) };
  }

  giveShared(buffer: SharedBuffer): void {
    if (buffer.id === 0) return;
    const list = this.spare.get(buffer.bytes.length) ?? [];
    this.spare.set(buffer.bytes.length, list);
    list.push(buffer);
  }

  /**
   * Reads and opens one segment into `into` (see `takeShared`), which the worker writes until
   * this settles; resolves with the plaintext's length. Read `into` only after it resolves:
   * the in-place cipher decrypts there before the tag is checked. A missing or forged segment
   * fails with SealedFileError and leaves none of its plaintext in `into` (the in-place cipher
   * zeroes the segment's range; node:crypto never writes it).
   */
  async open(
    request: Omit<OpenSegment, "op" | "job" | "shared" | "memory">,
    into: SharedBuffer,
  ): Promise<number> {
    const slot = this.slotFor(undefined);
    const known = into.id !== 0 && slot.knows.has(into.id);
    if (into.id !== 0) slot.knows.add(into.id);
    const job: OpenSegment = { op: "open", job: 0, ...request, shared: into.id };
    if (!known) job.memory = into.bytes.buffer as SharedArrayBuffer;
    const reply = await this.send(job, [], slot);
    if (reply.error !== undefined) {
      throw reply.sealedFileError === true
        ? new SealedFileError(reply.error)
        : new SealWorkerError(reply.error);
    }
    if (reply.length === undefined) throw new SealWorkerError("sealing worker sent no length");
    return reply.length;
  }

  /** The hex sha256 of an upload's bytes so far, or undefined when no worker holds its running hash. */
  async digest(upload: string): Promise<string | undefined> {
    const slot = this.assigned.get(upload);
    if (slot === undefined || slot.dead) return undefined;
    try {
      return (await this.send({ op: "digest", job: 0, upload })).digest;
    } catch (error) {
      if (error instanceof SealWorkerError) return undefined;
      throw error;
    }
  }

  /** Drops an upload's running hash. */
  async forget(upload: string): Promise<void> {
    const slot = this.assigned.get(upload);
    if (slot === undefined) return;
    this.assigned.delete(upload);
    if (slot.dead) return;
    this.assigned.set(upload, slot);
    try {
      await this.send({ op: "forget", job: 0, upload });
    } catch {
      // A stopped worker holds nothing any more.
    } finally {
      if (this.assigned.get(upload) === slot) this.assigned.delete(upload);
    }
  }

  /** Stops the workers (after the caller has waited for its uploads). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((slot) => slot?.stop()));
  }
}
