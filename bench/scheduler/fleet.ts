// Simulated container instances: each registers through the real agent protocol (SigV4), then
// long-polls as `wharf agent` does and acknowledges every new task with a RUNNING report (the
// reports of the tasks one answer brought go in one request, as the agent's client sends them). No
// containers. One long poll per instance is outstanding at any time, which keeps every instance
// connected: on the channel it follows (each change comes as it happens, and the poll ends after
// its hold, ~15 s); as a POST it is answered at the first change, or after its hold.
//
// Registration goes through the agent's own client (`ServerClient`, SigV4). Polls and reports go,
// by default, on each agent's channel as `wharf agent` sends them (`client: "channel"`, the
// agent's own `AgentChannel`); `client: "wire"` sends them as POSTs through `bench/wire.ts` (what
// agents did before the channel, with a fraction of the CPU that 5,000 agents' `node:http`
// clients would take from the two cores the server is measured on); `client: "agent"` sends them
// through `ServerClient` (which opens the channel too).
import { AgentChannel } from "../../src/agent/channel.ts";
import { ServerClient, ServerError } from "../../src/agent/client.ts";
import type {
  PollRequest,
  PollResponse,
  ReportBatch,
  ReportBatchResponse,
  TaskAssignment,
  TaskReport,
} from "../../src/shared/agent-protocol.ts";
import { WireConnection } from "../wire.ts";

export const ZONES = ["us-east-1a", "us-east-1b", "us-east-1c"];

export type FleetClient = "channel" | "wire" | "agent";

/** How one simulated agent speaks to the server once registered. */
interface AgentLink {
  /** A poll; where the link can, it follows (each change while it is held goes to `onChange`). */
  poll(
    request: PollRequest,
    signal: AbortSignal,
    onChange: (response: PollResponse) => void,
  ): Promise<PollResponse>;
  /** Sends the reports in one request; resolves with those that failed, by task ARN. */
  report(reports: TaskReport[]): Promise<Map<string, string>>;
  /** Opens the link's connections before anything is timed (a fleet that has been up a while). */
  open(): Promise<void>;
  /** Ends the link's connections. */
  close(): void;
}

/** Through the agent's client: it sends the reports made in one turn in one request. */
function agentLink(client: ServerClient): AgentLink {
  return {
    poll: (request, signal, onChange) => client.poll(request, 40_000, signal, onChange),
    async report(reports) {
      const failed = new Map<string, string>();
      await Promise.all(
        reports.map((report) =>
          client.report(report).catch((error: unknown) => void failed.set(report.taskArn, String(error))),
        ),
      );
      return failed;
    },
    // It opens its sockets as it needs them; the server closes those that sit idle.
    open: async () => undefined,
    close: () => undefined,
  };
}

/** Through two connections of its own (the poll waits on one while reports go on the other). */
function wireLink(endpoint: URL, token: string): AgentLink {
  const polls = new WireConnection(endpoint);
  const reports = new WireConnection(endpoint);
  const headers = { "content-type": "application/json", authorization: `Bearer ${token}` };
  const post = async <T>(connection: WireConnection, path: string, body: unknown): Promise<T> => {
    const answer = await connection.post(path, headers, JSON.stringify(body));
    if (answer.status !== 200) throw new ServerError(answer.status, "Error", answer.text);
    return JSON.parse(answer.text) as T;
  };
  return {
    async poll(request, signal) {
      if (signal.aborted) throw new Error("stopped");
      const stop = () => polls.close();
      signal.addEventListener("abort", stop, { once: true });
      try {
        return await post<PollResponse>(polls, "/agent/v1/poll", request);
      } finally {
        signal.removeEventListener("abort", stop);
      }
    },
    async report(batch) {
      const request: ReportBatch = { reports: batch };
      const answer = await post<ReportBatchResponse>(reports, "/agent/v1/reports", request);
      return new Map(answer.failures.map((failure) => [failure.taskArn, failure.message]));
    },
    async open() {
      await Promise.all([polls.open(), reports.open()]);
    },
    close() {
      polls.close();
      reports.close();
    },
  };
}

