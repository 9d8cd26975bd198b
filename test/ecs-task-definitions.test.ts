import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  DeleteTaskDefinitionsCommand,
  DeregisterTaskDefinitionCommand,
  DescribeTaskDefinitionCommand,
  type ECSClient,
  ListTagsForResourceCommand,
  ListTaskDefinitionFamiliesCommand,
  ListTaskDefinitionsCommand,
  RegisterTaskDefinitionCommand,
  type RegisterTaskDefinitionCommandInput,
  TagResourceCommand,
  UntagResourceCommand,
} from "@aws-sdk/client-ecs";
import { aws, ecsClient, startTestServer, type TestServer } from "./helpers.ts";

const ARN_PREFIX = "arn:aws:ecs:us-east-1:000000000000:task-definition/";

let server: TestServer;
let ecs: ECSClient;
let scratch: string;
before(async () => {
  server = await startTestServer();
  ecs = ecsClient(server);
  scratch = mkdtempSync(join(tmpdir(), "wharf-td-"));
});
after(async () => {
  ecs.destroy();
  await server.stop();
  rmSync(scratch, { recursive: true, force: true });
});

function busybox(family: string): RegisterTaskDefinitionCommandInput {
  return {
    family,
    containerDefinitions: [
      {
        name: "hello",
        image: "busybox",
        memory: 64,
        command: ["sh", "-c", "echo hello; sleep 300"],
      },
    ],
  };
}

async function register(input: RegisterTaskDefinitionCommandInput) {
  const out = await ecs.send(new RegisterTaskDefinitionCommand(input));
  assert.ok(out.taskDefinition !== undefined);
  return out.taskDefinition;
}

/** The error a call was refused with: its wire code and message. */
async function refusal(promise: Promise<unknown>): Promise<{ name: string; message: string }> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof Error);
    return { name: error.name, message: error.message };
  }
  assert.fail("expected the call to be refused");
}

async function familiesNamed(prefix: string): Promise<string[]> {
  const out = await ecs.send(new ListTaskDefinitionFamiliesCommand({ familyPrefix: prefix, status: "ALL" }));
  return out.families ?? [];
}

