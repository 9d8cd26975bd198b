import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AwsError } from "../aws/errors.ts";
import {
  evaluateLifecyclePolicy,
  type LifecycleImage,
  type LifecyclePolicy,
  parseLifecyclePolicy,
} from "./lifecycle.ts";

const NOW = new Date("2024-06-01T12:00:00Z");
const DAY_MS = 86_400_000;

/** An image pushed `days` (fractions allowed) before NOW. */
function image(digest: string, tags: string[], days: number): LifecycleImage {
  return { digest, tags, pushedAt: new Date(NOW.getTime() - days * DAY_MS) };
}

/** A rule as policy JSON, with an expire action. */
function rule(rulePriority: number, selection: Record<string, unknown>): Record<string, unknown> {
  return { rulePriority, description: `Rule ${rulePriority}`, selection, action: { type: "expire" } };
}

const keepOneUntagged = { tagStatus: "untagged", countType: "imageCountMoreThan", countNumber: 1 };

function text(...rules: unknown[]): string {
  return JSON.stringify({ rules });
}

function caught(fn: () => unknown): AwsError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof AwsError);
    return error;
  }
  assert.fail("expected an error");
}

/** Asserts the text is refused with ECR's envelope around `detail`. */
function assertRefused(policyText: string, detail: string): void {
  const error = caught(() => parseLifecyclePolicy(policyText));
  assert.equal(error.code, "InvalidParameterException");
  assert.equal(error.status, 400);
  assert.equal(
    error.message,
    `Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: ${detail}'`,
  );
}

/** Parses policy JSON and evaluates it at NOW; returns the expired digests, oldest first. */
function expiredBy(policyText: string, images: LifecycleImage[]): string[] {
  return evaluateLifecyclePolicy(parseLifecyclePolicy(policyText), images, NOW).map((e) => e.digest);
}

describe("parseLifecyclePolicy accepts", () => {
  it("a valid policy and converts it into the internal types", () => {
    const policy = parseLifecyclePolicy(
      text(
        rule(1, {
          tagStatus: "tagged",
          tagPrefixList: ["prod"],
          countType: "imageCountMoreThan",
          countNumber: 3,
        }),
        rule(5, { tagStatus: "untagged", countType: "sinceImagePushed", countUnit: "days", countNumber: 14 }),
        {
          rulePriority: 9,
          selection: { tagStatus: "any", countType: "imageCountMoreThan", countNumber: 100 },
          action: { type: "expire" },
        },
      ),
    );
    const expected: LifecyclePolicy = {
      rules: [
        {
          rulePriority: 1,
          description: "Rule 1",
          selection: {
            tagStatus: "tagged",
            tagPrefixList: ["prod"],
            countType: "imageCountMoreThan",
            countNumber: 3,
          },
          action: { type: "expire" },
        },
        {
          rulePriority: 5,
          description: "Rule 5",
          selection: {
            tagStatus: "untagged",
            countType: "sinceImagePushed",
            countUnit: "days",
            countNumber: 14,
          },
          action: { type: "expire" },
        },
        {
          rulePriority: 9,
          selection: { tagStatus: "any", countType: "imageCountMoreThan", countNumber: 100 },
          action: { type: "expire" },
        },
      ],
    };
    assert.deepEqual(policy, expected);
  });

  it("tag patterns with up to four wildcards (the docs' valid example)", () => {
    const policy = parseLifecyclePolicy(
      text(
        rule(1, {
          tagStatus: "tagged",
          tagPatternList: ["*test*1*2*3", "test*1*2*3*"],
          countType: "imageCountMoreThan",
          countNumber: 1,
        }),
      ),
    );
    assert.deepEqual(policy.rules[0]?.selection.tagPatternList, ["*test*1*2*3", "test*1*2*3*"]);
  });

  it("rule priorities that are not sequential", () => {
    const policy = parseLifecyclePolicy(
      text(
        rule(10, keepOneUntagged),
        rule(30, { tagStatus: "any", countType: "imageCountMoreThan", countNumber: 9 }),
      ),
    );
    assert.deepEqual(
      policy.rules.map((r) => r.rulePriority),
      [10, 30],
    );
  });
});

