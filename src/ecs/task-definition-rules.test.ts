import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AwsError } from "../aws/errors.ts";
import {
  compatibilitiesOf,
  draftTaskDefinition,
  fargateSizeValid,
  parseTaskCpu,
  parseTaskMemory,
  requiredAttributes,
} from "./task-definition-rules.ts";
import type { ContainerDefinitionInput, RegisterTaskDefinitionInputT } from "./task-definition-shapes.ts";

const busybox: ContainerDefinitionInput = {
  name: "app",
  image: "busybox",
  memory: 64,
  command: ["sh", "-c", "echo hello; sleep 300"],
};

function refused(input: RegisterTaskDefinitionInputT): AwsError {
  try {
    draftTaskDefinition(input);
  } catch (error) {
    assert.ok(error instanceof AwsError, String(error));
    return error;
  }
  assert.fail("expected the definition to be refused");
}

function refusal(input: RegisterTaskDefinitionInputT): string {
  const error = refused(input);
  assert.equal(error.code, "ClientException");
  return error.message;
}

const fargate = (extra: Partial<RegisterTaskDefinitionInputT> = {}): RegisterTaskDefinitionInputT => ({
  family: "web",
  networkMode: "awsvpc",
  requiresCompatibilities: ["FARGATE"],
  cpu: "256",
  memory: "512",
  containerDefinitions: [{ name: "web", image: "busybox" }],
  ...extra,
});

describe("task size", () => {
  it("reads CPU units and vCPUs as ECS does", () => {
    assert.equal(parseTaskCpu("256"), 256);
    assert.equal(parseTaskCpu("1 vCPU"), 1024);
    assert.equal(parseTaskCpu("0.25 vcpu"), 256);
    assert.equal(parseTaskCpu(".5vCPU"), 512);
    assert.equal(parseTaskCpu("2 vCPUs"), 2048);
    assert.equal(parseTaskCpu("abc"), undefined);
    assert.equal(parseTaskCpu("0.1 vCPU"), undefined, "not a whole number of CPU units");
  });

  it("reads MiB and GB as ECS does", () => {
    assert.equal(parseTaskMemory("512"), 512);
    assert.equal(parseTaskMemory("1 GB"), 1024);
    assert.equal(parseTaskMemory("1GB"), 1024);
    assert.equal(parseTaskMemory("0.5 GB"), 512);
    assert.equal(parseTaskMemory("2 GiB"), 2048);
    assert.equal(parseTaskMemory("300 MiB"), 300);
    assert.equal(parseTaskMemory("lots"), undefined);
  });

  it("knows Fargate's CPU and memory pairs", () => {
    for (const memory of [512, 1024, 2048]) assert.ok(fargateSizeValid(256, memory));
    assert.ok(!fargateSizeValid(256, 1536));
    assert.ok(!fargateSizeValid(256, 4096));
    for (const memory of [1024, 2048, 3072, 4096]) assert.ok(fargateSizeValid(512, memory));
    assert.ok(!fargateSizeValid(512, 512));
    assert.ok(fargateSizeValid(1024, 8192) && !fargateSizeValid(1024, 9216));
    assert.ok(fargateSizeValid(2048, 5120) && !fargateSizeValid(2048, 5000));
    assert.ok(fargateSizeValid(4096, 30720) && !fargateSizeValid(4096, 31744));
    assert.ok(fargateSizeValid(8192, 20480) && !fargateSizeValid(8192, 17408));
    assert.ok(fargateSizeValid(16384, 40960) && !fargateSizeValid(16384, 36864));
    assert.ok(!fargateSizeValid(128, 512));
  });
});