/** On the agent's channel, as `wharf agent` polls and reports. */
function channelLink(endpoint: string, token: string): AgentLink {
  // Shared while it opens: a poll and a report that both find it closed open one, not two.
  let channel: Promise<AgentChannel> | undefined;
  const connect = () => AgentChannel.open(endpoint, token, { timeoutMs: 40_000 });
  const open = (): Promise<AgentChannel> => {
    channel ??= connect();
    const current = channel;
    return current.then(
      (opened) => {
        if (!opened.closed) return opened;
        if (channel === current) channel = connect();
        return channel as Promise<AgentChannel>;
      },
      (error: unknown) => {
        if (channel === current) channel = undefined;
        throw error;
      },
    );
  };
  const post = async <T>(
    path: string,
    body: unknown,
    signal?: AbortSignal,
    onInterim?: (text: string) => void,
  ): Promise<T> => {
    const answer = await (await open()).request(path, JSON.stringify(body), 40_000, signal, onInterim);
    if (answer.status !== 200) throw new ServerError(answer.status, "Error", answer.text);
    return JSON.parse(answer.text) as T;
  };
  return {
    poll: (request, signal, onChange) =>
      post<PollResponse>("/agent/v1/poll", { ...request, follow: true }, signal, (text) =>
        onChange(JSON.parse(text) as PollResponse),
      ),
    async report(batch) {
      const request: ReportBatch = { reports: batch };
      const answer = await post<ReportBatchResponse>("/agent/v1/reports", request);
      return new Map(answer.failures.map((failure) => [failure.taskArn, failure.message]));
    },
    open: async () => void (await open()),
    close() {
      void channel?.then(
        (opened) => opened.close(),
        () => undefined,
      );
    },
  };
}

interface SimInstance {
  link: AgentLink;
  arn: string;
  known: Record<string, number>;
  reported: Set<string>;
  /** The tasks to run its polls have handed it so far. */
  delivered: Set<string>;
  /** Its reports sent so far, one request after another. */
  reporting: Promise<void>;
}

export interface FleetCounters {
  /** Polls answered (their final answers). */
  polls: number;
  /** Changes that came while polls were held (interim answers). */
  changes: number;
  pollErrors: number;
  reports: number;
  reportErrors: number;
  /** Tasks acknowledged RUNNING, with the time (performance.now) each was. */
  acked: number;
  /** Tasks to run that polls have handed the agents, each counted once. */
  delivered: number;
  /** When (performance.now) the last of them arrived. */
  lastDeliveredAt: number;
  lastError?: string;
}

async function pool<T>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

export class Fleet {
  readonly counters: FleetCounters = {
    polls: 0,
    changes: 0,
    pollErrors: 0,
    reports: 0,
    reportErrors: 0,
    acked: 0,
    delivered: 0,
    lastDeliveredAt: 0,
  };
  private readonly instances: SimInstance[] = [];
  private readonly stopping: AbortController[] = [];
  private loops: Promise<void>[] = [];
  /** Instances whose first poll has not gone out yet, and who waits for there to be none. */
  private notPolling = 0;
  private allPolling: (() => void) | undefined;

  constructor(
    private readonly server: {
      endpoint: string;
      region: string;
      credentials: { accessKeyId: string; secretAccessKey: string };
    },
    private readonly options: {
      cluster: string;
      ack: boolean;
      cpu: number;
      memory: number;
      client: FleetClient;
    },
  ) {}

  /** Registers `count` instances, `concurrency` at a time; returns the registration wall time, ms. */
  async register(count: number, concurrency = 16): Promise<number> {
    const started = performance.now();
    const indexes = Array.from({ length: count }, (_, i) => i);
    // Unless the agent's client is the link, registrations share one client (and its few
    // sockets): each agent's own would keep a socket of its own open beside its link's.
    const newClient = () =>
      new ServerClient(this.server.endpoint, this.server.credentials, this.server.region);
    const shared = this.options.client === "agent" ? undefined : newClient();
    await pool(indexes, concurrency, async (i) => {
      const client = shared ?? newClient();
      const response = await client.register({
        cluster: this.options.cluster,
        hostname: `sim-${i}`,
        address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
        totalResources: { cpu: this.options.cpu, memory: this.options.memory },
        attributes: [
          { name: "ecs.os-type", value: "linux" },
          { name: "ecs.availability-zone", value: ZONES[i % ZONES.length] as string },
          { name: "ecs.instance-type", value: "wharf.sim" },
        ],
        versionInfo: { agentVersion: "bench-sim" },
        capacity: "EC2",
      });
      const link =
        this.options.client === "channel"
          ? channelLink(this.server.endpoint, response.nodeToken)
          : this.options.client === "wire"
            ? wireLink(new URL(this.server.endpoint), response.nodeToken)
            : agentLink(client);
      // Connected now, a few at a time: thousands of agents' first connections at once would
      // overflow the server's accept queue inside the timed phase.
      await link.open();
      this.instances.push({
        link,
        arn: response.containerInstanceArn,
        known: {},
        reported: new Set(),
        delivered: new Set(),
        reporting: Promise.resolve(),
      });
    });
    return performance.now() - started;
  }