describe("parseLifecyclePolicy refuses", () => {
  it("text longer than 30720 characters with Coral's length message", () => {
    const long = text(rule(1, keepOneUntagged)) + " ".repeat(30720);
    const error = caught(() => parseLifecyclePolicy(long));
    assert.equal(error.code, "InvalidParameterException");
    assert.match(
      error.message,
      /^1 validation error detected: Value '.*' at 'lifecyclePolicyText' failed to satisfy/s,
    );
    assert.match(error.message, /Member must have length less than or equal to 30720$/);
  });

  it("text that is not JSON", () => {
    assertRefused("some invalid input", "Could not map policyString into LifecyclePolicy.");
  });

  it("JSON that is not an object", () => {
    assertRefused(
      JSON.stringify([rule(1, keepOneUntagged)]),
      "Could not map policyString into LifecyclePolicy.",
    );
    assertRefused("null", "Could not map policyString into LifecyclePolicy.");
  });

  it("a policy without rules", () => {
    assertRefused(JSON.stringify({}), 'object has missing required properties (["rules"])');
  });

  it("rules that are not an array", () => {
    assertRefused(
      JSON.stringify({ rules: rule(1, keepOneUntagged) }),
      'instance type (object) does not match any allowed primitive type (allowed: ["array"])',
    );
  });

  it("an empty rules array", () => {
    assertRefused(
      JSON.stringify({ rules: [] }),
      "array is too short: must have at least 1 elements but instance has 0 elements",
    );
  });

  it("unknown top-level properties", () => {
    assertRefused(
      JSON.stringify({ rules: [rule(1, keepOneUntagged)], version: 1, comment: "x" }),
      'object instance has properties which are not allowed by the schema: ["comment","version"]',
    );
  });

  it("a rule that is not an object", () => {
    assertRefused(
      text("not a rule"),
      'instance type (string) does not match any allowed primitive type (allowed: ["object"])',
    );
  });

  it("a rule missing its required members, named together", () => {
    assertRefused(
      text({ description: "d" }),
      'object has missing required properties (["action","rulePriority","selection"])',
    );
  });

  it("unknown rule properties", () => {
    assertRefused(
      text({ ...rule(1, keepOneUntagged), unknown: 123 }),
      'object instance has properties which are not allowed by the schema: ["unknown"]',
    );
  });

  it("a rulePriority that is not an integer", () => {
    assertRefused(
      text(rule(1.5, keepOneUntagged)),
      'instance type (number) does not match any allowed primitive type (allowed: ["integer"])',
    );
    assertRefused(
      text({ ...rule(1, keepOneUntagged), rulePriority: "1" }),
      'instance type (string) does not match any allowed primitive type (allowed: ["integer"])',
    );
  });

  it("a rulePriority below 1", () => {
    assertRefused(
      text(rule(0, keepOneUntagged)),
      "numeric instance is lower than the required minimum (minimum: 1, found: 0)",
    );
  });

  it("two rules with the same rulePriority", () => {
    assertRefused(
      text(
        rule(2, {
          tagStatus: "tagged",
          tagPrefixList: ["a"],
          countType: "imageCountMoreThan",
          countNumber: 1,
        }),
        rule(2, {
          tagStatus: "tagged",
          tagPrefixList: ["b"],
          countType: "imageCountMoreThan",
          countNumber: 1,
        }),
      ),
      "Duplicate rulePriority 2: each rule must have a unique rulePriority.",
    );
  });

  it("a description that is not a string", () => {
    assertRefused(
      text({ ...rule(1, keepOneUntagged), description: 7 }),
      'instance type (integer) does not match any allowed primitive type (allowed: ["string"])',
    );
  });

  it("an action type other than expire", () => {
    assertRefused(
      text({ ...rule(1, keepOneUntagged), action: { type: "keep" } }),
      'instance value ("keep") not found in enum (possible values: ["expire"])',
    );
  });

  it("an action without a type, or with unknown members", () => {
    assertRefused(
      text({ ...rule(1, keepOneUntagged), action: {} }),
      'object has missing required properties (["type"])',
    );
    assertRefused(
      text({ ...rule(1, keepOneUntagged), action: { type: "expire", targetStorageClass: "archive" } }),
      'object instance has properties which are not allowed by the schema: ["targetStorageClass"]',
    );
  });

  it("an unknown tagStatus", () => {
    assertRefused(
      text(rule(1, { ...keepOneUntagged, tagStatus: "unknown" })),
      'instance value ("unknown") not found in enum (possible values: ["tagged","untagged","any"])',
    );
  });

  it("a selection missing its required members", () => {
    assertRefused(
      text(rule(1, { tagStatus: "untagged" })),
      'object has missing required properties (["countNumber","countType"])',
    );
    assertRefused(
      text(rule(1, { countType: "imageCountMoreThan", countNumber: 1 })),
      'object has missing required properties (["tagStatus"])',
    );
  });

  it("unknown selection properties", () => {
    assertRefused(
      text(rule(1, { ...keepOneUntagged, storageClass: "standard" })),
      'object instance has properties which are not allowed by the schema: ["storageClass"]',
    );
  });

  it("a tag list that is null, as ECR answers a null from Terraform", () => {
    assertRefused(
      text(rule(1, { ...keepOneUntagged, tagStatus: "tagged", tagPatternList: null })),
      'instance type (null) does not match any allowed primitive type (allowed: ["array"])',
    );
  });

  it("an empty tag list", () => {
    assertRefused(
      text(rule(1, { ...keepOneUntagged, tagStatus: "tagged", tagPrefixList: [] })),
      "array is too short: must have at least 1 elements but instance has 0 elements",
    );
  });

  it("a tagged rule with neither tagPrefixList nor tagPatternList", () => {
    assertRefused(
      text(rule(1, { ...keepOneUntagged, tagStatus: "tagged" })),
      "Must specify tagPrefixList or tagPatternList when tagStatus=TAGGED.",
    );
  });

  it("a tagged rule with both tagPrefixList and tagPatternList", () => {
    assertRefused(
      text(
        rule(1, { ...keepOneUntagged, tagStatus: "tagged", tagPrefixList: ["a"], tagPatternList: ["a*"] }),
      ),
      "If policy has a tagged rule, it must specify only one of tagPrefixList or tagPatternList.",
    );
  });

  it("a tag pattern with more than four wildcards (the docs' invalid example)", () => {
    assertRefused(
      text(rule(1, { ...keepOneUntagged, tagStatus: "tagged", tagPatternList: ["ok*", "test*1*2*3*4*5*6"] })),
      "Invalid tag pattern provided: 'test*1*2*3*4*5*6' has more than 4 wildcards (*).",
    );
    assertRefused(
      text(rule(1, { ...keepOneUntagged, tagStatus: "tagged", tagPatternList: ["*a*b*c*d*"] })),
      "Invalid tag pattern provided: '*a*b*c*d*' has more than 4 wildcards (*).",
    );
  });

  it("tag lists on untagged and any rules", () => {
    assertRefused(
      text(rule(1, { ...keepOneUntagged, tagPrefixList: ["prod"] })),
      "Cannot specify tagPrefixList when tagStatus=UNTAGGED.",
    );
    assertRefused(
      text(rule(1, { ...keepOneUntagged, tagStatus: "any", tagPatternList: ["prod*"] })),
      "Cannot specify tagPatternList when tagStatus=ANY.",
    );
  });

  it("imageCountMoreThan with a countUnit", () => {
    assertRefused(
      text(rule(1, { ...keepOneUntagged, countUnit: "days" })),
      "instance failed to match exactly one schema (matched 0 out of 2)",
    );
  });

  it("sinceImagePushed without countUnit days", () => {
    const since = { tagStatus: "untagged", countType: "sinceImagePushed", countNumber: 14 };
    assertRefused(text(rule(1, since)), "instance failed to match exactly one schema (matched 0 out of 2)");
    assertRefused(
      text(rule(1, { ...since, countUnit: "hours" })),
      "instance failed to match exactly one schema (matched 0 out of 2)",
    );
    assertRefused(
      text(rule(1, { ...since, countUnit: null })),
      "instance failed to match exactly one schema (matched 0 out of 2)",
    );
  });

  it("an unknown countType", () => {
    assertRefused(
      text(rule(1, { ...keepOneUntagged, countType: "sinceImagePulled" })),
      "instance failed to match exactly one schema (matched 0 out of 2)",
    );
  });

  it("a countNumber that is not a positive integer", () => {
    assertRefused(
      text(rule(1, { ...keepOneUntagged, countNumber: 0 })),
      "numeric instance is lower than the required minimum (minimum: 1, found: 0)",
    );
    assertRefused(
      text(rule(1, { ...keepOneUntagged, countNumber: -1 })),
      "numeric instance is lower than the required minimum (minimum: 1, found: -1)",
    );
    assertRefused(
      text(rule(1, { ...keepOneUntagged, countNumber: 2.5 })),
      'instance type (number) does not match any allowed primitive type (allowed: ["integer"])',
    );
  });

  it("an any rule that is not the last rule", () => {
    assertRefused(
      text(
        rule(1, { tagStatus: "any", countType: "imageCountMoreThan", countNumber: 5 }),
        rule(2, keepOneUntagged),
      ),
      "Rule for tagStatus=ANY must have the lowest priority.",
    );
  });

  it("two any rules", () => {
    const any = { tagStatus: "any", countType: "imageCountMoreThan", countNumber: 5 };
    assertRefused(text(rule(1, any), rule(2, any)), "Rule for tagStatus=ANY must have the lowest priority.");
  });

  it("two rules selecting untagged images", () => {
    assertRefused(
      text(rule(1, keepOneUntagged), rule(2, { ...keepOneUntagged, countNumber: 3 })),
      "Only one rule can select Untagged images.",
    );
  });

  it("with every schema failure listed, one per line", () => {
    assertRefused(
      text(
        rule(1, { ...keepOneUntagged, tagStatus: "tagged", tagPrefixList: null }),
        rule(2, { ...keepOneUntagged, tagStatus: "tagged", tagPrefixList: null }),
      ),
      [
        'instance type (null) does not match any allowed primitive type (allowed: ["array"])',
        'instance type (null) does not match any allowed primitive type (allowed: ["array"])',
      ].join("\n"),
    );
  });
});

