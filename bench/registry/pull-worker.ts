// A worker thread that pulls one blob at a time for the client (`PullWorker` in client.ts), hashing
// it as it arrives. docker pulls each layer on a goroutine of its own and verifies its digest
// there, so its three downloads hash on as many cores as there are; so does this client.
import { parentPort, workerData } from "node:worker_threads";
import { BlobPuller, type PullJob } from "./pull.ts";

export interface PullWorkerData {
  /** The registry, e.g. http://127.0.0.1:40123 */
  url: string;
  authorization: string | undefined;
  readBytes: number;
  timeoutMs: number;
}

export type PullReply = { ok: true } | { ok: false; message: string };

const data = workerData as PullWorkerData;
const puller = new BlobPuller(new URL(data.url), data.authorization, data.readBytes, data.timeoutMs);

parentPort?.on("message", (job: PullJob) => {
  puller.pull(job).then(
    () => parentPort?.postMessage({ ok: true } satisfies PullReply),
    (error: unknown) =>
      parentPort?.postMessage({
        ok: false,
        message: error instanceof Error ? error.message : String(error),
      } satisfies PullReply),
  );
});
