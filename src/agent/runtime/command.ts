/**
 * Running a short-lived command (runc state, kill, exec, …) with a hard
 * timeout and an AbortSignal. The child is killed with SIGKILL when either
 * fires; its output is kept up to a bound so a chatty child cannot exhaust
 * memory.
 */

import { spawn } from "node:child_process";
import { RuntimeError } from "./errors.ts";

export interface CommandResult {
  /** Exit code, or null when a signal ended the child. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout and stderr in the order they arrived, bounded like them. */
  combined: string;
}

export interface CommandOptions {
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  /** Bytes of output kept per stream (the tail); 1 MiB unless told. */
  maxOutputBytes?: number;
  env?: NodeJS.ProcessEnv;
}

/** A PATH for the commands the runtime runs; nothing from the agent's environment leaks in. */
export const SYSTEM_ENV: NodeJS.ProcessEnv = {
  PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
};

class Tail {
  private chunks: Buffer[] = [];
  private size = 0;
  constructor(private readonly limit: number) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    // Drop whole chunks from the front while the rest still holds `limit` bytes.
    for (
      let first = this.chunks[0];
      first !== undefined && this.size - first.length >= this.limit;
      first = this.chunks[0]
    ) {
      this.chunks.shift();
      this.size -= first.length;
    }
  }

  text(): string {
    const all = Buffer.concat(this.chunks);
    return all.subarray(Math.max(0, all.length - this.limit)).toString("utf8");
  }
}

/** Runs `file args` to completion. Rejects only with `timeout`, `aborted` or a spawn failure. */
export function runCommand(
  file: string,
  args: readonly string[],
  options: CommandOptions,
): Promise<CommandResult> {
  const limit = options.maxOutputBytes ?? 1024 * 1024;
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted === true) {
      reject(new RuntimeError("aborted", `${file} ${args[0] ?? ""}: aborted before it started`));
      return;
    }
    const child = spawn(file, args, { stdio: ["ignore", "pipe", "pipe"], env: options.env ?? SYSTEM_ENV });
    const out = new Tail(limit);
    const err = new Tail(limit);
    const both = new Tail(limit);
    let failure: RuntimeError | Error | undefined;
    const stop = (error: RuntimeError) => {
      failure ??= error;
      child.kill("SIGKILL");
    };
    const timer = setTimeout(
      () =>
        stop(
          new RuntimeError("timeout", `${file} ${args.join(" ")}: no answer after ${options.timeoutMs} ms`),
        ),
      options.timeoutMs,
    );
    const onAbort = () => stop(new RuntimeError("aborted", `${file} ${args[0] ?? ""}: aborted`));
    options.signal?.addEventListener("abort", onAbort, { once: true });
    child.stdout.on("data", (chunk: Buffer) => {
      out.push(chunk);
      both.push(chunk);
    });
    child.stderr.on("data", (chunk: Buffer) => {
      err.push(chunk);
      both.push(chunk);
    });
    child.on("error", (error) => {
      failure ??= error;
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      if (failure !== undefined) {
        reject(failure);
        return;
      }
      resolve({ code, signal, stdout: out.text(), stderr: err.text(), combined: both.text() });
    });
  });
}
