import { hostname } from "node:os";
import type { EngineAuthSettings } from "./engine-auth.ts";
import { IMAGE_CLEANUP_INTERVAL_MS, IMAGE_MINIMUM_CLEANUP_AGE_MS } from "./image/cleanup.ts";

/** How one node agent runs. */
export interface AgentConfig {
  /** The Wharf server's endpoint, e.g. http://127.0.0.1:4700. */
  server: string;
  cluster: string;
  /** Where the agent keeps its state, images and task bundles. */
  dataDir: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  region: string;
  availabilityZone: string;
  /** Custom attributes, `name` or `name=value`. */
  attributes: Array<{ name: string; value?: string }>;
  /** The node's task bridge and its subnet (a /24 per node). */
  bridge: string;
  subnet: string;
  /** The address clients reach this node's published ports at. */
  address: string;
  hostname: string;
  /** Extra CA certificates (PEM) for an HTTPS server and registries. */
  ca?: string;
  /** CPU units and MiB of memory to offer; default: the machine's. */
  cpu?: number;
  memory?: number;
  /**
   * What the node's capacity serves: "EC2" joins `cluster` as a container
   * instance; "FARGATE" becomes Wharf-managed capacity for every cluster's
   * FARGATE tasks, listed in no cluster.
   */
  capacity: "EC2" | "FARGATE";
  /** How often unused images are removed, and how long after its last pull an image is kept. */
  imageCleanupIntervalMs: number;
  imageMinimumCleanupAgeMs: number;
  /** How often running containers' CPU and memory are sampled and sent to the server. */
  statsIntervalMs: number;
  /** Private registries' credentials: ECS_ENGINE_AUTH_TYPE and ECS_ENGINE_AUTH_DATA, as the ECS agent takes them. */
  engineAuth?: EngineAuthSettings;
}

export function defaultAgentConfig(
  partial: Partial<AgentConfig> & Pick<AgentConfig, "server" | "credentials">,
): AgentConfig {
  return {
    cluster: "default",
    dataDir: "/var/lib/wharf/agent",
    region: "us-east-1",
    availabilityZone: "us-east-1a",
    attributes: [],
    bridge: "wharf0",
    subnet: "172.31.250.0/24",
    address: "127.0.0.1",
    hostname: hostname(),
    capacity: "EC2",
    imageCleanupIntervalMs: IMAGE_CLEANUP_INTERVAL_MS,
    imageMinimumCleanupAgeMs: IMAGE_MINIMUM_CLEANUP_AGE_MS,
    statsIntervalMs: 10_000,
    ...partial,
  };
}
