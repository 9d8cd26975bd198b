import type { JsonService } from "../aws/service.ts";
import type { Store } from "../store/store.ts";
import { clusterOperations } from "./cluster-api.ts";
import { instanceOperations } from "./instance-api.ts";
import type { InstanceNotifier } from "./notifier.ts";
import type { SchedulerState } from "./scheduler-state.ts";
import { serviceOperations } from "./service-api.ts";
import { tagOperations } from "./tag-api.ts";
import { type TaskRegistryAccess, taskOperations } from "./task-api.ts";
import { taskDefinitionOperations } from "./task-definition-api.ts";

export interface EcsDeps {
  store: Store;
  /** Wakes agents' polls when their instance has new work. */
  notifier: InstanceNotifier;
  /** How tasks get at images in Wharf's own registry. */
  registry: TaskRegistryAccess;
  /** The scheduler's in-memory view of instances and tasks; every task and instance write goes through it. */
  state: SchedulerState;
  /** Called when a service changes, so the scheduler reconciles it at once. */
  onServiceChange?: (serviceArn: string) => void;
}

/** Amazon ECS, spoken as JSON 1.1. */
export function ecsService(deps: EcsDeps): JsonService {
  const { store } = deps;
  return {
    protocol: "json",
    signingName: "ecs",
    targetPrefix: "AmazonEC2ContainerServiceV20141113",
    jsonVersion: "1.1",
    operations: {
      ...clusterOperations(store),
      ...tagOperations(store),
      ...taskDefinitionOperations(store),
      ...instanceOperations(store, deps.notifier, deps.state),
      ...taskOperations(store, deps.notifier, deps.registry, deps.state),
      ...serviceOperations(store, deps.onServiceChange ?? (() => undefined)),
    },
  };
}
