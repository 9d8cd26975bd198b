import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { evaluate, parseQuery, QueryError, type Subjects } from "./query.ts";

/** An instance as the query language sees it: attributes and a few fields. */
const web: Record<string, string | string[]> = {
  "attribute:ecs.availability-zone": "us-east-1a",
  "attribute:ecs.instance-type": "t2.small",
  "attribute:color": "blue",
  "attribute:stack": "",
  "attribute:label": "blue green",
  "attribute:gen": "10",
  ec2InstanceId: "i-0123456789abcdef0",
  agentConnected: "true",
  runningTasksCount: "3",
  "task:group": ["family:web", "service:api"],
};

function subjectsOf(values: Record<string, string | string[]>): Subjects {
  return (subject) => values[subject];
}

function matches(expression: string, values = web): boolean {
  return evaluate(parseQuery(expression), subjectsOf(values));
}

describe("cluster query language: comparisons", () => {
  it("== and != compare strings exactly, or by wildcard", () => {
    assert.equal(matches("attribute:color == blue"), true);
    assert.equal(matches("attribute:color == Blue"), false);
    assert.equal(matches("attribute:color != blue"), false);
    assert.equal(matches("attribute:color != red"), true);
    assert.equal(matches("attribute:ecs.instance-type == t2.*"), true);
    assert.equal(matches("attribute:ecs.instance-type == m5.*"), false);
    assert.equal(matches("attribute:ecs.instance-type != t2.*"), false);
    assert.equal(matches("attribute:color==blue"), true, "no spaces needed around operators");
  });

  it(">, >=, < and <= compare numbers as numbers and other values as strings", () => {
    assert.equal(matches("runningTasksCount > 2"), true);
    assert.equal(matches("runningTasksCount > 3"), false);
    assert.equal(matches("runningTasksCount >= 3"), true);
    assert.equal(matches("runningTasksCount < 3"), false);
    assert.equal(matches("runningTasksCount <= 3"), true);
    assert.equal(matches("runningTasksCount < 10"), true, "3 < 10 numerically, not as text");
    assert.equal(matches("attribute:gen > 9"), true, "10 > 9 numerically, not as text");
    assert.equal(matches("attribute:color > azure"), true);
    assert.equal(matches("attribute:color < azure"), false);
  });

  it("=~ and !~ match a whole value against a regular expression", () => {
    assert.equal(matches("attribute:ecs.availability-zone =~ us-east-1.*"), true);
    assert.equal(matches("attribute:ecs.availability-zone =~ us-east"), false, "anchored at both ends");
    assert.equal(matches("attribute:ecs.availability-zone =~ 'us-(east|west)-1[ab]'"), true);
    assert.equal(matches("attribute:ecs.availability-zone !~ eu-.*"), true);
    assert.equal(matches("attribute:ecs.availability-zone !~ us-.*"), false);
  });

  it("in and !in (not_in) test membership of a list", () => {
    assert.equal(matches("attribute:ecs.availability-zone in [us-east-1a, us-east-1b]"), true);
    assert.equal(matches("attribute:ecs.availability-zone in [us-east-1b,us-east-1c]"), false);
    assert.equal(matches("attribute:ecs.availability-zone !in [us-east-1b, us-east-1c]"), true);
    assert.equal(matches("attribute:ecs.availability-zone not_in [us-east-1a]"), false);
    assert.equal(matches("attribute:color in []"), false);
    assert.equal(matches("attribute:color IN [blue]"), true, "operator words are case-insensitive");
  });

  it("exists and !exists (not_exists) test presence, including of attributes without a value", () => {
    assert.equal(matches("attribute:color exists"), true);
    assert.equal(matches("attribute:stack exists"), true);
    assert.equal(matches("attribute:gpu exists"), false);
    assert.equal(matches("attribute:gpu !exists"), true);
    assert.equal(matches("attribute:gpu not_exists"), true);
    assert.equal(matches("attribute:color not_exists"), false);
  });

  it("accepts ECS's word spellings of every operator", () => {
    const pairs: Array<[string, string]> = [
      ["attribute:color equals blue", "attribute:color == blue"],
      ["attribute:color not_equals blue", "attribute:color != blue"],
      ["runningTasksCount greater_than 2", "runningTasksCount > 2"],
      ["runningTasksCount greater_than_equal 4", "runningTasksCount >= 4"],
      ["runningTasksCount less_than 4", "runningTasksCount < 4"],
      ["runningTasksCount less_than_equal 2", "runningTasksCount <= 2"],
      ["attribute:color matches bl.*", "attribute:color =~ bl.*"],
      ["attribute:color not_matches bl.*", "attribute:color !~ bl.*"],
    ];
    for (const [words, symbols] of pairs) {
      assert.deepEqual(parseQuery(words), parseQuery(symbols), words);
    }
    assert.equal(matches("attribute:color equals blue"), true);
    assert.equal(matches("runningTasksCount greater_than_equal 4"), false);
  });

  it("treats a subject the instance lacks as matching only negations", () => {
    for (const expression of [
      "attribute:gpu == x",
      "attribute:gpu > 1",
      "attribute:gpu =~ .*",
      "attribute:gpu in [x]",
      "attribute:gpu exists",
    ]) {
      assert.equal(matches(expression), false, expression);
    }
    for (const expression of ["attribute:gpu != x", "attribute:gpu !~ .*", "attribute:gpu !in [x]"]) {
      assert.equal(matches(expression), true, expression);
    }
  });

  it("matches a subject with several values (task:group) if any value does, a negation only if all do", () => {
    assert.equal(matches("task:group == service:api"), true);
    assert.equal(matches("task:group == service:db"), false);
    assert.equal(matches("task:group in [service:db, family:web]"), true);
    assert.equal(matches("task:group != service:api"), false);
    assert.equal(matches("task:group !in [service:db]"), true);
    assert.equal(matches("task:group =~ service:.*"), true);
  });

  it("orders registeredAt as dates, in ECS's date forms, and refuses a value that is not one", () => {
    const old = { ...web, registeredAt: "2018-06-06T23:00:00.000Z" };
    assert.equal(matches("registeredAt < 2018-06-07", old), true);
    assert.equal(matches("registeredAt >= 2018-06-07", old), false);
    assert.equal(matches("registeredAt < 2018-06-06T22:59:59Z", old), false);
    assert.equal(
      matches("registeredAt == 2018-06-06T23:00:00Z", old),
      true,
      "equal instants, not equal text",
    );
    assert.equal(
      matches("registeredAt == '2018-06-07T01:00:00+02:00'", old),
      true,
      "a zone moves the instant",
    );
    assert.equal(matches("registeredAt > 2018-06-06T22:00:00", old), true, "UTC without a zone");
    assert.equal(matches("registeredAt != 2018-06-06T23:00:00Z", old), false);
    assert.throws(() => parseQuery("registeredAt < yesterday"), QueryError);
    assert.throws(() => parseQuery("registeredAt > 2018-13-45"), QueryError);
  });

  it("orders agentVersion part by part, numerically", () => {
    const agent = { ...web, agentVersion: "1.9.2" };
    assert.equal(matches("agentVersion < 1.20.0", agent), true, "9 < 20 as numbers, not as text");
    assert.equal(matches("agentVersion >= 1.9", agent), true);
    assert.equal(matches("agentVersion == 1.9.2", agent), true);
    assert.equal(matches("agentVersion > 1.9.2", agent), false);
    assert.equal(matches("agentVersion != 1.9.2", agent), false);
  });
});

