import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Sha256 } from "@aws-crypto/sha256-js";
import {
  CloudWatchLogsClient,
  CreateLogGroupCommand,
  CreateLogStreamCommand,
  DeleteLogGroupCommand,
  DeleteLogStreamCommand,
  DeleteRetentionPolicyCommand,
  DescribeLogGroupsCommand,
  DescribeLogStreamsCommand,
  FilterLogEventsCommand,
  type FilterLogEventsCommandInput,
  GetLogEventsCommand,
  InvalidParameterException,
  ListTagsForResourceCommand,
  ListTagsLogGroupCommand,
  PutLogEventsCommand,
  PutRetentionPolicyCommand,
  paginateGetLogEvents,
  ResourceAlreadyExistsException,
  ResourceNotFoundException,
  TagLogGroupCommand,
  TagResourceCommand,
  UntagResourceCommand,
} from "@aws-sdk/client-cloudwatch-logs";
import { HttpRequest } from "@smithy/protocol-http";
import { SignatureV4 } from "@smithy/signature-v4";
import { appendLogEvents } from "../src/cloudwatch/logs/ingest.ts";
import { aws, startTestServer, type TestServer } from "./helpers.ts";
import { prng } from "./support/prng.ts";

const ACCOUNT = "000000000000";
const REGION = "us-east-1";
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

let server: TestServer;
let logs: CloudWatchLogsClient;
before(async () => {
  server = await startTestServer();
  logs = new CloudWatchLogsClient({
    endpoint: server.endpoint,
    region: REGION,
    credentials: server.credentials,
    maxAttempts: 1,
  });
});
after(async () => {
  logs.destroy();
  await server.stop();
});

/** Asserts a call fails with the error class and, when given, the exact message. */
async function refused(
  call: Promise<unknown>,
  type:
    | typeof ResourceNotFoundException
    | typeof InvalidParameterException
    | typeof ResourceAlreadyExistsException,
  message?: string | RegExp,
): Promise<void> {
  await assert.rejects(call, (error: unknown) => {
    assert.ok(error instanceof type, `expected ${type.name}, got ${String(error)}`);
    if (typeof message === "string") assert.equal(error.message, message);
    else if (message !== undefined) assert.match(error.message, message);
    return true;
  });
}

async function groupWithStream(group: string, stream: string): Promise<void> {
  await logs.send(new CreateLogGroupCommand({ logGroupName: group }));
  await logs.send(new CreateLogStreamCommand({ logGroupName: group, logStreamName: stream }));
}

async function messagesIn(group: string, stream: string): Promise<string[]> {
  const out = await logs.send(
    new GetLogEventsCommand({ logGroupName: group, logStreamName: stream, startFromHead: true }),
  );
  return (out.events ?? []).map((event) => event.message ?? "");
}

