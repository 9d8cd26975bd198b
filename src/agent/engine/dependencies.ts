/**
 * ECS's container ordering (`dependsOn`, `startTimeout`), as the ECS agent
 * resolves it: pure, from the containers' known states and a clock reading.
 */

import type { AssignedContainer } from "../../shared/agent-protocol.ts";
import type { ContainerState } from "./state.ts";

/** Whether a container may start now, must wait, or never will (with the reason ECS gives its container). */
export type Readiness = { kind: "ready" } | { kind: "wait" } | { kind: "never"; reason: string };

/** The exit code ECS reports for a container its dependencies kept from starting (Docker's code for SIGTERM). */
export const DEPENDENCY_EXIT_CODE = 143;

/** A container as the ECS agent prints it in its errors: `name(image) (KNOWN->DESIRED) - Exit: n`. */
function described(definition: AssignedContainer, state: ContainerState | undefined, target = false): string {
  let known = "NONE";
  if (state?.status === "RUNNING") known = "RUNNING";
  else if (state?.status === "STOPPED" && state.startedAt !== undefined) known = "STOPPED";
  // A container that never started and never will: its desired status is STOPPED already.
  const desired =
    state?.status === "STOPPED" && state.startedAt === undefined && !target ? "STOPPED" : "RUNNING";
  const exit = state?.exitCode === undefined || target ? "" : ` - Exit: ${state.exitCode}`;
  return `${definition.name}(${definition.image}) (${known}->${desired})${exit}`;
}

function never(message: string): Readiness {
  return { kind: "never", reason: `CannotStartContainerError: dependency graph: ${message}` };
}

/**
 * Whether `target` can start, given the containers started so far (by name) and the time.
 * A dependency that started but has not reached its condition within its own `startTimeout`
 * (COMPLETE, SUCCESS and HEALTHY only) gives up the target, as does a SUCCESS dependency that
 * exited non-zero, or one that never started and never will.
 */
export function readiness(
  target: AssignedContainer,
  definitions: readonly AssignedContainer[],
  containers: ReadonlyMap<string, ContainerState>,
  now: number,
): Readiness {
  let waiting = false;
  for (const dependency of target.dependsOn) {
    const definition = definitions.find((d) => d.name === dependency.containerName);
    const state = containers.get(dependency.containerName);
    if (definition === undefined) {
      return never(`container ordering dependency [${dependency.containerName}] does not exist.`);
    }
    const pair = `[${described(definition, state)}] for target [${described(target, undefined, true)}]`;
    if (state === undefined) {
      waiting = true;
      continue;
    }
    const started = state.startedAt !== undefined;
    if (!started && state.status === "STOPPED") {
      return never(
        `failed to resolve container ordering dependency ${pair} because dependency will never start`,
      );
    }
    const stopped = state.status === "STOPPED";
    const timeout = definition.startTimeout;
    if (
      !stopped &&
      dependency.condition !== "START" &&
      timeout !== undefined &&
      timeout > 0 &&
      state.startedAt !== undefined &&
      now > state.startedAt + timeout * 1000
    ) {
      return never(`container ordering dependency ${pair} has timed out.`);
    }
    switch (dependency.condition) {
      case "START":
        if (!started) waiting = true;
        break;
      case "COMPLETE":
        if (!stopped) waiting = true;
        break;
      case "SUCCESS":
        if (stopped && state.exitCode !== 0) {
          return never(
            `failed to resolve container ordering dependency ${pair} as dependency did not exit successfully.`,
          );
        }
        if (!stopped) waiting = true;
        break;
      case "HEALTHY":
        if (state.healthStatus === "HEALTHY") break;
        // ECS keeps waiting for an UNHEALTHY container (a later check may pass); one that has
        // exited without passing never will.
        if (stopped) {
          return never(
            `failed to resolve container ordering dependency ${pair} as dependency stopped before it was healthy.`,
          );
        }
        waiting = true;
        break;
    }
  }
  return waiting ? { kind: "wait" } : { kind: "ready" };
}
