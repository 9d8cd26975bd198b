import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Command, Option } from "commander";
import { Agent } from "../agent/agent.ts";
import { defaultAgentConfig } from "../agent/config.ts";
import { engineAuthFromEnv } from "../agent/engine-auth.ts";
import { resolveConfig } from "../server/config.ts";
import { dataPaths } from "../server/paths.ts";
import { openDataDir, startServer } from "../server/server.ts";
import { readCaCertificate } from "../server/tls.ts";

const packageJson = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
  version: string;
};

interface ServerFlags {
  host?: string;
  port?: string;
  dataDir?: string;
  logLevel?: string;
  registryHost?: string;
  tls?: boolean;
  tlsHost?: string[];
  tlsCert?: string;
  tlsKey?: string;
}

function serverOptions(command: Command): Command {
  return command
    .addOption(new Option("--host <host>", "address to listen on (env WHARF_HOST)"))
    .addOption(new Option("--port <port>", "port for every API and the registry (env WHARF_PORT)"))
    .addOption(new Option("--data-dir <dir>", "where state is kept (env WHARF_DATA_DIR)"))
    .addOption(
      new Option("--log-level <level>", "fatal, error, warn, info, debug or trace (env WHARF_LOG_LEVEL)"),
    )
    .addOption(
      new Option("--registry-host <host:port>", "registry host in repositoryUri (env WHARF_REGISTRY_HOST)"),
    )
    .addOption(new Option("--tls", "serve HTTPS with a CA and certificate Wharf generates (env WHARF_TLS=1)"))
    .addOption(
      new Option(
        "--tls-host <name>",
        "a host name or address the certificate must cover (repeatable)",
      ).argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value]),
    )
    .addOption(new Option("--tls-cert <file>", "serve HTTPS with this certificate (PEM) instead"))
    .addOption(new Option("--tls-key <file>", "the key of --tls-cert (PEM)"));
}

interface AgentFlags {
  server: string;
  cluster: string;
  dataDir: string;
  region?: string;
  availabilityZone?: string;
  attribute?: string[];
  bridge: string;
  subnet: string;
  address: string;
  cpu?: string;
  memory?: string;
  caFile?: string;
  capacity: string;
}

function agentLogger() {
  const write = (level: string) => (fields: Record<string, unknown>, message: string) => {
    process.stderr.write(
      `${JSON.stringify({ level, time: new Date().toISOString(), msg: message, ...fields })}\n`,
    );
  };
  return { info: write("info"), warn: write("warn"), error: write("error") };
}

async function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
}

/** Private registries' credentials, from the environment as the ECS agent reads them. */
function engineAuthOf(env: NodeJS.ProcessEnv) {
  const engineAuth = engineAuthFromEnv(env);
  return engineAuth === undefined ? {} : { engineAuth };
}

async function runAgent(flags: AgentFlags): Promise<void> {
  const accessKeyId = process.env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = process.env.AWS_SECRET_ACCESS_KEY;
  if (accessKeyId === undefined || secretAccessKey === undefined) {
    throw new Error('set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (eval "$(npx wharf env)")');
  }
  const region = flags.region ?? process.env.AWS_DEFAULT_REGION ?? "us-east-1";
  if (flags.capacity !== "EC2" && flags.capacity !== "FARGATE") {
    throw new Error(`--capacity must be EC2 or FARGATE, not ${flags.capacity}`);
  }
  const config = defaultAgentConfig({
    server: flags.server,
    credentials: { accessKeyId, secretAccessKey },
    cluster: flags.cluster,
    dataDir: flags.dataDir,
    region,
    availabilityZone: flags.availabilityZone ?? `${region}a`,
    attributes: (flags.attribute ?? []).map((a) => {
      const eq = a.indexOf("=");
      return eq < 0 ? { name: a } : { name: a.slice(0, eq), value: a.slice(eq + 1) };
    }),
    bridge: flags.bridge,
    subnet: flags.subnet,
    address: flags.address,
    ...(flags.cpu === undefined ? {} : { cpu: Number(flags.cpu) }),
    ...(flags.memory === undefined ? {} : { memory: Number(flags.memory) }),
    ...(flags.caFile === undefined ? {} : { ca: readFileSync(flags.caFile, "utf8") }),
    capacity: flags.capacity,
    ...engineAuthOf(process.env),
  });
  const agent = new Agent(config, agentLogger());
  await agent.start();
  process.stdout.write(
    config.capacity === "FARGATE"
      ? `wharf agent: ${agent.containerInstanceArn}, Fargate capacity for every cluster\n`
      : `wharf agent: ${agent.containerInstanceArn} in cluster ${config.cluster}\n`,
  );
  const why = await Promise.race([untilSignal(), agent.deregistered.then(() => "deregistered" as const)]);
  if (why === "deregistered") {
    process.stderr.write(
      "wharf agent: the container instance was deregistered; its tasks are stopped, and so is the agent\n",
    );
    // The ECS agent's terminal exit code: a supervisor should not restart it blindly.
    process.exitCode = 5;
  } else {
    process.stdout.write(`\n${why}: stopping the agent (tasks keep running)\n`);
  }
  await agent.stop();
}

