import { lookup } from "node:dns/promises";
import { renameSync, rmSync, writeFileSync } from "node:fs";
import {
  createServer as createHttpServer,
  type Server as HttpServer,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyServerFactory,
  LogController,
} from "fastify";
import { type AccessKey, AccessKeys } from "../auth/access-keys.ts";
import { Sealer } from "../auth/sealer.ts";
import { ContainerStats } from "../cloudwatch/container-stats.ts";
import { expireAllGroups } from "../cloudwatch/logs/events.ts";
import { appendLogEvents } from "../cloudwatch/logs/ingest.ts";
import { logsService } from "../cloudwatch/logs/service.ts";
import { InstanceNotifier } from "../ecs/notifier.ts";
import { SchedulerState } from "../ecs/scheduler-state.ts";
import { ecsService } from "../ecs/service.ts";
import { ServiceController } from "../ecs/service-controller.ts";
import { purgeRunTaskTokens, reusedCredentials } from "../ecs/task-api.ts";
import { purgeAllDeletedTaskDefinitions } from "../ecs/task-definition-purge.ts";
import { purgeAllStoppedTasks } from "../ecs/task-purge.ts";
import { type RegistryService, startRegistry } from "../registry/index.ts";
import type { LogBatch } from "../shared/agent-protocol.ts";
import { SqliteStore } from "../store/sqlite.ts";
import type { Store } from "../store/store.ts";
import { stsService } from "../sts/service.ts";
import { registerAgentChannel } from "./agent-channel.ts";
import { AgentRoutes } from "./agent-http.ts";
import type { ServerConfig } from "./config.ts";
import { registerFrontDoor, sendAwsError } from "./front-door.ts";
import { dataPaths } from "./paths.ts";
import { Periodic } from "./periodic.ts";
import { ensureTls, type TlsMaterial } from "./tls.ts";

/** Connections the kernel queues for the server to accept (capped by net.core.somaxconn). */
export const LISTEN_BACKLOG = 4096;

export interface RunningServer {
  /** e.g. http://127.0.0.1:4700 */
  endpoint: string;
  port: number;
  admin: AccessKey;
  store: Store;
  registry: RegistryService;
  /** The latest CPU and memory sample of each container, as the agents report them. */
  stats: ContainerStats;
  /** The CA certificate clients should trust, when serving HTTPS with Wharf's own CA. */
  caCertificate?: Buffer;
  close(): Promise<void>;
}

export interface ServerDeps {
  clock?: () => Date;
  /** Registry maintenance (lifecycle, GC) tuning, for tests. */
  maintenanceIntervalMs?: number;
  gcGraceMs?: number;
  /** How often stopped tasks and deleted task definitions are purged (default five minutes), for tests. */
  purgeIntervalMs?: number;
}

/** Opens the data directory: the store, the master key and the admin access key. */
export async function openDataDir(dataDir: string, now: Date) {
  const paths = dataPaths(dataDir);
  const sealer = Sealer.fromKeyFile(paths.masterKey);
  const store = await SqliteStore.open({ path: paths.database });
  const keys = new AccessKeys(store, sealer);
  await keys.load();
  const admin = await keys.ensureAdmin(now);
  return { paths, sealer, store, keys, admin };
}

/** How long an idle keep-alive connection is kept open: Fastify's default. */
const KEEP_ALIVE_TIMEOUT_MS = 72_000;

/**
 * Fastify, with the agent protocol's routes (`AgentRoutes`) served ahead of it on the same server.
 * `extraServer` makes one more server of the same kind for the same app (see `listenEverywhere`).
 */
