import { z } from "zod";
import type { Operation, RequestContext } from "../../aws/service.ts";
import { parseInput } from "../../aws/validate.ts";
import type { Tx } from "../../store/store.ts";
import { type Expiration, evaluateLifecyclePolicy, parseLifecyclePolicy } from "../lifecycle.ts";
import type { Registry } from "../registry.ts";
import { type EcrDeps, epochSeconds, repositoryFor } from "./context.ts";
import {
  InvalidParameter,
  LifecyclePolicyNotFound,
  LifecyclePolicyPreviewNotFound,
  RepositoryNotFound,
} from "./errors.ts";
import { imagesOf } from "./images.ts";

const Base = z.object({ registryId: z.string().optional(), repositoryName: z.string().min(2).max(256) });
const PutInput = Base.extend({ lifecyclePolicyText: z.string().min(100).max(30720) });
const StartPreviewInput = Base.extend({ lifecyclePolicyText: z.string().min(100).max(30720).optional() });
const GetPreviewInput = Base.extend({
  imageIds: z
    .array(z.object({ imageDigest: z.string().optional(), imageTag: z.string().optional() }))
    .optional(),
  nextToken: z.string().optional(),
  maxResults: z.number().int().min(1).max(100).optional(),
  filter: z.object({ tagStatus: z.enum(["TAGGED", "UNTAGGED", "ANY"]).optional() }).optional(),
});

/** What a policy would expire in a repository now (used by previews and by the runs that apply it). */
export async function lifecyclePlan(
  tx: Tx,
  repo: string,
  policyText: string,
  now: Date,
): Promise<Expiration[]> {
  const policy = parseLifecyclePolicy(policyText);
  const images = await imagesOf(tx, repo);
  return evaluateLifecyclePolicy(
    policy,
    images.map((image) => ({
      digest: image.manifest.digest,
      tags: image.tags,
      pushedAt: new Date(image.manifest.pushedAt),
      sizeInBytes: image.manifest.imageSize,
    })),
    now,
  );
}

/**
 * Applies a repository's lifecycle policy: expired images lose their tags and
 * manifests in one transaction; their blobs go with the next GC.
 */
export async function applyLifecyclePolicy(
  registry: Registry,
  repo: string,
  now: Date,
): Promise<Expiration[]> {
  return registry.store.transaction(async (tx) => {
    const record = await registry.findRepository(tx, repo);
    if (record?.lifecyclePolicy == null) return [];
    const plan = await lifecyclePlan(tx, repo, record.lifecyclePolicy, now);
    for (const expiration of plan) await registry.dropManifest(tx, repo, expiration.digest);
    await registry.saveRepository(tx, { ...record, lifecycleUpdatedAt: now.getTime() });
    return plan;
  });
}

function previewResult(expiration: Expiration) {
  return {
    imageTags: expiration.tags,
    imageDigest: expiration.digest,
    imagePushedAt: epochSeconds(expiration.pushedAt.getTime()),
    action: { type: "EXPIRE" },
    appliedRulePriority: expiration.rulePriority,
  };
}

/** A repository's policy as Get/DeleteLifecyclePolicy answer it (the policy as it was, for a delete). */
function policyShape(registryId: string, repositoryName: string, text: string, evaluatedAt: number | null) {
  const out: Record<string, unknown> = { registryId, repositoryName, lifecyclePolicyText: text };
  if (evaluatedAt !== null) out.lastEvaluatedAt = epochSeconds(evaluatedAt);
  return out;
}

