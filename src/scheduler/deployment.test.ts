import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  failureThreshold,
  newDeployment,
  newDeploymentId,
  promote,
  rollingBounds,
  rollingStep,
} from "./deployment.ts";

describe("deployment arithmetic", () => {
  it("rounds the minimum healthy count up and the maximum count down, as ECS does", () => {
    assert.deepEqual(rollingBounds(4, 100, 200), { minHealthy: 4, maxTotal: 8 });
    assert.deepEqual(rollingBounds(3, 50, 150), { minHealthy: 2, maxTotal: 4 });
    assert.deepEqual(rollingBounds(5, 75, 125), { minHealthy: 4, maxTotal: 6 });
    assert.deepEqual(rollingBounds(1, 0, 100), { minHealthy: 0, maxTotal: 1 });
    assert.deepEqual(rollingBounds(7, 33, 133), { minHealthy: 3, maxTotal: 9 });
    assert.deepEqual(rollingBounds(0, 100, 200), { minHealthy: 0, maxTotal: 0 });
  });

  it("computes the circuit breaker threshold as half the desired count within [3, 200]", () => {
    assert.equal(failureThreshold(0), 3);
    assert.equal(failureThreshold(1), 3);
    assert.equal(failureThreshold(6), 3);
    assert.equal(failureThreshold(7), 4);
    assert.equal(failureThreshold(10), 5);
    assert.equal(failureThreshold(25), 13);
    assert.equal(failureThreshold(400), 200);
    assert.equal(failureThreshold(1000), 200);
  });

  it("starts what maximumPercent allows and stops what minimumHealthyPercent allows", () => {
    const bounds = rollingBounds(4, 50, 150);
    assert.deepEqual(rollingStep({ desired: 4, keep: 0, occupied: 4, healthy: 4 }, bounds, false), {
      start: 2,
      stopHealthy: 2,
    });
    assert.deepEqual(rollingStep({ desired: 4, keep: 2, occupied: 6, healthy: 4 }, bounds, false), {
      start: 0,
      stopHealthy: 2,
    });
    assert.deepEqual(rollingStep({ desired: 4, keep: 0, occupied: 0, healthy: 0 }, bounds, true), {
      start: 0,
      stopHealthy: 0,
    });
    // min 100 / max 100 cannot move: neither start nor stop.
    assert.deepEqual(
      rollingStep({ desired: 2, keep: 0, occupied: 2, healthy: 2 }, rollingBounds(2, 100, 100), false),
      {
        start: 0,
        stopHealthy: 0,
      },
    );
  });

  it("names deployments as ECS does and demotes the PRIMARY one", () => {
    let seed = 7;
    const random = () => {
      seed = (seed * 48271) % 2147483647;
      return seed / 2147483647;
    };
    const id = newDeploymentId(random);
    assert.match(id, /^ecs-svc\/[1-9]\d{18}$/);
    const first = newDeployment(id, "td:1", 3, 1000);
    assert.equal(first.rolloutState, "IN_PROGRESS");
    assert.equal(first.rolloutStateReason, `ECS deployment ${id} in progress.`);
    const second = newDeployment(newDeploymentId(random), "td:2", 3, 2000);
    const list = promote([first], second, 2000);
    assert.deepEqual(
      list.map((d) => [d.taskDefinition, d.status]),
      [
        ["td:2", "PRIMARY"],
        ["td:1", "ACTIVE"],
      ],
    );
  });
});
