// node --import tsx bench/scheduler/place-micro.ts [--instances N --tasks N]: RunTask's placement step alone,
// in one process, no I/O: a SchedulerState with N instances in three zones, RunTask-like calls of
// count 10 (snapshot, place, the tasks saved into the state), time per call as tasks accumulate.
import { parseArgs } from "node:util";
import type { InstanceRecord } from "../../src/ecs/instances.ts";
import { SchedulerState } from "../../src/ecs/scheduler-state.ts";
import type { TaskRecord } from "../../src/ecs/tasks.ts";
import { place } from "../../src/scheduler/placement.ts";
import type { Tx } from "../../src/store/store.ts";

const { values } = parseArgs({
  options: { instances: { type: "string", default: "5000" }, tasks: { type: "string", default: "100000" } },
});
const INSTANCES = Number(values.instances);
const TASKS = Number(values.tasks);
const CLUSTER = "arn:aws:ecs:us-east-1:000000000000:cluster/bench";
const ZONES = ["us-east-1a", "us-east-1b", "us-east-1c"];

/** The state's writes outside any store: nothing is rolled back here. */
const tx: Tx = {
  get: () => Promise.reject(new Error("no store")),
  all: () => Promise.reject(new Error("no store")),
  run: () => Promise.reject(new Error("no store")),
  afterCommit: (fn) => fn(),
  onRollback: () => undefined,
};

const state = new SchedulerState();
for (let i = 0; i < INSTANCES; i++) {
  const id = i.toString(16).padStart(17, "0");
  const record: InstanceRecord = {
    arn: `arn:aws:ecs:us-east-1:000000000000:container-instance/bench/${id}`,
    clusterArn: CLUSTER,
    instanceId: `i-${id}`,
    status: "ACTIVE",
    registeredAt: 0,
    updatedAt: 0,
    lastHeartbeat: 0,
    version: 1,
    versionInfo: { agentVersion: "bench" },
    registered: { cpu: 4096, memory: 8192 },
    attributes: [{ name: "ecs.availability-zone", value: ZONES[i % 3] as string }],
    hostname: `sim-${i}`,
    address: "10.0.0.1",
    capacity: "EC2",
    usedPorts: { tcp: [], udp: [] },
  };
  state.instanceSaved(tx, record);
}
const needs = { cpu: 64, memory: 128, ports: { tcp: [], udp: [] }, group: "family:bench" };
let placed = 0;
let n = 0;
let windowStart = performance.now();
const started = windowStart;
while (placed < TASKS) {
  const now = 1000 + Math.floor(placed / 10);
  const plan = place(
    state.placement(CLUSTER, "EC2", now),
    10,
    needs,
    [],
    [{ type: "spread", field: "attribute:ecs.availability-zone" }],
    Math.random,
  );
  for (const instanceArn of plan.placements) {
    const arn = `task-${n++}`;
    state.taskSaved(tx, {
      wire: { taskArn: arn, containerInstanceArn: instanceArn, lastStatus: "PENDING", group: needs.group },
      reservation: { cpu: needs.cpu, memory: needs.memory, tcp: [], udp: [] },
      desiredVersion: 1,
    } as unknown as TaskRecord);
    state.heartbeat(instanceArn, now);
  }
  placed += plan.placements.length;
  if (plan.placements.length === 0) break;
  if (placed % (TASKS / 10) === 0) {
    const ms = performance.now() - windowStart;
    process.stdout.write(`${placed} placed: ${((ms * 1000) / (TASKS / 100)).toFixed(1)} µs per call of 10\n`);
    windowStart = performance.now();
  }
}
process.stdout.write(
  `total ${placed} in ${(performance.now() - started).toFixed(0)} ms: ${(((performance.now() - started) * 1000) / (placed / 10)).toFixed(1)} µs per call\n`,
);
