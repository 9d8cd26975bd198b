import type { StatsBatch } from "../../shared/agent-protocol.ts";
import { type TaskState, taskCgroup } from "../engine/state.ts";
import {
  type CgroupLayout,
  type CgroupSample,
  cpuUtilization,
  detectCgroupLayout,
  sampleCgroup,
} from "./cgroups.ts";

/**
 * Samples CPU and memory of every running container from its cgroup and
 * sends them to the server, where metrics and autoscaling read them.
 */
export class StatsSampler {
  private layout: CgroupLayout | undefined;
  private readonly previous = new Map<string, CgroupSample>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly tasks: () => TaskState[],
    private readonly send: (batch: StatsBatch) => Promise<void>,
    private readonly options: {
      /** Where the cgroup hierarchies are (default: this host's, from /proc/self/mountinfo). */
      detectLayout?: () => Promise<CgroupLayout>;
      now?: () => Date;
    } = {},
  ) {}

  start(intervalMs = 10_000): void {
    this.timer = setInterval(() => void this.sample().catch(() => undefined), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
  }

  async sample(): Promise<StatsBatch> {
    this.layout ??= await (this.options.detectLayout ?? detectCgroupLayout)();
    const batch: StatsBatch = { samples: [] };
    const seen = new Set<string>();
    for (const task of this.tasks()) {
      for (const container of task.containers) {
        if (container.status !== "RUNNING") continue;
        const path = `${taskCgroup(task.taskId)}/${container.name}`;
        seen.add(path);
        const current = await sampleCgroup(this.layout, path, this.options.now).catch(() => undefined);
        if (current === undefined) continue;
        const before = this.previous.get(path);
        this.previous.set(path, current);
        if (before === undefined) continue;
        const units = task.assignment.containers.find((c) => c.name === container.name)?.cpu;
        batch.samples.push({
          taskArn: task.assignment.taskArn,
          container: container.name,
          cpuUtilization: cpuUtilization(before, current, units),
          memoryBytes: current.memoryBytes,
          at: current.at.getTime(),
        });
      }
    }
    for (const path of this.previous.keys()) if (!seen.has(path)) this.previous.delete(path);
    if (batch.samples.length > 0) await this.send(batch);
    return batch;
  }
}
