import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { type AddressInfo, connect } from "node:net";
import { after, describe, it } from "node:test";
import { AgentChannel, ChannelRefused } from "../agent/channel.ts";
import { AwsError } from "../aws/errors.ts";
import { AgentRoutes } from "./agent-http.ts";

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** An HTTP server on loopback whose agent routes answer first and anything else says "fallback". */
async function serve(routes: AgentRoutes): Promise<{ server: Server; url: string }> {
  const handler = (request: IncomingMessage, response: ServerResponse) => {
    if (routes.handle(request, response)) return;
    if (request.url === "/slow") setTimeout(() => response.end("slow"), 100);
    else response.end("fallback");
  };
  const server = createServer(handler);
  server.on("upgrade", (request, socket, head) => routes.upgrade(request, socket, head, handler));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** Until `check` holds, looked at every 10 ms for at most 5 s. */
async function eventually(check: () => boolean): Promise<void> {
  for (let waited = 0; !check(); waited += 10) {
    if (waited > 5_000) assert.fail("not in 5 s");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function send(url: string, method: string, path: string, body = ""): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(`${url}${path}`, { method }, (response) => {
      const parts: Buffer[] = [];
      response.on("data", (part: Buffer) => parts.push(part));
      response.on("end", () =>
        resolve({
          status: response.statusCode ?? 0,
          headers: response.headers,
          body: Buffer.concat(parts).toString(),
        }),
      );
    });
    request.on("error", reject);
    request.end(body);
  });
}

