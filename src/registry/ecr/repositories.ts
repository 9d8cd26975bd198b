import { z } from "zod";
import { formatArn, parseArn } from "../../aws/arn.ts";
import { decodeToken, toPage } from "../../aws/pagination.ts";
import type { Operation, RequestContext } from "../../aws/service.ts";
import { putTags, removeAllTags, removeTags, type Tag, tagProblem, tagsOf } from "../../aws/tags.ts";
import { parseInput } from "../../aws/validate.ts";
import { parsePolicy } from "../auth.ts";
import { isValidName } from "../names.ts";
import type { RepositoryRecord } from "../registry.ts";
import { type EcrDeps, repositoryFor, repositoryShape } from "./context.ts";
import {
  InvalidParameter,
  RepositoryAlreadyExists,
  RepositoryNotEmpty,
  RepositoryNotFound,
  RepositoryPolicyNotFound,
  TooManyTags,
} from "./errors.ts";

const NAME_PATTERN = "(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*";
const WireTag = z.object({ Key: z.string(), Value: z.string().default("") });
const RegistryId = z
  .string()
  .regex(/^[0-9]{12}$/)
  .optional();

const CreateRepositoryInput = z.object({
  registryId: RegistryId,
  repositoryName: z.string().min(2).max(256),
  tags: z.array(WireTag).optional(),
  imageTagMutability: z.enum(["MUTABLE", "IMMUTABLE"]).optional(),
  imageScanningConfiguration: z.object({ scanOnPush: z.boolean().optional() }).optional(),
  encryptionConfiguration: z
    .object({
      encryptionType: z.enum(["AES256", "KMS", "KMS_DSSE"]),
      kmsKey: z.string().min(1).max(2048).optional(),
    })
    .optional(),
});
const RepositoryNameInput = z.object({ registryId: RegistryId, repositoryName: z.string().min(2).max(256) });
const DescribeRepositoriesInput = z.object({
  registryId: RegistryId,
  repositoryNames: z.array(z.string().min(2).max(256)).min(1).max(100).optional(),
  nextToken: z.string().optional(),
  maxResults: z.number().int().min(1).max(1000).optional(),
});
const DeleteRepositoryInput = RepositoryNameInput.extend({ force: z.boolean().optional() });
const MutabilityInput = RepositoryNameInput.extend({ imageTagMutability: z.enum(["MUTABLE", "IMMUTABLE"]) });
const ScanningInput = RepositoryNameInput.extend({
  imageScanningConfiguration: z.object({ scanOnPush: z.boolean().optional() }),
});
const SetPolicyInput = RepositoryNameInput.extend({
  policyText: z.string().min(0).max(10240),
  force: z.boolean().optional(),
});
const TagResourceInput = z.object({ resourceArn: z.string(), tags: z.array(WireTag) });
const UntagResourceInput = z.object({ resourceArn: z.string(), tagKeys: z.array(z.string()) });
const ListTagsInput = z.object({ resourceArn: z.string() });

function checkRegistryId(ctx: RequestContext, registryId: string | undefined): void {
  if (registryId !== undefined && registryId !== ctx.accountId) {
    throw InvalidParameter(
      `Invalid parameter at 'registryId' failed to satisfy constraint: 'must be ${ctx.accountId}'`,
    );
  }
}

function checkName(name: string): void {
  if (!isValidName(name)) {
    throw InvalidParameter(
      `Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy regular expression '${NAME_PATTERN}''`,
    );
  }
}

function toTags(tags: Array<{ Key: string; Value: string }>): Tag[] {
  return tags.map((tag) => ({ key: tag.Key, value: tag.Value }));
}

