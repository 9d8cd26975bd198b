import { renameSync, rmSync, writeFileSync } from "node:fs";
import Fastify, { type FastifyInstance, LogController } from "fastify";
import { type AccessKey, AccessKeys } from "../auth/access-keys.ts";
import { Sealer } from "../auth/sealer.ts";
import { ecsService } from "../ecs/service.ts";
import { SqliteStore } from "../store/sqlite.ts";
import type { Store } from "../store/store.ts";
import { stsService } from "../sts/service.ts";
import type { ServerConfig } from "./config.ts";
import { registerFrontDoor, sendAwsError } from "./front-door.ts";
import { dataPaths } from "./paths.ts";

export interface RunningServer {
  /** e.g. http://127.0.0.1:4700 */
  endpoint: string;
  port: number;
  admin: AccessKey;
  store: Store;
  close(): Promise<void>;
}

export interface ServerDeps {
  clock?: () => Date;
}

/** Opens the data directory: the store, the master key and the admin access key. */
export async function openDataDir(dataDir: string, now: Date) {
  const paths = dataPaths(dataDir);
  const sealer = Sealer.fromKeyFile(paths.masterKey);
  const store = await SqliteStore.open({ path: paths.database });
  const keys = new AccessKeys(store, sealer);
  await keys.load();
  const admin = await keys.ensureAdmin(now);
  return { paths, store, keys, admin };
}

function buildApp(config: ServerConfig): FastifyInstance {
  const app = Fastify({
    logger: { level: config.logLevel },
    bodyLimit: config.maxRequestBytes,
    forceCloseConnections: true,
    return503OnClosing: true,
    logController: new LogController({
      disableRequestLogging: config.logLevel !== "debug" && config.logLevel !== "trace",
    }),
  });
  // Every body arrives as raw bytes: SigV4 hashes exactly what was sent.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "buffer" }, (_request, body, done) => done(null, body));
  app.setErrorHandler((error, request, reply) => sendAwsError(request, reply, error));
  app.setNotFoundHandler((request, reply) =>
    sendAwsError(request, reply, Object.assign(new Error("Not Found"), { statusCode: 404 })),
  );
  app.get("/healthz", async () => ({ status: "ok" }));
  return app;
}

/** Starts the control plane: store, credentials, the AWS front door on one port. */
export async function startServer(config: ServerConfig, deps: ServerDeps = {}): Promise<RunningServer> {
  const clock = deps.clock ?? (() => new Date());
  const { paths, store, keys, admin } = await openDataDir(config.dataDir, clock());
  const app = buildApp(config);
  registerFrontDoor(app, {
    services: [ecsService(store), stsService(store)],
    region: config.region,
    accountId: config.accountId,
    clock,
    lookupSecret: (id) => keys.secretOf(id),
  });
  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (error) {
    await store.close();
    throw error;
  }
  const address = app.server.address();
  const port = typeof address === "object" && address !== null ? address.port : config.port;
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  const endpoint = `http://${host === "0.0.0.0" ? "127.0.0.1" : host}:${port}`;
  const temporary = `${paths.endpoint}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify({ endpoint, region: config.region, pid: process.pid })}\n`);
  renameSync(temporary, paths.endpoint);

  let closing: Promise<void> | undefined;
  return {
    endpoint,
    port,
    admin,
    store,
    close() {
      closing ??= (async () => {
        await app.close();
        await store.close();
        rmSync(paths.endpoint, { force: true });
      })();
      return closing;
    },
  };
}
