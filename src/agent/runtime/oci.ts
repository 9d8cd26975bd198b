/**
 * The part of the OCI runtime specification (1.0.2, as runc 1.1 reads it)
 * that Wharf writes into a bundle's config.json. Field names are the wire
 * names; optional fields are left out of the JSON rather than set to null.
 */

export interface OciUser {
  uid: number;
  gid: number;
  additionalGids?: number[];
}

export interface OciCapabilities {
  bounding: string[];
  effective: string[];
  permitted: string[];
  inheritable: string[];
  ambient: string[];
}

export interface OciRlimit {
  type: string;
  soft: number;
  hard: number;
}

export interface OciProcess {
  terminal: boolean;
  user: OciUser;
  args: string[];
  env: string[];
  cwd: string;
  capabilities: OciCapabilities;
  rlimits: OciRlimit[];
  noNewPrivileges: boolean;
}

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options?: string[];
}

export interface OciNamespace {
  type: "pid" | "network" | "ipc" | "uts" | "mount" | "user" | "cgroup";
  path?: string;
}

export interface OciDeviceRule {
  allow: boolean;
  access?: string;
  type?: string;
  major?: number;
  minor?: number;
}

export interface OciMemory {
  limit?: number;
  reservation?: number;
  swap?: number;
}

export interface OciResources {
  devices: OciDeviceRule[];
  memory?: OciMemory;
  cpu?: { shares?: number };
}

export interface OciLinux {
  resources: OciResources;
  cgroupsPath: string;
  namespaces: OciNamespace[];
  maskedPaths: string[];
  readonlyPaths: string[];
}

export interface OciSpec {
  ociVersion: string;
  process: OciProcess;
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: OciMount[];
  annotations: Record<string, string>;
  linux: OciLinux;
}

/** The version runc 1.1 writes in `runc spec`; it accepts any 1.0.x. */
export const OCI_VERSION = "1.0.2";

/** Annotation carrying the container id, which an OCI spec has no field for; `Runtime.start` reads it. */
export const CONTAINER_ID_ANNOTATION = "dev.wharf.container.id";

/** The image-spec annotation for the image's `StopSignal` (image-spec conversion rules). */
export const STOP_SIGNAL_ANNOTATION = "org.opencontainers.image.stopSignal";
