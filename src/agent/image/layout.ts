// Every path of the image store, drawn once:
//
//   <root>/
//     blobs/<algorithm>/<hex>   verified blobs (layers and configs), shared between images;
//                               each written to tmp/, fsynced, then renamed here
//     images/<config hex>.json  which blobs an unpacked rootfs came from (written before it appears)
//     rootfs/<config hex>/      an image's flattened root filesystem (renamed here when complete)
//     tmp/                      downloads and unpacks in progress, and trash being deleted
//
// rootfs/ and tmp/ are 0700: images hold setuid binaries that no host user may reach.
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { ParsedDigest } from "./digest.ts";

export class Layout {
  readonly blobs: string;
  readonly images: string;
  readonly rootfs: string;
  readonly tmp: string;

  constructor(readonly root: string) {
    this.blobs = join(root, "blobs");
    this.images = join(root, "images");
    this.rootfs = join(root, "rootfs");
    this.tmp = join(root, "tmp");
  }

  /** Directories to create, with their modes. */
  directories(): [string, number][] {
    return [
      [this.root, 0o711],
      [this.blobs, 0o700],
      [this.images, 0o700],
      [this.rootfs, 0o700],
      [this.tmp, 0o700],
    ];
  }

  blobDir(algorithm: string): string {
    return join(this.blobs, algorithm);
  }

  blob(digest: ParsedDigest): string {
    return join(this.blobs, digest.algorithm, digest.hex);
  }

  image(configHex: string): string {
    return join(this.images, `${configHex}.json`);
  }

  imageRootfs(configHex: string): string {
    return join(this.rootfs, configHex);
  }

  /** A fresh name under tmp/ (not created). */
  temp(prefix: string): string {
    return join(this.tmp, `${prefix}-${randomBytes(8).toString("hex")}`);
  }
}
