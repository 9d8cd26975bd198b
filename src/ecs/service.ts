import type { JsonService } from "../aws/service.ts";
import type { Store } from "../store/store.ts";
import { clusterOperations } from "./cluster-api.ts";
import { tagOperations } from "./tag-api.ts";

/** Amazon ECS, spoken as JSON 1.1. */
export function ecsService(store: Store): JsonService {
  return {
    protocol: "json",
    signingName: "ecs",
    targetPrefix: "AmazonEC2ContainerServiceV20141113",
    jsonVersion: "1.1",
    operations: { ...clusterOperations(store), ...tagOperations(store) },
  };
}