describe("ECS task definitions with @aws-sdk/client-ecs", () => {
  it("registers a busybox task definition and describes it as ECS does", async () => {
    const td = await register(busybox("hello-sdk"));
    assert.equal(td.taskDefinitionArn, `${ARN_PREFIX}hello-sdk:1`);
    assert.equal(td.family, "hello-sdk");
    assert.equal(td.revision, 1);
    assert.equal(td.status, "ACTIVE");
    assert.deepEqual(td.compatibilities, ["EXTERNAL", "EC2"]);
    assert.equal(td.networkMode, undefined);
    assert.equal(td.registeredBy, "arn:aws:iam::000000000000:user/admin");
    assert.ok(td.registeredAt instanceof Date);
    assert.ok(Math.abs((td.registeredAt?.getTime() ?? 0) - Date.now()) < 60_000);
    assert.deepEqual(td.containerDefinitions, [
      {
        name: "hello",
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

    for (const reference of ["hello-sdk", "hello-sdk:1", td.taskDefinitionArn ?? ""]) {
      const described = await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: reference }));
      assert.deepEqual(described.taskDefinition, td, reference);
      assert.equal(described.tags, undefined);
    }
    const missing = await refusal(ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: "nope:1" })));
    assert.deepEqual(missing, { name: "ClientException", message: "Unable to describe task definition." });
  });

  it("numbers revisions per family, describes the latest ACTIVE one and never reuses a revision", async () => {
    const revisions: number[] = [];
    for (let i = 0; i < 3; i++) revisions.push((await register(busybox("revs"))).revision ?? 0);
    assert.deepEqual(revisions, [1, 2, 3]);
    assert.equal((await register(busybox("revs-other"))).revision, 1);

    await ecs.send(new DeregisterTaskDefinitionCommand({ taskDefinition: "revs:3" }));
    const latest = await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: "revs" }));
    assert.equal(latest.taskDefinition?.revision, 2, "the family alone names its latest ACTIVE revision");

    await ecs.send(new DeleteTaskDefinitionsCommand({ taskDefinitions: ["revs:3"] }));
    assert.equal((await register(busybox("revs"))).revision, 4, "a deleted revision is not reused");
  });

  it("registers a Fargate definition with ECS's normalised size, defaults and attributes", async () => {
    const td = await register({
      family: "fargate-web",
      networkMode: "awsvpc",
      requiresCompatibilities: ["FARGATE"],
      cpu: "0.25 vCPU",
      memory: "1 GB",
      executionRoleArn: "arn:aws:iam::000000000000:role/ecsTaskExecutionRole",
      containerDefinitions: [
        {
          name: "web",
          image: "busybox",
          command: ["httpd", "-f", "-p", "8080"],
          portMappings: [{ containerPort: 8080 }],
          healthCheck: { command: ["CMD-SHELL", "wget -q -O- localhost:8080 || exit 1"] },
          logConfiguration: {
            logDriver: "awslogs",
            options: {
              "awslogs-group": "/ecs/web",
              "awslogs-region": "us-east-1",
              "awslogs-stream-prefix": "web",
            },
          },
        },
      ],
    });
    assert.equal(td.cpu, "256");
    assert.equal(td.memory, "1024");
    assert.deepEqual(td.compatibilities, ["EC2", "FARGATE"]);
    assert.deepEqual(td.requiresCompatibilities, ["FARGATE"]);
    const [web] = td.containerDefinitions ?? [];
    assert.deepEqual(web?.portMappings, [{ containerPort: 8080, hostPort: 8080, protocol: "tcp" }]);
    assert.deepEqual(web?.healthCheck, {
      command: ["CMD-SHELL", "wget -q -O- localhost:8080 || exit 1"],
      interval: 30,
      timeout: 5,
      retries: 3,
    });
    const attributes = (td.requiresAttributes ?? []).map((a) => a.name);
    for (const name of [
      "com.amazonaws.ecs.capability.logging-driver.awslogs",
      "ecs.capability.execution-role-awslogs",
      "com.amazonaws.ecs.capability.docker-remote-api.1.19",
      "ecs.capability.container-health-check",
      "ecs.capability.task-eni",
    ]) {
      assert.ok(attributes.includes(name), name);
    }
  });

  it("refuses a Fargate definition whose cpu and memory Fargate does not offer, storing nothing", async () => {
    const refused = await refusal(
      register({
        family: "fargate-bad",
        networkMode: "awsvpc",
        requiresCompatibilities: ["FARGATE"],
        cpu: "512",
        memory: "512",
        containerDefinitions: [{ name: "web", image: "busybox" }],
      }),
    );
    assert.deepEqual(refused, {
      name: "ClientException",
      message:
        "No Fargate configuration exists for given values: 512 CPU, 512 memory. See the Amazon ECS documentation for the valid values.",
    });
    assert.deepEqual(await familiesNamed("fargate-bad"), []);
  });

  it("refuses bad input with ECS's error types and stores nothing", async () => {
    const cases: Array<[RegisterTaskDefinitionCommandInput, string, RegExp]> = [
      [
        { family: "bad-noimage", containerDefinitions: [{ name: "a", memory: 64 }] },
        "ClientException",
        /^Container\.image should not be null or empty\.$/,
      ],
      [
        {
          family: "bad-dup",
          containerDefinitions: [
            { name: "a", image: "busybox", memory: 64 },
            { name: "a", image: "busybox", memory: 64 },
          ],
        },
        "ClientException",
        /^Container names must be unique within a Task Definition\.$/,
      ],
      [
        {
          family: "bad-cycle",
          containerDefinitions: [
            {
              name: "a",
              image: "busybox",
              memory: 64,
              dependsOn: [{ containerName: "b", condition: "START" }],
            },
            {
              name: "b",
              image: "busybox",
              memory: 64,
              dependsOn: [{ containerName: "a", condition: "START" }],
            },
          ],
        },
        "ClientException",
        /cycle/,
      ],
      [
        { family: "bad-nomem", containerDefinitions: [{ name: "a", image: "busybox" }] },
        "ClientException",
        /^Invalid setting for container 'a'\. At least one of 'memory' or 'memoryReservation' must be specified\.$/,
      ],
      [
        {
          family: "bad-type",
          containerDefinitions: [
            { name: "a", image: "busybox", memory: 64, cpu: "abc" as unknown as number },
          ],
        },
        "SerializationException",
        /containerDefinitions\.1\.member\.cpu/,
      ],
      [
        {
          family: "bad-mode",
          networkMode: "weird" as "bridge",
          containerDefinitions: [{ name: "a", image: "busybox", memory: 64 }],
        },
        "ClientException",
        /networkMode/,
      ],
    ];
    for (const [input, name, message] of cases) {
      const refused = await refusal(register(input));
      assert.equal(refused.name, name, input.family);
      assert.match(refused.message, message, input.family);
      assert.deepEqual(await familiesNamed(input.family ?? ""), [], `${input.family} was not stored`);
    }
  });

  it("lists task definitions by family, status and sort order, page by page", async () => {
    for (let i = 0; i < 5; i++) await register(busybox("list-me"));
    await register(busybox("list-me-too"));
    const onlyFamily = await ecs.send(new ListTaskDefinitionsCommand({ familyPrefix: "list-me" }));
    assert.deepEqual(
      onlyFamily.taskDefinitionArns,
      [1, 2, 3, 4, 5].map((r) => `${ARN_PREFIX}list-me:${r}`),
      "familyPrefix names one whole family, as in ECS",
    );

    const seen: string[] = [];
    let nextToken: string | undefined;
    let pages = 0;
    do {
      const page = await ecs.send(
        new ListTaskDefinitionsCommand({ familyPrefix: "list-me", sort: "DESC", maxResults: 2, nextToken }),
      );
      assert.ok((page.taskDefinitionArns?.length ?? 0) <= 2);
      seen.push(...(page.taskDefinitionArns ?? []));
      nextToken = page.nextToken;
      pages++;
    } while (nextToken !== undefined);
    assert.equal(pages, 3);
    assert.deepEqual(
      seen,
      [5, 4, 3, 2, 1].map((r) => `${ARN_PREFIX}list-me:${r}`),
    );

    const all = await ecs.send(new ListTaskDefinitionsCommand({}));
    const listed = all.taskDefinitionArns ?? [];
    assert.ok(listed.includes(`${ARN_PREFIX}list-me-too:1`));
    const keyOf = (arn: string) => {
      const [family = "", revision = "0"] = arn.slice(ARN_PREFIX.length).split(":");
      return { family, revision: Number(revision) };
    };
    const byFamilyThenRevision = [...listed].sort((a, b) => {
      const [x, y] = [keyOf(a), keyOf(b)];
      return x.family < y.family ? -1 : x.family > y.family ? 1 : x.revision - y.revision;
    });
    assert.deepEqual(listed, byFamilyThenRevision, "ASC is family name, then revision");
    assert.ok(listed.indexOf(`${ARN_PREFIX}list-me:5`) < listed.indexOf(`${ARN_PREFIX}list-me-too:1`));

    await ecs.send(new DeregisterTaskDefinitionCommand({ taskDefinition: "list-me:2" }));
    const inactive = await ecs.send(
      new ListTaskDefinitionsCommand({ familyPrefix: "list-me", status: "INACTIVE" }),
    );
    assert.deepEqual(inactive.taskDefinitionArns, [`${ARN_PREFIX}list-me:2`]);
    const bad = await refusal(ecs.send(new ListTaskDefinitionsCommand({ nextToken: "garbage" })));
    assert.equal(bad.name, "InvalidParameterException");
  });

  it("lists families by prefix and status, page by page", async () => {
    for (const family of ["fam-a", "fam-b", "fam-c", "fam-d"]) await register(busybox(family));
    await ecs.send(new DeregisterTaskDefinitionCommand({ taskDefinition: "fam-d:1" }));

    const seen: string[] = [];
    let nextToken: string | undefined;
    do {
      const page = await ecs.send(
        new ListTaskDefinitionFamiliesCommand({ familyPrefix: "fam-", maxResults: 3, nextToken }),
      );
      seen.push(...(page.families ?? []));
      nextToken = page.nextToken;
    } while (nextToken !== undefined);
    assert.deepEqual(seen, ["fam-a", "fam-b", "fam-c", "fam-d"], "by default ACTIVE and INACTIVE families");

    const active = await ecs.send(
      new ListTaskDefinitionFamiliesCommand({ familyPrefix: "fam-", status: "ACTIVE" }),
    );
    assert.deepEqual(active.families, ["fam-a", "fam-b", "fam-c"]);
    const inactive = await ecs.send(
      new ListTaskDefinitionFamiliesCommand({ familyPrefix: "fam-", status: "INACTIVE" }),
    );
    assert.deepEqual(inactive.families, ["fam-d"]);
  });

  it("deregisters to INACTIVE, still describable by ARN, then deletes", async () => {
    const td = await register(busybox("retire"));
    const arn = td.taskDefinitionArn ?? "";
    const deregistered = await ecs.send(new DeregisterTaskDefinitionCommand({ taskDefinition: arn }));
    assert.equal(deregistered.taskDefinition?.status, "INACTIVE");
    assert.ok(deregistered.taskDefinition?.deregisteredAt instanceof Date);

    const byArn = await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: arn }));
    assert.equal(byArn.taskDefinition?.status, "INACTIVE");
    const byFamily = await refusal(ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: "retire" })));
    assert.equal(byFamily.message, "Unable to describe task definition.", "no ACTIVE revision is left");

    const active = await register(busybox("retire"));
    const deleted = await ecs.send(
      new DeleteTaskDefinitionsCommand({
        taskDefinitions: [arn, active.taskDefinitionArn ?? "", "retire", "ghost:9"],
      }),
    );
    assert.deepEqual(
      deleted.taskDefinitions?.map((d) => [d.taskDefinitionArn, d.status]),
      [[arn, "DELETE_IN_PROGRESS"]],
    );
    assert.deepEqual(deleted.failures, [
      {
        arn: active.taskDefinitionArn,
        reason:
          "The specified task definition is still in ACTIVE status. Please deregister the target and try again.",
      },
      {
        arn: "retire",
        reason:
          "The specified task definition identifier is invalid. Specify a valid name or ARN and try again.",
      },
      {
        arn: "ghost:9",
        reason:
          "The specified task definition does not exist. Specify a valid account, family, revision and try again.",
      },
    ]);
    const afterDelete = await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: arn }));
    assert.equal(afterDelete.taskDefinition?.status, "DELETE_IN_PROGRESS");

    const missingRevision = await refusal(
      ecs.send(new DeregisterTaskDefinitionCommand({ taskDefinition: "retire" })),
    );
    assert.equal(missingRevision.name, "ClientException");
  });

  it("tags a task definition with TagResource, ListTagsForResource and UntagResource", async () => {
    const td = await register({ ...busybox("tagged"), tags: [{ key: "team", value: "web" }] });
    const arn = td.taskDefinitionArn ?? "";
    await ecs.send(new TagResourceCommand({ resourceArn: arn, tags: [{ key: "env", value: "prod" }] }));
    const tags = await ecs.send(new ListTagsForResourceCommand({ resourceArn: arn }));
    assert.deepEqual(tags.tags, [
      { key: "env", value: "prod" },
      { key: "team", value: "web" },
    ]);
    await ecs.send(new UntagResourceCommand({ resourceArn: arn, tagKeys: ["team"] }));
    const described = await ecs.send(
      new DescribeTaskDefinitionCommand({ taskDefinition: arn, include: ["TAGS"] }),
    );
    assert.deepEqual(described.tags, [{ key: "env", value: "prod" }]);

    const missing = await refusal(
      ecs.send(
        new TagResourceCommand({ resourceArn: `${ARN_PREFIX}tagged:99`, tags: [{ key: "a", value: "b" }] }),
      ),
    );
    assert.equal(missing.name, "ClientException");
  });
});