describe("evaluateLifecyclePolicy", () => {
  it("keeps the newest N images with imageCountMoreThan and expires the rest, oldest first", () => {
    const images = [image("d", [], 1), image("a", [], 4), image("c", [], 2), image("b", [], 3)];
    const expirations = evaluateLifecyclePolicy(
      parseLifecyclePolicy(text(rule(1, { ...keepOneUntagged, countNumber: 2 }))),
      images,
      NOW,
    );
    assert.deepEqual(expirations, [
      { digest: "a", tags: [], pushedAt: images[1]?.pushedAt, rulePriority: 1 },
      { digest: "b", tags: [], pushedAt: images[3]?.pushedAt, rulePriority: 1 },
    ]);
  });

  it("expires nothing while the count is not exceeded", () => {
    const policy = text(rule(1, { ...keepOneUntagged, countNumber: 3 }));
    assert.deepEqual(expiredBy(policy, [image("a", [], 2), image("b", [], 1)]), []);
  });

  it("expires images pushed more than N days before now with sinceImagePushed", () => {
    const policy = text(
      rule(1, { tagStatus: "untagged", countType: "sinceImagePushed", countUnit: "days", countNumber: 14 }),
    );
    const images = [
      image("older", [], 30),
      image("just-over", [], 14 + 1 / 86_400),
      image("exactly", [], 14),
      image("just-under", [], 14 - 1 / 86_400),
      image("new", [], 0),
    ];
    assert.deepEqual(expiredBy(policy, images), ["older", "just-over"]);
  });

  it("selects with tagPrefixList only images carrying every prefix (AND)", () => {
    const policy = text(
      rule(1, {
        tagStatus: "tagged",
        tagPrefixList: ["prod", "v"],
        countType: "sinceImagePushed",
        countUnit: "days",
        countNumber: 1,
      }),
    );
    const images = [
      image("both", ["prod-1", "v1.0"], 5),
      image("prod-only", ["prod-2"], 5),
      image("v-only", ["v2.0"], 5),
      image("untagged", [], 5),
    ];
    assert.deepEqual(expiredBy(policy, images), ["both"]);
  });

  it("lets one tag satisfy several prefixes", () => {
    const policy = text(
      rule(1, {
        tagStatus: "tagged",
        tagPrefixList: ["re", "rel"],
        countType: "imageCountMoreThan",
        countNumber: 1,
      }),
    );
    assert.deepEqual(expiredBy(policy, [image("a", ["release"], 2), image("b", ["release"], 1)]), ["a"]);
  });

  it("matches tag patterns against whole tags, * standing for any run including none", () => {
    const policy = text(
      rule(1, {
        tagStatus: "tagged",
        tagPatternList: ["prod*"],
        countType: "sinceImagePushed",
        countUnit: "days",
        countNumber: 14,
      }),
    );
    const images = [
      image("prod", ["prod"], 21),
      image("prod1", ["prod1"], 20),
      image("preprod", ["preprod"], 20),
      image("young", ["prod2"], 3),
    ];
    assert.deepEqual(expiredBy(policy, images), ["prod", "prod1"]);
  });

  it("requires every tag pattern to match some tag, with wildcards inside and regex characters literal", () => {
    const policy = text(
      rule(1, {
        tagStatus: "tagged",
        tagPatternList: ["*-rc.*", "v1.*"],
        countType: "sinceImagePushed",
        countUnit: "days",
        countNumber: 1,
      }),
    );
    const images = [
      image("match", ["v1.2", "build-rc.7"], 5),
      image("one-pattern", ["v1.2"], 5),
      image("dot-is-literal", ["v1x2", "build-rc.7"], 5),
    ];
    assert.deepEqual(expiredBy(policy, images), ["match"]);
  });

  it("selects only untagged images with tagStatus untagged", () => {
    const policy = text(rule(1, keepOneUntagged));
    const images = [image("t1", ["a"], 5), image("u1", [], 4), image("t2", ["b"], 3), image("u2", [], 2)];
    assert.deepEqual(expiredBy(policy, images), ["u1"]);
  });

  it("uses an any rule as the catch-all for images no earlier rule identified", () => {
    const policy = text(
      rule(1, {
        tagStatus: "tagged",
        tagPatternList: ["release-*"],
        countType: "imageCountMoreThan",
        countNumber: 5,
      }),
      rule(2, { tagStatus: "any", countType: "imageCountMoreThan", countNumber: 2 }),
    );
    const images = [
      image("r1", ["release-1"], 10),
      image("r2", ["release-2"], 9),
      image("x1", ["feature-x"], 8),
      image("u1", [], 7),
      image("x2", ["feature-y"], 6),
    ];
    // Rule 2 keeps x2 and u1 (the two newest of all five) and may only expire x1.
    assert.deepEqual(expiredBy(policy, images), ["x1"]);
  });

  it("never lets a later rule expire an image an earlier rule identified but kept", () => {
    const policy = text(
      rule(1, {
        tagStatus: "tagged",
        tagPrefixList: ["keep"],
        countType: "imageCountMoreThan",
        countNumber: 10,
      }),
      rule(2, { tagStatus: "any", countType: "sinceImagePushed", countUnit: "days", countNumber: 7 }),
    );
    const images = [image("kept", ["keep-me"], 30), image("old", ["other"], 30), image("new", ["other"], 1)];
    assert.deepEqual(expiredBy(policy, images), ["old"]);
  });

  it("expires each image at most once, by the first rule in priority order", () => {
    const policy = text(
      rule(7, { tagStatus: "tagged", tagPrefixList: ["b"], countType: "imageCountMoreThan", countNumber: 1 }),
      rule(3, { tagStatus: "tagged", tagPrefixList: ["a"], countType: "imageCountMoreThan", countNumber: 1 }),
    );
    const images = [
      image("ab-old", ["a1", "b1"], 3),
      image("ab-mid", ["a2", "b2"], 2),
      image("ab-new", ["a3", "b3"], 1),
    ];
    const expirations = evaluateLifecyclePolicy(parseLifecyclePolicy(policy), images, NOW);
    assert.deepEqual(
      expirations.map((e) => [e.digest, e.rulePriority]),
      [
        ["ab-old", 3],
        ["ab-mid", 3],
      ],
    );
  });

  it("orders equal push times by digest, keeping the smaller digest as the newer", () => {
    const policy = text(rule(1, keepOneUntagged));
    const images = [image("sha256:bbb", [], 1), image("sha256:aaa", [], 1), image("sha256:ccc", [], 1)];
    assert.deepEqual(expiredBy(policy, images), ["sha256:ccc", "sha256:bbb"]);
    assert.deepEqual(expiredBy(policy, [...images].reverse()), ["sha256:ccc", "sha256:bbb"]);
  });

  it("applies rules by rulePriority, not by their order in the text", () => {
    const prod = {
      tagStatus: "tagged",
      tagPrefixList: ["prod"],
      countType: "imageCountMoreThan",
      countNumber: 1,
    };
    const beta = {
      tagStatus: "tagged",
      tagPrefixList: ["beta"],
      countType: "imageCountMoreThan",
      countNumber: 1,
    };
    const images = [
      image("A", ["beta-1", "prod-1"], 10),
      image("B", ["beta-2", "prod-2"], 9),
      image("C", ["beta-3"], 8),
    ];
    assert.deepEqual(expiredBy(text(rule(2, beta), rule(1, prod)), images), ["A"]);
  });

  it("does not modify the images it is given", () => {
    const images = [image("b", [], 1), image("a", [], 2)];
    const before = structuredClone(images);
    evaluateLifecyclePolicy(parseLifecyclePolicy(text(rule(1, keepOneUntagged))), images, NOW);
    assert.deepEqual(images, before);
  });
});

