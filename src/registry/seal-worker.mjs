// Entry point of a sealing worker thread: loads seal-worker.ts through tsx, as bin/wharf.js
// does for the process (a worker thread does not inherit the process's module hooks).
import { register } from "tsx/esm/api";

register();
await import("./seal-worker.ts");
