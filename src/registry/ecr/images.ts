import { z } from "zod";
import { decodeToken, encodeToken } from "../../aws/pagination.ts";
import type { Operation, RequestContext } from "../../aws/service.ts";
import { parseInput } from "../../aws/validate.ts";
import type { Tx } from "../../store/store.ts";
import { MANIFEST_TYPES } from "../manifest.ts";
import { isDigest, isValidTag } from "../names.ts";
import { type ManifestRecord, manifestFromRow } from "../registry.ts";
import { type EcrDeps, epochSeconds, repositoryFor } from "./context.ts";
import { asEcrError, ImageAlreadyExists, ImageNotFound, InvalidParameter } from "./errors.ts";

const ImageId = z.object({ imageDigest: z.string().optional(), imageTag: z.string().optional() });
type ImageIdT = z.infer<typeof ImageId>;
const Base = z.object({ registryId: z.string().optional(), repositoryName: z.string().min(2).max(256) });
const TagStatus = z.enum(["TAGGED", "UNTAGGED", "ANY"]);

const DescribeImagesInput = Base.extend({
  imageIds: z.array(ImageId).min(1).max(100).optional(),
  nextToken: z.string().optional(),
  maxResults: z.number().int().min(1).max(1000).optional(),
  filter: z.object({ tagStatus: TagStatus.optional() }).optional(),
});
const ListImagesInput = Base.extend({
  nextToken: z.string().optional(),
  maxResults: z.number().int().min(1).max(1000).optional(),
  filter: z.object({ tagStatus: TagStatus.optional() }).optional(),
});
const BatchGetImageInput = Base.extend({
  imageIds: z.array(ImageId).min(1).max(100),
  acceptedMediaTypes: z.array(z.string()).min(1).max(100).optional(),
});
const BatchDeleteImageInput = Base.extend({ imageIds: z.array(ImageId).min(1).max(100) });
const PutImageInput = Base.extend({
  imageManifest: z.string().min(1).max(4194304),
  imageManifestMediaType: z.string().optional(),
  imageTag: z.string().min(1).max(300).optional(),
  imageDigest: z.string().optional(),
});

/** One image of a repository: its manifest row and its tags. */
export interface ImageRow {
  manifest: ManifestRecord;
  tags: string[];
}

/** Every image of a repository, newest push first, with tags. */
export async function imagesOf(tx: Tx, repo: string): Promise<ImageRow[]> {
  const manifests = (
    await tx.all("SELECT * FROM registry_manifests WHERE repo = ? ORDER BY pushed_at DESC, digest", repo)
  ).map((row) => manifestFromRow(row as Parameters<typeof manifestFromRow>[0]));
  const tags = await tx.all<{ tag: string; digest: string }>(
    "SELECT tag, digest FROM registry_tags WHERE repo = ? ORDER BY tag",
    repo,
  );
  const byDigest = new Map<string, string[]>();
  for (const { tag, digest } of tags) byDigest.set(digest, [...(byDigest.get(digest) ?? []), tag]);
  return manifests.map((manifest) => ({ manifest, tags: byDigest.get(manifest.digest) ?? [] }));
}

function matchesStatus(image: ImageRow, status: "TAGGED" | "UNTAGGED" | "ANY"): boolean {
  if (status === "ANY") return true;
  return status === "TAGGED" ? image.tags.length > 0 : image.tags.length === 0;
}

/** Pages a list by position; the token is the index to continue from. */
function pageByIndex<T>(items: T[], maxResults: number | undefined, nextToken: string | undefined) {
  const start = Number(
    decodeToken(nextToken, () => InvalidParameter("Invalid parameter at 'nextToken'")) ?? "0",
  );
  if (!Number.isInteger(start) || start < 0) throw InvalidParameter("Invalid parameter at 'nextToken'");
  const limit = maxResults ?? 100;
  const page = items.slice(start, start + limit);
  const next = start + limit < items.length ? encodeToken(String(start + limit)) : undefined;
  return { page, next };
}

function describeImageId(id: ImageIdT): string {
  if (id.imageTag !== undefined) return `imageTag=${id.imageTag}`;
  return `imageDigest=${id.imageDigest ?? ""}`;
}

type Failure = { imageId: ImageIdT; failureCode: string; failureReason: string };

