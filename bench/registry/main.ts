// npm run bench:registry [-- --quick | --total-mib N --manifest-requests N …]
//
// Pushes and pulls the same layers, and sends the same manifest requests, with
// the same client to Wharf and to Debian's docker-registry (CNCF distribution
// 2.8), one after the other in this run, and prints Wharf ÷ distribution.
import { cpus, release as kernelRelease, totalmem } from "node:os";
import { parseArgs } from "node:util";
import { RegistryClient } from "./client.ts";
import { buildImages, digestLayers, type Image, MIB, planLayers } from "./layers.ts";
import { type Peer, type PeerName, startDistribution, startWharf } from "./peers.ts";
import { manifests, pull, push, settle, waitForQuiet } from "./phases.ts";
import { type PeerRun, summarize, table } from "./report.ts";

const USAGE = `usage: npm run bench:registry -- [options]
  --total-mib N          layer bytes pushed and pulled (default 1024)
  --min-layer-mib N      smallest layer (default 1)
  --max-layer-mib N      largest layer (default 100)
  --manifest-requests N  manifest GET/HEAD requests (default 10000)
  --in-flight N          manifest requests in flight (default 32)
  --push-streams N       blob uploads in flight (default 5, as docker)
  --pull-streams N       blob downloads in flight (default 3, as docker)
  --images N             images the layers are dealt into (default 8)
  --rounds N             runs of each peer, alternating order; medians reported (default 1)
  --seed S               seed for layer sizes and content (default "wharf-bench")
  --only PEER            run only "wharf" or "distribution" (no ratios)
  --quiet-cores X        before each timed phase, wait until other processes use < X cores (default 0.25)
  --quiet-timeout S      … but no longer than S seconds (default 300), then measure anyway
  --max-background X     a peer's run during which other processes averaged more than X cores in
                         some phase is measured again from a fresh start (default 0.5) …
  --retries N            … at most N more times, then kept and marked noisy (default 3)
  --node-flags="F …"     extra node flags for the Wharf process (experiments, e.g. GC tuning)
  --wharf-log FILE       append the Wharf process's stdout to FILE (with --node-flags=--trace-gc, say)
  --cpu-prof DIR         run Wharf under node --cpu-prof, profiles in DIR
  --node-crypto          Wharf decrypts and seals with node:crypto, not its AES-GCM addon (a "before")
  --quick                64 MiB in 1-16 MiB layers, 1,000 manifest requests
  --json                 print only the JSON result on stdout (the table goes to stderr)`;

interface Settings {
  totalMib: number;
  minLayerMib: number;
  maxLayerMib: number;
  manifestRequests: number;
  inFlight: number;
  pushStreams: number;
  pullStreams: number;
  images: number;
  rounds: number;
  seed: string;
  peers: PeerName[];
  cpuProfileDir: string | undefined;
  nodeFlags: string[];
  wharfLog: string | undefined;
  nodeCrypto: boolean;
  quietCores: number;
  quietTimeoutSeconds: number;
  maxBackgroundCores: number;
  retries: number;
  json: boolean;
}

