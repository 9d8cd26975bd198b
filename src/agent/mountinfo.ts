/** One line of /proc/self/mountinfo, the fields the agent reads. */
export interface MountEntry {
  mountPoint: string;
  fstype: string;
  /** The filesystem's own options ("rw,lowerdir=…"), unescaped only where a caller splits them. */
  superOptions: string;
}

/** Paths and options in mountinfo escape space, tab, newline and backslash in octal. */
export function unescapeMountField(value: string): string {
  return value.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

/** The mounts a mountinfo text lists (proc(5)); malformed lines are skipped. */
export function parseMountEntries(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split("\n")) {
    const separator = line.indexOf(" - ");
    if (separator < 0) continue;
    const mountPoint = line.slice(0, separator).split(" ")[4];
    const [fstype, , superOptions = ""] = line.slice(separator + 3).split(" ");
    if (mountPoint === undefined || fstype === undefined) continue;
    entries.push({ mountPoint: unescapeMountField(mountPoint), fstype, superOptions });
  }
  return entries;
}