/** Finds the image an imageId names, or the failure ECR reports for it. */
function lookup(images: ImageRow[], id: ImageIdT): ImageRow | Failure {
  if (id.imageDigest === undefined && id.imageTag === undefined) {
    return {
      imageId: id,
      failureCode: "MissingDigestAndTag",
      failureReason: "Invalid request parameters: both tag and digest cannot be null",
    };
  }
  if (id.imageDigest !== undefined && !isDigest(id.imageDigest)) {
    return {
      imageId: id,
      failureCode: "InvalidImageDigest",
      failureReason:
        "Invalid request parameters: image digest should satisfy the regex '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'",
    };
  }
  if (id.imageTag !== undefined && !isValidTag(id.imageTag)) {
    return {
      imageId: id,
      failureCode: "InvalidImageTag",
      failureReason: "Invalid request parameters: image tag is invalid",
    };
  }
  const byTag =
    id.imageTag === undefined
      ? undefined
      : images.find((image) => image.tags.includes(id.imageTag as string));
  const byDigest =
    id.imageDigest === undefined
      ? undefined
      : images.find((image) => image.manifest.digest === id.imageDigest);
  if (
    id.imageTag !== undefined &&
    id.imageDigest !== undefined &&
    byTag !== undefined &&
    byTag !== byDigest
  ) {
    return {
      imageId: id,
      failureCode: "ImageTagDoesNotMatchDigest",
      failureReason: "Invalid request parameters: given tag does not map to the given digest",
    };
  }
  const found = byTag ?? byDigest;
  if (found === undefined)
    return { imageId: id, failureCode: "ImageNotFound", failureReason: "Requested image not found" };
  return found;
}

function isFailure(value: ImageRow | Failure): value is Failure {
  return "failureCode" in value;
}

