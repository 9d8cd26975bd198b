import { join } from "node:path";
import type { FastifyBaseLogger, FastifyInstance } from "fastify";
import type { JsonService } from "../aws/service.ts";
import type { Store } from "../store/store.ts";
import { RegistryTokens } from "./auth.ts";
import { FileBlobStore } from "./blob-store.ts";
import { applyLifecyclePolicy } from "./ecr/lifecycle-api.ts";
import { ecrService } from "./ecr/service.ts";
import { nativeGcmStatus } from "./native-gcm.ts";
import { Registry } from "./registry.ts";
import { registerV2 } from "./v2.ts";

export interface RegistryServiceOptions {
  store: Store;
  dataDir: string;
  /** Derives purpose-bound keys from the server's master key. */
  deriveKey(purpose: string): Buffer;
  clock: () => Date;
  accountId: string;
  registryHost(): string;
  scheme(): "http" | "https";
  userOf(accessKeyId: string): string | undefined;
  log: FastifyBaseLogger;
  /** How often lifecycle policies and garbage collection run on their own. */
  maintenanceIntervalMs?: number;
  gcGraceMs?: number;
}

export interface RegistryService {
  registry: Registry;
  /** Issues registry passwords (the ECR token), e.g. for tasks pulling their images. */
  tokens: RegistryTokens;
  ecr: JsonService;
  register(app: FastifyInstance): void;
  /** Runs lifecycle policies (all repositories, or one) and then GC; resolves when done. */
  maintain(repo?: string): Promise<void>;
  close(): Promise<void>;
}

/** The registry: blob storage, the /v2/ routes, the ECR API and their maintenance loop. */
export async function startRegistry(options: RegistryServiceOptions): Promise<RegistryService> {
  const blobs = new FileBlobStore(join(options.dataDir, "registry"), options.deriveKey("blob encryption"));
  options.log.info(`registry: blobs sealed and opened with AES-256-GCM ${nativeGcmStatus}`);
  const registry = new Registry({
    store: options.store,
    blobs,
    clock: options.clock,
    accountId: options.accountId,
    ...(options.gcGraceMs === undefined ? {} : { gcGraceMs: options.gcGraceMs }),
  });
  await registry.recover();
  const tokens = new RegistryTokens(options.deriveKey("registry tokens"));

  // One maintenance pass at a time; pushes ask for one on their repository.
  let running: Promise<void> = Promise.resolve();
  const pending = new Set<string | undefined>();
  const maintain = (repo?: string): Promise<void> => {
    pending.add(repo);
    running = running.then(async () => {
      if (!pending.has(repo)) return;
      pending.delete(repo);
      try {
        const repos =
          repo === undefined
            ? (
                await options.store.read((tx) =>
                  tx.all<{ name: string }>(
                    "SELECT name FROM registry_repositories WHERE lifecycle_policy IS NOT NULL",
                  ),
                )
              ).map((row) => row.name)
            : [repo];
        let expired = 0;
        for (const name of repos)
          expired += (await applyLifecyclePolicy(registry, name, options.clock())).length;
        if (expired > 0 || repo === undefined) {
          const collected = await registry.collectGarbage();
          if (expired > 0 || collected.blobs > 0)
            options.log.info({ expired, collected }, "registry maintenance");
        }
      } catch (error) {
        options.log.error({ err: error }, "registry maintenance failed");
      }
    });
    return running;
  };
  const onPush = (repo: string) => {
    void maintain(repo);
  };
  const timer = setInterval(() => void maintain(), options.maintenanceIntervalMs ?? 10 * 60_000);
  timer.unref();

  return {
    registry,
    tokens,
    ecr: ecrService({
      registry,
      tokens,
      registryHost: options.registryHost,
      scheme: options.scheme,
      userOf: options.userOf,
      onPush,
    }),
    register(app) {
      registerV2(app, {
        registry,
        tokens,
        accountId: options.accountId,
        clock: options.clock,
        userOf: options.userOf,
        onPush,
      });
    },
    maintain,
    async close() {
      clearInterval(timer);
      await running;
      await registry.close();
    },
  };
}
