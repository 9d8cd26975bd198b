// Sealed files for the registry's tests.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { SealedAppender } from "./sealed-file.ts";

/** Small segments, so that a few kilobytes span many of them. */
export const SMALL = 4096;
/** A segment's nonce and tag, written out rather than taken from the code under test. */
export const OVERHEAD = 12 + 16;

/** A temporary folder of sealed files, removed after the calling file's tests, and their key. */
export class SealedFiles {
  readonly dir: string;
  readonly key = randomBytes(32);
  private count = 0;

  constructor(prefix: string) {
    const dir = mkdtempSync(join(tmpdir(), `wharf-${prefix}-`));
    this.dir = dir;
    after(() => rmSync(dir, { recursive: true, force: true }));
  }

  /** `data` sealed into a new file of `segmentBytes` segments; its path. */
  async seal(data: Buffer, segmentBytes = SMALL): Promise<string> {
    const path = join(this.dir, `file-${this.count++}`);
    const appender = await SealedAppender.open(path, this.key, 0, segmentBytes);
    await appender.write(data);
    await appender.close();
    return path;
  }
}
