import { z } from "zod";
import { CapacityProviderStrategyItem, ClientToken, Tags } from "./shapes.ts";
import { PlacementConstraint, PlacementStrategy, RunTaskInput } from "./task-api.ts";

/** ECS service request shapes, as the API reference defines them. */

export const NetworkConfiguration = RunTaskInput.shape.networkConfiguration;

export const LoadBalancer = z.object({
  targetGroupArn: z.string().optional(),
  loadBalancerName: z.string().optional(),
  containerName: z.string().optional(),
  containerPort: z.number().int().optional(),
});

export const ServiceRegistry = z.object({
  registryArn: z.string().optional(),
  port: z.number().int().optional(),
  containerName: z.string().optional(),
  containerPort: z.number().int().optional(),
});

export const DeploymentConfiguration = z.object({
  deploymentCircuitBreaker: z.object({ enable: z.boolean(), rollback: z.boolean() }).optional(),
  maximumPercent: z.number().int().min(0).optional(),
  minimumHealthyPercent: z.number().int().min(0).optional(),
  alarms: z
    .object({ alarmNames: z.array(z.string()), enable: z.boolean(), rollback: z.boolean() })
    .optional(),
});

export const SchedulingStrategy = z.enum(["REPLICA", "DAEMON"]);
export const LaunchType = z.enum(["EC2", "FARGATE", "EXTERNAL"]);
export const PropagateTags = z.enum(["TASK_DEFINITION", "SERVICE", "NONE"]);

export const CreateServiceInput = z.object({
  cluster: z.string().optional(),
  serviceName: z.string(),
  taskDefinition: z.string().optional(),
  loadBalancers: z.array(LoadBalancer).optional(),
  // "Each service may be associated with one service registry."
  serviceRegistries: z.array(ServiceRegistry).max(1).optional(),
  desiredCount: z.number().int().min(0).optional(),
  clientToken: ClientToken(36).optional(),
  launchType: LaunchType.optional(),
  capacityProviderStrategy: z.array(CapacityProviderStrategyItem).optional(),
  platformVersion: z.string().optional(),
  role: z.string().optional(),
  deploymentConfiguration: DeploymentConfiguration.optional(),
  placementConstraints: z.array(PlacementConstraint).max(10).optional(),
  placementStrategy: z.array(PlacementStrategy).max(5).optional(),
  networkConfiguration: NetworkConfiguration,
  healthCheckGracePeriodSeconds: z.number().int().min(0).max(2147483647).optional(),
  schedulingStrategy: SchedulingStrategy.optional(),
  deploymentController: z.object({ type: z.enum(["ECS", "CODE_DEPLOY", "EXTERNAL"]) }).optional(),
  tags: Tags.optional(),
  enableECSManagedTags: z.boolean().optional(),
  propagateTags: PropagateTags.optional(),
  enableExecuteCommand: z.boolean().optional(),
  availabilityZoneRebalancing: z.enum(["ENABLED", "DISABLED"]).optional(),
});

export const UpdateServiceInput = z.object({
  cluster: z.string().optional(),
  service: z.string(),
  desiredCount: z.number().int().min(0).optional(),
  taskDefinition: z.string().optional(),
  capacityProviderStrategy: z.array(CapacityProviderStrategyItem).optional(),
  deploymentConfiguration: DeploymentConfiguration.optional(),
  networkConfiguration: NetworkConfiguration,
  placementConstraints: z.array(PlacementConstraint).max(10).optional(),
  placementStrategy: z.array(PlacementStrategy).max(5).optional(),
  platformVersion: z.string().optional(),
  forceNewDeployment: z.boolean().optional(),
  healthCheckGracePeriodSeconds: z.number().int().min(0).max(2147483647).optional(),
  enableExecuteCommand: z.boolean().optional(),
  enableECSManagedTags: z.boolean().optional(),
  loadBalancers: z.array(LoadBalancer).optional(),
  propagateTags: PropagateTags.optional(),
  // "Each service may be associated with one service registry."
  serviceRegistries: z.array(ServiceRegistry).max(1).optional(),
  availabilityZoneRebalancing: z.enum(["ENABLED", "DISABLED"]).optional(),
});

export const DescribeServicesInput = z.object({
  cluster: z.string().optional(),
  services: z.array(z.string()).min(1).max(10),
  include: z.array(z.enum(["TAGS"])).optional(),
});

export const ListServicesInput = z.object({
  cluster: z.string().optional(),
  nextToken: z.string().optional(),
  maxResults: z.number().int().min(1).max(100).optional(),
  launchType: LaunchType.optional(),
  schedulingStrategy: SchedulingStrategy.optional(),
});

export const DeleteServiceInput = z.object({
  cluster: z.string().optional(),
  service: z.string(),
  force: z.boolean().optional(),
});

export type CreateServiceInputT = z.infer<typeof CreateServiceInput>;
export type UpdateServiceInputT = z.infer<typeof UpdateServiceInput>;
export type NetworkConfigurationT = z.infer<typeof NetworkConfiguration>;
export type PlacementConstraintT = z.infer<typeof PlacementConstraint>;
export type PlacementStrategyT = z.infer<typeof PlacementStrategy>;
export type LoadBalancerT = z.infer<typeof LoadBalancer>;
export type ServiceRegistryT = z.infer<typeof ServiceRegistry>;