function settings(argv: string[]): Settings {
  const { values } = parseArgs({
    args: argv,
    options: {
      "total-mib": { type: "string" },
      "min-layer-mib": { type: "string" },
      "max-layer-mib": { type: "string" },
      "manifest-requests": { type: "string" },
      "in-flight": { type: "string" },
      "push-streams": { type: "string" },
      "pull-streams": { type: "string" },
      images: { type: "string" },
      rounds: { type: "string" },
      seed: { type: "string" },
      only: { type: "string" },
      "cpu-prof": { type: "string" },
      "node-flags": { type: "string" },
      "wharf-log": { type: "string" },
      "node-crypto": { type: "boolean" },
      "quiet-cores": { type: "string" },
      "quiet-timeout": { type: "string" },
      "max-background": { type: "string" },
      retries: { type: "string" },
      quick: { type: "boolean" },
      json: { type: "boolean" },
      help: { type: "boolean" },
    },
  });
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const quick = values.quick === true;
  const number = (name: string, value: string | undefined, fallback: number): number => {
    if (value === undefined) return fallback;
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed <= 0) throw new Error(`--${name} must be a positive number`);
    return parsed;
  };
  const only = values.only;
  if (only !== undefined && only !== "wharf" && only !== "distribution")
    throw new Error('--only takes "wharf" or "distribution"');
  return {
    totalMib: number("total-mib", values["total-mib"], quick ? 64 : 1024),
    minLayerMib: number("min-layer-mib", values["min-layer-mib"], 1),
    maxLayerMib: number("max-layer-mib", values["max-layer-mib"], quick ? 16 : 100),
    manifestRequests: Math.round(
      number("manifest-requests", values["manifest-requests"], quick ? 1000 : 10_000),
    ),
    inFlight: Math.round(number("in-flight", values["in-flight"], 32)),
    pushStreams: Math.round(number("push-streams", values["push-streams"], 5)),
    pullStreams: Math.round(number("pull-streams", values["pull-streams"], 3)),
    images: Math.round(number("images", values.images, 8)),
    rounds: Math.round(number("rounds", values.rounds, 1)),
    seed: values.seed ?? "wharf-bench",
    peers: only === undefined ? ["distribution", "wharf"] : [only],
    cpuProfileDir: values["cpu-prof"],
    wharfLog: values["wharf-log"],
    nodeCrypto: values["node-crypto"] === true,
    nodeFlags: (values["node-flags"] ?? "").split(" ").filter((flag) => flag !== ""),
    quietCores: number("quiet-cores", values["quiet-cores"], 0.25),
    quietTimeoutSeconds: number("quiet-timeout", values["quiet-timeout"], 300),
    maxBackgroundCores: number("max-background", values["max-background"], 0.5),
    retries: values.retries === "0" ? 0 : Math.round(number("retries", values.retries, 3)),
    json: values.json === true,
  };
}

function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

const REPOSITORY = "bench/layers";
const WARM_REPOSITORY = "bench/warm";

/** Peers still running, so an interrupted run still stops them and deletes their data. */
const running = new Set<Peer>();

async function stopAll(): Promise<void> {
  await Promise.allSettled([...running].map((peer) => peer.stop()));
  running.clear();
}

function start(name: PeerName, options: Settings): Promise<Peer> {
  return name === "wharf"
    ? startWharf({
        cpuProfileDir: options.cpuProfileDir,
        nodeFlags: options.nodeFlags,
        nodeCrypto: options.nodeCrypto,
        logFile: options.wharfLog,
      })
    : startDistribution();
}

async function measurePeer(
  name: PeerName,
  round: number,
  options: Settings,
  images: Image[],
  warm: Image[],
): Promise<{ run: PeerRun; version: string }> {
  const peer = await start(name, options);
  running.add(peer);
  const client = new RegistryClient(
    peer,
    Math.max(options.inFlight, options.pushStreams, options.pullStreams),
  );
  try {
    await peer.createRepository(WARM_REPOSITORY);
    await peer.createRepository(REPOSITORY);
    log(`${name} (round ${round + 1}) at ${peer.url}: warming up`);
    await push(client, peer.pid, WARM_REPOSITORY, warm, options.pushStreams);
    await pull(client, peer.pid, WARM_REPOSITORY, warm, options.pullStreams);
    await manifests(client, peer.pid, WARM_REPOSITORY, warm, 1000, options.inFlight);
    const noisy: string[] = [];
    const ready = async (phase: string) => {
      settle();
      const quiet = await waitForQuiet(options.quietCores, options.quietTimeoutSeconds * 1000, (cores) =>
        log(`other processes are using ${cores.toFixed(2)} cores: waiting to measure ${phase}`),
      );
      if (!quiet) {
        log(`the machine stayed busy: measuring ${phase} anyway`);
        noisy.push(phase);
      }
      log(`${name}: ${phase}`);
    };
    await ready("push");
    const pushed = await push(client, peer.pid, REPOSITORY, images, options.pushStreams);
    await ready("pull");
    const pulled = await pull(client, peer.pid, REPOSITORY, images, options.pullStreams, true);
    // The same pull with the client not hashing: on two cores the client's sha256 can be what limits
    // the row above, hiding the servers' own difference.
    await ready("pull without hashing");
    const streamed = await pull(client, peer.pid, REPOSITORY, images, options.pullStreams, false);
    await ready("manifests");
    const requested = await manifests(
      client,
      peer.pid,
      REPOSITORY,
      images,
      options.manifestRequests,
      options.inFlight,
    );
    for (const [phase, result] of [
      ["push", pushed],
      ["pull", pulled],
      ["pull without hashing", streamed],
      ["manifests", requested],
    ] as const) {
      const cores = result.backgroundCpuSeconds / result.seconds;
      if (cores > options.maxBackgroundCores && !noisy.includes(phase)) noisy.push(phase);
    }
    return {
      run: {
        peer: name,
        round,
        push: pushed,
        pull: pulled,
        pullUnhashed: streamed,
        manifests: requested,
        noisy,
        attempts: 1,
      },
      version: peer.version,
    };
  } finally {
    client.close();
    await peer.stop();
    running.delete(peer);
  }
}

