import { parseDigest } from "./digest.ts";
import { ImageError } from "./errors.ts";

/** An image reference split by Docker's rules, with Docker Hub's defaults filled in. */
export interface ImageReference {
  /** Registry host, with its port if any: "docker.io", "localhost:4700", "[::1]:5000". */
  registry: string;
  /** Repository path within the registry: "library/busybox", "ns/app". */
  repository: string;
  /** "latest" when the reference names neither a tag nor a digest. */
  tag?: string;
  digest?: string;
}

export const DOCKER_HUB = "docker.io";
const DEFAULT_TAG = "latest";
const MAX_NAME_LENGTH = 255;

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^\w[\w.-]{0,127}$/;
const DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const DOMAIN = new RegExp(
  `^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9a-fA-F:.]+\\])(?::[0-9]+)?$`,
);

function invalid(ref: string, why: string): ImageError {
  return new ImageError("INVALID_REFERENCE", `invalid image reference "${ref}": ${why}`);
}

/**
 * Parses an image reference the way Docker does: "busybox" → docker.io/library/busybox:latest;
 * "localhost:4700/app:v1"; "host/ns/app@sha256:…". The first path component is a registry when it
 * contains "." or ":", is "localhost", or has an uppercase letter.
 */
export function parseReference(ref: string): ImageReference {
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    parseDigest(digest, "INVALID_REFERENCE");
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw invalid(ref, `bad tag "${tag}"`);
  }
  if (rest === "") throw invalid(ref, "no repository");
  if (rest.length > MAX_NAME_LENGTH) throw invalid(ref, `name longer than ${MAX_NAME_LENGTH} characters`);

  let registry = DOCKER_HUB;
  let repository = rest;
  const slash = rest.indexOf("/");
  if (slash !== -1) {
    const first = rest.slice(0, slash);
    if (/[.:]/.test(first) || first === "localhost" || first !== first.toLowerCase()) {
      registry = first;
      repository = rest.slice(slash + 1);
      if (!DOMAIN.test(registry)) throw invalid(ref, `bad registry "${registry}"`);
    }
  }
  if (registry === "index.docker.io") registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && !repository.includes("/")) repository = `library/${repository}`;
  for (const component of repository.split("/")) {
    if (!PATH_COMPONENT.test(component)) throw invalid(ref, `bad repository path component "${component}"`);
  }

  const parsed: ImageReference = { registry, repository };
  if (tag !== undefined) parsed.tag = tag;
  else if (digest === undefined) parsed.tag = DEFAULT_TAG;
  if (digest !== undefined) parsed.digest = digest;
  return parsed;
}

/** The canonical string of a parsed reference: "docker.io/library/busybox:latest". */
export function formatReference(ref: ImageReference): string {
  const tag = ref.tag === undefined ? "" : `:${ref.tag}`;
  const digest = ref.digest === undefined ? "" : `@${ref.digest}`;
  return `${ref.registry}/${ref.repository}${tag}${digest}`;
}

/** Whether a registry host names this machine (localhost, 127.0.0.0/8, ::1), with or without a port. */
export function isLoopbackRegistry(registry: string): boolean {
  const host = registry.startsWith("[")
    ? registry.slice(1, registry.indexOf("]"))
    : registry.replace(/:[0-9]+$/, "");
  return host === "localhost" || host === "::1" || /^127(?:\.[0-9]{1,3}){3}$/.test(host);
}
