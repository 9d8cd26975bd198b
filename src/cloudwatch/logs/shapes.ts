import { z } from "zod";

/**
 * CloudWatch Logs request shapes, with the constraints of the service model.
 * Patterns are reported in the model's own spelling, as the service does
 * ("Member must satisfy regular expression pattern: [\.\-_/#A-Za-z0-9]+").
 */

/** A string that must match `regex` in full; `source` is how the model spells the pattern. */
function patterned(regex: RegExp, source: string) {
  return z.string().superRefine((value, ctx) => {
    if (!regex.test(value)) {
      ctx.addIssue({ code: "invalid_format", format: "regex", pattern: source, input: value });
    }
  });
}

export const LogGroupName = patterned(/^[.\-_/#A-Za-z0-9]+$/, "[\\.\\-_/#A-Za-z0-9]+")
  .min(1)
  .max(512);
export const LogGroupNamePattern = patterned(/^[.\-_/#A-Za-z0-9]*$/, "[\\.\\-_/#A-Za-z0-9]*").max(512);
export const LogStreamName = patterned(/^[^:*]*$/, "[^:*]*")
  .min(1)
  .max(512);
export const LogGroupIdentifier = patterned(/^[\w#+=/:,.@-]*$/, "[\\w#+=/:,.@-]*")
  .min(1)
  .max(2048);
export const ResourceArn = patterned(/^[\w+=/:,.@-]*$/, "[\\w+=/:,.@-]*")
  .min(1)
  .max(1011);
export const NextToken = z.string().min(1);
export const DescribeLimit = z.number().int().min(1).max(50);
export const EventsLimit = z.number().int().min(1).max(10000);
export const Timestamp = z.number().int().min(0);
export const LogGroupClass = z.enum(["STANDARD", "INFREQUENT_ACCESS", "DELIVERY"]);
export const TagMap = z.record(z.string(), z.string());
export const TagKeys = z.array(z.string().min(1).max(128)).max(50);

/** The retention periods PutRetentionPolicy accepts, in days. */
export const RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
] as const;

export const RetentionInDays = z
  .number()
  .int()
  .superRefine((value, ctx) => {
    if (!(RETENTION_DAYS as readonly number[]).includes(value)) {
      ctx.addIssue({ code: "invalid_value", values: [...RETENTION_DAYS], input: value });
    }
  });

export const InputLogEvent = z.object({ timestamp: Timestamp, message: z.string().min(1) });

/** Either of the two ways an operation names its log group. */
export const GroupReference = {
  logGroupName: LogGroupName.optional(),
  logGroupIdentifier: LogGroupIdentifier.optional(),
};

export type InputLogEventT = z.infer<typeof InputLogEvent>;
export type LogGroupClassT = z.infer<typeof LogGroupClass>;