/** The worked examples of the ECR User Guide's "Examples of lifecycle policies". */
describe("ECR User Guide examples", () => {
  it("filtering on image age: tagged prod* older than 14 days", () => {
    const policy = text({
      rulePriority: 1,
      description: "Expire images older than 14 days",
      selection: {
        tagStatus: "tagged",
        tagPatternList: ["prod*"],
        countType: "sinceImagePushed",
        countUnit: "days",
        countNumber: 14,
      },
      action: { type: "expire" },
    });
    const images = [
      image("old-prod", ["prod-7"], 15),
      image("new-prod", ["prod-8"], 13),
      image("old-dev", ["dev"], 30),
    ];
    assert.deepEqual(expiredBy(policy, images), ["old-prod"]);
  });

  it("filtering on image count: keep only one untagged image", () => {
    const policy = text({
      rulePriority: 1,
      description: "Keep only one untagged image, expire all others",
      selection: { tagStatus: "untagged", countType: "imageCountMoreThan", countNumber: 1 },
      action: { type: "expire" },
    });
    const images = [image("u1", [], 3), image("u2", [], 2), image("u3", [], 1), image("t", ["latest"], 4)];
    assert.deepEqual(expiredBy(policy, images), ["u1", "u2"]);
  });

  const multipleRulesRepository = [
    image("A", ["beta-1", "prod-1"], 10),
    image("B", ["beta-2", "prod-2"], 9),
    image("C", ["beta-3"], 8),
  ];

  it("multiple rules, example A: prod first, then beta — only Image A is expired", () => {
    for (const [prod, beta] of [
      [{ tagPrefixList: ["prod"] }, { tagPrefixList: ["beta"] }],
      [{ tagPatternList: ["prod*"] }, { tagPatternList: ["beta*"] }],
    ]) {
      const policy = text(
        rule(1, { tagStatus: "tagged", ...prod, countType: "imageCountMoreThan", countNumber: 1 }),
        rule(2, { tagStatus: "tagged", ...beta, countType: "imageCountMoreThan", countNumber: 1 }),
      );
      const expirations = evaluateLifecyclePolicy(parseLifecyclePolicy(policy), multipleRulesRepository, NOW);
      assert.deepEqual(
        expirations.map((e) => [e.digest, e.rulePriority]),
        [["A", 1]],
      );
    }
  });

  it("multiple rules, example B: beta first, then prod — Images A and B are expired", () => {
    for (const [beta, prod] of [
      [{ tagPrefixList: ["beta"] }, { tagPrefixList: ["prod"] }],
      [{ tagPatternList: ["beta*"] }, { tagPatternList: ["prod*"] }],
    ]) {
      const policy = text(
        rule(1, { tagStatus: "tagged", ...beta, countType: "imageCountMoreThan", countNumber: 1 }),
        rule(2, { tagStatus: "tagged", ...prod, countType: "imageCountMoreThan", countNumber: 1 }),
      );
      const expirations = evaluateLifecyclePolicy(parseLifecyclePolicy(policy), multipleRulesRepository, NOW);
      assert.deepEqual(
        expirations.map((e) => [e.digest, e.rulePriority]),
        [
          ["A", 1],
          ["B", 1],
        ],
      );
    }
  });

  it("multiple tags in a single rule, example A: images must match all listed tags — Image C is expired", () => {
    const images = [
      image("A", ["alpha-1"], 12),
      image("B", ["beta-1"], 11),
      image("C", ["alpha-2", "beta-2"], 10),
      image("D", ["alpha-3"], 4),
      image("E", ["beta-3"], 3),
      image("F", ["alpha-4", "beta-4"], 2),
    ];
    for (const tags of [{ tagPrefixList: ["alpha", "beta"] }, { tagPatternList: ["alpha*", "beta*"] }]) {
      const policy = text(
        rule(1, {
          tagStatus: "tagged",
          ...tags,
          countType: "sinceImagePushed",
          countNumber: 5,
          countUnit: "days",
        }),
      );
      assert.deepEqual(expiredBy(policy, images), ["C"]);
    }
  });

  it("multiple tags in a single rule, example B: tags are not exclusive — Images A and B are expired", () => {
    const images = [
      image("A", ["alpha-1", "beta-1", "gamma-1"], 10),
      image("B", ["alpha-2", "beta-2"], 9),
      image("C", ["alpha-3", "beta-3", "gamma-2"], 8),
    ];
    for (const tags of [{ tagPrefixList: ["alpha", "beta"] }, { tagPatternList: ["alpha*", "beta*"] }]) {
      const policy = text(
        rule(1, { tagStatus: "tagged", ...tags, countType: "imageCountMoreThan", countNumber: 1 }),
      );
      assert.deepEqual(expiredBy(policy, images), ["A", "B"]);
    }
  });

  it("all images, example A: any keeps only the newest — Images A, B and C are expired", () => {
    const policy = text(rule(1, { tagStatus: "any", countType: "imageCountMoreThan", countNumber: 1 }));
    const images = [
      image("A", ["alpha-1"], 4),
      image("B", ["beta-1"], 3),
      image("C", [], 2),
      image("D", ["alpha-2"], 1),
    ];
    assert.deepEqual(expiredBy(policy, images), ["A", "B", "C"]);
  });

  it("all images, example B: tagged, untagged and any combined — Images A, B and D are expired", () => {
    // D and E are both "pushed 1 day ago"; the guide keeps E as the newest, so E is pushed a moment after D.
    const images = [
      image("A", ["alpha-1", "beta-1"], 4),
      image("B", [], 3),
      image("C", ["alpha-2"], 2),
      image("D", ["git hash"], 1),
      image("E", [], 1 - 1 / 1440),
    ];
    for (const alpha of [{ tagPrefixList: ["alpha"] }, { tagPatternList: ["alpha*"] }]) {
      const policy = text(
        rule(1, { tagStatus: "tagged", ...alpha, countType: "imageCountMoreThan", countNumber: 1 }),
        rule(2, { tagStatus: "untagged", countType: "sinceImagePushed", countUnit: "days", countNumber: 1 }),
        rule(3, { tagStatus: "any", countType: "imageCountMoreThan", countNumber: 1 }),
      );
      const expirations = evaluateLifecyclePolicy(parseLifecyclePolicy(policy), images, NOW);
      assert.deepEqual(
        expirations.map((e) => [e.digest, e.rulePriority]),
        [
          ["A", 1],
          ["B", 2],
          ["D", 3],
        ],
      );
    }
  });
});