function buildApp(
  config: ServerConfig,
  tls: TlsMaterial | undefined,
): { app: FastifyInstance; agentRoutes: AgentRoutes; extraServer: () => HttpServer } {
  let log: FastifyBaseLogger | undefined;
  const agentRoutes = new AgentRoutes({
    bodyLimit: config.maxRequestBytes,
    logError: (error, request) => log?.error({ err: error, ...request }, "request failed"),
  });
  let serve: (request: IncomingMessage, response: ServerResponse) => void = (_request, response) =>
    response.destroy();
  const makeServer = (): HttpServer => {
    const server =
      tls === undefined
        ? createHttpServer(serve)
        : createHttpsServer({ cert: tls.cert, key: tls.key }, serve);
    // What Fastify sets, by its defaults, on a server it makes itself.
    server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
    server.requestTimeout = 0;
    server.setTimeout(0);
    // The agent channel (an upgraded connection per agent); any other upgrade is served as a
    // plain request, or refused.
    server.on("upgrade", (request, socket, head) =>
      agentRoutes.upgrade(request, socket, head, (other, response) => serve(other, response)),
    );
    return server;
  };
  const serverFactory: FastifyServerFactory = (handler) => {
    serve = (request, response) => {
      if (!agentRoutes.handle(request, response)) handler(request, response);
    };
    return makeServer();
  };
  const app = Fastify({
    logger: { level: config.logLevel },
    bodyLimit: config.maxRequestBytes,
    forceCloseConnections: true,
    return503OnClosing: true,
    logController: new LogController({
      disableRequestLogging: config.logLevel !== "debug" && config.logLevel !== "trace",
    }),
    serverFactory,
  });
  log = app.log;
  // Every AWS API body arrives as raw bytes: SigV4 hashes exactly what was sent.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "buffer" }, (_request, body, done) => done(null, body));
  app.setErrorHandler((error, request, reply) => sendAwsError(request, reply, error));
  app.setNotFoundHandler((request, reply) =>
    sendAwsError(request, reply, Object.assign(new Error("Not Found"), { statusCode: 404 })),
  );
  app.get("/healthz", async () => ({ status: "ok" }));
  return { app, agentRoutes, extraServer: makeServer };
}

/**
 * Listens on every address `localhost` has, as Fastify does for a server it makes itself (it does
 * not for one a `serverFactory` makes): clients that try only one of 127.0.0.1 and ::1 reach it.
 */
export async function listenEverywhere(
  app: FastifyInstance,
  extraServer: () => HttpServer,
  host: string,
  extras: HttpServer[],
  addressesOf: (host: string) => Promise<Array<{ address: string }>> = (name) => lookup(name, { all: true }),
): Promise<void> {
  if (host !== "localhost") return;
  const { address: bound, port } = app.server.address() as AddressInfo;
  for (const { address } of await addressesOf(host)) {
    if (address === bound) continue;
    const server = extraServer();
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen({ host: address, port, backlog: LISTEN_BACKLOG }, resolve);
      });
      extras.push(server);
    } catch {
      // An address this machine does not have (no IPv6): the others serve.
    }
  }
}

