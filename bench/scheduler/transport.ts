// node --import tsx bench/scheduler/transport.ts [--requests N] [--connections N]
//
// What one agent exchange costs a server by transport alone: the same keep-alive request (an
// agent's report of two tasks, as JSON) answered with the same small JSON by a Fastify route, by
// node:http alone (how the agent routes are served since AgentRoutes), and over one raw TCP
// connection per client with length-prefixed frames (the agent channel's shape, without its
// routes: src/shared/agent-frames.ts).
// The server runs in a child process; its CPU (user + system, every thread) is read before and
// after, and printed per request with each transport's ratio to Fastify's.
import { fork } from "node:child_process";
import { once } from "node:events";
import { createServer as createHttpServer } from "node:http";
import net from "node:net";
import { parseArgs } from "node:util";
import Fastify, { LogController } from "fastify";
import { WireConnection } from "../wire.ts";

type Transport = "fastify" | "node-http" | "framed";
const TRANSPORTS: Transport[] = ["fastify", "node-http", "framed"];

const REPORTS = JSON.stringify({
  reports: [1, 2].map((i) => ({
    taskArn: `arn:aws:ecs:us-east-1:000000000000:task/bench-service/019ad6a1c2e3${i}f4a5b6c7d8e9f0a1`,
    lastStatus: "RUNNING",
    containers: [{ name: "app", lastStatus: "RUNNING", runtimeId: "0123456789abcdef".repeat(4) }],
  })),
});

const answer = (body: string) => JSON.stringify({ failures: [], taken: JSON.parse(body).reports.length });

/** The server side: listens, says its port, and answers "cpu" with its CPU time so far in ms. */
async function serve(transport: Transport): Promise<void> {
  let port: number;
  if (transport === "fastify") {
    // As the server builds its Fastify: a pino logger at "warn", connections tracked to close them.
    const app = Fastify({
      logger: { level: "warn" },
      forceCloseConnections: true,
      return503OnClosing: true,
      logController: new LogController({ disableRequestLogging: true }),
    });
    app.removeAllContentTypeParsers();
    app.addContentTypeParser("*", { parseAs: "buffer" }, (_request, body, done) => done(null, body));
    app.post("/agent/v1/reports", async (request, reply) => {
      void reply.header("content-type", "application/json").send(answer(String(request.body)));
    });
    await app.listen({ port: 0, host: "127.0.0.1" });
    port = (app.server.address() as net.AddressInfo).port;
  } else if (transport === "node-http") {
    const server = createHttpServer((request, response) => {
      const parts: Buffer[] = [];
      request.on("data", (part: Buffer) => parts.push(part));
      request.once("end", () => {
        const text = answer(Buffer.concat(parts).toString());
        response.writeHead(200, {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(text),
        });
        response.end(text);
      });
    });
    server.keepAliveTimeout = 72_000;
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    port = (server.address() as net.AddressInfo).port;
  } else {
    const server = net.createServer((socket) => {
      let pending: Buffer = Buffer.alloc(0);
      socket.on("data", (data: Buffer) => {
        pending = pending.length === 0 ? data : Buffer.concat([pending, data]);
        while (pending.length >= 4) {
          const length = pending.readUInt32BE(0);
          if (pending.length < 4 + length) break;
          const text = answer(pending.toString("utf8", 4, 4 + length));
          pending = pending.subarray(4 + length);
          const frame = Buffer.allocUnsafe(4 + Buffer.byteLength(text));
          frame.writeUInt32BE(frame.length - 4, 0);
          frame.write(text, 4);
          socket.write(frame);
        }
      });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    port = (server.address() as net.AddressInfo).port;
  }
  process.send?.({ port });
  process.on("message", () => {
    const usage = process.cpuUsage();
    process.send?.({ cpuMs: (usage.user + usage.system) / 1000 });
  });
}

/** Sends `requests` requests over `connections` connections, each waiting for its answer. */
async function load(
  transport: Transport,
  port: number,
  requests: number,
  connections: number,
): Promise<void> {
  let left = requests;
  if (transport !== "framed") {
    const headers = { "content-type": "application/json", authorization: "Bearer 0123456789abcdef" };
    await Promise.all(
      Array.from({ length: connections }, async () => {
        const connection = new WireConnection(new URL(`http://127.0.0.1:${port}`));
        while (left-- > 0) {
          const reply = await connection.post("/agent/v1/reports", headers, REPORTS);
          if (reply.status !== 200) throw new Error(`status ${reply.status}`);
        }
        connection.close();
      }),
    );
    return;
  }
  const frame = Buffer.allocUnsafe(4 + Buffer.byteLength(REPORTS));
  frame.writeUInt32BE(frame.length - 4, 0);
  frame.write(REPORTS, 4);
  await Promise.all(
    Array.from(
      { length: connections },
      () =>
        new Promise<void>((done, fail) => {
          const socket = net.connect(port, "127.0.0.1");
          let pending: Buffer = Buffer.alloc(0);
          const next = () => {
            if (left-- <= 0) {
              socket.end();
              done();
            } else socket.write(frame);
          };
          socket.once("connect", next);
          socket.once("error", fail);
          socket.on("data", (data: Buffer) => {
            pending = pending.length === 0 ? data : Buffer.concat([pending, data]);
            while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0)) {
              pending = pending.subarray(4 + pending.readUInt32BE(0));
              next();
            }
          });
        }),
    ),
  );
}

async function measure(transport: Transport, requests: number, connections: number): Promise<number> {
  const child = fork(new URL(import.meta.url).pathname, ["--serve", transport], {
    execArgv: ["--import", "tsx"],
  });
  try {
    const [{ port }] = (await once(child, "message")) as [{ port: number }];
    const cpu = async () => {
      child.send("cpu");
      const [{ cpuMs }] = (await once(child, "message")) as [{ cpuMs: number }];
      return cpuMs;
    };
    await load(transport, port, Math.min(2000, requests), connections); // warm up, untimed
    const before = await cpu();
    await load(transport, port, requests, connections);
    return (((await cpu()) - before) * 1000) / requests;
  } finally {
    child.kill();
  }
}

const { values } = parseArgs({
  options: {
    serve: { type: "string" },
    requests: { type: "string", default: "20000" },
    connections: { type: "string", default: "200" },
    rounds: { type: "string", default: "3" },
  },
});
if (values.serve !== undefined) {
  await serve(values.serve as Transport);
} else {
  const requests = Number(values.requests);
  const connections = Number(values.connections);
  const results = new Map<Transport, number[]>(TRANSPORTS.map((t) => [t, []]));
  // Taken in turn, round after round: this machine's speed moves in spells of minutes.
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const transport of TRANSPORTS)
      results.get(transport)?.push(await measure(transport, requests, connections));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
  const fastify = median(results.get("fastify") ?? []);
  console.log(
    `server CPU per keep-alive request (${requests} requests, ${connections} connections), median of ${values.rounds}:`,
  );
  for (const [transport, us] of results) {
    const m = median(us);
    console.log(
      `${transport.padEnd(10)} ${m.toFixed(1).padStart(6)} µs  (${us.map((u) => u.toFixed(1)).join(", ")})  ${(m / fastify).toFixed(2)} of Fastify's`,
    );
  }
}
