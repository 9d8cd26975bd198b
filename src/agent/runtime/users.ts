/**
 * Resolving a Docker `user` string ("name", "uid", "uid:gid", "name:group", …)
 * against an image's /etc/passwd and /etc/group, the way runc's libcontainer
 * (and so Docker) does: numbers need no entry, names must exist, and
 * supplementary groups come from group membership only when no group is given.
 */

import { RuntimeError } from "./errors.ts";

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  /** The passwd entry's home directory, when the user has an entry. */
  home?: string;
}

const ID = /^[0-9]+$/;
const MAX_ID = 2 ** 32 - 2;

function parseId(text: string): number | undefined {
  if (!ID.test(text)) return undefined;
  const id = Number(text);
  return id <= MAX_ID ? id : undefined;
}

/** Parses /etc/passwd text; malformed lines and comments are skipped, as libcontainer does. */
export function parsePasswd(text: string): PasswdEntry[] {
  const entries: PasswdEntry[] = [];
  for (const line of text.split("\n")) {
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#")) continue;
    const [name, , uidText, gidText, , home] = trimmed.split(":");
    const uid = parseId(uidText ?? "");
    const gid = parseId(gidText ?? "");
    if (name === undefined || name === "" || uid === undefined || gid === undefined) continue;
    entries.push({ name, uid, gid, home: home ?? "" });
  }
  return entries;
}

/** Parses /etc/group text; malformed lines and comments are skipped. */
export function parseGroup(text: string): GroupEntry[] {
  const entries: GroupEntry[] = [];
  for (const line of text.split("\n")) {
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#")) continue;
    const [name, , gidText, memberText] = trimmed.split(":");
    const gid = parseId(gidText ?? "");
    if (name === undefined || name === "" || gid === undefined) continue;
    const members = (memberText ?? "")
      .split(",")
      .map((m) => m.trim())
      .filter((m) => m !== "");
    entries.push({ name, gid, members });
  }
  return entries;
}

/**
 * Resolves `spec` (empty means root) to numeric ids. Throws `invalid_spec`
 * for a user or group name the image does not define.
 */
export function resolveUser(spec: string, passwd?: string, group?: string): ResolvedUser {
  const colon = spec.indexOf(":");
  const userArg = colon < 0 ? spec : spec.slice(0, colon);
  const groupArg = colon < 0 ? "" : spec.slice(colon + 1);
  const users = parsePasswd(passwd ?? "");
  const groups = parseGroup(group ?? "");

  const numericUid = userArg === "" ? 0 : parseId(userArg);
  const entry =
    numericUid === undefined
      ? users.find((u) => u.name === userArg)
      : users.find((u) => u.uid === numericUid);
  if (entry === undefined && numericUid === undefined) {
    throw new RuntimeError(
      "invalid_spec",
      passwd === undefined
        ? `cannot resolve user "${userArg}": the image has no /etc/passwd; use a numeric uid`
        : `unable to find user "${userArg}": no matching entries in the image's /etc/passwd`,
    );
  }
  const uid = entry?.uid ?? numericUid ?? 0;
  let gid = entry?.gid ?? 0;
  let additionalGids: number[] = [];

  if (groupArg !== "") {
    const numericGid = parseId(groupArg);
    const groupEntry =
      numericGid === undefined
        ? groups.find((g) => g.name === groupArg)
        : groups.find((g) => g.gid === numericGid);
    if (groupEntry === undefined && numericGid === undefined) {
      throw new RuntimeError(
        "invalid_spec",
        group === undefined
          ? `cannot resolve group "${groupArg}": the image has no /etc/group; use a numeric gid`
          : `unable to find group "${groupArg}": no matching entries in the image's /etc/group`,
      );
    }
    gid = groupEntry?.gid ?? numericGid ?? 0;
  } else if (entry !== undefined) {
    // Supplementary groups only in the implicit form, as libcontainer does.
    const name = entry.name;
    additionalGids = [...new Set(groups.filter((g) => g.members.includes(name)).map((g) => g.gid))];
  }

  const resolved: ResolvedUser = { uid, gid, additionalGids };
  if (entry !== undefined && entry.home !== "") resolved.home = entry.home;
  return resolved;
}