/** ECR repository operations, registry auth tokens, repository policies and tags. */
export function repositoryOperations(deps: EcrDeps): Record<string, Operation> {
  const { registry } = deps;
  const notFound = (ctx: RequestContext, name: string) =>
    RepositoryNotFound(
      `The repository with name '${name}' does not exist in the registry with id '${ctx.accountId}'`,
    );

  async function repositoryByArn(ctx: RequestContext, resourceArn: string): Promise<RepositoryRecord> {
    const arn = parseArn(resourceArn);
    if (arn === undefined || arn.service !== "ecr" || !arn.resource.startsWith("repository/")) {
      throw InvalidParameter(
        "Invalid parameter at 'resourceArn' failed to satisfy constraint: 'Invalid ARN'",
      );
    }
    const name = arn.resource.slice("repository/".length);
    const repo = await registry.store.read((tx) => registry.findRepository(tx, name));
    if (repo === undefined || repo.arn !== resourceArn) throw notFound(ctx, name);
    return repo;
  }

  return {
    async CreateRepository(raw, ctx) {
      const input = parseInput(CreateRepositoryInput, raw, InvalidParameter);
      checkRegistryId(ctx, input.registryId);
      checkName(input.repositoryName);
      const tags = toTags(input.tags ?? []);
      const problem = tagProblem(tags);
      if (problem !== undefined) throw InvalidParameter(problem);
      const encryption = input.encryptionConfiguration ?? { encryptionType: "AES256" as const };
      if (encryption.encryptionType === "AES256" && encryption.kmsKey !== undefined) {
        throw InvalidParameter(
          "Invalid parameter: kmsKey can only be specified when encryptionType is KMS or KMS_DSSE",
        );
      }
      const repo: RepositoryRecord = {
        name: input.repositoryName,
        arn: formatArn({
          service: "ecr",
          region: ctx.region,
          accountId: ctx.accountId,
          resource: `repository/${input.repositoryName}`,
        }),
        createdAt: ctx.now.getTime(),
        tagMutability: input.imageTagMutability ?? "MUTABLE",
        scanOnPush: input.imageScanningConfiguration?.scanOnPush ?? false,
        encryptionType: encryption.encryptionType,
        kmsKey: encryption.kmsKey ?? null,
        policy: null,
        lifecyclePolicy: null,
        lifecycleUpdatedAt: null,
      };
      await registry.store.transaction(async (tx) => {
        if ((await registry.findRepository(tx, repo.name)) !== undefined) {
          throw RepositoryAlreadyExists(
            `The repository with name '${repo.name}' already exists in the registry with id '${ctx.accountId}'`,
          );
        }
        await registry.saveRepository(tx, repo);
        await putTags(tx, repo.arn, tags);
      });
      return { repository: repositoryShape(deps, ctx, repo) };
    },

    async DescribeRepositories(raw, ctx) {
      const input = parseInput(DescribeRepositoriesInput, raw, InvalidParameter);
      checkRegistryId(ctx, input.registryId);
      if (input.repositoryNames !== undefined) {
        if (input.nextToken !== undefined || input.maxResults !== undefined) {
          throw InvalidParameter("maxResults and nextToken cannot be specified with repositoryNames");
        }
        const repos = await registry.store.read(async (tx) => {
          const found: RepositoryRecord[] = [];
          for (const name of input.repositoryNames ?? []) {
            const repo = await registry.findRepository(tx, name);
            if (repo === undefined) throw notFound(ctx, name);
            found.push(repo);
          }
          return found;
        });
        return { repositories: repos.map((repo) => repositoryShape(deps, ctx, repo)) };
      }
      const limit = input.maxResults ?? 100;
      const after = decodeToken(input.nextToken, () => InvalidParameter("Invalid parameter at 'nextToken'"));
      const names = await registry.catalog(after, limit + 1);
      const page = toPage(names, limit, (name) => name);
      const repos = await registry.store.read(async (tx) => {
        const out: RepositoryRecord[] = [];
        for (const name of page.items) {
          const repo = await registry.findRepository(tx, name);
          if (repo !== undefined) out.push(repo);
        }
        return out;
      });
      const repositories = repos.map((repo) => repositoryShape(deps, ctx, repo));
      return page.nextToken === undefined ? { repositories } : { repositories, nextToken: page.nextToken };
    },

    async DeleteRepository(raw, ctx) {
      const input = parseInput(DeleteRepositoryInput, raw, InvalidParameter);
      checkRegistryId(ctx, input.registryId);
      const repo = await registry.store.transaction(async (tx) => {
        const found = await registry.findRepository(tx, input.repositoryName);
        if (found === undefined) throw notFound(ctx, input.repositoryName);
        const images = await tx.get<{ n: number }>(
          "SELECT COUNT(*) AS n FROM registry_manifests WHERE repo = ?",
          input.repositoryName,
        );
        if ((images?.n ?? 0) > 0 && input.force !== true) {
          throw RepositoryNotEmpty(
            `The repository with name '${input.repositoryName}' in registry with id '${ctx.accountId}' cannot be deleted because it still contains images`,
          );
        }
        await registry.dropRepository(tx, input.repositoryName);
        await removeAllTags(tx, found.arn);
        return found;
      });
      return { repository: repositoryShape(deps, ctx, repo) };
    },

    async PutImageTagMutability(raw, ctx) {
      const input = parseInput(MutabilityInput, raw, InvalidParameter);
      checkRegistryId(ctx, input.registryId);
      await registry.store.transaction(async (tx) => {
        const repo = await registry.findRepository(tx, input.repositoryName);
        if (repo === undefined) throw notFound(ctx, input.repositoryName);
        await registry.saveRepository(tx, { ...repo, tagMutability: input.imageTagMutability });
      });
      return {
        registryId: ctx.accountId,
        repositoryName: input.repositoryName,
        imageTagMutability: input.imageTagMutability,
      };
    },

    async PutImageScanningConfiguration(raw, ctx) {
      const input = parseInput(ScanningInput, raw, InvalidParameter);
      checkRegistryId(ctx, input.registryId);
      const scanOnPush = input.imageScanningConfiguration.scanOnPush ?? false;
      await registry.store.transaction(async (tx) => {
        const repo = await registry.findRepository(tx, input.repositoryName);
        if (repo === undefined) throw notFound(ctx, input.repositoryName);
        await registry.saveRepository(tx, { ...repo, scanOnPush });
      });
      return {
        registryId: ctx.accountId,
        repositoryName: input.repositoryName,
        imageScanningConfiguration: { scanOnPush },
      };
    },

    async GetAuthorizationToken(_raw, ctx) {
      const { password, expiresAt } = deps.tokens.issue(ctx.identity.accessKeyId, ctx.now);
      return {
        authorizationData: [
          {
            authorizationToken: Buffer.from(`AWS:${password}`).toString("base64"),
            expiresAt: expiresAt.getTime() / 1000,
            proxyEndpoint: `${deps.scheme()}://${deps.registryHost()}`,
          },
        ],
      };
    },

    async DescribeRegistry(_raw, ctx) {
      return { registryId: ctx.accountId, replicationConfiguration: { rules: [] } };
    },

    async SetRepositoryPolicy(raw, ctx) {
      const input = parseInput(SetPolicyInput, raw, InvalidParameter);
      checkRegistryId(ctx, input.registryId);
      if (parsePolicy(input.policyText) === undefined) {
        throw InvalidParameter(
          "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided'",
        );
      }
      await registry.store.transaction(async (tx) => {
        const repo = await registry.findRepository(tx, input.repositoryName);
        if (repo === undefined) throw notFound(ctx, input.repositoryName);
        await registry.saveRepository(tx, { ...repo, policy: input.policyText });
      });
      return {
        registryId: ctx.accountId,
        repositoryName: input.repositoryName,
        policyText: input.policyText,
      };
    },

    async GetRepositoryPolicy(raw, ctx) {
      const input = parseInput(RepositoryNameInput, raw, InvalidParameter);
      checkRegistryId(ctx, input.registryId);
      const repo = await repositoryFor(deps, ctx, input.repositoryName, "ecr:GetRepositoryPolicy");
      if (repo.policy === null) {
        throw RepositoryPolicyNotFound(
          `Repository policy does not exist for the repository with name '${repo.name}' in the registry with id '${ctx.accountId}'`,
        );
      }
      return { registryId: ctx.accountId, repositoryName: repo.name, policyText: repo.policy };
    },

    async DeleteRepositoryPolicy(raw, ctx) {
      const input = parseInput(RepositoryNameInput, raw, InvalidParameter);
      checkRegistryId(ctx, input.registryId);
      const policy = await registry.store.transaction(async (tx) => {
        const repo = await registry.findRepository(tx, input.repositoryName);
        if (repo === undefined) throw notFound(ctx, input.repositoryName);
        if (repo.policy === null) {
          throw RepositoryPolicyNotFound(
            `Repository policy does not exist for the repository with name '${repo.name}' in the registry with id '${ctx.accountId}'`,
          );
        }
        await registry.saveRepository(tx, { ...repo, policy: null });
        return repo.policy;
      });
      return { registryId: ctx.accountId, repositoryName: input.repositoryName, policyText: policy };
    },

    async TagResource(raw, ctx) {
      const input = parseInput(TagResourceInput, raw, InvalidParameter);
      const repo = await repositoryByArn(ctx, input.resourceArn);
      await registry.store.transaction(async (tx) => {
        const problem = tagProblem(toTags(input.tags), await tagsOf(tx, repo.arn));
        if (problem?.includes("at most") === true) throw TooManyTags(problem);
        if (problem !== undefined) throw InvalidParameter(problem);
        await putTags(tx, repo.arn, toTags(input.tags));
      });
      return {};
    },

    async UntagResource(raw, ctx) {
      const input = parseInput(UntagResourceInput, raw, InvalidParameter);
      const repo = await repositoryByArn(ctx, input.resourceArn);
      await registry.store.transaction((tx) => removeTags(tx, repo.arn, input.tagKeys));
      return {};
    },

    async ListTagsForResource(raw, ctx) {
      const input = parseInput(ListTagsInput, raw, InvalidParameter);
      const repo = await repositoryByArn(ctx, input.resourceArn);
      const tags = await registry.store.read((tx) => tagsOf(tx, repo.arn));
      return { tags: tags.map((tag) => ({ Key: tag.key, Value: tag.value })) };
    },
  };
}
