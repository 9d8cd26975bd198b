import { z } from "zod";

/** ECS request shapes shared by several operations, as the API reference defines them. */

/**
 * An idempotency token: ECS takes "up to N ASCII characters in the range of 33-126 (inclusive)"
 * (64 for RunTask, 36 for CreateService).
 */
export const ClientToken = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .regex(/^[\x21-\x7e]+$/);

export const Tag = z.object({ key: z.string(), value: z.string().default("") });
export const Tags = z.array(Tag).max(50);

export const ClusterSetting = z.object({
  name: z.enum(["containerInsights"]),
  value: z.enum(["enabled", "disabled", "enhanced"]),
});

export const ClusterConfiguration = z.object({
  executeCommandConfiguration: z
    .object({
      kmsKeyId: z.string().optional(),
      logging: z.enum(["NONE", "DEFAULT", "OVERRIDE"]).optional(),
      logConfiguration: z
        .object({
          cloudWatchLogGroupName: z.string().optional(),
          cloudWatchEncryptionEnabled: z.boolean().optional(),
          s3BucketName: z.string().optional(),
          s3EncryptionEnabled: z.boolean().optional(),
          s3KeyPrefix: z.string().optional(),
        })
        .optional(),
    })
    .optional(),
  managedStorageConfiguration: z
    .object({
      kmsKeyId: z.string().optional(),
      fargateEphemeralStorageKmsKeyId: z.string().optional(),
    })
    .optional(),
});

export const CapacityProviderStrategyItem = z.object({
  capacityProvider: z.string(),
  weight: z.number().int().min(0).max(1000).default(0),
  base: z.number().int().min(0).max(100000).default(0),
});

export const ServiceConnectDefaults = z.object({ namespace: z.string() });

export const ClusterField = z.enum(["ATTACHMENTS", "CONFIGURATIONS", "SETTINGS", "STATISTICS", "TAGS"]);

export type ClusterSettingT = z.infer<typeof ClusterSetting>;
export type ClusterConfigurationT = z.infer<typeof ClusterConfiguration>;
export type CapacityProviderStrategyItemT = z.infer<typeof CapacityProviderStrategyItem>;
export type ClusterFieldT = z.infer<typeof ClusterField>;