describe("ECS task definitions with the AWS CLI", () => {
  it("register-task-definition --cli-input-json, describe, list, deregister", async () => {
    const file = join(scratch, "busybox.json");
    writeFileSync(
      file,
      JSON.stringify({
        family: "cli-hello",
        containerDefinitions: [
          {
            name: "hello",
            image: "busybox",
            cpu: 10,
            memory: 32,
            essential: true,
            command: ["sh", "-c", "echo hello; sleep 300"],
            portMappings: [{ containerPort: 8080 }],
          },
        ],
      }),
    );
    const registered = await aws(server, [
      "ecs",
      "register-task-definition",
      "--cli-input-json",
      `file://${file}`,
    ]);
    assert.equal(registered.code, 0, registered.stderr);
    const td = (registered.json as { taskDefinition: Record<string, unknown> }).taskDefinition;
    assert.equal(td.taskDefinitionArn, `${ARN_PREFIX}cli-hello:1`);
    assert.equal(td.status, "ACTIVE");
    assert.deepEqual(td.compatibilities, ["EXTERNAL", "EC2"]);
    const containers = td.containerDefinitions as Array<Record<string, unknown>>;
    assert.deepEqual(containers[0]?.portMappings, [{ containerPort: 8080, hostPort: 0, protocol: "tcp" }]);

    const described = await aws(server, [
      "ecs",
      "describe-task-definition",
      "--task-definition",
      "cli-hello",
      "--include",
      "TAGS",
    ]);
    assert.equal(described.code, 0, described.stderr);
    const body = described.json as { taskDefinition: { revision: number }; tags: unknown[] };
    assert.equal(body.taskDefinition.revision, 1);
    assert.deepEqual(body.tags, []);

    const listed = await aws(server, ["ecs", "list-task-definitions", "--family-prefix", "cli-hello"]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual((listed.json as { taskDefinitionArns: string[] }).taskDefinitionArns, [
      `${ARN_PREFIX}cli-hello:1`,
    ]);

    const families = await aws(server, ["ecs", "list-task-definition-families", "--family-prefix", "cli-"]);
    assert.equal(families.code, 0, families.stderr);
    assert.deepEqual((families.json as { families: string[] }).families, ["cli-hello"]);

    const deregistered = await aws(server, [
      "ecs",
      "deregister-task-definition",
      "--task-definition",
      "cli-hello:1",
    ]);
    assert.equal(deregistered.code, 0, deregistered.stderr);
    assert.equal(
      (deregistered.json as { taskDefinition: { status: string } }).taskDefinition.status,
      "INACTIVE",
    );

    const missing = await aws(server, ["ecs", "describe-task-definition", "--task-definition", "cli-hello"]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /ClientException/);
    assert.match(missing.stderr, /Unable to describe task definition\./);
  });

  it("refuses an invalid Fargate size through the CLI", async () => {
    const file = join(scratch, "fargate.json");
    writeFileSync(
      file,
      JSON.stringify({
        family: "cli-fargate",
        networkMode: "awsvpc",
        requiresCompatibilities: ["FARGATE"],
        cpu: "256",
        memory: "4096",
        containerDefinitions: [{ name: "web", image: "busybox" }],
      }),
    );
    const refused = await aws(server, [
      "ecs",
      "register-task-definition",
      "--cli-input-json",
      `file://${file}`,
    ]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /ClientException/);
    assert.match(refused.stderr, /No Fargate configuration exists for given values: 256 CPU, 4096 memory/);
  });
});
