import { z } from "zod";
import { ULIMIT_NAMES } from "../shared/ulimits.ts";
import { Tags } from "./shapes.ts";

/**
 * RegisterTaskDefinition and its companions as the ECS API reference
 * defines them (request shapes only). A value of the wrong JSON type is
 * refused here with SerializationException; everything ECS itself checks
 * (names, required members it reports in its own words, cross-field rules)
 * is left to `task-definition-rules.ts`, so that the refusal carries ECS's
 * message rather than a generic one.
 */

/** ECS `Integer` / `BoxedInteger`: a 32-bit signed integer. */
const Int = z.number().int().min(-2147483648).max(2147483647);
const Strings = z.array(z.string());
const StringMap = z.record(z.string(), z.string());

export const NetworkMode = z.enum(["bridge", "host", "awsvpc", "none"]);
export const Compatibility = z.enum(["EC2", "FARGATE", "EXTERNAL"]);
export const TransportProtocol = z.enum(["tcp", "udp"]);
export const ApplicationProtocol = z.enum(["http", "http2", "grpc"]);
export const LogDriver = z.enum([
  "json-file",
  "syslog",
  "journald",
  "gelf",
  "fluentd",
  "awslogs",
  "splunk",
  "awsfirelens",
]);
export const UlimitName = z.enum(ULIMIT_NAMES);
export const DependencyCondition = z.enum(["START", "COMPLETE", "SUCCESS", "HEALTHY"]);

export const KeyValuePair = z.object({ name: z.string().optional(), value: z.string().optional() });

export const PortMapping = z.object({
  containerPort: Int.optional(),
  hostPort: Int.optional(),
  protocol: TransportProtocol.optional(),
  name: z.string().optional(),
  appProtocol: ApplicationProtocol.optional(),
  containerPortRange: z.string().optional(),
});

export const MountPoint = z.object({
  sourceVolume: z.string().optional(),
  containerPath: z.string().optional(),
  readOnly: z.boolean().optional(),
});

export const VolumeFrom = z.object({
  sourceContainer: z.string().optional(),
  readOnly: z.boolean().optional(),
});

export const LinuxParameters = z.object({
  capabilities: z.object({ add: Strings.optional(), drop: Strings.optional() }).optional(),
  devices: z
    .array(
      z.object({
        hostPath: z.string(),
        containerPath: z.string().optional(),
        permissions: z.array(z.enum(["read", "write", "mknod"])).optional(),
      }),
    )
    .optional(),
  initProcessEnabled: z.boolean().optional(),
  sharedMemorySize: Int.optional(),
  tmpfs: z
    .array(z.object({ containerPath: z.string(), size: Int, mountOptions: Strings.optional() }))
    .optional(),
  maxSwap: Int.optional(),
  swappiness: Int.optional(),
});

export const Secret = z.object({ name: z.string(), valueFrom: z.string() });

export const ContainerDependency = z.object({
  containerName: z.string(),
  condition: DependencyCondition,
});

export const HostEntry = z.object({ hostname: z.string(), ipAddress: z.string() });

export const Ulimit = z.object({ name: UlimitName, softLimit: Int, hardLimit: Int });

export const LogConfiguration = z.object({
  logDriver: LogDriver,
  options: StringMap.optional(),
  secretOptions: z.array(Secret).optional(),
});

export const HealthCheck = z.object({
  command: Strings,
  interval: Int.optional(),
  timeout: Int.optional(),
  retries: Int.optional(),
  startPeriod: Int.optional(),
});

export const ContainerDefinition = z.object({
  name: z.string().optional(),
  image: z.string().optional(),
  repositoryCredentials: z.object({ credentialsParameter: z.string() }).optional(),
  cpu: Int.optional(),
  memory: Int.optional(),
  memoryReservation: Int.optional(),
  links: Strings.optional(),
  portMappings: z.array(PortMapping).optional(),
  essential: z.boolean().optional(),
  restartPolicy: z
    .object({
      enabled: z.boolean(),
      ignoredExitCodes: z.array(Int).optional(),
      restartAttemptPeriod: Int.optional(),
    })
    .optional(),
  entryPoint: Strings.optional(),
  command: Strings.optional(),
  environment: z.array(KeyValuePair).optional(),
  environmentFiles: z.array(z.object({ value: z.string(), type: z.enum(["s3"]) })).optional(),
  mountPoints: z.array(MountPoint).optional(),
  volumesFrom: z.array(VolumeFrom).optional(),
  linuxParameters: LinuxParameters.optional(),
  secrets: z.array(Secret).optional(),
  dependsOn: z.array(ContainerDependency).optional(),
  startTimeout: Int.optional(),
  stopTimeout: Int.optional(),
  versionConsistency: z.enum(["enabled", "disabled"]).optional(),
  hostname: z.string().optional(),
  user: z.string().optional(),
  workingDirectory: z.string().optional(),
  disableNetworking: z.boolean().optional(),
  privileged: z.boolean().optional(),
  readonlyRootFilesystem: z.boolean().optional(),
  dnsServers: Strings.optional(),
  dnsSearchDomains: Strings.optional(),
  extraHosts: z.array(HostEntry).optional(),
  dockerSecurityOptions: Strings.optional(),
  interactive: z.boolean().optional(),
  pseudoTerminal: z.boolean().optional(),
  dockerLabels: StringMap.optional(),
  ulimits: z.array(Ulimit).optional(),
  logConfiguration: LogConfiguration.optional(),
  healthCheck: HealthCheck.optional(),
  systemControls: z
    .array(z.object({ namespace: z.string().optional(), value: z.string().optional() }))
    .optional(),
  resourceRequirements: z
    .array(z.object({ value: z.string(), type: z.enum(["GPU", "InferenceAccelerator"]) }))
    .optional(),
  firelensConfiguration: z
    .object({ type: z.enum(["fluentd", "fluentbit"]), options: StringMap.optional() })
    .optional(),
  credentialSpecs: Strings.optional(),
});

