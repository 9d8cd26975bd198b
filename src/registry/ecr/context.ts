import type { RequestContext } from "../../aws/service.ts";
import type { RegistryTokens } from "../auth.ts";
import { authorize, type Principal } from "../auth.ts";
import type { Registry, RepositoryRecord } from "../registry.ts";
import { AccessDenied, RepositoryNotFound } from "./errors.ts";

/** What the ECR operations share. */
export interface EcrDeps {
  registry: Registry;
  tokens: RegistryTokens;
  /** `host:port` that repositoryUri and proxyEndpoint name. */
  registryHost(): string;
  /** `http` or `https`, for proxyEndpoint and download URLs. */
  scheme(): "http" | "https";
  userOf(accessKeyId: string): string | undefined;
  /** Runs a repository's lifecycle policy now (after pushes). */
  onPush?(repo: string): void;
}

export function principalOf(deps: EcrDeps, ctx: RequestContext): Principal {
  const user = deps.userOf(ctx.identity.accessKeyId) ?? "unknown";
  return {
    kind: "user",
    accessKeyId: ctx.identity.accessKeyId,
    arn: `arn:aws:iam::${ctx.accountId}:user/${user}`,
  };
}

/** The repository, checked against its policy for `action`, or ECR's errors. */
export async function repositoryFor(
  deps: EcrDeps,
  ctx: RequestContext,
  name: string,
  action: string,
): Promise<RepositoryRecord> {
  const repo = await deps.registry.store.read((tx) => deps.registry.findRepository(tx, name));
  if (repo === undefined) {
    throw RepositoryNotFound(
      `The repository with name '${name}' does not exist in the registry with id '${ctx.accountId}'`,
    );
  }
  const principal = principalOf(deps, ctx);
  if (!authorize(repo.policy, principal, action, ctx.accountId)) {
    throw AccessDenied(
      `User: ${principal.kind === "user" ? principal.arn : "anonymous"} is not authorized to perform: ${action} on resource: ${repo.arn} with an explicit deny in a resource-based policy`,
    );
  }
  return repo;
}

/** AWS JSON timestamps: seconds since the epoch. */
export function epochSeconds(ms: number): number {
  return ms / 1000;
}

export function repositoryShape(
  deps: EcrDeps,
  ctx: RequestContext,
  repo: RepositoryRecord,
): Record<string, unknown> {
  const encryption: Record<string, unknown> = { encryptionType: repo.encryptionType };
  if (repo.kmsKey !== null) encryption.kmsKey = repo.kmsKey;
  return {
    repositoryArn: repo.arn,
    registryId: ctx.accountId,
    repositoryName: repo.name,
    repositoryUri: `${deps.registryHost()}/${repo.name}`,
    createdAt: epochSeconds(repo.createdAt),
    imageTagMutability: repo.tagMutability,
    imageScanningConfiguration: { scanOnPush: repo.scanOnPush },
    encryptionConfiguration: encryption,
  };
}
