import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Command, Option } from "commander";
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
    );
}

/** Runs the server until SIGINT or SIGTERM, then closes it cleanly. */
async function serve(flags: ServerFlags): Promise<void> {
  const config = resolveConfig(flags);
  const server = await startServer(config);
  process.stdout.write(
    [
      `Wharf is serving the AWS APIs and the registry at ${server.endpoint}`,
      `  data directory: ${dataPaths(config.dataDir).root}`,
      `  credentials:    eval "$(npx wharf env${flags.dataDir === undefined ? "" : ` --data-dir ${flags.dataDir}`})"`,
      `  then:           aws ecs create-cluster --cluster-name demo --endpoint-url $WHARF_ENDPOINT`,
      "",
    ].join("\n"),
  );
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.stdout.write(`\n${signal}: stopping\n`);
      server.close().then(resolve, (error: unknown) => {
        process.stderr.write(`error while stopping: ${String(error)}\n`);
        process.exitCode = 1;
        resolve();
      });
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
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
    program.command("up").description("start Wharf on this machine with embedded defaults"),
  ).action((flags: ServerFlags) => serve(flags));
  serverOptions(
    program.command("server").description("run the control plane (all AWS APIs and the registry)"),
  ).action((flags: ServerFlags) => serve(flags));
  program
    .command("agent")
    .description("run a node agent that runs tasks with runc")
    .requiredOption("--server <url>", "the Wharf server's endpoint")
    .option("--cluster <name>", "cluster to join", "default")
    .action(() => {
      process.stderr.write("wharf agent: the node agent is not in this version of Wharf yet.\n");
      process.exitCode = 2;
    });
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
