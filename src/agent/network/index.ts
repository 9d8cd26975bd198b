/** Per-task networking for the node agent (ECS network modes awsvpc, bridge, host, none). */

export { NetworkError, type NetworkErrorCode } from "./errors.ts";
export {
  DEFAULT_BRIDGE,
  type NetworkBinding,
  NodeNetwork,
  type NodeNetworkConfig,
  type PortMapping,
  type TaskNetwork,
} from "./node-network.ts";
export { PortInUseError } from "./port-allocator.ts";
export { defaultEphemeralRange, ECS_DEFAULT_EPHEMERAL_RANGE, type Protocol } from "./ports.ts";
export type { NetworkMode } from "./state.ts";