/** ECR lifecycle policy operations. */
export function lifecycleOperations(deps: EcrDeps): Record<string, Operation> {
  const { registry } = deps;
  const notFound = (ctx: RequestContext, name: string) =>
    LifecyclePolicyNotFound(
      `Lifecycle policy does not exist for the repository with name '${name}' in the registry with id '${ctx.accountId}'`,
    );

  return {
    async PutLifecyclePolicy(raw, ctx) {
      const input = parseInput(PutInput, raw, InvalidParameter);
      parseLifecyclePolicy(input.lifecyclePolicyText);
      await registry.store.transaction(async (tx) => {
        const repo = await registry.findRepository(tx, input.repositoryName);
        if (repo === undefined) {
          throw RepositoryNotFound(
            `The repository with name '${input.repositoryName}' does not exist in the registry with id '${ctx.accountId}'`,
          );
        }
        await registry.saveRepository(tx, {
          ...repo,
          lifecyclePolicy: input.lifecyclePolicyText,
          lifecycleUpdatedAt: null,
        });
      });
      deps.onPush?.(input.repositoryName);
      return {
        registryId: ctx.accountId,
        repositoryName: input.repositoryName,
        lifecyclePolicyText: input.lifecyclePolicyText,
      };
    },

    async GetLifecyclePolicy(raw, ctx) {
      const input = parseInput(Base, raw, InvalidParameter);
      const repo = await repositoryFor(deps, ctx, input.repositoryName, "ecr:GetLifecyclePolicy");
      if (repo.lifecyclePolicy === null) throw notFound(ctx, repo.name);
      return policyShape(ctx.accountId, repo.name, repo.lifecyclePolicy, repo.lifecycleUpdatedAt);
    },

    async DeleteLifecyclePolicy(raw, ctx) {
      const input = parseInput(Base, raw, InvalidParameter);
      const repo = await repositoryFor(deps, ctx, input.repositoryName, "ecr:DeleteLifecyclePolicy");
      if (repo.lifecyclePolicy === null) throw notFound(ctx, repo.name);
      await registry.store.transaction(async (tx) => {
        const current = await registry.findRepository(tx, repo.name);
        if (current !== undefined) await registry.saveRepository(tx, { ...current, lifecyclePolicy: null });
      });
      return policyShape(ctx.accountId, repo.name, repo.lifecyclePolicy, repo.lifecycleUpdatedAt);
    },

    async StartLifecyclePolicyPreview(raw, ctx) {
      const input = parseInput(StartPreviewInput, raw, InvalidParameter);
      const repo = await repositoryFor(deps, ctx, input.repositoryName, "ecr:StartLifecyclePolicyPreview");
      const policyText = input.lifecyclePolicyText ?? repo.lifecyclePolicy;
      if (policyText === null) throw notFound(ctx, repo.name);
      await registry.store.transaction(async (tx) => {
        const plan = await lifecyclePlan(tx, repo.name, policyText, ctx.now);
        await tx.run(
          `INSERT INTO registry_lifecycle_previews (repo, status, policy, results, created_at) VALUES (?, 'COMPLETE', ?, ?, ?)
           ON CONFLICT (repo) DO UPDATE SET status = excluded.status, policy = excluded.policy, results = excluded.results,
             created_at = excluded.created_at`,
          repo.name,
          policyText,
          JSON.stringify(plan.map(previewResult)),
          ctx.now.getTime(),
        );
      });
      return {
        registryId: ctx.accountId,
        repositoryName: repo.name,
        lifecyclePolicyText: policyText,
        status: "IN_PROGRESS",
      };
    },

    async GetLifecyclePolicyPreview(raw, ctx) {
      const input = parseInput(GetPreviewInput, raw, InvalidParameter);
      const repo = await repositoryFor(deps, ctx, input.repositoryName, "ecr:GetLifecyclePolicyPreview");
      const row = await registry.store.read((tx) =>
        tx.get<{ status: string; policy: string; results: string }>(
          "SELECT status, policy, results FROM registry_lifecycle_previews WHERE repo = ?",
          repo.name,
        ),
      );
      if (row === undefined) {
        throw LifecyclePolicyPreviewNotFound(
          `There is no dry run for the repository with name '${repo.name}' in the registry with id '${ctx.accountId}'`,
        );
      }
      let results = JSON.parse(row.results) as Array<ReturnType<typeof previewResult>>;
      const status = input.filter?.tagStatus ?? "ANY";
      if (status !== "ANY") results = results.filter((r) => r.imageTags.length > 0 === (status === "TAGGED"));
      if (input.imageIds !== undefined) {
        const ids = input.imageIds;
        results = results.filter((r) =>
          ids.some(
            (id) =>
              id.imageDigest === r.imageDigest ||
              (id.imageTag !== undefined && r.imageTags.includes(id.imageTag)),
          ),
        );
      }
      const summary = { expiringImageTotalCount: results.length };
      const start =
        input.nextToken === undefined ? 0 : Number(Buffer.from(input.nextToken, "base64url").toString());
      if (!Number.isInteger(start) || start < 0) throw InvalidParameter("Invalid parameter at 'nextToken'");
      const limit = input.maxResults ?? 100;
      const page = results.slice(start, start + limit);
      const out: Record<string, unknown> = {
        registryId: ctx.accountId,
        repositoryName: repo.name,
        lifecyclePolicyText: row.policy,
        status: row.status,
        previewResults: page,
        summary,
      };
      if (start + limit < results.length)
        out.nextToken = Buffer.from(String(start + limit)).toString("base64url");
      return out;
    },
  };
}