/** Whether this machine can run the local agent: root and Debian's runc. */
function canRunAgent(): string | undefined {
  if (process.getuid?.() !== 0) return "not running as root";
  if (!existsSync("/usr/sbin/runc") && !existsSync("/usr/bin/runc")) return "runc is not installed";
  return undefined;
}

/**
 * `wharf up`'s local agents, in this process: an EC2 container instance in
 * the default cluster, and Wharf's Fargate capacity (its own data directory,
 * bridge and subnet). Both offer the whole machine. An agent that cannot
 * start is reported and left out.
 */
async function localAgents(
  server: Awaited<ReturnType<typeof startServer>>,
  config: ReturnType<typeof resolveConfig>,
): Promise<Agent[]> {
  const env = process.env;
  const kinds = [
    { capacity: "EC2", dir: "agent", bridge: env.WHARF_AGENT_BRIDGE, subnet: env.WHARF_AGENT_SUBNET },
    {
      capacity: "FARGATE",
      dir: "fargate",
      bridge: env.WHARF_FARGATE_BRIDGE ?? "wharffg0",
      subnet: env.WHARF_FARGATE_SUBNET ?? "172.31.251.0/24",
    },
  ] as const;
  const agents: Agent[] = [];
  for (const kind of kinds) {
    const what = kind.capacity === "FARGATE" ? "the local Fargate capacity" : "the local agent";
    let agent: Agent;
    try {
      agent = new Agent(
        defaultAgentConfig({
          server: server.endpoint,
          credentials: {
            accessKeyId: server.admin.accessKeyId,
            secretAccessKey: server.admin.secretAccessKey,
          },
          dataDir: join(dataPaths(config.dataDir).root, kind.dir),
          region: config.region,
          availabilityZone: `${config.region}a`,
          capacity: kind.capacity,
          ...(kind.bridge === undefined ? {} : { bridge: kind.bridge }),
          ...(kind.subnet === undefined ? {} : { subnet: kind.subnet }),
          // With --tls the local agent trusts Wharf's own CA.
          ...(server.caCertificate === undefined ? {} : { ca: server.caCertificate.toString("utf8") }),
          // As in ECS, agent-level registry credentials serve EC2 capacity, not Fargate.
          ...(kind.capacity === "EC2" ? engineAuthOf(env) : {}),
        }),
        agentLogger(),
      );
      await agent.start();
      agents.push(agent);
    } catch (error) {
      process.stderr.write(`${what} could not start: ${String(error)}\n`);
      continue;
    }
    void agent.deregistered.then(() => {
      process.stderr.write(`${what} was deregistered; it stops\n`);
      return agent.stop();
    });
  }
  return agents;
}

