import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { OpenSegment, SealReply, SealRequest, SealSegment } from "./seal-protocol.ts";
import { SealedFileError } from "./sealed-format.ts";

export class SealWorkerError extends Error {}

/** A request that waits longer than this for its worker is failed, and the worker is stopped. */
const JOB_TIMEOUT_MS = 60_000;

type Job =
  | Omit<SealSegment, "job">
  | { op: "digest" | "forget"; upload: string }
  | (Omit<OpenSegment, "job"> & { upload?: undefined });

interface Pending {
  resolve(reply: SealReply): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

/** One worker thread and the requests it has not answered yet. */
class Slot {
  readonly worker: Worker;
  readonly pending = new Map<number, Pending>();
  /** Set once the worker has stopped: nothing it was given will be answered or touched any more. */
  dead = false;
  /** Set once the worker is being stopped: it keeps the process alive until it has. */
  private stopping = false;

  constructor(onExit: (slot: Slot) => void) {
    this.worker = new Worker(new URL("./seal-worker.mjs", import.meta.url));
    this.worker.unref();
    this.worker.on("message", (reply: SealReply) => {
      const pending = this.pending.get(reply.job);
      if (pending === undefined) return;
      this.pending.delete(reply.job);
      if (this.pending.size === 0 && !this.stopping) this.worker.unref();
      clearTimeout(pending.timer);
      pending.resolve(reply);
    });
    this.worker.on("error", () => undefined); // "exit" follows and fails what is pending
    this.worker.on("exit", (code) => {
      this.dead = true;
      for (const pending of this.pending.values()) {
        clearTimeout(pending.timer);
        pending.reject(new SealWorkerError(`sealing worker stopped (exit code ${code})`));
      }
      this.pending.clear();
      onExit(this);
    });
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
  private nextSlot = 0;
  private closed = false;

  constructor(size = Math.min(2, availableParallelism())) {
    this.size = Math.max(1, size);
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
      slot = new Slot((stopped) => {
        for (const [id, owner] of this.assigned) if (owner === stopped) this.assigned.delete(id);
        if (this.slots[at] === stopped) this.slots[at] = undefined;
      });
      this.slots[at] = slot;
    }
    if (upload !== undefined) this.assigned.set(upload, slot);
    return slot;
  }

  private send(job: Job, transfer: ArrayBuffer[] = []): Promise<SealReply> {
    const slot = this.slotFor(job.upload);
    const id = this.nextJob++;
    return new Promise<SealReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        // The worker may still be inside the request: stop it; 'exit' fails what it held.
        void slot.stop();
      }, JOB_TIMEOUT_MS);
      timer.unref();
      slot.pending.set(id, { resolve, reject, timer });
      slot.worker.ref(); // an idle worker does not keep the process alive; a busy one does
      slot.worker.postMessage({ ...job, job: id } as SealRequest, transfer);
    });
  }

  /** Hashes and seals one segment; resolves with its buffer once it is written. */
  async seal(request: Omit<SealSegment, "op" | "job">): Promise<ArrayBuffer> {
    const reply = await this.send({ op: "seal", ...request }, [request.buffer]);
    if (reply.error !== undefined) throw new SealWorkerError(reply.error);
    if (reply.buffer === undefined) throw new SealWorkerError("sealing worker kept the buffer");
    return reply.buffer;
  }

  /**
   * Reads and opens one segment into `buffer` (transferred, and given back with the plaintext's
   * length). A missing or forged segment fails with SealedFileError.
   */
  async open(request: Omit<OpenSegment, "op" | "job">): Promise<{ buffer: ArrayBuffer; length: number }> {
    const reply = await this.send({ op: "open", ...request }, [request.buffer]);
    if (reply.error !== undefined) {
      throw reply.sealedFileError === true
        ? new SealedFileError(reply.error)
        : new SealWorkerError(reply.error);
    }
    if (reply.buffer === undefined || reply.length === undefined)
      throw new SealWorkerError("sealing worker kept the buffer");
    return { buffer: reply.buffer, length: reply.length };
  }

  /** The hex sha256 of an upload's bytes so far, or undefined when no worker holds its running hash. */
  async digest(upload: string): Promise<string | undefined> {
    const slot = this.assigned.get(upload);
    if (slot === undefined || slot.dead) return undefined;
    try {
      return (await this.send({ op: "digest", upload })).digest;
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
      await this.send({ op: "forget", upload });
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
