import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync, writeSync } from "node:fs";
import { Agent, createServer, type IncomingMessage, request, type ServerResponse } from "node:http";
import { createRequire } from "node:module";
import { type AddressInfo, connect, createServer as createNetServer, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ADDON_PATH, type NativeGcmAddon, type SealedSender } from "./native-gcm.ts";
import { HEADER_BYTES, SealedFileError } from "./sealed-file.ts";
import { canSendSealed, flushed, sendSealed } from "./sealed-send.ts";
import { OVERHEAD, SealedFiles, SMALL } from "./testing.ts";

// The addon itself, whatever WHARF_NATIVE_GCM says: npm test builds it (scripts/bootstrap.sh).
assert.ok(existsSync(ADDON_PATH), `${ADDON_PATH} is missing: run sh scripts/bootstrap.sh`);
const addon = createRequire(import.meta.url)(ADDON_PATH) as NativeGcmAddon;
assert.equal(typeof addon.sendSealed, "function", `${ADDON_PATH} has no sendSealed: rebuild it`);
/** The addon's own choice of cipher code for this CPU, and OpenSSL whatever the CPU has. */
const senders: Array<[string, SealedSender]> = [
  [`the addon's choice for this CPU (${addon.engine})`, addon as NativeGcmAddon & SealedSender],
  ["OpenSSL", addon.openssl as SealedSender],
];

const files = new SealedFiles("sealed-send");
const KEY = files.key;
const sealed = (data: Buffer, segmentBytes?: number) => files.seal(data, segmentBytes);

/** How many descriptors this process has open on `path`. */
function openOn(path: string): number {
  let count = 0;
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === path) count++;
    } catch {
      // closed meanwhile
    }
  }
  return count;
}

/** What the server is to send for the next request. */
interface Send {
  path: string;
  length: number;
  start: number;
  end: number;
  stallMs?: number;
}

/** A send queued for the next request, and how it ended: undefined when it went through. */
interface Queued extends Send {
  outcome: Promise<Error | undefined>;
  settle(outcome: Error | undefined): void;
}

/** Reads `count` responses with a Content-Length from `socket`; their bodies. */
function readResponses(socket: Socket, count: number): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    let pending = Buffer.alloc(0);
    const bodies: Buffer[] = [];
    const onData = (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        const headEnd = pending.indexOf("\r\n\r\n");
        if (headEnd === -1) return;
        const length = Number(/content-length: (\d+)/i.exec(pending.subarray(0, headEnd).toString())?.[1]);
        if (pending.length < headEnd + 4 + length) return;
        bodies.push(pending.subarray(headEnd + 4, headEnd + 4 + length));
        pending = pending.subarray(headEnd + 4 + length);
        if (bodies.length === count) {
          socket.off("data", onData);
          resolve(bodies);
          return;
        }
      }
    };
    socket.on("data", onData);
    socket.on("close", () => reject(new Error(`the connection closed after ${bodies.length} responses`)));
  });
}

