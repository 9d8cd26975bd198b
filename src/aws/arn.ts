/** Amazon Resource Names: `arn:aws:<service>:<region>:<account>:<resource>`. */

export interface Arn {
  partition: string;
  service: string;
  region: string;
  accountId: string;
  resource: string;
}

export function formatArn(parts: Omit<Arn, "partition"> & { partition?: string }): string {
  return `arn:${parts.partition ?? "aws"}:${parts.service}:${parts.region}:${parts.accountId}:${parts.resource}`;
}

/** Parses an ARN; undefined when the string is not one. */
export function parseArn(value: string): Arn | undefined {
  const parts = value.split(":");
  if (parts.length < 6 || parts[0] !== "arn") return undefined;
  const [, partition, service, region, accountId] = parts as [string, string, string, string, string];
  const resource = parts.slice(5).join(":");
  if (partition === "" || service === "" || resource === "") return undefined;
  return { partition, service, region, accountId, resource };
}
