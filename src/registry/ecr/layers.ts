import { z } from "zod";
import type { Operation } from "../../aws/service.ts";
import { parseInput } from "../../aws/validate.ts";
import { isDigest } from "../names.ts";
import { type EcrDeps, repositoryFor } from "./context.ts";
import {
  asEcrError,
  EmptyUpload,
  InvalidLayer,
  InvalidLayerPart,
  InvalidParameter,
  LayerAlreadyExists,
  LayersNotFound,
} from "./errors.ts";

const Base = z.object({ registryId: z.string().optional(), repositoryName: z.string().min(2).max(256) });
const CheckInput = Base.extend({ layerDigests: z.array(z.string()).min(1).max(100) });
const UploadPartInput = Base.extend({
  uploadId: z.string(),
  partFirstByte: z.number().int().min(0),
  partLastByte: z.number().int().min(0),
  layerPartBlob: z.string(),
});
const CompleteInput = Base.extend({
  uploadId: z.string(),
  layerDigests: z.array(z.string()).min(1).max(100),
});
const DownloadInput = Base.extend({ layerDigest: z.string() });

/** ECR's part size hint for UploadLayerPart (bytes). */
const PART_SIZE = 10 * 1024 * 1024;

/** ECR's layer operations, over the same uploads and blobs as /v2/. */
export function layerOperations(deps: EcrDeps): Record<string, Operation> {
  const { registry } = deps;
  return {
    async BatchCheckLayerAvailability(raw, ctx) {
      const input = parseInput(CheckInput, raw, InvalidParameter);
      await repositoryFor(deps, ctx, input.repositoryName, "ecr:BatchCheckLayerAvailability");
      const layers: Record<string, unknown>[] = [];
      const failures: Record<string, unknown>[] = [];
      for (const layerDigest of input.layerDigests) {
        if (!isDigest(layerDigest)) {
          failures.push({
            layerDigest,
            failureCode: "InvalidLayerDigest",
            failureReason: "Invalid layer digest",
          });
          continue;
        }
        const size = await registry.blobSize(input.repositoryName, layerDigest);
        if (size === undefined) {
          failures.push({
            layerDigest,
            failureCode: "MissingLayerDigest",
            failureReason: "Could not find layer digest",
          });
        } else {
          layers.push({
            layerDigest,
            layerAvailability: "AVAILABLE",
            layerSize: size,
            mediaType: "application/octet-stream",
          });
        }
      }
      return { layers, failures };
    },

    async InitiateLayerUpload(raw, ctx) {
      const input = parseInput(Base, raw, InvalidParameter);
      await repositoryFor(deps, ctx, input.repositoryName, "ecr:InitiateLayerUpload");
      const uploadId = await registry.startUpload(input.repositoryName);
      return { uploadId, partSize: PART_SIZE };
    },

    async UploadLayerPart(raw, ctx) {
      const input = parseInput(UploadPartInput, raw, InvalidParameter);
      await repositoryFor(deps, ctx, input.repositoryName, "ecr:UploadLayerPart");
      const bytes = Buffer.from(input.layerPartBlob, "base64");
      if (bytes.length === 0 || input.partLastByte - input.partFirstByte + 1 !== bytes.length) {
        throw InvalidLayerPart("The layer part size does not match partFirstByte and partLastByte.");
      }
      try {
        const current = await registry.uploadLength(input.repositoryName, input.uploadId);
        if (input.partFirstByte !== current) {
          throw InvalidLayerPart(
            `The upload with id '${input.uploadId}' expects the next part to start at byte ${current}; lastValidByteReceived: ${current - 1}`,
          );
        }
        const length = await registry.appendUpload(
          input.repositoryName,
          input.uploadId,
          [bytes],
          input.partFirstByte,
          bytes.length,
        );
        return {
          registryId: ctx.accountId,
          repositoryName: input.repositoryName,
          uploadId: input.uploadId,
          lastByteReceived: length - 1,
        };
      } catch (error) {
        throw asEcrError(error, input.repositoryName, ctx.accountId);
      }
    },

    async CompleteLayerUpload(raw, ctx) {
      const input = parseInput(CompleteInput, raw, InvalidParameter);
      await repositoryFor(deps, ctx, input.repositoryName, "ecr:CompleteLayerUpload");
      const [layerDigest] = input.layerDigests;
      if (layerDigest === undefined || input.layerDigests.length !== 1 || !isDigest(layerDigest)) {
        throw InvalidLayer("Exactly one valid layer digest is required to complete a layer upload.");
      }
      try {
        const length = await registry.uploadLength(input.repositoryName, input.uploadId);
        if (length === 0)
          throw EmptyUpload(`The upload with id '${input.uploadId}' contains no layer parts.`);
        if ((await registry.blobSize(input.repositoryName, layerDigest)) !== undefined) {
          await registry.cancelUpload(input.repositoryName, input.uploadId);
          throw LayerAlreadyExists(
            `The layer with digest '${layerDigest}' already exists in the repository with name '${input.repositoryName}' in registry with id '${ctx.accountId}'`,
          );
        }
        await registry.completeUpload(input.repositoryName, input.uploadId, layerDigest);
      } catch (error) {
        if (error instanceof Error && error.name === "DIGEST_INVALID") {
          throw InvalidLayer(
            `The calculated digest of the layer does not match the provided digest ${layerDigest}.`,
          );
        }
        throw asEcrError(error, input.repositoryName, ctx.accountId);
      }
      return {
        registryId: ctx.accountId,
        repositoryName: input.repositoryName,
        uploadId: input.uploadId,
        layerDigest,
      };
    },

    async GetDownloadUrlForLayer(raw, ctx) {
      const input = parseInput(DownloadInput, raw, InvalidParameter);
      await repositoryFor(deps, ctx, input.repositoryName, "ecr:GetDownloadUrlForLayer");
      if (
        !isDigest(input.layerDigest) ||
        (await registry.blobSize(input.repositoryName, input.layerDigest)) === undefined
      ) {
        throw LayersNotFound(
          `The layer with digest '${input.layerDigest}' does not exist in the repository with name '${input.repositoryName}' in registry with id '${ctx.accountId}'`,
        );
      }
      // Like ECR's pre-signed S3 URL: a plain GET fetches the layer, authorised by the token in the URL.
      const { password } = deps.tokens.issue(ctx.identity.accessKeyId, ctx.now);
      const downloadUrl = `${deps.scheme()}://${deps.registryHost()}/v2/${input.repositoryName}/blobs/${input.layerDigest}?X-Wharf-Token=${encodeURIComponent(password)}`;
      return { downloadUrl, layerDigest: input.layerDigest };
    },
  };
}