for (const [engine, sender] of senders)
  describe(`sending sealed files straight to the socket from the addon's thread, with ${engine}`, () => {
    const sends: Queued[] = [];
    /** Queues `send` for the next request. */
    function queue(send: Send): Queued {
      let settle: (outcome: Error | undefined) => void = () => undefined;
      const outcome = new Promise<Error | undefined>((resolve) => {
        settle = resolve;
      });
      const queued = { ...send, outcome, settle };
      sends.push(queued);
      return queued;
    }
    const server = createServer((request, response) => {
      if (request.url === "/can") {
        // Whether a direct send would be used here: before the headers, and once they are chunked.
        const before = canSendSealed(response, sender);
        response.writeHead(200, { "x-before": String(before) });
        response.end(`chunked: ${canSendSealed(response, sender)}`);
        return;
      }
      const send = sends.shift();
      if (send === undefined) {
        response.writeHead(500).end();
        return;
      }
      const start = () => {
        response.writeHead(200, { "content-length": send.end - send.start + 1 });
        assert.ok(canSendSealed(response, sender));
        sendSealed(send.path, KEY, send.length, send.start, send.end, response, sender, send.stallMs).then(
          () => {
            response.end();
            send.settle(undefined);
          },
          (error: Error) => {
            response.destroy();
            send.settle(error);
          },
        );
      };
      // A pipelined request's response gets its socket once the one before it has finished.
      if (response.socket === null) response.once("socket", start);
      else start();
    });
    let port = 0;
    before(async () => {
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      port = (server.address() as AddressInfo).port;
    });
    after(() => new Promise<void>((resolve) => server.close(() => resolve())));

    /** GETs the next send's bytes; the body as far as it came, and whether it came whole. */
    function get(agent?: Agent, pauseMs = 0): Promise<{ body: Buffer; whole: boolean; socket: Socket }> {
      return new Promise((resolve, reject) => {
        const chunks: Buffer[] = [];
        const req = request(
          { port, host: "127.0.0.1", path: "/", agent: agent ?? false },
          (res: IncomingMessage) => {
            if (pauseMs > 0) setTimeout(() => res.resume(), pauseMs).unref();
            res.on("data", (chunk: Buffer) => chunks.push(chunk));
            if (pauseMs > 0) res.pause();
            res.on("end", () =>
              resolve({ body: Buffer.concat(chunks), whole: res.complete, socket: req.socket as Socket }),
            );
            res.on("error", () =>
              resolve({ body: Buffer.concat(chunks), whole: false, socket: req.socket as Socket }),
            );
          },
        );
        req.on("error", reject);
        req.end();
      });
    }

    it("sends whole files and ranges within and across segments, the last one partial, on one kept-alive connection", async () => {
      const data = randomBytes(10 * SMALL + 1234);
      const path = await sealed(data);
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const ranges: Array<[number, number]> = [
          [0, data.length - 1],
          [0, 0],
          [100, 200],
          [SMALL - 1, SMALL],
          [3 * SMALL + 7, 9 * SMALL - 3],
          [10 * SMALL, data.length - 1],
          [data.length - 1, data.length - 1],
        ];
        const sockets = new Set<Socket>();
        for (const [start, end] of ranges) {
          const send = queue({ path, length: data.length, start, end });
          const { body, whole, socket } = await get(agent);
          assert.equal(await send.outcome, undefined);
          assert.ok(whole, `range ${start}-${end} came whole`);
          assert.ok(body.equals(data.subarray(start, end + 1)), `range ${start}-${end}`);
          sockets.add(socket);
        }
        assert.equal(sockets.size, 1, "every response came on the same connection");
      } finally {
        agent.destroy();
      }
    });

    it("sends a file's 1 MiB segments, and several at once", async () => {
      const data = randomBytes(5 * 1024 * 1024 + 77);
      const path = await sealed(data, 1024 * 1024);
      const ranges: Array<[number, number]> = [
        [0, data.length - 1],
        [1, data.length - 2],
        [1024 * 1024 - 5, 3 * 1024 * 1024 + 5],
        [4 * 1024 * 1024, data.length - 1],
      ];
      const results = await Promise.all(
        ranges.map(async ([start, end]) => {
          const send = queue({ path, length: data.length, start, end });
          const result = await get();
          return { ...result, outcome: await send.outcome };
        }),
      );
      // Requests may be answered in any order; each must be one of the ranges, and all of them came.
      const wanted = ranges.map(([start, end]) => data.subarray(start, end + 1));
      for (const { body, whole, outcome } of results) {
        assert.equal(outcome, undefined);
        assert.ok(whole);
        const at = wanted.findIndex((bytes) => bytes.equals(body));
        assert.notEqual(at, -1, "a body that is one of the ranges");
        wanted.splice(at, 1);
      }
    });

    it("sends the recorded bytes of a last segment sealed with more than were recorded, whole and in ranges", async () => {
      const data = randomBytes(2 * SMALL + 3000);
      const path = await sealed(data);
      const recorded = 2 * SMALL + 1000;
      // The whole of it, a range across into the last segment, and ranges that start inside it.
      const ranges: Array<[number, number]> = [
        [0, recorded - 1],
        [SMALL + 5, recorded - 1],
        [2 * SMALL, recorded - 1],
        [2 * SMALL + 999, recorded - 1],
        [2 * SMALL + 10, 2 * SMALL + 20],
      ];
      for (const [start, end] of ranges) {
        const send = queue({ path, length: recorded, start, end });
        const { body, whole } = await get();
        assert.equal(await send.outcome, undefined);
        assert.ok(whole, `range ${start}-${end} came whole`);
        assert.ok(body.equals(data.subarray(start, end + 1)), `range ${start}-${end}`);
      }
    });

    // Small segments, and segments larger than a socket holds (at most tcp_wmem's 4 MiB and
    // tcp_rmem's 6 MiB by default) with the client not reading at first: the thread then opens the
    // forged segment while the socket is full, and must still send all of the one before it.
    for (const [segmentBytes, count, forged, pauseMs] of [
      [SMALL, 6, 3, 0],
      [32 * 1024 * 1024, 2, 1, 200],
    ] as const) {
      it(`sends the segments before a forged one and nothing of it, then cuts the response short (${count} segments of ${segmentBytes})`, async () => {
        const data = randomBytes(count * segmentBytes);
        const path = await sealed(data, segmentBytes);
        const bytes = readFileSync(path);
        const inForged = HEADER_BYTES + forged * (segmentBytes + OVERHEAD) + 50;
        bytes[inForged] = (bytes[inForged] as number) ^ 0x01;
        writeFileSync(path, bytes);
        const send = queue({ path, length: data.length, start: 0, end: data.length - 1 });
        const { body, whole } = await get(undefined, pauseMs);
        const error = await send.outcome;
        assert.ok(
          error instanceof SealedFileError &&
            new RegExp(`segment ${forged} failed authentication`).test(error.message),
          `${error}`,
        );
        assert.equal(whole, false);
        assert.equal(body.length, forged * segmentBytes, "every byte before the forged segment");
        assert.ok(body.equals(data.subarray(0, forged * segmentBytes)));
        assert.equal(openOn(path), 0, "the file is closed");
      });
    }

    it("fails on a segment the file does not have", async () => {
      const data = randomBytes(3 * SMALL);
      const path = await sealed(data);
      const send = queue({ path, length: 5 * SMALL, start: 0, end: 5 * SMALL - 1 });
      const { body, whole } = await get();
      const error = await send.outcome;
      assert.ok(error instanceof SealedFileError && /segment 3 is missing/.test(error.message), `${error}`);
      assert.equal(whole, false);
      assert.ok(body.equals(data));
    });

    it("stops when the client goes away mid-send, and when the socket takes nothing for stallMs", async () => {
      const data = randomBytes(48 * 1024 * 1024);
      const path = await sealed(data, 1024 * 1024);
      const gone = queue({ path, length: data.length, start: 0, end: data.length - 1 });
      await new Promise<void>((resolve) => {
        const req = request({ port, host: "127.0.0.1", path: "/", agent: false }, (res) => {
          let got = 0;
          res.on("data", (chunk: Buffer) => {
            got += chunk.length;
            if (got > 1024 * 1024) req.destroy();
          });
          res.on("close", resolve);
        });
        req.on("error", () => resolve());
        req.end();
      });
      assert.ok((await gone.outcome) instanceof Error, "the send failed once the client had gone");

      const stalled = queue({ path, length: data.length, start: 0, end: data.length - 1, stallMs: 300 });
      let response: IncomingMessage | undefined;
      const req = request({ port, host: "127.0.0.1", path: "/", agent: false }, (res) => {
        response = res.pause();
      });
      req.on("error", () => undefined);
      req.end();
      const error = await stalled.outcome;
      assert.ok(error instanceof Error && /took nothing/.test(error.message), `${error}`);
      assert.equal(openOn(path), 0, "the file is closed");
      // Read on: the connection ends once every copy of the server's socket is closed.
      const paused = response as IncomingMessage;
      const ended = new Promise((resolve) => paused.on("close", resolve));
      paused.resume();
      await ended;
      assert.equal(paused.complete, false, "the response was cut short");
    });

    it("waits until headers queued behind a full socket are sent (a pipelined request after a large send)", async () => {
      const data = randomBytes(32 * 1024 * 1024);
      const path = await sealed(data, 1024 * 1024);
      const first = queue({ path, length: data.length, start: 0, end: data.length - 1 });
      const second = queue({ path, length: data.length, start: 5, end: 5004 });
      const socket = connect(port, "127.0.0.1");
      try {
        socket.pause();
        socket.write("GET /a HTTP/1.1\r\nHost: wharf\r\n\r\nGET /b HTTP/1.1\r\nHost: wharf\r\n\r\n");
        // Not read yet: the first send fills the socket, so the second response's headers wait in Node.
        await sleep(300);
        const bodies = readResponses(socket, 2);
        socket.resume();
        const [a, b] = await bodies;
        assert.equal(await first.outcome, undefined);
        assert.equal(await second.outcome, undefined);
        assert.ok(a?.equals(data), "the first body");
        assert.ok(b?.equals(data.subarray(5, 5005)), "the second body");
      } finally {
        socket.destroy();
      }
    });

    it("is not used for a HEAD request, a chunked response or without a socket", async () => {
      const agent = new Agent({ keepAlive: true });
      try {
        const ask = (method: string) =>
          new Promise<IncomingMessage & { text: string }>((resolve, reject) => {
            const req = request({ port, host: "127.0.0.1", path: "/can", method, agent }, (res) => {
              let text = "";
              res.on("data", (chunk: Buffer) => {
                text += chunk.toString();
              });
              res.on("end", () => resolve(Object.assign(res, { text })));
            });
            req.on("error", reject);
            req.end();
          });
        const get = await ask("GET");
        assert.equal(get.headers["x-before"], "true");
        assert.equal(get.headers["transfer-encoding"], "chunked");
        assert.equal(get.text, "chunked: false");
        assert.equal((await ask("HEAD")).headers["x-before"], "false");
      } finally {
        agent.destroy();
      }
      const response = { socket: null } as unknown as ServerResponse;
      assert.equal(canSendSealed(response, sender), false, "without a socket");
    });
  });

