import { errorType } from "../aws/errors.ts";

/** ECS's own error codes (JSON `__type`). */
export const ClientException = errorType("ClientException");
export const InvalidParameter = errorType("InvalidParameterException");
export const ClusterNotFound = errorType("ClusterNotFoundException");
export const ResourceNotFound = errorType("ResourceNotFoundException");
export const ClusterContainsContainerInstances = errorType("ClusterContainsContainerInstancesException");
export const ClusterContainsServices = errorType("ClusterContainsServicesException");
export const ClusterContainsTasks = errorType("ClusterContainsTasksException");
export const ClusterContainsCapacityProvider = errorType("ClusterContainsCapacityProviderException");
export const ResourceInUse = errorType("ResourceInUseException");
export const Conflict = errorType("ConflictException");
export const ServiceNotFound = errorType("ServiceNotFoundException");
export const PlatformUnknown = errorType("PlatformUnknownException");
export const ServerException = errorType("ServerException", { status: 500 });
export const TargetNotFound = errorType("TargetNotFoundException");
export const AttributeLimitExceeded = errorType("AttributeLimitExceededException");