  /** Starts every instance's poll loop, staggered over `spreadMs` so polls do not arrive in lockstep. */
  start(spreadMs = 2000): void {
    this.notPolling = this.instances.length;
    this.loops = this.instances.map((instance, i) =>
      this.loop(instance, (i / Math.max(this.instances.length, 1)) * spreadMs),
    );
  }

  /**
   * Resolves once every instance has sent its first poll, and `settleMs` later (for the server to
   * have taken them in): the fleet is then as a fleet that has been up a while, each agent with
   * its long poll waiting.
   */
  async polling(settleMs = 1000): Promise<void> {
    if (this.notPolling > 0) await new Promise<void>((done) => (this.allPolling = done));
    await new Promise((done) => setTimeout(done, settleMs));
  }

  async stop(): Promise<void> {
    for (const stopping of this.stopping) stopping.abort();
    await Promise.all(this.loops);
    for (const instance of this.instances) instance.link.close();
  }

  private async loop(instance: SimInstance, delayMs: number): Promise<void> {
    // A stop signal of its own, as each agent has: thousands of polls listening on one signal would
    // make every poll's listener cost a walk over all the others (EventTarget checks for duplicates).
    const stopping = new AbortController();
    this.stopping.push(stopping);
    const signal = stopping.signal;
    await new Promise((done) => setTimeout(done, delayMs));
    let first = true;
    const onChange = (response: PollResponse) => {
      this.counters.changes++;
      this.take(instance, response.tasks);
    };
    while (!signal.aborted) {
      try {
        const answering = instance.link.poll(
          { known: instance.known, acceptUnchanged: true },
          signal,
          onChange,
        );
        if (first) {
          first = false;
          if (--this.notPolling === 0) this.allPolling?.();
        }
        const answer = await answering;
        this.counters.polls++;
        // Nothing changed (the hold ended): the tasks are those last known, as the agent takes it.
        if (answer.unchanged !== true) this.take(instance, answer.tasks);
      } catch (error) {
        if (signal.aborted) break;
        this.counters.pollErrors++;
        this.counters.lastError = String(error);
        await new Promise((done) => setTimeout(done, 500));
      }
    }
    await instance.reporting;
  }

  /** An answer's tasks, as the agent takes them: known from now on, and each new one reported RUNNING. */
  private take(instance: SimInstance, tasks: TaskAssignment[]): void {
    const known: Record<string, number> = {};
    for (const task of tasks) {
      known[task.taskArn] = task.version;
      if (task.desiredStatus === "RUNNING" && !instance.delivered.has(task.taskArn)) {
        instance.delivered.add(task.taskArn);
        this.counters.delivered++;
        this.counters.lastDeliveredAt = performance.now();
      }
    }
    instance.known = known;
    if (!this.options.ack) return;
    // Each new task is reported RUNNING as a real agent's task engines would, all at once, in one
    // request (the agent's client sends the reports waiting at the same time together), after
    // those the instance sent before.
    const fresh = tasks.filter(
      (task) => task.desiredStatus === "RUNNING" && !instance.reported.has(task.taskArn),
    );
    if (fresh.length === 0) return;
    for (const task of fresh) instance.reported.add(task.taskArn);
    instance.reporting = instance.reporting.then(() => this.report(instance, fresh));
  }

  private async report(instance: SimInstance, fresh: TaskAssignment[]): Promise<void> {
    const now = Date.now();
    let failed: Map<string, string>;
    try {
      failed = await instance.link.report(
        fresh.map((task) => ({
          taskArn: task.taskArn,
          lastStatus: "RUNNING",
          containers: task.containers.map((c) => ({ name: c.name, lastStatus: "RUNNING" })),
          pullStartedAt: now,
          pullStoppedAt: now,
          at: now,
        })),
      );
    } catch (error) {
      failed = new Map(fresh.map((task) => [task.taskArn, String(error)]));
    }
    for (const task of fresh) {
      const failure = failed.get(task.taskArn);
      if (failure === undefined) {
        this.counters.reports++;
        this.counters.acked++;
      } else {
        // Sent again with the instance's next answer that lists it.
        instance.reported.delete(task.taskArn);
        this.counters.reportErrors++;
        this.counters.lastError = failure;
      }
    }
  }
}