describe("waiting until what Node queued on a socket is in the kernel", () => {
  it("resolves once bytes queued behind a full socket are sent, though no drain comes", async () => {
    const server = createNetServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const accepted = new Promise<Socket>((resolve) => server.once("connection", resolve));
    const client = connect((server.address() as AddressInfo).port, "127.0.0.1");
    client.pause();
    const socket = await accepted;
    try {
      // Fill the kernel's buffers behind Node's back, as the addon's thread does.
      const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd;
      const filler = Buffer.alloc(256 * 1024);
      let filled = 0;
      for (;;) {
        try {
          filled += writeSync(fd, filler);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === "EAGAIN") break;
          throw error;
        }
      }
      // A write under the high-water mark: queued in Node, and no "drain" will follow it.
      assert.equal(socket.write(Buffer.from("headers")), true);
      assert.ok(socket.writableLength > 0, "the write waits in Node");
      const done = flushed(socket, 5_000);
      let received = 0;
      client.on("data", (chunk: Buffer) => {
        received += chunk.length;
      });
      client.resume();
      await done;
      assert.equal(socket.writableLength, 0);
      for (let i = 0; i < 200 && received < filled + 7; i++) await sleep(10);
      assert.equal(received, filled + 7, "everything arrived");
    } finally {
      client.destroy();
      socket.destroy();
      server.close();
    }
  });
});
