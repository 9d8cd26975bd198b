import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import { type AddressInfo, createServer as createNetServer, type Server as NetServer } from "node:net";
import { after, before, describe, test } from "node:test";
import { WireConnection } from "./wire.ts";

const BLOB = randomBytes(300_000);

/** An HTTP server on loopback: `/blob` answers BLOB, `/missing` a 404 with a text body, POST echoes. */
async function httpServer(): Promise<{ server: Server; url: URL; connections: () => number }> {
  let connections = 0;
  const server = createServer((request, response) => {
    if (request.method === "POST") {
      const parts: Buffer[] = [];
      request.on("data", (part: Buffer) => parts.push(part));
      request.on("end", () => response.end(`echo:${Buffer.concat(parts).toString("utf8")}`));
    } else if (request.url === "/blob") {
      response.writeHead(200, { "content-length": BLOB.length });
      // In pieces, so that the client's reads see parts of the body.
      for (let at = 0; at < BLOB.length; at += 70_000) response.write(BLOB.subarray(at, at + 70_000));
      response.end();
    } else if (request.url === "/close") {
      response.writeHead(200, { "content-length": 2, connection: "close" });
      response.end("ok");
    } else {
      const text = '{"errors":[{"code":"BLOB_UNKNOWN"}]}';
      response.writeHead(404, { "content-type": "application/json", "content-length": text.length });
      response.end(text);
    }
  });
  server.on("connection", () => connections++);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return { server, url: new URL(`http://127.0.0.1:${port}`), connections: () => connections };
}

/** A server that answers every request with `answer`'s bytes, then does what `then` says. */
async function rawServer(answer: Buffer, then: "keep" | "destroy"): Promise<{ server: NetServer; url: URL }> {
  const server = createNetServer((socket) => {
    socket.once("data", () => {
      socket.write(answer);
      if (then === "destroy") socket.destroy();
    });
    socket.on("error", () => undefined);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return { server, url: new URL(`http://127.0.0.1:${port}`) };
}

describe("wire: a minimal keep-alive HTTP/1.1 client", () => {
  let http: Awaited<ReturnType<typeof httpServer>>;
  before(async () => {
    http = await httpServer();
  });
  after(() => http.server.close());

  test("POSTs and reads the answer's text, on one connection for several requests", async () => {
    const before = http.connections();
    const wire = new WireConnection(http.url);
    try {
      assert.deepEqual(await wire.post("/", { "x-test": "1" }, "hello"), { status: 200, text: "echo:hello" });
      assert.deepEqual(await wire.post("/", {}, "é"), { status: 200, text: "echo:é" });
      assert.equal(http.connections() - before, 1);
    } finally {
      wire.close();
    }
  });

  for (const readBuffer of [undefined, 16, 4096]) {
    test(`GETs a body into a sink, byte for byte (${readBuffer === undefined ? "a new buffer per read" : `one ${readBuffer}-byte read buffer`})`, async () => {
      const wire = new WireConnection(
        http.url,
        readBuffer === undefined ? {} : { readBuffer: Buffer.alloc(readBuffer) },
      );
      try {
        for (let i = 0; i < 2; i++) {
          const parts: Buffer[] = [];
          // The bytes are the read buffer's: the sink copies what it keeps.
          const answer = await wire.get("/blob", {}, (bytes) => parts.push(Buffer.from(bytes)));
          assert.deepEqual(answer, { status: 200, text: "" });
          assert.ok(Buffer.concat(parts).equals(BLOB), "the body as sent");
          if (readBuffer === 16) assert.ok(parts.length >= BLOB.length / 16, "one part per read");
        }
      } finally {
        wire.close();
      }
    });
  }

  test("an answer that is not 2xx comes back as text, and the sink is not called", async () => {
    const wire = new WireConnection(http.url, { readBuffer: Buffer.alloc(8) });
    try {
      let sunk = 0;
      const answer = await wire.get("/missing", {}, (bytes) => {
        sunk += bytes.length;
      });
      assert.deepEqual(answer, { status: 404, text: '{"errors":[{"code":"BLOB_UNKNOWN"}]}' });
      assert.equal(sunk, 0);
    } finally {
      wire.close();
    }
  });

  test("an answer with Connection: close ends the connection; the next request opens another", async () => {
    const before = http.connections();
    const wire = new WireConnection(http.url);
    try {
      assert.deepEqual(await wire.get("/close", {}), { status: 200, text: "ok" });
      assert.deepEqual(await wire.get("/close", {}), { status: 200, text: "ok" });
      assert.equal(http.connections() - before, 2);
    } finally {
      wire.close();
    }
  });

  test("a connection closed in the middle of a body fails the request", async () => {
    const raw = await rawServer(
      Buffer.from("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part"),
      "destroy",
    );
    const wire = new WireConnection(raw.url, { readBuffer: Buffer.alloc(64) });
    try {
      await assert.rejects(
        wire.get("/", {}, () => undefined),
        /closed before the answer/,
      );
    } finally {
      wire.close();
      raw.server.close();
    }
  });

  test("an answer without Content-Length, or with bytes past its end, fails the request", async () => {
    const chunked = await rawServer(
      Buffer.from("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
      "keep",
    );
    const extra = await rawServer(Buffer.from("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA"), "keep");
    const wires = [new WireConnection(chunked.url), new WireConnection(extra.url)];
    try {
      await assert.rejects(wires[0]?.get("/", {}) ?? Promise.resolve(), /without a status or Content-Length/);
      await assert.rejects(wires[1]?.get("/", {}) ?? Promise.resolve(), /bytes after the answer/);
    } finally {
      for (const wire of wires) wire.close();
      chunked.server.close();
      extra.server.close();
    }
  });
});
