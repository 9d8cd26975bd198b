import { errorType } from "../../aws/errors.ts";
import { RegistryError } from "../errors.ts";

/** Amazon ECR's error codes (JSON `__type`). */
export const InvalidParameter = errorType("InvalidParameterException");
export const RepositoryNotFound = errorType("RepositoryNotFoundException");
export const RepositoryAlreadyExists = errorType("RepositoryAlreadyExistsException");
export const RepositoryNotEmpty = errorType("RepositoryNotEmptyException");
export const RepositoryPolicyNotFound = errorType("RepositoryPolicyNotFoundException");
export const LifecyclePolicyNotFound = errorType("LifecyclePolicyNotFoundException");
export const LifecyclePolicyPreviewNotFound = errorType("LifecyclePolicyPreviewNotFoundException");
export const LifecyclePolicyPreviewInProgress = errorType("LifecyclePolicyPreviewInProgressException");
export const ImageNotFound = errorType("ImageNotFoundException");
export const ImageAlreadyExists = errorType("ImageAlreadyExistsException");
export const ImageTagAlreadyExists = errorType("ImageTagAlreadyExistsException");
export const ImageDigestDoesNotMatch = errorType("ImageDigestDoesNotMatchException");
export const LayersNotFound = errorType("LayersNotFoundException");
export const LayerAlreadyExists = errorType("LayerAlreadyExistsException");
export const InvalidLayer = errorType("InvalidLayerException");
export const InvalidLayerPart = errorType("InvalidLayerPartException");
export const EmptyUpload = errorType("EmptyUploadException");
export const UploadNotFound = errorType("UploadNotFoundException");
export const AccessDenied = errorType("AccessDeniedException");
export const TooManyTags = errorType("TooManyTagsException");

/** Translates the registry domain's OCI errors into ECR's, for the API surface. */
export function asEcrError(error: unknown, repositoryName: string, registryId: string): unknown {
  if (!(error instanceof RegistryError)) return error;
  switch (error.code) {
    case "NAME_UNKNOWN":
      return RepositoryNotFound(
        `The repository with name '${repositoryName}' does not exist in the registry with id '${registryId}'`,
      );
    case "TAG_INVALID":
      return error.message.includes("immutable")
        ? ImageTagAlreadyExists(error.message)
        : InvalidParameter(error.message);
    case "MANIFEST_BLOB_UNKNOWN":
      return LayersNotFound(
        `The image manifest references layers that do not exist in the repository: ${error.message}`,
      );
    case "DIGEST_INVALID":
      return ImageDigestDoesNotMatch(
        "The imageDigest provided does not match the digest of the manifest that was provided.",
      );
    case "BLOB_UPLOAD_UNKNOWN":
      return UploadNotFound(`Upload not found for the repository with name '${repositoryName}'`);
    default:
      return InvalidParameter(error.message);
  }
}