export const Volume = z.object({
  name: z.string().optional(),
  host: z.object({ sourcePath: z.string().optional() }).optional(),
  configuredAtLaunch: z.boolean().optional(),
  dockerVolumeConfiguration: z
    .object({
      scope: z.enum(["task", "shared"]).optional(),
      autoprovision: z.boolean().optional(),
      driver: z.string().optional(),
      driverOpts: StringMap.optional(),
      labels: StringMap.optional(),
    })
    .optional(),
  efsVolumeConfiguration: z
    .object({
      fileSystemId: z.string(),
      rootDirectory: z.string().optional(),
      transitEncryption: z.enum(["ENABLED", "DISABLED"]).optional(),
      transitEncryptionPort: Int.optional(),
      authorizationConfig: z
        .object({
          accessPointId: z.string().optional(),
          iam: z.enum(["ENABLED", "DISABLED"]).optional(),
        })
        .optional(),
    })
    .optional(),
});

export const PlacementConstraint = z.object({
  type: z.enum(["memberOf"]).optional(),
  expression: z.string().optional(),
});

export const RuntimePlatform = z.object({
  cpuArchitecture: z.enum(["X86_64", "ARM64"]).optional(),
  operatingSystemFamily: z
    .enum([
      "WINDOWS_SERVER_2019_FULL",
      "WINDOWS_SERVER_2019_CORE",
      "WINDOWS_SERVER_2016_FULL",
      "WINDOWS_SERVER_2004_CORE",
      "WINDOWS_SERVER_2022_CORE",
      "WINDOWS_SERVER_2022_FULL",
      "WINDOWS_SERVER_2025_CORE",
      "WINDOWS_SERVER_2025_FULL",
      "WINDOWS_SERVER_20H2_CORE",
      "LINUX",
    ])
    .optional(),
});

export const ProxyConfiguration = z.object({
  type: z.enum(["APPMESH"]).optional(),
  containerName: z.string(),
  properties: z.array(KeyValuePair).optional(),
});

export const RegisterTaskDefinitionInput = z.object({
  family: z.string().optional(),
  taskRoleArn: z.string().optional(),
  executionRoleArn: z.string().optional(),
  networkMode: NetworkMode.optional(),
  containerDefinitions: z.array(ContainerDefinition).optional(),
  volumes: z.array(Volume).optional(),
  placementConstraints: z.array(PlacementConstraint).optional(),
  requiresCompatibilities: z.array(Compatibility).optional(),
  cpu: z.string().optional(),
  memory: z.string().optional(),
  tags: Tags.optional(),
  pidMode: z.enum(["host", "task"]).optional(),
  ipcMode: z.enum(["host", "task", "none"]).optional(),
  proxyConfiguration: ProxyConfiguration.optional(),
  inferenceAccelerators: z.array(z.object({ deviceName: z.string(), deviceType: z.string() })).optional(),
  ephemeralStorage: z.object({ sizeInGiB: Int }).optional(),
  runtimePlatform: RuntimePlatform.optional(),
  enableFaultInjection: z.boolean().optional(),
});

export const DescribeTaskDefinitionInput = z.object({
  taskDefinition: z.string(),
  include: z.array(z.enum(["TAGS"])).optional(),
});

export const ListTaskDefinitionsInput = z.object({
  familyPrefix: z.string().optional(),
  status: z.enum(["ACTIVE", "INACTIVE", "DELETE_IN_PROGRESS"]).optional(),
  sort: z.enum(["ASC", "DESC"]).optional(),
  nextToken: z.string().optional(),
  maxResults: z.number().int().min(1).max(100).optional(),
});

export const ListTaskDefinitionFamiliesInput = z.object({
  familyPrefix: z.string().optional(),
  status: z.enum(["ACTIVE", "INACTIVE", "ALL"]).optional(),
  nextToken: z.string().optional(),
  maxResults: z.number().int().min(1).max(100).optional(),
});

export const DeregisterTaskDefinitionInput = z.object({ taskDefinition: z.string() });

export const DeleteTaskDefinitionsInput = z.object({ taskDefinitions: z.array(z.string()).min(1).max(10) });

export type NetworkModeT = z.infer<typeof NetworkMode>;
export type CompatibilityT = z.infer<typeof Compatibility>;
export type ContainerDefinitionInput = z.infer<typeof ContainerDefinition>;
export type RegisterTaskDefinitionInputT = z.infer<typeof RegisterTaskDefinitionInput>;
export type VolumeInput = z.infer<typeof Volume>;
export type PortMappingInput = z.infer<typeof PortMapping>;
export type HealthCheckInput = z.infer<typeof HealthCheck>;
export type LogConfigurationT = z.infer<typeof LogConfiguration>;
