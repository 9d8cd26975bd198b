import type { StatsBatch } from "../shared/agent-protocol.ts";

export interface ContainerSample {
  instanceArn: string;
  taskArn: string;
  container: string;
  cpuUtilization: number;
  memoryBytes: number;
  at: number;
}

/** How long a container's latest sample is kept once no newer one comes (its task stopped, its agent went). */
export const SAMPLE_RETENTION_MS = 10 * 60_000;

/**
 * The latest CPU and memory sample of every container, as agents report them
 * from cgroups. Metrics and target tracking read these. Samples of containers
 * that stopped reporting are forgotten after SAMPLE_RETENTION_MS.
 */
export class ContainerStats {
  private readonly latest = new Map<string, ContainerSample & { receivedAt: number }>();
  private sweptAt = 0;

  constructor(private readonly now: () => number = Date.now) {}

  record(instanceArn: string, batch: StatsBatch): void {
    const receivedAt = this.now();
    for (const sample of batch.samples) {
      if (typeof sample.taskArn !== "string" || typeof sample.container !== "string") continue;
      const { taskArn, container, cpuUtilization, memoryBytes, at } = sample;
      if (![cpuUtilization, memoryBytes, at].every((n) => typeof n === "number" && Number.isFinite(n)))
        continue;
      this.latest.set(`${taskArn}/${container}`, {
        instanceArn,
        taskArn,
        container,
        cpuUtilization,
        memoryBytes,
        at,
        receivedAt,
      });
    }
    if (receivedAt - this.sweptAt >= SAMPLE_RETENTION_MS / 10) this.sweep(receivedAt);
  }

  /** The latest samples of one task's containers. */
  ofTask(taskArn: string): ContainerSample[] {
    const now = this.now();
    const out: ContainerSample[] = [];
    for (const { receivedAt, ...sample } of this.latest.values()) {
      if (sample.taskArn === taskArn && now - receivedAt <= SAMPLE_RETENTION_MS) out.push(sample);
    }
    return out;
  }

  /** How many containers' samples are kept. */
  get size(): number {
    return this.latest.size;
  }

  private sweep(now: number): void {
    this.sweptAt = now;
    for (const [key, sample] of this.latest) {
      if (now - sample.receivedAt > SAMPLE_RETENTION_MS) this.latest.delete(key);
    }
  }
}
