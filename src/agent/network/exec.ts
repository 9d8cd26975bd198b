/**
 * Runs the host's network tools (`ip`, `iptables`, `sysctl`) without a shell,
 * each with a timeout, and turns a failure into a `NetworkError` that carries
 * the command and its standard error.
 */

import { execFile } from "node:child_process";
import { NetworkError } from "./errors.ts";

export const DEFAULT_TIMEOUT_MS = 10_000;

export interface RunOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Written to the command's standard input (a batch for `ip -batch -`, `iptables-restore`). */
  input?: string;
}

export interface CommandFailure {
  command: string;
  stderr: string;
  exitCode: number | null;
}

export class CommandError extends NetworkError {
  readonly failure: CommandFailure;

  constructor(failure: CommandFailure, cause: unknown) {
    const detail = failure.stderr.trim() || (cause instanceof Error ? cause.message : String(cause));
    super("COMMAND_FAILED", `${failure.command}: ${detail}`, { cause });
    this.failure = failure;
  }
}

/** Runs `file args…` and resolves with its standard output. */
export function run(file: string, args: readonly string[], options: RunOptions = {}): Promise<string> {
  const command = [file, ...args].join(" ");
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      {
        timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
        killSignal: "SIGKILL",
        maxBuffer: 16 * 1024 * 1024,
        encoding: "utf8",
        ...(options.signal ? { signal: options.signal } : {}),
      },
      (error, stdout, stderr) => {
        if (error) {
          const code = typeof error.code === "number" ? error.code : null;
          reject(new CommandError({ command, stderr, exitCode: code }, error));
          return;
        }
        resolve(stdout);
      },
    );
    // Without input, the child reads end-of-file at once.
    child.stdin?.on("error", () => undefined);
    child.stdin?.end(options.input ?? "");
  });
}

/** Like `run`, but resolves with false instead of failing (for checks such as `iptables -C`). */
export async function succeeds(
  file: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<boolean> {
  try {
    await run(file, args, options);
    return true;
  } catch (error) {
    if (error instanceof CommandError && error.failure.exitCode !== null) return false;
    throw error;
  }
}
