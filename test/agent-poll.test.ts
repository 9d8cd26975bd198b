import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CreateClusterCommand } from "@aws-sdk/client-ecs";
import { ServerClient } from "../src/agent/client.ts";
import { ecsClient, startTestServer } from "./helpers.ts";

/** An agent's long poll as the server holds it, through the agent's own client. */
describe("agent long poll", () => {
  it("is answered, not cut off, when the server closes while it waits; and a second poll then finds no server", async () => {
    const server = await startTestServer();
    let stopped = false;
    try {
      await ecsClient(server).send(new CreateClusterCommand({ clusterName: "polls" }));
      const clients = Array.from(
        { length: 3 },
        () => new ServerClient(server.endpoint, server.credentials, "us-east-1"),
      );
      for (const [i, client] of clients.entries()) {
        await client.register({
          cluster: "polls",
          hostname: `node-${i}`,
          address: "127.0.0.1",
          totalResources: { cpu: 1024, memory: 1024 },
          attributes: [],
          versionInfo: { agentVersion: "test" },
          capacity: "EC2",
        });
      }
      // Nothing to run and nothing known: each poll waits (up to the poll timeout, ~15 s).
      const polls = clients.map((client) => client.poll({ known: {} }, 60_000));
      // Let the polls reach the server and start waiting.
      await new Promise((done) => setTimeout(done, 1000));
      await server.stop();
      stopped = true;
      // Each was answered with the (empty) set of tasks, rather than its connection closed.
      for (const answer of await Promise.all(polls)) assert.deepEqual(answer, { tasks: [] });
      await assert.rejects(clients[0]?.poll({ known: {} }, 5_000) ?? Promise.resolve());
    } finally {
      if (!stopped) await server.stop();
    }
  });
});
