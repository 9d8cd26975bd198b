#!/usr/bin/env -S node --max-semi-space-size=64
// Runs Wharf's TypeScript sources directly through tsx: no build step to forget.
//
// The first line's node options are how Wharf runs (npm start runs this file as a program, and
// the benchmarks start the server with the same options): a young generation of 64 MiB
// semi-spaces rather than 16. The server allocates fast, and much of it (a poll waiting for its
// instance's next tasks, a group of transactions waiting for its sync) lives long enough for a
// small young generation to copy it, often twice: a scale-up of 10,000 tasks spent a third less
// time collecting (docs/benchmarks.md). V8 reads the size only when the heap is made, so it is an
// option of the process, not something the program can set.
import { register } from "tsx/esm/api";

register();
await import("../src/cli/main.ts");
