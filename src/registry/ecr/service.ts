import type { JsonService } from "../../aws/service.ts";
import type { EcrDeps } from "./context.ts";
import { imageOperations } from "./images.ts";
import { layerOperations } from "./layers.ts";
import { lifecycleOperations } from "./lifecycle-api.ts";
import { repositoryOperations } from "./repositories.ts";

/** Amazon ECR, spoken as JSON 1.1. */
export function ecrService(deps: EcrDeps): JsonService {
  return {
    protocol: "json",
    signingName: "ecr",
    targetPrefix: "AmazonEC2ContainerRegistry_V20150921",
    jsonVersion: "1.1",
    operations: {
      ...repositoryOperations(deps),
      ...imageOperations(deps),
      ...layerOperations(deps),
      ...lifecycleOperations(deps),
    },
  };
}
