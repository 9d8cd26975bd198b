import assert from "node:assert/strict";
import { createServer, get, type Server } from "node:http";
import { describe, it } from "node:test";
import Fastify from "fastify";
import { listenEverywhere } from "./server.ts";

function healthz(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    get({ host, port, path: "/healthz" }, (response) => {
      const parts: Buffer[] = [];
      response.on("data", (part: Buffer) => parts.push(part));
      response.on("end", () => resolve(Buffer.concat(parts).toString()));
    }).on("error", reject);
  });
}

describe("listenEverywhere", () => {
  it("serves the app on every address localhost has, not only the one listen() took", async () => {
    let handler: Parameters<typeof createServer>[1] | undefined;
    const make = () => createServer((request, response) => handler?.(request, response));
    const app = Fastify({
      serverFactory: (fastifyHandler) => {
        handler = fastifyHandler;
        return make();
      },
    });
    app.get("/healthz", async () => "ok");
    const extras: Server[] = [];
    app.addHook("onClose", async () => {
      for (const server of extras) await new Promise((resolve) => server.close(resolve));
    });
    await app.listen({ host: "127.0.0.1", port: 0 });
    try {
      // This machine's localhost may name one address only: the lookup is given both loopbacks.
      await listenEverywhere(app, make, "localhost", extras, async () => [
        { address: "127.0.0.1" },
        { address: "::1" },
      ]);
      const port = (app.server.address() as { port: number }).port;
      assert.equal(await healthz("127.0.0.1", port), "ok");
      assert.equal(await healthz("::1", port), "ok");
      assert.equal(extras.length, 1, "one more server, for ::1");
    } finally {
      await app.close();
    }
    assert.equal(extras[0]?.listening, false, "closed with the app");
  });

  it("adds nothing for any other host", async () => {
    const extras: Server[] = [];
    const app = Fastify();
    await app.listen({ host: "127.0.0.1", port: 0 });
    await listenEverywhere(
      app,
      () => createServer(),
      "127.0.0.1",
      extras,
      async () => {
        throw new Error("not looked up");
      },
    );
    assert.equal(extras.length, 0);
    await app.close();
  });
});
