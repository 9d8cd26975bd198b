import { open } from "node:fs/promises";
import type { LogBatch } from "../../shared/agent-protocol.ts";
import type { ContainerState, TaskState } from "../engine/state.ts";

interface Source {
  task: TaskState;
  container: ContainerState;
  group: string;
  stream: string;
  createGroup: boolean;
  partial: { stdout: string; stderr: string };
}

/** Largest batch sent at once (the server stores each as CloudWatch Logs events). */
const MAX_EVENTS = 1000;

/**
 * The awslogs log driver: ships each container's stdout and stderr lines to
 * the server as CloudWatch Logs events, in the stream ECS names
 * `<awslogs-stream-prefix>/<container name>/<task id>`. Read offsets live in
 * the task state, so a restarted agent neither loses nor repeats lines.
 */
export class LogShipper {
  private readonly sources = new Map<string, Source>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly send: (batch: LogBatch) => Promise<void>,
    private readonly persist: (task: TaskState) => void,
    private readonly now: () => number,
  ) {}

  watch(task: TaskState, container: ContainerState): void {
    const definition = task.assignment.containers.find((c) => c.name === container.name);
    const config = definition?.logConfiguration;
    if (config?.logDriver !== "awslogs") return;
    const options = config.options ?? {};
    const group = options["awslogs-group"];
    if (group === undefined) return;
    const prefix = options["awslogs-stream-prefix"];
    const stream =
      prefix === undefined
        ? `${task.taskId}/${container.name}`
        : `${prefix}/${container.name}/${task.taskId}`;
    this.sources.set(container.id, {
      task,
      container,
      group,
      stream,
      createGroup: options["awslogs-create-group"] === "true",
      partial: { stdout: "", stderr: "" },
    });
  }

  start(intervalMs = 1000): void {
    this.timer = setInterval(() => void this.flush(), intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.flush();
  }

  /** Reads what is new in every watched file and sends it; concurrent calls share one pass. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.pass()).catch(() => undefined);
    return this.flushing;
  }

  private async pass(): Promise<void> {
    for (const [id, source] of this.sources) {
      const events: LogBatch["events"] = [];
      for (const stream of ["stdout", "stderr"] as const) {
        const text = await this.readNew(source, stream);
        if (text === "") continue;
        const lines = (source.partial[stream] + text).split("\n");
        source.partial[stream] = lines.pop() ?? "";
        const at = this.now();
        for (const line of lines) {
          events.push({
            group: source.group,
            stream: source.stream,
            createGroup: source.createGroup,
            timestamp: at,
            message: line,
          });
        }
      }
      // A stopped container's last unterminated line is still a line.
      if (source.container.status === "STOPPED") {
        for (const stream of ["stdout", "stderr"] as const) {
          if (source.partial[stream] !== "") {
            events.push({
              group: source.group,
              stream: source.stream,
              createGroup: source.createGroup,
              timestamp: this.now(),
              message: source.partial[stream],
            });
            source.partial[stream] = "";
          }
        }
      }
      for (let i = 0; i < events.length; i += MAX_EVENTS)
        await this.send({ events: events.slice(i, i + MAX_EVENTS) });
      this.persist(source.task);
      if (source.container.status === "STOPPED") this.sources.delete(id);
    }
  }

  private async readNew(source: Source, stream: "stdout" | "stderr"): Promise<string> {
    const path = source.container[stream];
    let handle: Awaited<ReturnType<typeof open>> | undefined;
    try {
      handle = await open(path, "r");
      const { size } = await handle.stat();
      const offset = source.container.logOffsets[stream];
      if (size <= offset) return "";
      const length = Math.min(size - offset, 1024 * 1024);
      const buffer = Buffer.alloc(length);
      await handle.read(buffer, 0, length, offset);
      source.container.logOffsets[stream] = offset + length;
      return buffer.toString("utf8");
    } catch {
      return "";
    } finally {
      await handle?.close();
    }
  }
}
