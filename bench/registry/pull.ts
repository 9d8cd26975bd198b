// One blob GET over a keep-alive connection that reads into one buffer (bench/wire.ts), its length
// and (when asked) its sha256 checked as the bytes arrive; on the client's main thread when it only
// counts, on a worker thread of its own when it hashes (pull-worker.ts).
import { createHash } from "node:crypto";
import { WireConnection } from "../wire.ts";

export interface PullJob {
  path: string;
  digest: string;
  size: number;
  verify: boolean;
}

/** Where a client's blob GETs go, and the connection it keeps for them. */
export class BlobPuller {
  private connection: WireConnection | undefined;
  private readonly headers: Record<string, string>;
  private readonly buffer: Buffer;

  constructor(
    private readonly url: URL,
    authorization: string | undefined,
    readBytes: number,
    private readonly timeoutMs: number,
  ) {
    this.headers = authorization === undefined ? {} : { authorization };
    this.buffer = Buffer.allocUnsafe(readBytes);
  }

  async pull(job: PullJob): Promise<void> {
    const hash = job.verify ? createHash("sha256") : undefined;
    let received = 0;
    this.connection ??= new WireConnection(this.url, { readBuffer: this.buffer });
    const connection = this.connection;
    const timer = setTimeout(() => connection.close(), this.timeoutMs);
    try {
      const answer = await connection.get(job.path, this.headers, (bytes) => {
        received += bytes.length;
        hash?.update(bytes);
      });
      if (answer.status !== 200) throw new Error(`GET ${job.path}: HTTP ${answer.status}: ${answer.text}`);
    } catch (error) {
      this.close();
      throw error;
    } finally {
      clearTimeout(timer);
    }
    const actual = hash === undefined ? job.digest : `sha256:${hash.digest("hex")}`;
    if (received !== job.size || actual !== job.digest)
      throw new Error(`GET ${job.path}: got ${received} bytes ${actual}, want ${job.size} ${job.digest}`);
  }

  close(): void {
    this.connection?.close();
    this.connection = undefined;
  }
}
