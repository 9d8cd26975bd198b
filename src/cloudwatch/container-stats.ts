import type { StatsBatch } from "../shared/agent-protocol.ts";

export interface ContainerSample {
  instanceArn: string;
  taskArn: string;
  container: string;
  cpuUtilization: number;
  memoryBytes: number;
  at: number;
}

/**
 * The latest CPU and memory sample of every container, as agents report them
 * from cgroups. Metrics and target tracking read these.
 */
export class ContainerStats {
  private readonly latest = new Map<string, ContainerSample>();

  record(instanceArn: string, batch: StatsBatch): void {
    for (const sample of batch.samples) {
      if (typeof sample.taskArn !== "string" || typeof sample.container !== "string") continue;
      this.latest.set(`${sample.taskArn}/${sample.container}`, { instanceArn, ...sample });
    }
  }

  /** The latest samples of one task's containers. */
  ofTask(taskArn: string): ContainerSample[] {
    return [...this.latest.values()].filter((s) => s.taskArn === taskArn);
  }
}
