import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { type AddressInfo, createServer as createNetServer, type Socket } from "node:net";
import { describe, it } from "node:test";
import { AgentRoutes } from "../server/agent-http.ts";
import type { PollRequest, PollResponse, ReportBatch, TaskReport } from "../shared/agent-protocol.ts";
import { ServerClient, ServerError, worthRetrying } from "./client.ts";

/** Reads a request's body as JSON. */
async function body<T>(request: IncomingMessage): Promise<T> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString("utf8")) as T;
}

/** Runs `test` with a ServerClient of a loopback server that answers every request with `answer`. */
async function withServer(
  answer: (request: IncomingMessage, response: ServerResponse) => void,
  test: (client: ServerClient) => Promise<void>,
): Promise<void> {
  const server = createServer(answer);
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  try {
    const { port } = server.address() as AddressInfo;
    await test(
      new ServerClient(`http://127.0.0.1:${port}`, { accessKeyId: "a", secretAccessKey: "s" }, "us-east-1"),
    );
  } finally {
    await new Promise((done) => server.close(done));
  }
}

const report = (taskArn: string): TaskReport => ({
  taskArn,
  lastStatus: "RUNNING",
  containers: [{ name: "app", lastStatus: "RUNNING" }],
  at: 1,
});

describe("ServerClient reports", () => {
  it("sends the reports made together in one request, and rejects only the ones the server failed", async () => {
    const requests: Array<{ path: string; batch: ReportBatch }> = [];
    const answer = (request: IncomingMessage, response: ServerResponse) => {
      void body<ReportBatch>(request).then((batch) => {
        requests.push({ path: request.url ?? "", batch });
        const failures = batch.reports
          .filter((r) => r.taskArn.endsWith("/not-mine"))
          .map((r) => ({ taskArn: r.taskArn, code: "InvalidParameterException", message: "not yours" }));
        response.setHeader("content-type", "application/json");
        response.end(JSON.stringify({ failures }));
      });
    };
    await withServer(answer, async (client) => {
      const outcomes = await Promise.allSettled([
        client.report(report("task/c/one")),
        client.report(report("task/c/two")),
        client.report(report("task/c/not-mine")),
      ]);
      assert.equal(requests.length, 1);
      assert.equal(requests[0]?.path, "/agent/v1/reports");
      assert.deepEqual(
        requests[0]?.batch.reports.map((r) => r.taskArn),
        ["task/c/one", "task/c/two", "task/c/not-mine"],
      );
      assert.equal(outcomes[0]?.status, "fulfilled");
      assert.equal(outcomes[1]?.status, "fulfilled");
      assert.equal(outcomes[2]?.status, "rejected");
      const error = outcomes[2]?.status === "rejected" ? outcomes[2].reason : undefined;
      assert.ok(error instanceof ServerError);
      assert.equal(error.code, "InvalidParameterException");
      assert.equal(worthRetrying(error), false, "a report the server refused is not sent again");
      // A later report goes in a request of its own.
      await client.report(report("task/c/three"));
      assert.equal(requests.length, 2);
      assert.deepEqual(
        requests[1]?.batch.reports.map((r) => r.taskArn),
        ["task/c/three"],
      );
    });
  });

  it("rejects every report of a request that failed as a whole", async () => {
    const answer = (request: IncomingMessage, response: ServerResponse) => {
      void body(request).then(() => {
        response.statusCode = 500;
        response.setHeader("content-type", "application/json");
        response.end(JSON.stringify({ __type: "InternalFailure", message: "down" }));
      });
    };
    await withServer(answer, async (client) => {
      const outcomes = await Promise.allSettled([
        client.report(report("task/c/one")),
        client.report(report("task/c/two")),
      ]);
      assert.deepEqual(
        outcomes.map((o) =>
          o.status === "rejected" && o.reason instanceof ServerError ? o.reason.code : o.status,
        ),
        ["InternalFailure", "InternalFailure"],
      );
      const error = outcomes[0]?.status === "rejected" ? outcomes[0].reason : undefined;
      assert.equal(worthRetrying(error), true, "a failing server is tried again");
    });
  });

  it("fails a report when the server is unreachable, as worth sending again", async () => {
    const closed = createServer();
    await new Promise<void>((done) => closed.listen(0, "127.0.0.1", done));
    const { port } = closed.address() as AddressInfo;
    await new Promise((done) => closed.close(done));
    const client = new ServerClient(
      `http://127.0.0.1:${port}`,
      { accessKeyId: "a", secretAccessKey: "s" },
      "us-east-1",
    );
    const error = await client.report(report("task/c/one")).then(
      () => assert.fail("nothing listens"),
      (e: unknown) => e,
    );
    assert.match(String(error), /ECONNREFUSED/);
    assert.equal(worthRetrying(error), true);
    assert.equal(worthRetrying(new ServerError(401, "ContainerInstanceDeregistered", "gone")), false);
    assert.equal(worthRetrying(new ServerError(401, "UnauthorizedNode", "register again")), true);
  });
});

