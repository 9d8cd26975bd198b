// Runs every test file (src/**/*.test.ts and bench/**/*.test.ts beside the code, test/**/*.test.ts
// end to end) with Node's own test runner; Node 20's runner takes no glob, so we list them.
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

function testFiles(dir) {
  let found = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found = found.concat(testFiles(path));
    else if (entry.name.endsWith(".test.ts")) found.push(path);
  }
  return found;
}

// Arguments may name test files or folders (Node 20's runner runs nothing for a folder).
const only = process.argv
  .slice(2)
  .flatMap((path) => (statSync(path).isDirectory() ? testFiles(path).sort() : [path]));
const files =
  only.length > 0 ? only : [...testFiles("src"), ...testFiles("bench"), ...testFiles("test")].sort();
const result = spawnSync(
  process.execPath,
  [
    "--import",
    "tsx",
    "--test",
    "--test-reporter=spec",
    "--test-concurrency=2",
    "--test-timeout=600000",
    ...files,
  ],
  { stdio: "inherit" },
);
process.exit(result.status ?? 1);