describe("CloudWatch Logs groups with @aws-sdk/client-cloudwatch-logs", () => {
  it("creates, describes, pages, sets retention on and deletes log groups", async () => {
    const before = Date.now();
    await logs.send(new CreateLogGroupCommand({ logGroupName: "/app/alpha", tags: { team: "web" } }));
    await logs.send(
      new CreateLogGroupCommand({ logGroupName: "/app/beta", logGroupClass: "INFREQUENT_ACCESS" }),
    );
    await logs.send(new CreateLogGroupCommand({ logGroupName: "/app/gamma" }));
    await logs.send(new CreateLogGroupCommand({ logGroupName: "/other/Alpha.2" }));

    const described = await logs.send(new DescribeLogGroupsCommand({ logGroupNamePrefix: "/app/" }));
    assert.deepEqual(
      described.logGroups?.map((group) => group.logGroupName),
      ["/app/alpha", "/app/beta", "/app/gamma"],
    );
    const alpha = described.logGroups?.[0];
    assert.equal(alpha?.arn, `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:/app/alpha:*`);
    assert.equal(alpha?.logGroupArn, `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:/app/alpha`);
    assert.equal(alpha?.storedBytes, 0);
    assert.equal(alpha?.metricFilterCount, 0);
    assert.equal(alpha?.logGroupClass, "STANDARD");
    assert.equal(alpha?.retentionInDays, undefined);
    assert.ok((alpha?.creationTime ?? 0) >= before - 1000 && (alpha?.creationTime ?? 0) <= Date.now());
    assert.equal(described.logGroups?.[1]?.logGroupClass, "INFREQUENT_ACCESS");
    assert.equal(described.nextToken, undefined);

    const first = await logs.send(new DescribeLogGroupsCommand({ logGroupNamePrefix: "/app/", limit: 2 }));
    assert.equal(first.logGroups?.length, 2);
    assert.ok(first.nextToken !== undefined);
    const second = await logs.send(
      new DescribeLogGroupsCommand({ logGroupNamePrefix: "/app/", limit: 2, nextToken: first.nextToken }),
    );
    assert.deepEqual(
      second.logGroups?.map((group) => group.logGroupName),
      ["/app/gamma"],
    );
    assert.equal(second.nextToken, undefined);

    // A name pattern is a case-sensitive substring search, and answers only name, ARN and creation time.
    const patterned = await logs.send(new DescribeLogGroupsCommand({ logGroupNamePattern: "lpha" }));
    assert.deepEqual(
      patterned.logGroups?.map((group) => group.logGroupName),
      ["/app/alpha", "/other/Alpha.2"],
    );
    assert.deepEqual(Object.keys(patterned.logGroups?.[0] ?? {}).sort(), [
      "arn",
      "creationTime",
      "logGroupName",
    ]);

    await logs.send(new PutRetentionPolicyCommand({ logGroupName: "/app/alpha", retentionInDays: 7 }));
    const retained = await logs.send(new DescribeLogGroupsCommand({ logGroupNamePrefix: "/app/alpha" }));
    assert.equal(retained.logGroups?.[0]?.retentionInDays, 7);
    await logs.send(new DeleteRetentionPolicyCommand({ logGroupName: "/app/alpha" }));
    const unretained = await logs.send(new DescribeLogGroupsCommand({ logGroupNamePrefix: "/app/alpha" }));
    assert.equal(unretained.logGroups?.[0]?.retentionInDays, undefined);

    await logs.send(new DeleteLogGroupCommand({ logGroupName: "/app/beta" }));
    const after = await logs.send(new DescribeLogGroupsCommand({ logGroupNamePrefix: "/app/" }));
    assert.deepEqual(
      after.logGroups?.map((group) => group.logGroupName),
      ["/app/alpha", "/app/gamma"],
    );
  });

  it("answers group errors with the service's codes and messages, storing nothing", async () => {
    await logs.send(new CreateLogGroupCommand({ logGroupName: "dup" }));
    await refused(
      logs.send(new CreateLogGroupCommand({ logGroupName: "dup" })),
      ResourceAlreadyExistsException,
      "The specified log group already exists",
    );
    await refused(
      logs.send(new CreateLogGroupCommand({ logGroupName: "bad name" })),
      InvalidParameterException,
      "1 validation error detected: Value 'bad name' at 'logGroupName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+",
    );
    await refused(
      logs.send(new CreateLogGroupCommand({ logGroupName: "x".repeat(513) })),
      InvalidParameterException,
      /Member must have length less than or equal to 512$/,
    );
    await refused(
      logs.send(new CreateLogGroupCommand({ logGroupName: "aws/mine" })),
      InvalidParameterException,
      "Log groups starting with AWS/ are reserved for AWS.",
    );
    const none = await logs.send(new DescribeLogGroupsCommand({ logGroupNamePattern: "mine" }));
    assert.deepEqual(none.logGroups, []);
    await refused(
      logs.send(new DeleteLogGroupCommand({ logGroupName: "never-made" })),
      ResourceNotFoundException,
      "The specified log group does not exist.",
    );
    await refused(
      logs.send(new PutRetentionPolicyCommand({ logGroupName: "dup", retentionInDays: 2 })),
      InvalidParameterException,
      /^1 validation error detected: Value '2' at 'retentionInDays' failed to satisfy constraint: Member must satisfy enum value set: \[1, 3, 5, 7, 14, 30, /,
    );
    await refused(
      logs.send(new DescribeLogGroupsCommand({ limit: 51 })),
      InvalidParameterException,
      "1 validation error detected: Value '51' at 'limit' failed to satisfy constraint: Member must have value less than or equal to 50",
    );
    await refused(
      logs.send(new DescribeLogGroupsCommand({ nextToken: "not-a-token" })),
      InvalidParameterException,
      "The specified nextToken is invalid.",
    );
  });

  it("tags log groups by the ARN without :*, and through the older TagLogGroup calls", async () => {
    await logs.send(new CreateLogGroupCommand({ logGroupName: "tagged", tags: { team: "web" } }));
    const arn = `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:tagged`;
    await logs.send(new TagResourceCommand({ resourceArn: arn, tags: { env: "prod", tier: "1" } }));
    await logs.send(new UntagResourceCommand({ resourceArn: arn, tagKeys: ["tier"] }));
    const listed = await logs.send(new ListTagsForResourceCommand({ resourceArn: arn }));
    assert.deepEqual(listed.tags, { env: "prod", team: "web" });

    await logs.send(new TagLogGroupCommand({ logGroupName: "tagged", tags: { owner: "me" } }));
    const old = await logs.send(new ListTagsLogGroupCommand({ logGroupName: "tagged" }));
    assert.deepEqual(old.tags, { env: "prod", owner: "me", team: "web" });

    await refused(
      logs.send(
        new ListTagsForResourceCommand({
          resourceArn: `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:untagged`,
        }),
      ),
      ResourceNotFoundException,
      "The specified log group does not exist.",
    );
    await refused(
      logs.send(new TagResourceCommand({ resourceArn: arn, tags: { "aws:x": "y" } })),
      InvalidParameterException,
    );
  });
});

describe("CloudWatch Logs streams and events with @aws-sdk/client-cloudwatch-logs", () => {
  it("creates, describes, orders, pages and deletes log streams", async () => {
    await logs.send(new CreateLogGroupCommand({ logGroupName: "streams" }));
    for (const name of ["c", "a", "b"]) {
      await logs.send(new CreateLogStreamCommand({ logGroupName: "streams", logStreamName: name }));
    }
    await refused(
      logs.send(new CreateLogStreamCommand({ logGroupName: "streams", logStreamName: "a" })),
      ResourceAlreadyExistsException,
      "The specified log stream already exists",
    );
    await refused(
      logs.send(new CreateLogStreamCommand({ logGroupName: "no-group", logStreamName: "a" })),
      ResourceNotFoundException,
      "The specified log group does not exist.",
    );
    await refused(
      logs.send(new CreateLogStreamCommand({ logGroupName: "streams", logStreamName: "a:b" })),
      InvalidParameterException,
      "1 validation error detected: Value 'a:b' at 'logStreamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [^:*]*",
    );

    const now = Date.now();
    await logs.send(
      new PutLogEventsCommand({
        logGroupName: "streams",
        logStreamName: "a",
        logEvents: [
          { timestamp: now - 3000, message: "a1" },
          { timestamp: now - 1000, message: "a2" },
        ],
      }),
    );
    await logs.send(
      new PutLogEventsCommand({
        logGroupName: "streams",
        logStreamName: "c",
        logEvents: [{ timestamp: now - 2000, message: "c1" }],
      }),
    );

    const byName = await logs.send(new DescribeLogStreamsCommand({ logGroupName: "streams" }));
    assert.deepEqual(
      byName.logStreams?.map((stream) => stream.logStreamName),
      ["a", "b", "c"],
    );
    const a = byName.logStreams?.[0];
    assert.equal(a?.firstEventTimestamp, now - 3000);
    assert.equal(a?.lastEventTimestamp, now - 1000);
    assert.ok((a?.lastIngestionTime ?? 0) >= now - 5000);
    assert.match(a?.uploadSequenceToken ?? "", /^\d{56}$/);
    assert.equal(a?.storedBytes, 0);
    assert.equal(a?.arn, `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:streams:log-stream:a`);
    const b = byName.logStreams?.[1];
    assert.equal(b?.firstEventTimestamp, undefined);
    assert.equal(b?.uploadSequenceToken, undefined);

    const byTime = await logs.send(
      new DescribeLogStreamsCommand({ logGroupName: "streams", orderBy: "LastEventTime", descending: true }),
    );
    assert.deepEqual(
      byTime.logStreams?.map((stream) => stream.logStreamName),
      ["a", "c", "b"],
    );

    const page1 = await logs.send(
      new DescribeLogStreamsCommand({ logGroupName: "streams", descending: true, limit: 2 }),
    );
    assert.deepEqual(
      page1.logStreams?.map((stream) => stream.logStreamName),
      ["c", "b"],
    );
    const page2 = await logs.send(
      new DescribeLogStreamsCommand({
        logGroupName: "streams",
        descending: true,
        limit: 2,
        nextToken: page1.nextToken,
      }),
    );
    assert.deepEqual(
      page2.logStreams?.map((stream) => stream.logStreamName),
      ["a"],
    );
    assert.equal(page2.nextToken, undefined);

    const prefixed = await logs.send(
      new DescribeLogStreamsCommand({
        logGroupIdentifier: `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:streams`,
        logStreamNamePrefix: "b",
      }),
    );
    assert.deepEqual(
      prefixed.logStreams?.map((stream) => stream.logStreamName),
      ["b"],
    );
    await refused(
      logs.send(
        new DescribeLogStreamsCommand({
          logGroupName: "streams",
          orderBy: "LastEventTime",
          logStreamNamePrefix: "a",
        }),
      ),
      InvalidParameterException,
    );

    await logs.send(new DeleteLogStreamCommand({ logGroupName: "streams", logStreamName: "a" }));
    await refused(
      logs.send(new DeleteLogStreamCommand({ logGroupName: "streams", logStreamName: "a" })),
      ResourceNotFoundException,
      "The specified log stream does not exist.",
    );
    const group = await logs.send(new DescribeLogGroupsCommand({ logGroupNamePrefix: "streams" }));
    assert.equal(group.logGroups?.[0]?.storedBytes, 2);
  });

  it("puts events, ignoring sequence tokens, and sets aside too old, too new and expired ones", async () => {
    await groupWithStream("put", "s");
    const now = Date.now();
    const put = await logs.send(
      new PutLogEventsCommand({
        logGroupName: "put",
        logStreamName: "s",
        sequenceToken: "12345",
        logEvents: [
          { timestamp: now - 15 * DAY, message: "too old" },
          { timestamp: now - 60_000, message: "kept" },
          { timestamp: now + 3 * HOUR, message: "too new" },
        ],
      }),
    );
    assert.deepEqual(put.rejectedLogEventsInfo, { tooOldLogEventEndIndex: 1, tooNewLogEventStartIndex: 2 });
    assert.match(put.nextSequenceToken ?? "", /^\d{56}$/);
    assert.deepEqual(await messagesIn("put", "s"), ["kept"]);

    const clean = await logs.send(
      new PutLogEventsCommand({
        logGroupName: "put",
        logStreamName: "s",
        sequenceToken: "whatever",
        logEvents: [{ timestamp: now, message: "again" }],
      }),
    );
    assert.equal(clean.rejectedLogEventsInfo, undefined);
    assert.notEqual(clean.nextSequenceToken, put.nextSequenceToken);

    await logs.send(new PutRetentionPolicyCommand({ logGroupName: "put", retentionInDays: 1 }));
    const expired = await logs.send(
      new PutLogEventsCommand({
        logGroupName: "put",
        logStreamName: "s",
        logEvents: [
          { timestamp: now - 3 * DAY, message: "expired" },
          { timestamp: now, message: "fresh" },
        ],
      }),
    );
    assert.deepEqual(expired.rejectedLogEventsInfo, { expiredLogEventEndIndex: 1 });
    assert.deepEqual(await messagesIn("put", "s"), ["kept", "again", "fresh"]);
  });

  it("refuses bad batches and missing targets with the service's errors, storing nothing", async () => {
    await groupWithStream("strict", "s");
    const now = Date.now();
    const put = (logEvents: Array<{ timestamp: number; message: string }>, group = "strict", stream = "s") =>
      logs.send(new PutLogEventsCommand({ logGroupName: group, logStreamName: stream, logEvents }));
    await refused(
      put([
        { timestamp: now, message: "second" },
        { timestamp: now - 1000, message: "first" },
      ]),
      InvalidParameterException,
      "Log events in a single PutLogEvents request must be in chronological order.",
    );
    await refused(
      put([
        { timestamp: now - 2 * DAY, message: "early" },
        { timestamp: now, message: "late" },
      ]),
      InvalidParameterException,
      "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.",
    );
    await refused(
      put([{ timestamp: now, message: "x".repeat(1_048_576) }]),
      InvalidParameterException,
      "Upload too large: 1048602 bytes exceeds limit of 1048576",
    );
    await refused(
      put([]),
      InvalidParameterException,
      "1 validation error detected: Value '[]' at 'logEvents' failed to satisfy constraint: Member must have length greater than or equal to 1",
    );
    await refused(
      put([{ timestamp: now, message: "x" }], "no-such-group"),
      ResourceNotFoundException,
      "The specified log group does not exist.",
    );
    await refused(
      put([{ timestamp: now, message: "x" }], "strict", "no-such-stream"),
      ResourceNotFoundException,
      "The specified log stream does not exist.",
    );
    assert.deepEqual(await messagesIn("strict", "s"), []);
    const streams = await logs.send(new DescribeLogStreamsCommand({ logGroupName: "strict" }));
    assert.equal(streams.logStreams?.[0]?.lastEventTimestamp, undefined);
  });

  it("pages GetLogEvents forwards and backwards with f/ and b/ tokens", async () => {
    await groupWithStream("paging", "s");
    const base = Date.now() - 10 * 60_000;
    const all = Array.from({ length: 25 }, (_, i) => ({ timestamp: base + i * 1000, message: `event ${i}` }));
    await logs.send(new PutLogEventsCommand({ logGroupName: "paging", logStreamName: "s", logEvents: all }));
    const names = (events: Array<{ message?: string | undefined }> | undefined) =>
      (events ?? []).map((event) => event.message);
    const range = (from: number, to: number) => all.slice(from, to).map((event) => event.message);

    // By default the latest events come back, oldest first.
    const tail = await logs.send(
      new GetLogEventsCommand({ logGroupName: "paging", logStreamName: "s", limit: 10 }),
    );
    assert.deepEqual(names(tail.events), range(15, 25));
    assert.match(tail.nextForwardToken ?? "", /^f\/\d{56}\/s$/);
    assert.match(tail.nextBackwardToken ?? "", /^b\/\d{56}\/s$/);
    assert.ok((tail.events?.[0]?.ingestionTime ?? 0) > 0);

    const back1 = await logs.send(
      new GetLogEventsCommand({
        logGroupName: "paging",
        logStreamName: "s",
        limit: 10,
        nextToken: tail.nextBackwardToken,
      }),
    );
    assert.deepEqual(names(back1.events), range(5, 15));
    const back2 = await logs.send(
      new GetLogEventsCommand({
        logGroupName: "paging",
        logStreamName: "s",
        limit: 10,
        nextToken: back1.nextBackwardToken,
      }),
    );
    assert.deepEqual(names(back2.events), range(0, 5));
    const back3 = await logs.send(
      new GetLogEventsCommand({
        logGroupName: "paging",
        logStreamName: "s",
        limit: 10,
        nextToken: back2.nextBackwardToken,
      }),
    );
    assert.deepEqual(back3.events, []);
    assert.equal(back3.nextBackwardToken, back2.nextBackwardToken);
    // Turning around from the head reads forwards again.
    const turned = await logs.send(
      new GetLogEventsCommand({
        logGroupName: "paging",
        logStreamName: "s",
        limit: 3,
        nextToken: back2.nextForwardToken,
      }),
    );
    assert.deepEqual(names(turned.events), range(5, 8));

    // At the tail, the forward token comes back unchanged until something new arrives.
    const atEnd = await logs.send(
      new GetLogEventsCommand({
        logGroupName: "paging",
        logStreamName: "s",
        nextToken: tail.nextForwardToken,
      }),
    );
    assert.deepEqual(atEnd.events, []);
    assert.equal(atEnd.nextForwardToken, tail.nextForwardToken);
    await logs.send(
      new PutLogEventsCommand({
        logGroupName: "paging",
        logStreamName: "s",
        logEvents: [{ timestamp: base + 30_000, message: "newer" }],
      }),
    );
    const follow = await logs.send(
      new GetLogEventsCommand({
        logGroupName: "paging",
        logStreamName: "s",
        nextToken: atEnd.nextForwardToken,
      }),
    );
    assert.deepEqual(names(follow.events), ["newer"]);

    // The SDK's paginator reads from the head and stops when the token repeats.
    const seen: string[] = [];
    const pages = paginateGetLogEvents(
      { client: logs, pageSize: 7, stopOnSameToken: true },
      { logGroupName: "paging", logStreamName: "s", startFromHead: true },
    );
    for await (const page of pages) seen.push(...names(page.events).map(String));
    assert.deepEqual(seen, [...range(0, 25), "newer"].map(String));

    // startTime is inclusive, endTime exclusive.
    const window = await logs.send(
      new GetLogEventsCommand({
        logGroupName: "paging",
        logStreamName: "s",
        startFromHead: true,
        startTime: base + 3000,
        endTime: base + 6000,
      }),
    );
    assert.deepEqual(names(window.events), range(3, 6));

    const byArn = await logs.send(
      new GetLogEventsCommand({
        logGroupIdentifier: `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:paging`,
        logStreamName: "s",
        limit: 1,
      }),
    );
    assert.deepEqual(names(byArn.events), ["newer"]);

    await refused(
      logs.send(new GetLogEventsCommand({ logGroupName: "paging", logStreamName: "s", nextToken: "f/123" })),
      InvalidParameterException,
      "The specified nextToken is invalid.",
    );
    await refused(
      logs.send(new GetLogEventsCommand({ logGroupName: "paging", logStreamName: "nope" })),
      ResourceNotFoundException,
      "The specified log stream does not exist.",
    );
    await refused(
      logs.send(
        new GetLogEventsCommand({ logGroupName: "paging", logGroupIdentifier: "paging", logStreamName: "s" }),
      ),
      InvalidParameterException,
    );
  });

  it("filters a group's events across streams, interleaved, with term patterns and paging", async () => {
    await groupWithStream("filter", "web-1");
    await logs.send(new CreateLogStreamCommand({ logGroupName: "filter", logStreamName: "web-2" }));
    await logs.send(new CreateLogStreamCommand({ logGroupName: "filter", logStreamName: "worker" }));
    const base = Date.now() - 60_000;
    const put = (stream: string, events: Array<[number, string]>) =>
      logs.send(
        new PutLogEventsCommand({
          logGroupName: "filter",
          logStreamName: stream,
          logEvents: events.map(([offset, message]) => ({ timestamp: base + offset, message })),
        }),
      );
    await put("web-1", [
      [1, "ERROR db connection refused"],
      [4, "INFO request served"],
    ]);
    await put("web-2", [
      [2, "WARN disk almost full"],
      [5, "ERROR disk full on /var"],
    ]);
    await put("worker", [[3, "INFO job done"]]);

    const filter = async (input: Omit<FilterLogEventsCommandInput, "logGroupName">) =>
      logs.send(new FilterLogEventsCommand({ logGroupName: "filter", ...input }));
    const messages = async (input: Omit<FilterLogEventsCommandInput, "logGroupName">) =>
      ((await filter(input)).events ?? []).map((event) => event.message);

    const everything = await filter({});
    assert.deepEqual(
      everything.events?.map((event) => [event.logStreamName, event.message]),
      [
        ["web-1", "ERROR db connection refused"],
        ["web-2", "WARN disk almost full"],
        ["worker", "INFO job done"],
        ["web-1", "INFO request served"],
        ["web-2", "ERROR disk full on /var"],
      ],
    );
    const ids = everything.events?.map((event) => event.eventId) ?? [];
    assert.equal(new Set(ids).size, 5);
    assert.ok(ids.every((id) => /^\d{56}$/.test(id ?? "")));
    assert.ok(everything.events?.every((event) => (event.ingestionTime ?? 0) > 0));
    assert.equal(everything.nextToken, undefined);

    assert.deepEqual(await messages({ filterPattern: "ERROR" }), [
      "ERROR db connection refused",
      "ERROR disk full on /var",
    ]);
    assert.deepEqual(await messages({ filterPattern: "ERROR disk" }), ["ERROR disk full on /var"]);
    assert.deepEqual(await messages({ filterPattern: '"disk full"' }), ["ERROR disk full on /var"]);
    assert.deepEqual(await messages({ filterPattern: "?WARN ?refused" }), [
      "ERROR db connection refused",
      "WARN disk almost full",
    ]);
    assert.deepEqual(await messages({ filterPattern: "INFO -job" }), ["INFO request served"]);
    assert.deepEqual(await messages({ logStreamNames: ["worker", "web-1"] }), [
      "ERROR db connection refused",
      "INFO job done",
      "INFO request served",
    ]);
    assert.deepEqual(await messages({ logStreamNamePrefix: "web-", filterPattern: "INFO" }), [
      "INFO request served",
    ]);
    // Both ends of the time range are inclusive here.
    assert.deepEqual(await messages({ startTime: base + 2, endTime: base + 3 }), [
      "WARN disk almost full",
      "INFO job done",
    ]);

    const paged: string[] = [];
    let nextToken: string | undefined;
    do {
      const page = await filter({ limit: 2, nextToken });
      paged.push(...(page.events ?? []).map((event) => event.message ?? ""));
      nextToken = page.nextToken;
    } while (nextToken !== undefined);
    assert.deepEqual(
      paged,
      everything.events?.map((event) => event.message),
    );

    const byArn = await logs.send(
      new FilterLogEventsCommand({
        logGroupIdentifier: `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:filter`,
        filterPattern: "job",
      }),
    );
    assert.deepEqual(
      byArn.events?.map((event) => event.message),
      ["INFO job done"],
    );

    await refused(filter({ filterPattern: '{ $.level = "ERROR" }' }), InvalidParameterException);
    await refused(
      filter({ logStreamNames: ["web-1"], logStreamNamePrefix: "web" }),
      InvalidParameterException,
    );
    await refused(
      filter({ nextToken: "bogus" }),
      InvalidParameterException,
      "The specified nextToken is invalid.",
    );
    await refused(
      logs.send(new FilterLogEventsCommand({ logGroupName: "no-such-group" })),
      ResourceNotFoundException,
      "The specified log group does not exist.",
    );
  });

  it("shows what appendLogEvents (the agent's log shipping) stored", async () => {
    const now = new Date();
    const t = now.getTime();
    await appendLogEvents(
      server.store,
      { region: REGION, accountId: ACCOUNT },
      "/ecs/shipped",
      "web/app/abc123",
      [
        { timestamp: t - 2000, message: "second" },
        { timestamp: t - 3000, message: "first" },
      ],
      { createGroup: true, now },
    );
    await appendLogEvents(
      server.store,
      { region: REGION, accountId: ACCOUNT },
      "/ecs/shipped",
      "web/app/abc123",
      [{ timestamp: t - 1000, message: "third" }],
      { createGroup: false, now },
    );
    assert.deepEqual(await messagesIn("/ecs/shipped", "web/app/abc123"), ["first", "second", "third"]);
    const groups = await logs.send(new DescribeLogGroupsCommand({ logGroupNamePrefix: "/ecs/shipped" }));
    assert.equal(groups.logGroups?.[0]?.storedBytes, "firstsecondthird".length);
    const streams = await logs.send(new DescribeLogStreamsCommand({ logGroupName: "/ecs/shipped" }));
    assert.equal(streams.logStreams?.[0]?.firstEventTimestamp, t - 3000);
    assert.equal(streams.logStreams?.[0]?.lastEventTimestamp, t - 1000);
    await assert.rejects(
      appendLogEvents(server.store, { region: REGION, accountId: ACCOUNT }, "/ecs/absent", "s", [], {
        createGroup: false,
        now,
      }),
      /The specified log group does not exist\./,
    );
  });
});

describe("CloudWatch Logs with the AWS CLI", () => {
  it("creates a group and stream, puts, gets, filters, describes and tails events", async () => {
    const run = async (args: string[]) => {
      const result = await aws(server, ["logs", ...args]);
      assert.equal(result.code, 0, `aws logs ${args.join(" ")}: ${result.stderr}`);
      return result;
    };
    await run(["create-log-group", "--log-group-name", "/cli/app"]);
    await run(["create-log-stream", "--log-group-name", "/cli/app", "--log-stream-name", "main"]);
    const now = Date.now();
    const put = await run([
      "put-log-events",
      "--log-group-name",
      "/cli/app",
      "--log-stream-name",
      "main",
      "--log-events",
      `timestamp=${now - 2000},message=hello from the cli`,
      `timestamp=${now - 1000},message=ERROR something broke`,
    ]);
    assert.match((put.json as { nextSequenceToken: string }).nextSequenceToken, /^\d{56}$/);

    const got = await run(["get-log-events", "--log-group-name", "/cli/app", "--log-stream-name", "main"]);
    const gotJson = got.json as { events: Array<{ message: string }>; nextForwardToken: string };
    assert.deepEqual(
      gotJson.events.map((event) => event.message),
      ["hello from the cli", "ERROR something broke"],
    );
    assert.match(gotJson.nextForwardToken, /^f\//);

    const filtered = await run([
      "filter-log-events",
      "--log-group-name",
      "/cli/app",
      "--filter-pattern",
      "ERROR",
    ]);
    const filteredJson = filtered.json as { events: Array<{ message: string; logStreamName: string }> };
    assert.deepEqual(
      filteredJson.events.map((event) => [event.logStreamName, event.message]),
      [["main", "ERROR something broke"]],
    );

    const groups = await run(["describe-log-groups", "--log-group-name-prefix", "/cli/"]);
    const groupsJson = groups.json as { logGroups: Array<{ logGroupName: string; arn: string }> };
    assert.deepEqual(
      groupsJson.logGroups.map((group) => group.logGroupName),
      ["/cli/app"],
    );
    assert.equal(groupsJson.logGroups[0]?.arn, `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:/cli/app:*`);

    const streams = await run(["describe-log-streams", "--log-group-name", "/cli/app"]);
    const streamsJson = streams.json as {
      logStreams: Array<{ logStreamName: string; lastEventTimestamp: number }>;
    };
    assert.equal(streamsJson.logStreams[0]?.logStreamName, "main");
    assert.equal(streamsJson.logStreams[0]?.lastEventTimestamp, now - 1000);

    const tail = await run(["tail", "/cli/app", "--since", "1h"]);
    assert.match(tail.stdout, /main hello from the cli/);
    assert.match(tail.stdout, /main ERROR something broke/);
  });

  it("reports the service's errors through the CLI", async () => {
    await aws(server, ["logs", "create-log-group", "--log-group-name", "/cli/dup"]);
    const dup = await aws(server, ["logs", "create-log-group", "--log-group-name", "/cli/dup"]);
    assert.notEqual(dup.code, 0);
    assert.match(dup.stderr, /ResourceAlreadyExistsException/);
    assert.match(dup.stderr, /The specified log group already exists/);
    const missing = await aws(server, [
      "logs",
      "get-log-events",
      "--log-group-name",
      "/cli/dup",
      "--log-stream-name",
      "absent",
    ]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /ResourceNotFoundException/);
    assert.match(missing.stderr, /The specified log stream does not exist\./);
  });
});

const FUZZ_OPERATIONS = [
  "CreateLogGroup",
  "DeleteLogGroup",
  "DescribeLogGroups",
  "PutRetentionPolicy",
  "DeleteRetentionPolicy",
  "CreateLogStream",
  "DeleteLogStream",
  "DescribeLogStreams",
  "PutLogEvents",
  "GetLogEvents",
  "FilterLogEvents",
  "TagResource",
  "UntagResource",
  "ListTagsForResource",
  "TagLogGroup",
  "UntagLogGroup",
  "ListTagsLogGroup",
];

const FUZZ_FIELDS = [
  "logGroupName",
  "logStreamName",
  "logGroupIdentifier",
  "logEvents",
  "nextToken",
  "limit",
  "startTime",
  "endTime",
  "startFromHead",
  "filterPattern",
  "logStreamNames",
  "logStreamNamePrefix",
  "logGroupNamePrefix",
  "logGroupNamePattern",
  "orderBy",
  "descending",
  "tags",
  "tagKeys",
  "resourceArn",
  "retentionInDays",
  "sequenceToken",
  "__proto__",
];

function fuzzValue(random: () => number, depth = 0): unknown {
  const now = Date.now();
  const strings = [
    "fuzz",
    "s",
    "",
    "a:b",
    "aws/x",
    "x".repeat(600),
    `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:fuzz`,
    `arn:aws:logs:${REGION}:${ACCOUNT}:destination:d`,
    "arn:aws:ecs:us-east-1:000000000000:cluster/x",
    `f/${"0".repeat(56)}/s`,
    `b/${"9".repeat(28)}${"0".repeat(28)}/s`,
    "LastEventTime",
    '?ERROR -"x',
    "{ $.a = 1 }",
    "\u0000\uffff",
  ];
  switch (Math.floor(random() * (depth > 2 ? 5 : 8))) {
    case 0:
      return null;
    case 1:
      return random() < 0.5;
    case 2:
      return [now, -1, 0, 1.5, 1e300, 51, 10_001, 7, now - 20 * DAY][Math.floor(random() * 9)];
    case 3:
    case 4:
      return strings[Math.floor(random() * strings.length)];
    case 5:
      return Array.from({ length: Math.floor(random() * 4) }, () => ({
        timestamp: random() < 0.7 ? now - Math.floor(random() * 1000) : fuzzValue(random, depth + 1),
        message: random() < 0.7 ? "fuzz event" : fuzzValue(random, depth + 1),
      }));
    case 6:
      return Array.from({ length: Math.floor(random() * 4) }, () => fuzzValue(random, depth + 1));
    default: {
      const object: Record<string, unknown> = {};
      for (let i = Math.floor(random() * 3); i > 0; i--) {
        object[FUZZ_FIELDS[Math.floor(random() * FUZZ_FIELDS.length)] ?? "k"] = fuzzValue(random, depth + 1);
      }
      return object;
    }
  }
}

describe("CloudWatch Logs against malformed input", () => {
  it("never answers 500 to signed requests with bad or odd input", async () => {
    await groupWithStream("fuzz", "s");
    const seed = Number(process.env.WHARF_FUZZ_SEED ?? 20261206);
    const random = prng(seed);
    const url = new URL(server.endpoint);
    const signer = new SignatureV4({
      service: "logs",
      region: REGION,
      credentials: server.credentials,
      sha256: Sha256,
    });
    for (let i = 0; i < 300; i++) {
      const operation = FUZZ_OPERATIONS[Math.floor(random() * FUZZ_OPERATIONS.length)] ?? "GetLogEvents";
      const input: Record<string, unknown> = {};
      for (let n = Math.floor(random() * 6); n > 0; n--) {
        const field = FUZZ_FIELDS[Math.floor(random() * FUZZ_FIELDS.length)] ?? "logGroupName";
        input[field] = fuzzValue(random);
      }
      if (random() < 0.6) input.logGroupName = "fuzz";
      if (random() < 0.6) input.logStreamName = "s";
      const body = JSON.stringify(input);
      const signed = await signer.sign(
        new HttpRequest({
          method: "POST",
          hostname: url.hostname,
          port: Number(url.port),
          path: "/",
          headers: {
            host: url.host,
            "content-type": "application/x-amz-json-1.1",
            "x-amz-target": `Logs_20140328.${operation}`,
          },
          body,
        }),
      );
      const response = await fetch(server.endpoint, { method: "POST", headers: signed.headers, body });
      const text = await response.text();
      assert.ok(
        response.status < 500,
        `seed ${seed} request ${i}: ${operation} ${body} answered ${response.status} ${text}`,
      );
    }
  });
});
