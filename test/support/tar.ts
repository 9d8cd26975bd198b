// A minimal POSIX ustar writer: enough for image layers of regular files,
// directories and symlinks, with fixed owners and times so output is reproducible.

export type TarEntry =
  | { type: "file"; path: string; data: Buffer; mode?: number }
  | { type: "dir"; path: string; mode?: number }
  | { type: "symlink"; path: string; target: string };

const BLOCK = 512;
const TYPE_FLAG = { file: "0", symlink: "2", dir: "5" } as const;

/** Serialises `entries` in order into an uncompressed tar archive; paths are relative, without "./". */
export function tar(entries: TarEntry[], mtime = 0): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const data = entry.type === "file" ? entry.data : Buffer.alloc(0);
    parts.push(header(entry, data.length, mtime), data);
    const padding = (BLOCK - (data.length % BLOCK)) % BLOCK;
    if (padding > 0) parts.push(Buffer.alloc(padding));
  }
  parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}

function header(entry: TarEntry, size: number, mtime: number): Buffer {
  const h = Buffer.alloc(BLOCK);
  const path = entry.type === "dir" && !entry.path.endsWith("/") ? `${entry.path}/` : entry.path;
  const { prefix, name } = splitPath(path);
  const defaultMode = entry.type === "file" ? 0o644 : entry.type === "dir" ? 0o755 : 0o777;
  const mode = entry.type === "symlink" ? defaultMode : (entry.mode ?? defaultMode);
  field(h, 0, 100, name);
  octal(h, 100, 8, mode);
  octal(h, 108, 8, 0); // uid
  octal(h, 116, 8, 0); // gid
  octal(h, 124, 12, size);
  octal(h, 136, 12, mtime);
  h.fill(" ", 148, 156); // checksum placeholder
  field(h, 156, 1, TYPE_FLAG[entry.type]);
  if (entry.type === "symlink") field(h, 157, 100, entry.target);
  field(h, 257, 6, "ustar\0");
  field(h, 263, 2, "00");
  field(h, 265, 32, "root");
  field(h, 297, 32, "root");
  octal(h, 329, 8, 0);
  octal(h, 337, 8, 0);
  field(h, 345, 155, prefix);
  let sum = 0;
  for (const byte of h) sum += byte;
  field(h, 148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  return h;
}

/** ustar keeps up to 100 bytes of name and 155 of prefix, split at a slash. */
function splitPath(path: string): { prefix: string; name: string } {
  if (Buffer.byteLength(path) <= 100) return { prefix: "", name: path };
  for (let i = path.indexOf("/"); i !== -1; i = path.indexOf("/", i + 1)) {
    const prefix = path.slice(0, i);
    const name = path.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(name) <= 100 && name !== "") {
      return { prefix, name };
    }
  }
  throw new Error(`tar: path too long for ustar: ${path}`);
}

function field(h: Buffer, offset: number, length: number, value: string): void {
  const bytes = Buffer.from(value, "utf8");
  if (bytes.length > length) throw new Error(`tar: "${value}" does not fit in ${length} bytes`);
  bytes.copy(h, offset);
}

/** Zero-padded octal digits followed by a NUL, filling the field. */
function octal(h: Buffer, offset: number, length: number, value: number): void {
  field(h, offset, length, `${value.toString(8).padStart(length - 1, "0")}\0`);
}