describe("AgentRoutes", () => {
  const servers: Server[] = [];
  after(() => {
    for (const server of servers) server.close();
  });

  async function start(options: { bodyLimit?: number; logged?: unknown[] } = {}) {
    const routes = new AgentRoutes({
      bodyLimit: options.bodyLimit ?? 1024,
      logError: (_error, request) => options.logged?.push(request),
    });
    const { server, url } = await serve(routes);
    servers.push(server);
    return { routes, url };
  }

  it("answers a POST to a route with its handler's result as JSON, given the body whole", async () => {
    const { routes, url } = await start();
    routes.post("/agent/v1/echo", async (request) => ({ got: JSON.parse(request.body.toString()) }));
    const answer = await send(url, "POST", "/agent/v1/echo", JSON.stringify({ n: 1, s: "x".repeat(500) }));
    assert.equal(answer.status, 200);
    assert.equal(answer.headers["content-type"], "application/json");
    assert.deepEqual(JSON.parse(answer.body), { got: { n: 1, s: "x".repeat(500) } });
    // A query string does not change the route.
    assert.equal((await send(url, "POST", "/agent/v1/echo?x=1", "{}")).status, 200);
  });

  it("leaves other methods and paths to the server's other handler", async () => {
    const { routes, url } = await start();
    routes.post("/agent/v1/echo", async () => ({}));
    assert.equal((await send(url, "GET", "/agent/v1/echo")).body, "fallback");
    assert.equal((await send(url, "POST", "/agent/v1/other")).body, "fallback");
  });

  it("answers a handler's error in the AWS JSON shape, and logs only server-side failures", async () => {
    const logged: unknown[] = [];
    const { routes, url } = await start({ logged });
    routes.post("/agent/v1/refused", async () => {
      throw new AwsError("InvalidParameterException", "taskArn is required.");
    });
    routes.post("/agent/v1/broken", async () => {
      throw new Error("disk on fire");
    });
    const refused = await send(url, "POST", "/agent/v1/refused");
    assert.equal(refused.status, 400);
    assert.equal(refused.headers["x-amzn-errortype"], "InvalidParameterException");
    assert.equal(refused.headers["content-type"], "application/x-amz-json-1.1");
    assert.ok(typeof refused.headers["x-amzn-requestid"] === "string");
    assert.deepEqual(JSON.parse(refused.body), {
      __type: "InvalidParameterException",
      message: "taskArn is required.",
    });
    assert.equal(logged.length, 0);
    const broken = await send(url, "POST", "/agent/v1/broken");
    assert.equal(broken.status, 500);
    assert.equal(JSON.parse(broken.body).__type, "InternalFailure");
    assert.doesNotMatch(broken.body, /disk on fire/);
    assert.equal(logged.length, 1);
    assert.deepEqual(logged[0], { method: "POST", url: "/agent/v1/broken" });
  });

  it("refuses a body over the limit with RequestEntityTooLargeException, without running the handler", async () => {
    const { routes, url } = await start({ bodyLimit: 100 });
    let ran = false;
    routes.post("/agent/v1/echo", async () => {
      ran = true;
      return {};
    });
    const answer = await send(url, "POST", "/agent/v1/echo", "x".repeat(101));
    assert.equal(answer.status, 413);
    assert.equal(JSON.parse(answer.body).__type, "RequestEntityTooLargeException");
    assert.equal(ran, false);
  });

  it("answers 503 once closed", async () => {
    const { routes, url } = await start();
    routes.post("/agent/v1/echo", async () => ({}));
    routes.close();
    const answer = await send(url, "POST", "/agent/v1/echo", "{}");
    assert.equal(answer.status, 503);
  });

  it("tells a waiting handler that its client went away (a long poll ends then)", async () => {
    const { routes, url } = await start();
    let gone: () => void = () => undefined;
    const ended = new Promise<void>((resolve) => {
      gone = resolve;
    });
    let waiting: () => void = () => undefined;
    const started = new Promise<void>((resolve) => {
      waiting = resolve;
    });
    routes.post("/agent/v1/poll", async (request) => {
      request.onGone(gone);
      waiting();
      await ended;
      return {};
    });
    const client = httpRequest(`${url}/agent/v1/poll`, { method: "POST" });
    client.on("error", () => undefined);
    client.end("{}");
    await started;
    client.destroy();
    await ended;
  });

  describe("on an agent's channel", () => {
    /** A promise and what settles it. */
    function gate() {
      let open: () => void = () => undefined;
      const opened = new Promise<void>((resolve) => {
        open = resolve;
      });
      return { open, opened };
    }

    /** Serves `path` with `result` once released; `started` settles when a request arrives. */
    function held(routes: AgentRoutes, path: string, result: unknown) {
      const started = gate();
      const release = gate();
      routes.post(path, async () => {
        started.open();
        await release.opened;
        return result;
      });
      return { started: started.opened, release: release.open };
    }

    it("serves each frame by its path's route, with the upgrade's headers, answering as each is ready", async () => {
      const { routes, url } = await start();
      const poll = held(routes, "/agent/v1/poll", { tasks: [] });
      routes.post("/agent/v1/echo", async (request) => ({
        token: request.headers.authorization,
        url: request.url,
        got: JSON.parse(request.body.toString()),
      }));
      const channel = await AgentChannel.open(url, "node-token", { timeoutMs: 5_000 });
      try {
        const polled = channel.request("/agent/v1/poll", "{}", 5_000);
        await poll.started;
        // The poll waits; a request sent after it is answered first, on the same connection.
        const echo = await channel.request("/agent/v1/echo", JSON.stringify({ s: "é".repeat(300) }), 5_000);
        assert.equal(echo.status, 200);
        assert.deepEqual(JSON.parse(echo.text), {
          token: "Bearer node-token",
          url: "/agent/v1/echo",
          got: { s: "é".repeat(300) },
        });
        poll.release();
        assert.deepEqual(await polled, { status: 200, text: '{"tasks":[]}' });
      } finally {
        channel.close();
      }
    });

    it("sends a handler's interim answers ahead of its answer, in order; a POST's request has none", async () => {
      const { routes, url } = await start();
      const release = gate();
      routes.post("/agent/v1/poll", async (request) => {
        request.interim?.({ n: 1 });
        request.interim?.({ n: 2 });
        await release.opened;
        return { n: 3 };
      });
      let postInterim: unknown = "not asked";
      routes.post("/agent/v1/echo", async (request) => {
        postInterim = request.interim;
        return {};
      });
      const channel = await AgentChannel.open(url, "t", { timeoutMs: 5_000 });
      try {
        const seen: string[] = [];
        const answer = channel.request("/agent/v1/poll", "{}", 5_000, undefined, (text) => seen.push(text));
        await eventually(() => seen.length === 2);
        assert.deepEqual(seen, ['{"n":1}', '{"n":2}']);
        let settled = false;
        void answer.then(() => (settled = true));
        await new Promise((resolve) => setTimeout(resolve, 50));
        assert.equal(settled, false, "an interim answer does not end the request");
        release.open();
        assert.deepEqual(await answer, { status: 200, text: '{"n":3}' });
        assert.deepEqual(seen, ['{"n":1}', '{"n":2}']);
        // A request that takes no interim answers passes over them to its answer.
        assert.deepEqual(await channel.request("/agent/v1/poll", "{}", 5_000), {
          status: 200,
          text: '{"n":3}',
        });
        // One whose taker throws fails with that error alone; the channel goes on.
        await assert.rejects(
          channel.request("/agent/v1/poll", "{}", 5_000, undefined, () => {
            throw new Error("cannot take it");
          }),
          /cannot take it/,
        );
        assert.equal((await channel.request("/agent/v1/echo", "{}", 5_000)).status, 200);
        assert.equal(typeof postInterim, "function", "a frame's request can send interim answers");
        postInterim = "not asked";
        assert.equal((await send(url, "POST", "/agent/v1/echo", "{}")).status, 200);
        assert.equal(postInterim, undefined);
      } finally {
        channel.close();
      }
    });

    it("answers errors as a POST's, in the AWS JSON shape, and logs only server-side failures", async () => {
      const logged: unknown[] = [];
      const { routes, url } = await start({ bodyLimit: 100, logged });
      routes.post("/agent/v1/refused", async () => {
        throw new AwsError("InvalidParameterException", "taskArn is required.");
      });
      routes.post("/agent/v1/broken", async () => {
        throw new Error("disk on fire");
      });
      routes.post("/agent/v1/echo", async () => ({}));
      const channel = await AgentChannel.open(url, "t", { timeoutMs: 5_000 });
      try {
        const refused = await channel.request("/agent/v1/refused", "{}", 5_000);
        assert.deepEqual(
          { status: refused.status, body: JSON.parse(refused.text) },
          { status: 400, body: { __type: "InvalidParameterException", message: "taskArn is required." } },
        );
        assert.equal(logged.length, 0);
        const broken = await channel.request("/agent/v1/broken", "{}", 5_000);
        assert.equal(broken.status, 500);
        assert.equal(JSON.parse(broken.text).__type, "InternalFailure");
        assert.doesNotMatch(broken.text, /disk on fire/);
        assert.deepEqual(logged, [{ method: "POST", url: "/agent/v1/broken" }]);
        const unknown = await channel.request("/agent/v1/nothing", "{}", 5_000);
        assert.equal(unknown.status, 404);
        assert.equal(JSON.parse(unknown.text).__type, "UnknownOperationException");
        const large = await channel.request("/agent/v1/echo", "x".repeat(101), 5_000);
        assert.equal(large.status, 413);
        assert.equal(JSON.parse(large.text).__type, "RequestEntityTooLargeException");
        // The connection outlives every one of them.
        assert.equal((await channel.request("/agent/v1/echo", "{}", 5_000)).status, 200);
      } finally {
        channel.close();
      }
    });

    it("refuses a body far over the limit with 413 and goes on serving the channel's other requests", async () => {
      const { routes, url } = await start({ bodyLimit: 100 });
      const poll = held(routes, "/agent/v1/poll", { tasks: [] });
      routes.post("/agent/v1/logs", async () => assert.fail("a body over the limit reached its handler"));
      const channel = await AgentChannel.open(url, "t", { timeoutMs: 5_000 });
      try {
        const polled = channel.request("/agent/v1/poll", "{}", 5_000);
        await poll.started;
        const large = await channel.request("/agent/v1/logs", "x".repeat(100_000), 5_000);
        assert.equal(large.status, 413);
        assert.equal(JSON.parse(large.text).__type, "RequestEntityTooLargeException");
        poll.release();
        assert.equal((await polled).status, 200, "the poll waiting meanwhile is answered");
        assert.equal(channel.closed, false);
      } finally {
        channel.close();
      }
    });

    it("fails a request that times out alone, and the connection with it only when the server said nothing since", async () => {
      const { routes, url } = await start();
      routes.post("/agent/v1/never", () => new Promise(() => undefined));
      routes.post("/agent/v1/echo", async () => ({}));
      const channel = await AgentChannel.open(url, "t", { timeoutMs: 5_000 });
      try {
        const never = channel.request("/agent/v1/never", "{}", 300);
        assert.equal((await channel.request("/agent/v1/echo", "{}", 5_000)).status, 200);
        await assert.rejects(never, /no answer from .* in 300 ms/);
        assert.equal(channel.closed, false, "the server answered since: the connection stays");
        assert.equal((await channel.request("/agent/v1/echo", "{}", 5_000)).status, 200);
        await assert.rejects(channel.request("/agent/v1/never", "{}", 300), /no answer/);
        assert.equal(channel.closed, true, "nothing heard since it went: the connection is taken for dead");
      } finally {
        channel.close();
      }
    });

    it("tells a waiting handler that its agent went away when the connection closes", async () => {
      const { routes, url } = await start();
      const ended = gate();
      const started = gate();
      let goneBefore: boolean | undefined;
      routes.post("/agent/v1/poll", async (request) => {
        goneBefore = request.gone();
        request.onGone(ended.open);
        started.open();
        await ended.opened;
        return {};
      });
      const channel = await AgentChannel.open(url, "t", { timeoutMs: 5_000 });
      const poll = channel.request("/agent/v1/poll", "{}", 5_000).then(
        () => assert.fail("answered after the connection closed"),
        (error: unknown) => error,
      );
      await started.opened;
      channel.close();
      await ended.opened;
      assert.equal(goneBefore, false);
      assert.equal(((await poll) as { code?: string }).code, "ECONNRESET");
      assert.equal(channel.closed, true);
    });

    it("once closed, answers what it was serving, refuses what comes after with 503, then ends", async () => {
      const { routes, url } = await start();
      const slowly = held(routes, "/agent/v1/slow", { done: true });
      routes.post("/agent/v1/echo", async () => ({}));
      const channel = await AgentChannel.open(url, "t", { timeoutMs: 5_000 });
      const slow = channel.request("/agent/v1/slow", "{}", 5_000);
      await slowly.started;
      routes.close();
      const late = await channel.request("/agent/v1/echo", "{}", 5_000);
      assert.equal(late.status, 503);
      assert.equal(channel.closed, false, "open while a request is served");
      slowly.release();
      assert.deepEqual(await slow, { status: 200, text: '{"done":true}' });
      await assert.rejects(channel.request("/agent/v1/echo", "{}", 5_000), { code: "ECONNRESET" });
      assert.equal(channel.closed, true);
      // A new channel is refused while closing, as busy (503).
      const refused = await AgentChannel.open(url, "t", { timeoutMs: 5_000 }).then(
        () => assert.fail("opened while closing"),
        (error: unknown) => error,
      );
      assert.ok(refused instanceof ChannelRefused);
      assert.equal(refused.status, 503);
    });

    it("answers any other upgrade without upgrading, or refuses it in the AWS JSON shape when it has a body", async () => {
      const { url } = await start();
      const h2c = (method: string, body?: string) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const request = httpRequest(`${url}/v2/`, {
            method,
            headers: { connection: "Upgrade, HTTP2-Settings", upgrade: "h2c", "http2-settings": "" },
          });
          request.on("response", (response) => {
            const parts: Buffer[] = [];
            response.on("data", (part: Buffer) => parts.push(part));
            response.on("end", () =>
              resolve({ status: response.statusCode ?? 0, body: Buffer.concat(parts).toString() }),
            );
          });
          request.on("upgrade", () => reject(new Error("upgraded to h2c")));
          request.on("error", reject);
          request.end(body);
        });
      // As HTTP lets a server do, the offer is ignored: the request is served as any other.
      assert.deepEqual(await h2c("GET"), { status: 200, body: "fallback" });
      const refused = await h2c("POST", "{}");
      assert.equal(refused.status, 400);
      assert.equal(JSON.parse(refused.body).__type, "UnsupportedUpgrade");
    });

    it("answers an upgrade pipelined behind a request still being answered, after that answer", async () => {
      const { url } = await start();
      const { port } = new URL(url);
      const socket = connect(Number(port), "127.0.0.1");
      await once(socket, "connect");
      socket.write(
        "GET /slow HTTP/1.1\r\nhost: x\r\n\r\n" +
          "GET /v2/ HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n",
      );
      const parts: Buffer[] = [];
      socket.on("data", (part: Buffer) => parts.push(part));
      await once(socket, "close");
      const text = Buffer.concat(parts).toString();
      assert.match(
        text,
        /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\n[\s\S]*slow[\s\S]*HTTP\/1\.1 200 OK\r\n[\s\S]*fallback$/,
      );
      // The server lives on.
      assert.equal((await send(url, "GET", "/")).body, "fallback");
    });

    it("outlives clients that reset a refused upgrade", async () => {
      const { routes, url } = await start();
      routes.post("/agent/v1/echo", async () => ({}));
      const { port } = new URL(url);
      for (let i = 0; i < 20; i++) {
        const socket = connect(Number(port), "127.0.0.1");
        await once(socket, "connect");
        socket.write(
          "POST /v2/ HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: h2c\r\ncontent-length: 2\r\n\r\n{}",
        );
        socket.resetAndDestroy();
      }
      const channel = await AgentChannel.open(url, "t", { timeoutMs: 5_000 });
      assert.equal((await channel.request("/agent/v1/echo", "{}", 5_000)).status, 200, "still serving");
      channel.close();
    });

    it("closes with an agent that never closes its end (a frozen process)", async () => {
      const { routes, url } = await start();
      const { port } = new URL(url);
      // Another process opens a channel, then blocks: it neither reads nor closes anything.
      const frozen = spawn(process.execPath, [
        "-e",
        `const s = require("node:net").connect(${port}, "127.0.0.1", () => s.write(
          "GET /agent/v1/channel HTTP/1.1\\r\\nhost: x\\r\\nconnection: Upgrade\\r\\nupgrade: wharf-agent/1\\r\\n\\r\\n",
          () => { console.log("frozen"); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60000); }));`,
      ]);
      try {
        await once(frozen.stdout, "data");
        const server = servers.at(-1) as Server;
        await eventually(() => routes.channelCount === 1);
        routes.close();
        await new Promise((resolve) => server.close(resolve));
      } finally {
        frozen.kill("SIGKILL");
      }
    });
  });
});
