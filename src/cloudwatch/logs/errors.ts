import { errorType } from "../../aws/errors.ts";

/** CloudWatch Logs' own error codes (JSON `__type`). */
export const InvalidParameter = errorType("InvalidParameterException");
export const ResourceNotFound = errorType("ResourceNotFoundException");
export const ResourceAlreadyExists = errorType("ResourceAlreadyExistsException");
export const TooManyTags = errorType("TooManyTagsException");

// The messages the service answers with, spelled once.
export const GROUP_NOT_FOUND = "The specified log group does not exist.";
export const STREAM_NOT_FOUND = "The specified log stream does not exist.";
export const GROUP_EXISTS = "The specified log group already exists";
export const STREAM_EXISTS = "The specified log stream already exists";
export const INVALID_NEXT_TOKEN = "The specified nextToken is invalid.";
