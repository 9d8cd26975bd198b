/** Fixtures the ECS unit tests share: one account, a fixed clock, the default cluster. */
import type { RequestContext } from "../aws/service.ts";
import { type ClusterRecord, clusterArn } from "./clusters.ts";
import type { registerInstance } from "./instance-api.ts";

export const TEST_SCOPE = { region: "us-east-1", accountId: "000000000000" };
export const TEST_NOW = Date.UTC(2030, 0, 1);

export const testContext: RequestContext = {
  requestId: "r",
  ...TEST_SCOPE,
  identity: { accessKeyId: "AKIDTEST" },
  now: new Date(TEST_NOW),
};

/** Registry credentials for task assignments; nothing pulls with them in unit tests. */
export const testRegistry = {
  host: () => "localhost:1",
  credentials: () => ({ username: "AWS", password: "t" }),
};

export const testCluster: ClusterRecord = {
  arn: clusterArn(TEST_SCOPE, "default"),
  name: "default",
  status: "ACTIVE",
  settings: [],
  capacityProviders: [],
  defaultCapacityProviderStrategy: [],
  createdAt: TEST_NOW,
  updatedAt: TEST_NOW,
};

/**
 * What `registerInstance` is given for an EC2 instance of `cpu` units and `memory` MiB, in
 * `zone` when named (as its `ecs.availability-zone` attribute and its hostname).
 */
export function testInstance(options: {
  cpu: number;
  memory: number;
  zone?: string;
  hostname?: string;
  arn?: string;
}): Parameters<typeof registerInstance>[4] {
  const { cpu, memory, zone, arn } = options;
  return {
    ...(arn === undefined ? {} : { arn }),
    cpu,
    memory,
    attributes: zone === undefined ? [] : [{ name: "ecs.availability-zone", value: zone }],
    versionInfo: { agentVersion: "test" },
    hostname: options.hostname ?? zone ?? "h",
    address: "127.0.0.1",
    capacity: "EC2",
  };
}