describe("cluster query language: values", () => {
  it("takes quoted values, in single or double quotes, with spaces and syntax characters", () => {
    assert.equal(matches('attribute:label == "blue green"'), true);
    assert.equal(matches("attribute:label == 'blue green'"), true);
    assert.equal(matches("attribute:label in ['red', \"blue green\"]"), true);
    const odd = { "attribute:x": "a, (b) == [c]" };
    assert.equal(matches("attribute:x == 'a, (b) == [c]'", odd), true);
    assert.equal(matches('attribute:x in ["a, (b) == [c]"]', odd), true);
    assert.equal(matches("attribute:stack == ''"), true, "an empty quoted value");
  });

  it("keeps dots, dashes, colons and slashes inside bare values", () => {
    const values = { "attribute:path": "a/b:c.d-e_f", ec2InstanceId: "i-0abc" };
    assert.equal(matches("attribute:path == a/b:c.d-e_f", values), true);
    assert.equal(matches("ec2InstanceId in [i-0abc, i-0def]", values), true);
  });
});

describe("cluster query language: compound expressions", () => {
  it("combines with and/&&, or/||, not/! and parentheses", () => {
    assert.equal(matches("attribute:color == blue and runningTasksCount < 5"), true);
    assert.equal(matches("attribute:color == blue && runningTasksCount > 5"), false);
    assert.equal(matches("attribute:color == red or runningTasksCount < 5"), true);
    assert.equal(matches("attribute:color == red || runningTasksCount > 5"), false);
    assert.equal(matches("not(attribute:color == red)"), true);
    assert.equal(matches("!(attribute:color == blue)"), false);
    assert.equal(matches("not(attribute:gpu exists)"), true);
    assert.equal(matches("NOT (attribute:color exists) OR agentConnected == true"), true);
  });

  it("binds and tighter than or; parentheses change that", () => {
    // true or (false and false) = true; (true or false) and false = false
    assert.equal(
      matches("attribute:color == blue or attribute:color == red and runningTasksCount > 5"),
      true,
    );
    assert.equal(
      matches("(attribute:color == blue or attribute:color == red) and runningTasksCount > 5"),
      false,
    );
    assert.equal(
      matches(
        "not(attribute:stack exists) or (runningTasksCount < 4 and (agentConnected == true and attribute:color in [blue]))",
      ),
      true,
    );
  });

  it("parses left-associative chains", () => {
    assert.equal(
      matches("attribute:color == blue and agentConnected == true and runningTasksCount == 3"),
      true,
    );
    assert.equal(matches("attribute:color == x or attribute:color == y or attribute:color == blue"), true);
  });
});

describe("cluster query language: bad syntax", () => {
  const bad = [
    "",
    "   ",
    "attribute:color",
    "attribute:color ==",
    "attribute:color = blue",
    "attribute:color is blue",
    "attribute:color == 'blue",
    'attribute:color == "blue',
    "(attribute:color == blue",
    "attribute:color == blue)",
    "attribute:color == blue attribute:stack exists",
    "attribute:color == blue and",
    "or attribute:color == blue",
    "not attribute:color == blue",
    "not()",
    "attribute:color in blue",
    "attribute:color in [blue",
    "attribute:color in [blue green]",
    "attribute:color in [blue,, green]",
    "attribute:color == (",
    "attribute:color == ]",
    "attribute:color == ==",
    "attribute:color =~ '(unclosed'",
    "attribute:color !~ '[z-a]'",
    // The subjects ECS compares in order take no list or pattern.
    "agentVersion in [1.20.0, 1.21.0]",
    "registeredAt !in [2025-01-01]",
    "runningTasksCount not_in [0]",
    "agentVersion =~ '1\\..*'",
    "registeredAt !~ '2025-.*'",
  ];
  for (const expression of bad) {
    it(`refuses ${JSON.stringify(expression)} with a QueryError`, () => {
      assert.throws(() => parseQuery(expression), QueryError);
    });
  }
});
