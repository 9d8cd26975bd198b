// Creates one tar entry under a root directory without ever leaving it: entry and link names are
// relative with no "..", every existing parent component is checked with lstat and must be a real
// directory (a symlink is never traversed), and the final component is replaced, not written
// through (O_EXCL|O_NOFOLLOW), so neither a symlink nor a hard link from earlier is followed.
import { constants } from "node:fs";
import { chmod, lchown, link, lstat, lutimes, mkdir, open, rm, symlink } from "node:fs/promises";
import { join } from "node:path";
import { ImageError } from "./errors.ts";

export type EntryType = "file" | "directory" | "symlink" | "link" | "device" | "fifo";

/** A tar header reduced to what unpacking uses. */
export interface EntryHeader {
  name: string;
  type: EntryType;
  /** Permission bits including setuid/setgid/sticky (07777). */
  mode: number;
  uid: number;
  gid: number;
  mtime: Date;
  /** Symlink target, or the archive path a hard link points to. */
  linkname: string;
}

/** Only root can give files away; elsewhere (tests as a user) owners are left as they fall. */
const CAN_CHOWN = process.getuid?.() === 0;
/** Directories are writable until the image is complete; their real modes are set at the end. */
const DIR_MODE_WHILE_UNPACKING = 0o755;

export function unsafe(name: string, why: string): ImageError {
  return new ImageError("INVALID_LAYER", `unsafe tar entry "${name}": ${why}`);
}

/** The components of a tar name, refusing absolute names, ".." and NUL; "" and "." parts dropped. */
export function entryParts(name: string): string[] {
  if (name.includes("\0")) throw unsafe(name, "NUL in name");
  if (name.startsWith("/")) throw unsafe(name, "absolute path");
  const parts = name.split("/").filter((part) => part !== "" && part !== ".");
  if (parts.includes("..")) throw unsafe(name, '".." component');
  return parts;
}

/** lstat that answers undefined for a missing path. */
export async function lstatOrUndefined(path: string) {
  try {
    return await lstat(path);
  } catch (error) {
    if (error instanceof Error && "code" in error && (error.code === "ENOENT" || error.code === "ENOTDIR")) {
      return undefined;
    }
    throw error;
  }
}

/**
 * Checks that every parent of `parts` under `root` is a real directory, creating missing ones when
 * `create` (mode 0755); returns false when one is missing and not created.
 */
export async function checkParents(root: string, parts: string[], name: string, create: boolean) {
  for (let i = 1; i < parts.length; i++) {
    const path = join(root, ...parts.slice(0, i));
    const stat = await lstatOrUndefined(path);
    if (stat === undefined) {
      if (!create) return false;
      await mkdir(path, DIR_MODE_WHILE_UNPACKING);
    } else if (stat.isSymbolicLink()) {
      throw unsafe(name, `parent "${parts.slice(0, i).join("/")}" is a symlink`);
    } else if (!stat.isDirectory()) {
      throw unsafe(name, `parent "${parts.slice(0, i).join("/")}" is not a directory`);
    }
  }
  return true;
}

/** Removes whatever is at `path` (recursively for a directory, never following a symlink). */
export async function removePath(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true });
}

async function owner(path: string, header: EntryHeader): Promise<void> {
  if (CAN_CHOWN) await lchown(path, header.uid, header.gid);
}

/** What createEntry made, and whether it replaced a directory (and so everything below it). */
export interface Created {
  type: EntryType;
  replacedDirectory: boolean;
}

/**
 * Creates the entry at `parts` (already checked by entryParts) under `root`, consuming `body` for
 * regular files. Returns what it created (for directories, the caller applies mode and mtime once
 * the image is complete), or undefined when it skipped the entry.
 */
export async function createEntry(
  root: string,
  parts: string[],
  header: EntryHeader,
  body: AsyncIterable<unknown>,
): Promise<Created | undefined> {
  if (parts.length === 0) {
    if (header.type === "directory") return undefined; // the root itself ("./")
    throw unsafe(header.name, "names the root directory");
  }
  await checkParents(root, parts, header.name, true);
  // devices and fifos are skipped: runc provides /dev, and nothing else in an image needs one
  if (header.type === "device" || header.type === "fifo") return undefined;
  const path = join(root, ...parts);
  const existing = await lstatOrUndefined(path);
  const replacedDirectory = header.type !== "directory" && existing?.isDirectory() === true;

  if (header.type === "directory") {
    if (existing !== undefined && !existing.isDirectory()) await removePath(path);
    if (existing === undefined || !existing.isDirectory()) await mkdir(path, DIR_MODE_WHILE_UNPACKING);
    await owner(path, header);
    return { type: "directory", replacedDirectory: false };
  }

  if (header.type === "link") {
    const targetParts = entryParts(header.linkname);
    if (targetParts.length === 0) throw unsafe(header.name, "hard link to the root directory");
    if (targetParts.join("/") === parts.join("/")) return undefined; // a link to itself changes nothing
    if (!(await checkParents(root, targetParts, header.name, false))) {
      throw unsafe(header.name, `hard link target "${header.linkname}" does not exist`);
    }
    const target = join(root, ...targetParts);
    const stat = await lstatOrUndefined(target);
    if (stat === undefined) throw unsafe(header.name, `hard link target "${header.linkname}" does not exist`);
    if (stat.isDirectory()) throw unsafe(header.name, `hard link to directory "${header.linkname}"`);
    if (existing !== undefined) await removePath(path);
    await link(target, path); // link(2) does not follow a symlink target
    return { type: "link", replacedDirectory };
  }

  if (existing !== undefined) await removePath(path);
  if (header.type === "symlink") {
    await symlink(header.linkname, path);
    await owner(path, header);
    await lutimes(path, header.mtime, header.mtime);
    return { type: "symlink", replacedDirectory };
  }

  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  const file = await open(path, flags, 0o600);
  try {
    for await (const chunk of body) {
      if (!(chunk instanceof Uint8Array))
        throw new ImageError("INVALID_LAYER", `${header.name}: bad content`);
      await file.write(chunk);
    }
    if (CAN_CHOWN) await file.chown(header.uid, header.gid);
    // after chown, which clears setuid and setgid
    await file.chmod(header.mode);
    await file.utimes(header.mtime, header.mtime);
  } finally {
    await file.close();
  }
  return { type: "file", replacedDirectory };
}

/** Sets a directory's final mode and mtime, if it is still a directory. */
export async function finishDirectory(path: string, mode: number, mtime: Date): Promise<void> {
  const stat = await lstatOrUndefined(path);
  if (stat === undefined || !stat.isDirectory()) return;
  await chmod(path, mode);
  await lutimes(path, mtime, mtime);
}