async function main(): Promise<void> {
  const options = settings(process.argv.slice(2));
  const started = new Date();
  log(
    `planning ${options.totalMib} MiB in ${options.minLayerMib}-${options.maxLayerMib} MiB layers (seed ${options.seed})`,
  );
  const layers = digestLayers(
    planLayers(
      options.seed,
      Math.round(options.totalMib * MIB),
      Math.round(options.minLayerMib * MIB),
      Math.round(options.maxLayerMib * MIB),
    ),
  );
  const images = buildImages(layers, options.images, options.seed);
  const warm = buildImages(
    digestLayers(planLayers(`${options.seed}/warm`, 32 * MIB, MIB, 8 * MIB)),
    2,
    `${options.seed}/warm`,
  );
  log(`${layers.length} layers in ${images.length} images; ${options.manifestRequests} manifest requests`);

  const runs: PeerRun[] = [];
  const versions: Partial<Record<PeerName, string>> = {};
  for (let round = 0; round < options.rounds; round++) {
    const order = round % 2 === 0 ? options.peers : [...options.peers].reverse();
    for (const name of order) {
      let attempt = 0;
      let { run, version } = await measurePeer(name, round, options, images, warm);
      while (run.noisy.length > 0 && attempt < options.retries) {
        attempt++;
        log(`${name}: other processes were busy during ${run.noisy.join(", ")}: measuring again`);
        ({ run, version } = await measurePeer(name, round, options, images, warm));
      }
      run.attempts = attempt + 1;
      versions[name] = version;
      runs.push(run);
    }
  }

  const { headline, detail } = summarize(runs, options);
  const text = [
    `Registry benchmark, ${started.toISOString()}: ${layers.length} layers, ${(layers.reduce((s, l) => s + l.size, 0) / MIB).toFixed(0)} MiB, ${options.manifestRequests} manifest requests, ${options.rounds} round(s), medians; MB = 10^6 bytes`,
    "",
    table(headline, "wharf/distribution"),
    "",
    table(detail, "distribution/wharf"),
    "",
  ].join("\n");
  const result = {
    date: started.toISOString(),
    command: `npm run bench:registry -- ${process.argv.slice(2).join(" ")}`.trim(),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      memoryGiB: totalmem() / 2 ** 30,
      kernel: kernelRelease(),
      node: process.version,
    },
    versions,
    settings: { ...options, layers: layers.length, layerBytes: layers.reduce((s, l) => s + l.size, 0) },
    headline,
    detail,
    runs,
  };
  if (options.json) {
    process.stderr.write(text);
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } else {
    process.stdout.write(`${text}\n${JSON.stringify(result, null, 2)}\n`);
  }
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping the registries`);
    void stopAll().finally(() => process.exit(130));
  });
}

try {
  await main();
} catch (error) {
  process.stderr.write(
    `bench:registry: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
} finally {
  await stopAll();
}