/** Starts the control plane: store, credentials, every API and the registry on one port. */
export async function startServer(config: ServerConfig, deps: ServerDeps = {}): Promise<RunningServer> {
  const clock = deps.clock ?? (() => new Date());
  const { paths, sealer, store, keys, admin } = await openDataDir(config.dataDir, clock());
  const tls =
    config.tls === undefined
      ? undefined
      : await ensureTls({
          dir: join(paths.root, "tls"),
          hosts: [config.host, ...config.tls.hosts],
          ...(config.tls.certPath !== undefined && config.tls.keyPath !== undefined
            ? { provided: { certPath: config.tls.certPath, keyPath: config.tls.keyPath } }
            : {}),
        });
  const scheme = tls === undefined ? "http" : "https";
  const { app, agentRoutes, extraServer } = buildApp(config, tls);
  // The servers listenEverywhere adds close with the app's own.
  const extraServers: HttpServer[] = [];
  app.addHook("onClose", async () => {
    for (const server of extraServers) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
  let port = config.port;
  const registryHost = () => config.registryHost ?? `localhost:${port}`;
  const stats = new ContainerStats(() => clock().getTime());
  const registry = await startRegistry({
    store,
    dataDir: paths.root,
    deriveKey: (purpose) => sealer.derive(purpose),
    clock,
    accountId: config.accountId,
    registryHost,
    scheme: () => scheme,
    userOf: (id) => keys.userOf(id),
    log: app.log,
    ...(deps.maintenanceIntervalMs === undefined
      ? {}
      : { maintenanceIntervalMs: deps.maintenanceIntervalMs }),
    ...(deps.gcGraceMs === undefined ? {} : { gcGraceMs: deps.gcGraceMs }),
  });
  registry.register(app);
  const notifier = new InstanceNotifier();
  const scope = { region: config.region, accountId: config.accountId };
  // Instances and what their tasks hold, rebuilt from the store; heartbeats written out as it runs.
  const state = await SchedulerState.load(store);
  state.start(store);
  registerAgentChannel(app, agentRoutes, {
    store,
    state,
    notifier,
    ...scope,
    clock,
    lookupSecret: (id) => keys.secretOf(id),
    appendLogs: async (batch) => {
      // One append per stream, in the order the agent sent them.
      const streams = new Map<string, LogBatch["events"]>();
      for (const event of batch.events) {
        const key = JSON.stringify([event.group, event.stream, event.createGroup]);
        streams.set(key, [...(streams.get(key) ?? []), event]);
      }
      for (const [key, events] of streams) {
        const [group, stream, createGroup] = JSON.parse(key) as [string, string, boolean];
        await appendLogEvents(store, scope, group, stream, events, { createGroup, now: clock() });
      }
    },
    recordStats: (instanceArn, batch) => stats.record(instanceArn, batch),
  });
  // Tasks' registry passwords, shared by every way tasks start (RunTask, StartTask, services).
  const taskRegistry = reusedCredentials({
    host: registryHost,
    credentials: (accessKeyId: string, now: Date) => ({
      username: "AWS",
      password: registry.tokens.issue(accessKeyId, now).password,
    }),
  });
  // The service scheduler: started once the server listens, stopped before the store closes.
  const scheduler = new ServiceController({
    store,
    state,
    notifier,
    registry: taskRegistry,
    ...scope,
    clock,
    log: app.log,
  });
  // Housekeeping: ECS forgets stopped tasks after a while and deletes DELETE_IN_PROGRESS task
  // definitions nothing uses; CloudWatch Logs expires events past retention.
  const housekeeping = [
    new Periodic(
      "purging stopped tasks and deleted task definitions",
      deps.purgeIntervalMs ?? 5 * 60_000,
      async () => {
        await purgeAllStoppedTasks(store, clock().getTime());
        await purgeRunTaskTokens(store, clock().getTime());
        await purgeAllDeletedTaskDefinitions(store);
      },
      app.log,
    ),
    new Periodic(
      "expiring log events",
      10 * 60_000,
      () => expireAllGroups(store, clock().getTime()),
      app.log,
    ),
  ];
  registerFrontDoor(app, {
    services: [
      ecsService({
        store,
        state,
        notifier,
        registry: taskRegistry,
        onServiceChange: (arn) => scheduler.enqueue(arn),
      }),
      registry.ecr,
      stsService(keys),
      logsService(store),
    ],
    region: config.region,
    accountId: config.accountId,
    clock,
    lookupSecret: (id) => keys.secretOf(id),
  });
  try {
    // Thousands of agents connect at once when the server starts or a fleet comes up: Node's
    // default queue of 511 connections waiting to be accepted drops the rest (their SYNs are
    // retried after 1, 3, 7 s). The kernel caps it at net.core.somaxconn.
    await app.listen({ host: config.host, port: config.port, backlog: LISTEN_BACKLOG });
    await listenEverywhere(app, extraServer, config.host, extraServers);
  } catch (error) {
    await registry.close();
    await state.close(store);
    await store.close();
    throw error;
  }
  scheduler.start();
  for (const job of housekeeping) job.start();
  const address = app.server.address();
  port = typeof address === "object" && address !== null ? address.port : config.port;
  const host = config.host === "0.0.0.0" || config.host === "::" ? "127.0.0.1" : config.host;
  const endpoint = `${scheme}://${host.includes(":") ? `[${host}]` : host}:${port}`;
  const temporary = `${paths.endpoint}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify({ endpoint, region: config.region, pid: process.pid })}\n`);
  renameSync(temporary, paths.endpoint);

  let closing: Promise<void> | undefined;
  const running: RunningServer = {
    endpoint,
    port,
    admin,
    store,
    registry,
    stats,
    close() {
      closing ??= (async () => {
        await app.close();
        await scheduler.close();
        for (const job of housekeeping) await job.close();
        await registry.close();
        await state.close(store);
        await store.close();
        rmSync(paths.endpoint, { force: true });
      })();
      return closing;
    },
  };
  if (tls?.ca !== undefined) running.caCertificate = tls.ca;
  return running;
}
