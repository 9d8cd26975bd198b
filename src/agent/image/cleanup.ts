import { parseMountEntries, unescapeMountField } from "../mountinfo.ts";
import type { PulledImage } from "./store.ts";

/** As the ECS agent: look for unused images every 3 hours, and keep any used in the last hour. */
export const IMAGE_CLEANUP_INTERVAL_MS = 3 * 60 * 60_000;
export const IMAGE_MINIMUM_CLEANUP_AGE_MS = 60 * 60_000;

/**
 * The lower directories of every overlay mount in a mountinfo text: the image
 * root filesystems that containers on this node use right now, whoever
 * mounted them (this agent, or one before a restart).
 */
export function overlayLowerDirs(mountinfo: string): Set<string> {
  const found = new Set<string>();
  for (const mount of parseMountEntries(mountinfo)) {
    if (mount.fstype !== "overlay") continue;
    for (const option of mount.superOptions.split(",")) {
      if (!option.startsWith("lowerdir=")) continue;
      for (const dir of option.slice("lowerdir=".length).split(":")) found.add(unescapeMountField(dir));
    }
  }
  return found;
}

/**
 * Decides when the agent's image cache may forget an image: not while a
 * container's overlay sits on it, and not within `minimumAgeMs` of a pull
 * that returned it. Prunes never overlap a pull: a pull waits out a prune,
 * and a prune is skipped while pulls are in flight, so an image a pull has
 * just returned is marked used before any prune can look.
 */
export class ImageCleanup {
  private readonly lastUsed = new Map<string, number>();
  private pullsInFlight = 0;
  private pruning: Promise<void> | undefined;

  constructor(
    private readonly options: {
      prune: (inUse: Set<string>) => Promise<void>;
      mountinfo: () => string;
      now: () => number;
      minimumAgeMs: number;
    },
  ) {}

  /** Runs a pull, marking the image it returns as used now. */
  async pull(run: () => Promise<PulledImage>): Promise<PulledImage> {
    while (this.pruning !== undefined) await this.pruning;
    this.pullsInFlight += 1;
    try {
      const image = await run();
      this.lastUsed.set(image.rootfs, this.options.now());
      return image;
    } finally {
      this.pullsInFlight -= 1;
    }
  }

  /** Removes the images nothing uses; false when it had to skip (pulls in flight, or a prune running). */
  async prune(): Promise<boolean> {
    if (this.pullsInFlight > 0 || this.pruning !== undefined) return false;
    const run = async () => {
      const inUse = overlayLowerDirs(this.options.mountinfo());
      const now = this.options.now();
      for (const [rootfs, at] of this.lastUsed) {
        if (now - at < this.options.minimumAgeMs) inUse.add(rootfs);
        else this.lastUsed.delete(rootfs);
      }
      await this.options.prune(inUse);
    };
    this.pruning = run();
    try {
      await this.pruning;
    } finally {
      this.pruning = undefined;
    }
    return true;
  }
}