describe("draftTaskDefinition", () => {
  it("fills in ECS's defaults for a plain EC2 definition", () => {
    const draft = draftTaskDefinition({ family: "hello", containerDefinitions: [busybox] });
    assert.deepEqual(draft.containerDefinitions, [
      {
        name: "app",
        image: "busybox",
        cpu: 0,
        memory: 64,
        portMappings: [],
        essential: true,
        command: ["sh", "-c", "echo hello; sleep 300"],
        environment: [],
        mountPoints: [],
        volumesFrom: [],
        systemControls: [],
      },
    ]);
    assert.equal(draft.networkMode, undefined, "ECS leaves an unspecified network mode out");
    assert.deepEqual(draft.compatibilities, ["EXTERNAL", "EC2"]);
    assert.equal(draft.requiresAttributes, undefined);
    assert.deepEqual(draft.volumes, []);
    assert.deepEqual(draft.placementConstraints, []);
  });

  it("maps ports per network mode and keeps container order of members", () => {
    const bridge = draftTaskDefinition({
      family: "ports",
      containerDefinitions: [
        { ...busybox, portMappings: [{ containerPort: 80 }, { containerPort: 53, protocol: "udp" }] },
      ],
    });
    assert.deepEqual(bridge.containerDefinitions[0]?.portMappings, [
      { containerPort: 80, hostPort: 0, protocol: "tcp" },
      { containerPort: 53, hostPort: 0, protocol: "udp" },
    ]);
    const vpc = draftTaskDefinition({
      family: "ports",
      networkMode: "awsvpc",
      containerDefinitions: [
        { ...busybox, portMappings: [{ name: "web", containerPort: 8080, appProtocol: "http" }] },
      ],
    });
    assert.deepEqual(vpc.containerDefinitions[0]?.portMappings, [
      { name: "web", containerPort: 8080, hostPort: 8080, protocol: "tcp", appProtocol: "http" },
    ]);
    assert.equal(
      refusal({
        family: "ports",
        networkMode: "host",
        containerDefinitions: [{ ...busybox, portMappings: [{ containerPort: 80, hostPort: 8080 }] }],
      }),
      "When networkMode=host, the host ports and container ports in port mappings must match.",
    );
  });

  it("normalises task cpu and memory and accepts a valid Fargate size", () => {
    const draft = draftTaskDefinition(fargate({ cpu: "0.5 vCPU", memory: "2 GB" }));
    assert.equal(draft.cpu, "512");
    assert.equal(draft.memory, "2048");
    assert.deepEqual(draft.compatibilities, ["EC2", "FARGATE"]);
    assert.deepEqual(draft.requiresAttributes, [
      { name: "com.amazonaws.ecs.capability.docker-remote-api.1.18" },
      { name: "ecs.capability.task-eni" },
    ]);
  });

  it("refuses what Fargate cannot run, with ECS's messages", () => {
    assert.equal(
      refusal(fargate({ networkMode: "bridge" })),
      "Fargate only supports network mode \u2018awsvpc\u2019.",
    );
    assert.equal(
      refusal(fargate({ networkMode: undefined })),
      "Fargate only supports network mode \u2018awsvpc\u2019.",
    );
    assert.equal(
      refusal(fargate({ cpu: undefined })),
      "Fargate requires that 'cpu' be defined at the task level.",
    );
    assert.equal(
      refusal(fargate({ memory: undefined })),
      "Fargate requires that 'memory' be defined at the task level.",
    );
    assert.equal(
      refusal(fargate({ cpu: "512", memory: "512" })),
      "No Fargate configuration exists for given values: 512 CPU, 512 memory. See the Amazon ECS documentation for the valid values.",
    );
    assert.equal(
      refusal(
        fargate({
          containerDefinitions: [
            {
              name: "web",
              image: "busybox",
              logConfiguration: {
                logDriver: "awslogs",
                options: { "awslogs-group": "g", "awslogs-region": "r" },
              },
            },
          ],
        }),
      ),
      "Fargate requires task definition to have execution role ARN to support log driver awslogs.",
    );
    assert.equal(
      refusal(fargate({ pidMode: "host" })),
      "Tasks using the Fargate launch type do not support pidMode 'host'. The supported value for pidMode is 'task'.",
    );
  });

  it("leaves FARGATE out of the compatibilities of an awsvpc definition Fargate could not run", () => {
    const draft = draftTaskDefinition({
      family: "vpc",
      networkMode: "awsvpc",
      cpu: "256",
      memory: "700",
      containerDefinitions: [busybox],
    });
    assert.deepEqual(compatibilitiesOf(draft), ["EC2"]);
  });

  it("refuses bad task settings", () => {
    assert.equal(refusal({ family: "", containerDefinitions: [busybox] }), "Family can not be blank.");
    assert.equal(
      refusal({ family: "a b", containerDefinitions: [busybox] }),
      "Family contains invalid characters.",
    );
    assert.equal(
      refusal({ family: "x".repeat(256), containerDefinitions: [busybox] }),
      "Family contains invalid characters.",
    );
    assert.equal(refusal({ family: "f" }), "Container list cannot be empty.");
    assert.equal(refusal({ family: "f", containerDefinitions: [] }), "Container list cannot be empty.");
    const eleven = Array.from({ length: 11 }, (_, i) => ({ ...busybox, name: `c${i}` }));
    assert.equal(refusal({ family: "f", containerDefinitions: eleven }), "Too many containers.");
    assert.equal(
      refusal({ family: "f", cpu: "abc", containerDefinitions: [busybox] }),
      "Invalid 'cpu' setting for task.",
    );
    assert.equal(
      refusal({ family: "f", memory: "a lot", containerDefinitions: [busybox] }),
      "Invalid 'memory' setting for task.",
    );
  });

  it("refuses bad containers with ECS's messages", () => {
    const one = (container: ContainerDefinitionInput) =>
      refusal({ family: "f", containerDefinitions: [container] });
    assert.equal(one({ ...busybox, name: undefined }), "Container.name should not be null or empty.");
    assert.equal(one({ ...busybox, name: "a/b" }), "Container.name contains invalid characters.");
    assert.equal(one({ ...busybox, image: undefined }), "Container.image should not be null or empty.");
    assert.equal(one({ ...busybox, image: "bad image" }), "Container.image contains invalid characters.");
    assert.equal(
      one({ name: "nomem", image: "busybox" }),
      "Invalid setting for container 'nomem'. At least one of 'memory' or 'memoryReservation' must be specified.",
    );
    assert.match(one({ ...busybox, memory: 4 }), /at least 6 MiB/);
    assert.match(
      one({ ...busybox, memory: 64, memoryReservation: 128 }),
      /'memory' must be greater than or equal/,
    );
    assert.equal(
      one({ ...busybox, essential: false }),
      "Task definition doesn't have any essential container.",
    );
    assert.equal(
      one({
        ...busybox,
        logConfiguration: { logDriver: "awslogs", options: { "awslogs-group": "g" } },
      }),
      "Log driver awslogs requires options: awslogs-region, awslogs-group",
    );
    assert.match(one({ ...busybox, healthCheck: { command: ["curl", "x"] } }), /CMD/);
    assert.match(one({ ...busybox, healthCheck: { command: ["CMD", "true"], interval: 1 } }), /interval/);
    assert.match(one({ ...busybox, stopTimeout: 121 }), /stopTimeout/);
    const ranged = (mapping: Record<string, unknown>, networkMode?: "bridge" | "host" | "awsvpc") =>
      refusal({
        family: "f",
        ...(networkMode === undefined ? {} : { networkMode }),
        containerDefinitions: [{ ...busybox, portMappings: [mapping] }],
      });
    for (const range of ["9000", "9001-9000", "0-10", "65000-65536", "a-b"])
      assert.match(ranged({ containerPortRange: range }), /'containerPortRange' must be two ports/, range);
    assert.match(
      ranged({ containerPortRange: "9000-9001", hostPort: 80 }),
      /takes no 'containerPort' or 'hostPort'/,
    );
    assert.match(
      ranged({ containerPortRange: "9000-9001" }, "host"),
      /only with networkMode bridge or awsvpc/,
    );
    const overlapping = refusal({
      family: "f",
      containerDefinitions: [
        { ...busybox, portMappings: [{ containerPortRange: "9000-9010" }, { containerPort: 9005 }] },
      ],
    });
    assert.match(overlapping, /Container port 9005 is in more than one port mapping/);
    const many = Array.from({ length: 101 }, (_, i) => ({
      containerPortRange: `${10000 + 2 * i}-${10001 + 2 * i}`,
    }));
    assert.match(
      refusal({ family: "f", containerDefinitions: [{ ...busybox, portMappings: many }] }),
      /at most 100 'containerPortRange'/,
    );
    assert.match(ranged({ containerPortRange: "1-65535" }), /at most 16383 ports/);
    const accepted = draftTaskDefinition({
      family: "f",
      networkMode: "awsvpc",
      containerDefinitions: [{ ...busybox, portMappings: [{ containerPortRange: "9000-9001" }] }],
    });
    assert.equal(accepted.containerDefinitions[0]?.portMappings?.[0]?.containerPortRange, "9000-9001");
    assert.match(one({ ...busybox, mountPoints: [{ sourceVolume: "nope", containerPath: "/x" }] }), /nope/);
    assert.match(one({ ...busybox, linuxParameters: { capabilities: { add: ["FLY"] } } }), /FLY/);
    assert.equal(
      refusal({
        family: "f",
        containerDefinitions: [busybox, { ...busybox }],
      }),
      "Container names must be unique within a Task Definition.",
    );
    assert.equal(
      refusal({ family: "f", networkMode: "awsvpc", containerDefinitions: [{ ...busybox, links: ["db"] }] }),
      "Links are not supported when networkMode=awsvpc.",
    );
    assert.equal(
      refusal({
        family: "f",
        networkMode: "awsvpc",
        containerDefinitions: [{ ...busybox, dnsServers: ["1.1.1.1"] }],
      }),
      "DNS servers are not supported on container when networkMode=awsvpc.",
    );
    assert.equal(
      refusal({
        family: "f",
        networkMode: "awsvpc",
        containerDefinitions: [{ ...busybox, extraHosts: [{ hostname: "db", ipAddress: "10.0.0.9" }] }],
      }),
      "Extra hosts are not supported on container when networkMode=awsvpc.",
    );
    const bridged = draftTaskDefinition({
      family: "f",
      networkMode: "bridge",
      containerDefinitions: [
        { ...busybox, dnsServers: ["1.1.1.1"], extraHosts: [{ hostname: "db", ipAddress: "10.0.0.9" }] },
      ],
    });
    assert.deepEqual(bridged.containerDefinitions[0]?.dnsServers, ["1.1.1.1"], "bridge mode takes both");
  });

  it("checks task-level totals", () => {
    assert.equal(
      refusal({ family: "f", memory: "128", containerDefinitions: [{ ...busybox, memory: 256 }] }),
      "The 'memory' setting for container 'app' is greater than for the task.",
    );
    assert.equal(
      refusal({
        family: "f",
        cpu: "256",
        containerDefinitions: [
          { ...busybox, cpu: 200 },
          { ...busybox, name: "b", cpu: 200 },
        ],
      }),
      "The sum of all container 'cpu' values cannot be greater than the value of the task 'cpu'.",
    );
    const draft = draftTaskDefinition({
      family: "f",
      memory: "512",
      containerDefinitions: [{ name: "a", image: "busybox" }],
    });
    assert.equal(
      draft.containerDefinitions[0]?.memory,
      undefined,
      "task memory covers a container without its own",
    );
  });

  it("checks dependencies: targets, conditions and cycles", () => {
    const db: ContainerDefinitionInput = { ...busybox, name: "db", essential: false };
    assert.equal(
      refusal({
        family: "f",
        containerDefinitions: [{ ...busybox, dependsOn: [{ containerName: "ghost", condition: "START" }] }],
      }),
      "Cannot depend on container + 'ghost' because it does not exist",
    );
    assert.equal(
      refusal({
        family: "f",
        containerDefinitions: [
          { ...busybox, dependsOn: [{ containerName: "db", condition: "SUCCESS" }] },
          { ...db, essential: true },
        ],
      }),
      "A dependency container with SUCCESS or COMPLETE condition cannot be an essential container",
    );
    assert.match(
      refusal({
        family: "f",
        containerDefinitions: [
          { ...busybox, dependsOn: [{ containerName: "db", condition: "HEALTHY" }] },
          db,
        ],
      }),
      /HEALTHY/,
    );
    assert.equal(
      refusal({
        family: "f",
        containerDefinitions: [
          { ...busybox, dependsOn: [{ containerName: "db", condition: "START" }] },
          { ...db, dependsOn: [{ containerName: "app", condition: "START" }] },
        ],
      }),
      "Container dependencies should not have a cycle",
    );
    const ok = draftTaskDefinition({
      family: "f",
      containerDefinitions: [
        { ...busybox, dependsOn: [{ containerName: "db", condition: "HEALTHY" }] },
        { ...db, healthCheck: { command: ["CMD-SHELL", "true"], startPeriod: 10 } },
      ],
    });
    assert.deepEqual(ok.containerDefinitions[1]?.healthCheck, {
      command: ["CMD-SHELL", "true"],
      interval: 30,
      timeout: 5,
      retries: 3,
      startPeriod: 10,
    });
    assert.ok(ok.requiresAttributes?.some((a) => a.name === "ecs.capability.container-ordering"));
  });

  it("keeps host volumes and fills in an empty host for bare ones", () => {
    const draft = draftTaskDefinition({
      family: "vols",
      volumes: [{ name: "data", host: { sourcePath: "/srv/data" } }, { name: "scratch" }],
      containerDefinitions: [{ ...busybox, mountPoints: [{ sourceVolume: "data", containerPath: "/data" }] }],
    });
    assert.deepEqual(draft.volumes, [
      { name: "data", host: { sourcePath: "/srv/data" } },
      { name: "scratch", host: {} },
    ]);
  });
});

describe("requiredAttributes", () => {
  it("names what ECS derives for logging, roles, ECR and memory reservations", () => {
    const draft = draftTaskDefinition({
      family: "attrs",
      taskRoleArn: "arn:aws:iam::000000000000:role/task",
      executionRoleArn: "arn:aws:iam::000000000000:role/exec",
      containerDefinitions: [
        {
          name: "app",
          image: "000000000000.dkr.ecr.us-east-1.amazonaws.com/app:1",
          memoryReservation: 128,
          logConfiguration: {
            logDriver: "awslogs",
            options: { "awslogs-group": "g", "awslogs-region": "r" },
          },
        },
      ],
    });
    assert.deepEqual(
      requiredAttributes(draft).map((a) => a.name),
      [
        "com.amazonaws.ecs.capability.logging-driver.awslogs",
        "ecs.capability.execution-role-awslogs",
        "com.amazonaws.ecs.capability.ecr-auth",
        "com.amazonaws.ecs.capability.docker-remote-api.1.19",
        "com.amazonaws.ecs.capability.docker-remote-api.1.21",
        "com.amazonaws.ecs.capability.task-iam-role",
        "ecs.capability.execution-role-ecr-pull",
      ],
    );
  });
});