describe("ServerClient's channel", () => {
  /** A client of the loopback server at `url`. */
  const clientOf = (url: string): ServerClient =>
    new ServerClient(url, { accessKeyId: "a", secretAccessKey: "s" }, "us-east-1");

  /** Closes the client, then the server and every connection it still has. */
  async function stop(client: ServerClient, server: Server): Promise<void> {
    client.close();
    server.closeAllConnections();
    await new Promise((done) => server.close(done));
  }

  /** A loopback server whose agent routes (`serving.routes`) also answer on channels; counts the channels opened. */
  async function channelServer(routes: AgentRoutes) {
    const serving = { routes, channels: 0, posts: [] as string[] };
    const server = createServer((request, response) => {
      serving.posts.push(request.url ?? "");
      if (!serving.routes.handle(request, response)) response.writeHead(404).end();
    });
    server.on("upgrade", (request, socket, head) => {
      serving.channels++;
      serving.routes.upgrade(request, socket, head);
    });
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    return { server, serving, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
  }

  /** Agent routes whose registration answers with the node token `token()` gives. */
  function registering(token: () => string): AgentRoutes {
    const routes = new AgentRoutes({ bodyLimit: 1 << 20, logError: () => undefined });
    routes.post("/agent/v1/register", async () => ({
      containerInstanceArn: "arn",
      clusterArn: "c",
      nodeToken: token(),
      pollTimeoutMs: 1000,
    }));
    return routes;
  }

  const registration = {
    cluster: "default",
    hostname: "h",
    address: "127.0.0.1",
    totalResources: { cpu: 1024, memory: 1024 },
    attributes: [],
    versionInfo: { agentVersion: "test" },
    capacity: "EC2" as const,
  };

  it("polls and reports on one channel once registered, with the node token, and opens a new one after losing it", async () => {
    let tokens = 0;
    const heard: string[] = [];
    const agentRoutes = () => {
      const routes = registering(() => `token-${++tokens}`);
      routes.post("/agent/v1/poll", async (request) => {
        heard.push(`poll ${request.headers.authorization}`);
        return { tasks: [] };
      });
      routes.post("/agent/v1/reports", async (request) => {
        const batch = JSON.parse(request.body.toString()) as ReportBatch;
        heard.push(`reports ${batch.reports.length} ${request.headers.authorization}`);
        return { failures: [] };
      });
      return routes;
    };
    const { server, serving, url } = await channelServer(agentRoutes());
    const client = clientOf(url);
    try {
      await client.register(registration);
      assert.deepEqual(await client.poll({ known: {} }, 5_000), { tasks: [] });
      await Promise.all([client.report(report("task/c/one")), client.report(report("task/c/two"))]);
      assert.deepEqual(await client.poll({ known: {} }, 5_000), { tasks: [] });
      assert.deepEqual(heard, ["poll Bearer token-1", "reports 2 Bearer token-1", "poll Bearer token-1"]);
      assert.equal(serving.channels, 1);
      assert.deepEqual(serving.posts, ["/agent/v1/register"], "nothing but registration as a POST");

      // The server drops the channel (as it does when it closes): the request fails as one worth
      // sending again, and the next opens another channel.
      serving.routes.close();
      await assert.rejects(client.poll({ known: {} }, 5_000), (error) => worthRetrying(error));
      serving.routes = agentRoutes();
      assert.deepEqual(await client.poll({ known: {} }, 5_000), { tasks: [] });
      assert.equal(serving.channels, 2);

      // A new registration (a new token) opens a channel of its own.
      await client.register(registration);
      await client.poll({ known: {} }, 5_000);
      assert.equal(serving.channels, 3);
      assert.equal(heard.at(-1), "poll Bearer token-2");
    } finally {
      await stop(client, server);
    }
  });

  it("follows a poll on the channel when asked: each change to onChange as it comes, then the poll's last word", async () => {
    const asked: PollRequest[] = [];
    const routes = registering(() => "token");
    const task = (version: number) => ({ taskArn: "task/c/one", version });
    routes.post("/agent/v1/poll", async (request) => {
      const poll = JSON.parse(request.body.toString()) as PollRequest;
      asked.push(poll);
      if (poll.follow !== true) return { tasks: [task(1)] };
      request.interim?.({ tasks: [task(1)] });
      request.interim?.({ tasks: [task(2)] });
      return { tasks: [], unchanged: true };
    });
    const { server, url } = await channelServer(routes);
    const client = clientOf(url);
    try {
      await client.register(registration);
      const changes: PollResponse[] = [];
      const last = await client.poll({ known: {}, acceptUnchanged: true }, 5_000, undefined, (change) =>
        changes.push(change),
      );
      assert.deepEqual(changes, [{ tasks: [task(1)] }, { tasks: [task(2)] }]);
      assert.deepEqual(last, { tasks: [], unchanged: true });
      // Without a taker for changes the poll does not ask to follow, and gets one answer.
      assert.deepEqual(await client.poll({ known: {} }, 5_000), { tasks: [task(1)] });
      assert.deepEqual(
        asked.map((poll) => poll.follow),
        [true, undefined],
      );
    } finally {
      await stop(client, server);
    }
  });

  it("gives up opening a channel when the request's time is up or it is aborted, as a POST would", async () => {
    // A server that takes connections and never answers (a frozen one).
    const held: Socket[] = [];
    const silent = createNetServer((socket) => void held.push(socket));
    await new Promise<void>((done) => silent.listen(0, "127.0.0.1", done));
    const port = (silent.address() as AddressInfo).port;
    const routes = registering(() => "token");
    const { server, url } = await channelServer(routes);
    // Registered with a server, then polling one that does not answer.
    const client = clientOf(url);
    try {
      await client.register(registration);
      Object.assign(client, { endpoint: `http://127.0.0.1:${port}` });
      const started = performance.now();
      const timedOut = await client.poll({ known: {} }, 300).then(
        () => assert.fail("answered"),
        (error: unknown) => error,
      );
      assert.match(String(timedOut), /no answer from .* in 300 ms/);
      assert.equal(worthRetrying(timedOut), true);
      const stop = new AbortController();
      setTimeout(() => stop.abort(), 100);
      await assert.rejects(client.poll({ known: {} }, 60_000, stop.signal), { name: "AbortError" });
      assert.ok(performance.now() - started < 5_000, "neither waited for the opening's own 30 s");
    } finally {
      await stop(client, server);
      for (const socket of held) socket.destroy();
      silent.close();
    }
  });

  it("takes a busy server's refusal (503) as worth retrying, and opens the channel once it is served", async () => {
    const routes = registering(() => "token");
    routes.post("/agent/v1/poll", async () => ({ tasks: [] }));
    const { server, serving, url } = await channelServer(routes);
    const client = clientOf(url);
    try {
      await client.register(registration);
      const closing = new AgentRoutes({ bodyLimit: 1 << 20, logError: () => undefined });
      closing.close();
      serving.routes = closing;
      const busy = await client.poll({ known: {} }, 5_000).then(
        () => assert.fail("answered while closing"),
        (error: unknown) => error,
      );
      assert.ok(busy instanceof ServerError);
      assert.deepEqual([busy.status, busy.code], [503, "ServiceUnavailable"]);
      assert.equal(worthRetrying(busy), true);
      serving.routes = routes;
      assert.deepEqual(await client.poll({ known: {} }, 5_000), { tasks: [] });
      assert.equal(serving.channels, 2, "the channel, not POSTs, once the server takes it");
      assert.deepEqual(serving.posts, ["/agent/v1/register"]);
    } finally {
      await stop(client, server);
    }
  });

  it("sends POSTs to a server that does not open a channel (one without the upgrade)", async () => {
    const routes = registering(() => "token");
    routes.post("/agent/v1/poll", async (request) => ({ tasks: [], token: request.headers.authorization }));
    const posts: string[] = [];
    // No upgrade listener: node serves the upgrade request as a plain GET, answered 404.
    const server = createServer((request, response) => {
      posts.push(`${request.method} ${request.url}`);
      if (!routes.handle(request, response)) response.writeHead(404).end('{"message":"Not Found"}');
    });
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const client = clientOf(url);
    try {
      await client.register(registration);
      assert.deepEqual(await client.poll({ known: {} }, 5_000), { tasks: [], token: "Bearer token" });
      assert.deepEqual(await client.poll({ known: {} }, 5_000), { tasks: [], token: "Bearer token" });
      assert.deepEqual(posts, [
        "POST /agent/v1/register",
        "GET /agent/v1/channel",
        "POST /agent/v1/poll",
        "POST /agent/v1/poll",
      ]);
    } finally {
      await stop(client, server);
    }
  });
});