/** ECR image operations: DescribeImages, ListImages, BatchGetImage, BatchDeleteImage, PutImage. */
export function imageOperations(deps: EcrDeps): Record<string, Operation> {
  const { registry } = deps;

  function imageDetail(ctx: RequestContext, repo: string, image: ImageRow): Record<string, unknown> {
    const detail: Record<string, unknown> = {
      registryId: ctx.accountId,
      repositoryName: repo,
      imageDigest: image.manifest.digest,
      imageSizeInBytes: image.manifest.imageSize,
      imagePushedAt: epochSeconds(image.manifest.pushedAt),
      imageManifestMediaType: image.manifest.mediaType,
    };
    if (image.tags.length > 0) detail.imageTags = image.tags;
    if (image.manifest.artifactType !== null) detail.artifactMediaType = image.manifest.artifactType;
    const lastPulledAt = registry.lastPulledAt(image.manifest);
    if (lastPulledAt !== null) detail.lastRecordedPullTime = epochSeconds(lastPulledAt);
    return detail;
  }

  return {
    async DescribeImages(raw, ctx) {
      const input = parseInput(DescribeImagesInput, raw, InvalidParameter);
      await repositoryFor(deps, ctx, input.repositoryName, "ecr:DescribeImages");
      const images = await registry.store.read((tx) => imagesOf(tx, input.repositoryName));
      if (input.imageIds !== undefined) {
        const details: Record<string, unknown>[] = [];
        for (const id of input.imageIds) {
          const found = lookup(images, id);
          if (isFailure(found)) {
            throw ImageNotFound(
              `The image with imageId {${describeImageId(id)}} does not exist within the repository with name '${input.repositoryName}' in the registry with id '${ctx.accountId}'`,
            );
          }
          details.push(imageDetail(ctx, input.repositoryName, found));
        }
        return { imageDetails: details };
      }
      const status = input.filter?.tagStatus ?? "ANY";
      const selected = images.filter((image) => matchesStatus(image, status));
      const { page, next } = pageByIndex(selected, input.maxResults, input.nextToken);
      const imageDetails = page.map((image) => imageDetail(ctx, input.repositoryName, image));
      return next === undefined ? { imageDetails } : { imageDetails, nextToken: next };
    },

    async ListImages(raw, ctx) {
      const input = parseInput(ListImagesInput, raw, InvalidParameter);
      await repositoryFor(deps, ctx, input.repositoryName, "ecr:ListImages");
      const images = await registry.store.read((tx) => imagesOf(tx, input.repositoryName));
      const status = input.filter?.tagStatus ?? "ANY";
      const ids: ImageIdT[] = [];
      for (const image of images) {
        if (!matchesStatus(image, status)) continue;
        if (image.tags.length === 0) ids.push({ imageDigest: image.manifest.digest });
        for (const tag of image.tags) ids.push({ imageDigest: image.manifest.digest, imageTag: tag });
      }
      const { page, next } = pageByIndex(ids, input.maxResults, input.nextToken);
      return next === undefined ? { imageIds: page } : { imageIds: page, nextToken: next };
    },

    async BatchGetImage(raw, ctx) {
      const input = parseInput(BatchGetImageInput, raw, InvalidParameter);
      await repositoryFor(deps, ctx, input.repositoryName, "ecr:BatchGetImage");
      const images = await registry.store.read((tx) => imagesOf(tx, input.repositoryName));
      const accepted = input.acceptedMediaTypes;
      const out: Record<string, unknown>[] = [];
      const failures: Failure[] = [];
      for (const id of input.imageIds) {
        const found = lookup(images, id);
        if (isFailure(found)) {
          failures.push(found);
          continue;
        }
        if (accepted !== undefined && !accepted.includes(found.manifest.mediaType)) {
          failures.push({
            imageId: id,
            failureCode: "UnsupportedImageType",
            failureReason: "Manifest media type is not accepted",
          });
          continue;
        }
        const content = await registry.manifestBytes(found.manifest);
        registry.recordPull(input.repositoryName, found.manifest.digest);
        out.push({
          registryId: ctx.accountId,
          repositoryName: input.repositoryName,
          imageId: {
            imageDigest: found.manifest.digest,
            ...(id.imageTag === undefined ? {} : { imageTag: id.imageTag }),
          },
          imageManifest: content.bytes.toString("utf8"),
          imageManifestMediaType: content.mediaType,
        });
      }
      return { images: out, failures };
    },

    async BatchDeleteImage(raw, ctx) {
      const input = parseInput(BatchDeleteImageInput, raw, InvalidParameter);
      await repositoryFor(deps, ctx, input.repositoryName, "ecr:BatchDeleteImage");
      return registry.store.transaction(async (tx) => {
        const deleted: ImageIdT[] = [];
        const failures: Failure[] = [];
        for (const id of input.imageIds) {
          const images = await imagesOf(tx, input.repositoryName);
          const found = lookup(images, id);
          if (isFailure(found)) {
            failures.push(found);
            continue;
          }
          const digest = found.manifest.digest;
          if (id.imageTag !== undefined && found.tags.length > 1) {
            // Deleting one of several tags removes only that tag.
            await tx.run(
              "DELETE FROM registry_tags WHERE repo = ? AND tag = ?",
              input.repositoryName,
              id.imageTag,
            );
            deleted.push({ imageDigest: digest, imageTag: id.imageTag });
            continue;
          }
          await registry.dropManifest(tx, input.repositoryName, digest);
          if (found.tags.length === 0) deleted.push({ imageDigest: digest });
          for (const tag of found.tags) deleted.push({ imageDigest: digest, imageTag: tag });
        }
        return { imageIds: deleted, failures };
      });
    },

    async PutImage(raw, ctx) {
      const input = parseInput(PutImageInput, raw, InvalidParameter);
      await repositoryFor(deps, ctx, input.repositoryName, "ecr:PutImage");
      if (
        input.imageManifestMediaType !== undefined &&
        !MANIFEST_TYPES.includes(input.imageManifestMediaType)
      ) {
        throw InvalidParameter(
          `Invalid parameter at 'imageManifestMediaType': unsupported media type ${input.imageManifestMediaType}`,
        );
      }
      const bytes = Buffer.from(input.imageManifest, "utf8");
      if (input.imageTag !== undefined) {
        const current = await registry.store.read((tx) =>
          registry.resolve(tx, input.repositoryName, input.imageTag as string),
        );
        const { createHash } = await import("node:crypto");
        const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
        if (current === digest) {
          throw ImageAlreadyExists(
            `Image with digest '${digest}' and tag '${input.imageTag}' already exists in the repository with name '${input.repositoryName}' in registry with id '${ctx.accountId}'`,
          );
        }
      }
      try {
        let result = await registry.putManifest(
          input.repositoryName,
          input.imageDigest ?? input.imageTag ?? "",
          bytes,
          input.imageManifestMediaType,
        );
        if (input.imageDigest !== undefined && input.imageTag !== undefined) {
          result = await registry.putManifest(
            input.repositoryName,
            input.imageTag,
            bytes,
            input.imageManifestMediaType,
          );
        }
        deps.onPush?.(input.repositoryName);
        const imageId: ImageIdT = { imageDigest: result.digest };
        if (input.imageTag !== undefined) imageId.imageTag = input.imageTag;
        return {
          image: {
            registryId: ctx.accountId,
            repositoryName: input.repositoryName,
            imageId,
            imageManifest: input.imageManifest,
            imageManifestMediaType: result.parsed.mediaType,
          },
        };
      } catch (error) {
        throw asEcrError(error, input.repositoryName, ctx.accountId);
      }
    },
  };
}
