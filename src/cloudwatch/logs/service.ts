import type { JsonService } from "../../aws/service.ts";
import type { Store } from "../../store/store.ts";
import { eventOperations } from "./event-api.ts";
import { groupOperations } from "./group-api.ts";
import { streamOperations } from "./stream-api.ts";
import { tagOperations } from "./tag-api.ts";

/** Amazon CloudWatch Logs, spoken as JSON 1.1 (`X-Amz-Target: Logs_20140328.<Operation>`). */
export function logsService(store: Store): JsonService {
  return {
    protocol: "json",
    signingName: "logs",
    targetPrefix: "Logs_20140328",
    jsonVersion: "1.1",
    operations: {
      ...groupOperations(store),
      ...streamOperations(store),
      ...eventOperations(store),
      ...tagOperations(store),
    },
  };
}
