// The agent's image puller and unpacker. The agent imports from here only.
export type { Credentials } from "./client.ts";
export { IMAGE_ERROR_CODES, ImageError, type ImageErrorCode } from "./errors.ts";
export type { ImageConfig, Platform } from "./manifest.ts";
export { formatReference, type ImageReference, isLoopbackRegistry, parseReference } from "./reference.ts";
export { ImageStore, type PulledImage, type PullOptions } from "./store.ts";