/** Runs the server until SIGINT or SIGTERM, then closes it cleanly. */
async function serve(flags: ServerFlags, withAgent = false): Promise<void> {
  const config = resolveConfig(flags);
  const server = await startServer(config);
  let agents: Agent[] = [];
  if (withAgent) {
    const why = canRunAgent();
    if (why === undefined) {
      agents = await localAgents(server, config);
    } else {
      process.stderr.write(`no local agent: ${why}; tasks need an agent (wharf agent) to run\n`);
    }
  }
  process.stdout.write(
    [
      `Wharf is serving the AWS APIs and the registry at ${server.endpoint}`,
      `  data directory: ${dataPaths(config.dataDir).root}`,
      `  credentials:    eval "$(npx wharf env${flags.dataDir === undefined ? "" : ` --data-dir ${flags.dataDir}`})"`,
      `  then:           aws ecs create-cluster --cluster-name demo --endpoint-url $WHARF_ENDPOINT`,
      "",
    ].join("\n"),
  );
  const signal = await untilSignal();
  process.stdout.write(`\n${signal}: stopping\n`);
  try {
    for (const agent of agents) await agent.stop();
    await server.close();
  } catch (error) {
    process.stderr.write(`error while stopping: ${String(error)}\n`);
    process.exitCode = 1;
  }
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", "'\\''")}'`;
}

/** Prints `export` lines that point the AWS CLI and SDKs at this Wharf. */
async function printEnv(flags: { dataDir?: string }): Promise<void> {
  const config = resolveConfig(flags);
  const paths = dataPaths(config.dataDir);
  let endpoint = `http://${config.host === "0.0.0.0" ? "127.0.0.1" : config.host}:${config.port}`;
  let region = config.region;
  try {
    const running = JSON.parse(readFileSync(paths.endpoint, "utf8")) as { endpoint: string; region: string };
    endpoint = running.endpoint;
    region = running.region;
  } catch {
    // No server running from this data directory: print where it will listen by default.
  }
  const { store, admin } = await openDataDir(config.dataDir, new Date());
  await store.close();
  const lines = [
    ["AWS_ACCESS_KEY_ID", admin.accessKeyId],
    ["AWS_SECRET_ACCESS_KEY", admin.secretAccessKey],
    ["AWS_DEFAULT_REGION", region],
    ["WHARF_ENDPOINT", endpoint],
  ];
  process.stdout.write(lines.map(([name, value]) => `export ${name}=${shellQuote(value ?? "")}\n`).join(""));
}

export function cli(): Command {
  const program = new Command("wharf")
    .description("The Amazon ECS experience on machines you own.")
    .version(packageJson.version, "-V, --version-flag", "print the version")
    .showHelpAfterError();

  serverOptions(
    program
      .command("up")
      .description("start Wharf on this machine with embedded defaults")
      .option("--no-agent", "serve the APIs only, without the local agent"),
  ).action((flags: ServerFlags & { agent: boolean }) => serve(flags, flags.agent));
  serverOptions(
    program.command("server").description("run the control plane (all AWS APIs and the registry)"),
  ).action((flags: ServerFlags) => serve(flags));
  program
    .command("agent")
    .description(
      "run a node agent that runs tasks with runc (as root); credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
    )
    .requiredOption("--server <url>", "the Wharf server's endpoint")
    .option("--cluster <name>", "cluster to join", "default")
    .option("--data-dir <dir>", "where the agent keeps state, images and bundles", "/var/lib/wharf/agent")
    .option("--region <region>", "region (env AWS_DEFAULT_REGION)")
    .option("--availability-zone <zone>", "the ecs.availability-zone attribute")
    .addOption(
      new Option("--attribute <name=value>", "a custom attribute (repeatable)").argParser(
        (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
      ),
    )
    .option("--bridge <name>", "the task bridge", "wharf0")
    .option("--subnet <cidr>", "this node's task subnet (a /24)", "172.31.250.0/24")
    .option("--address <ip>", "the address clients reach published ports at", "127.0.0.1")
    .option("--cpu <units>", "CPU units to offer (default: 1024 per core)")
    .option("--memory <mib>", "memory to offer in MiB (default: the machine's)")
    .option("--ca-file <pem>", "a CA certificate to trust for an HTTPS server (wharf ca prints Wharf's)")
    .option(
      "--capacity <type>",
      "EC2: a container instance of --cluster; FARGATE: Wharf-managed capacity for every cluster's FARGATE tasks",
      "EC2",
    )
    .action((flags: AgentFlags) => runAgent(flags));
  program
    .command("env")
    .description('print export lines for the AWS CLI and SDKs: eval "$(npx wharf env)"')
    .addOption(new Option("--data-dir <dir>", "the server's data directory (env WHARF_DATA_DIR)"))
    .action((flags: { dataDir?: string }) => printEnv(flags));
  program
    .command("ca")
    .description("print the CA certificate to trust when Wharf serves HTTPS with its own CA")
    .addOption(new Option("--data-dir <dir>", "the server's data directory (env WHARF_DATA_DIR)"))
    .action((flags: { dataDir?: string }) => {
      const config = resolveConfig(flags);
      process.stdout.write(readCaCertificate(join(dataPaths(config.dataDir).root, "tls")));
    });
  program
    .command("version")
    .description("print the version")
    .action(() => {
      process.stdout.write(`wharf ${packageJson.version}\n`);
    });
  return program;
}

try {
  await cli().parseAsync(process.argv);
} catch (error) {
  process.stderr.write(`wharf: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
}
