import { type ChildProcess, execFile, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

export const WHARF_BIN = fileURLToPath(new URL("../bin/wharf.js", import.meta.url));

/** Runs `wharf <args>` to completion. */
export function runWharf(
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [WHARF_BIN, ...args], { env, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr });
    });
  });
}

/** Starts `wharf server|up` as a child and waits for the endpoint it prints. */
export async function spawnWharf(
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ child: ChildProcess; endpoint: string; output: () => string }> {
  const child = spawn(process.execPath, [WHARF_BIN, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    output += chunk.toString("utf8");
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString("utf8");
  });
  const endpoint = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`wharf did not start in time:\n${output}`)), 30_000);
    const check = () => {
      const match = /at (https?:\/\/\S+)/.exec(output);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout?.on("data", check);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`wharf exited with ${code} before serving:\n${output}`));
    });
  });
  return { child, endpoint, output: () => output };
}

/** Parses the `export NAME='value'` lines `wharf env` prints. */
export function parseExports(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const match of text.matchAll(/^export (\w+)='([^']*)'$/gm)) {
    if (match[1] !== undefined && match[2] !== undefined) out[match[1]] = match[2];
  }
  return out;
}
