import { createHmac, timingSafeEqual } from "node:crypto";

/** Who is asking: an access key's user, or nobody. */
export type Principal = { kind: "anonymous" } | { kind: "user"; accessKeyId: string; arn: string };

export const PULL_ACTIONS = [
  "ecr:BatchGetImage",
  "ecr:GetDownloadUrlForLayer",
  "ecr:BatchCheckLayerAvailability",
];
export const PUSH_ACTIONS = [
  "ecr:PutImage",
  "ecr:InitiateLayerUpload",
  "ecr:UploadLayerPart",
  "ecr:CompleteLayerUpload",
];

/** Twelve hours, as ECR's GetAuthorizationToken. */
export const TOKEN_LIFETIME_MS = 12 * 60 * 60_000;
const PREFIX = "wharf1";

/**
 * The registry password `get-login-password` prints: a signed, expiring
 * token bound to the access key that asked for it.
 */
export class RegistryTokens {
  private readonly key: Buffer;

  constructor(key: Buffer) {
    this.key = key;
  }

  private mac(payload: string): Buffer {
    return createHmac("sha256", this.key).update(payload).digest();
  }

  issue(accessKeyId: string, now: Date): { password: string; expiresAt: Date } {
    const expiresAt = new Date(now.getTime() + TOKEN_LIFETIME_MS);
    const payload = Buffer.from(JSON.stringify({ k: accessKeyId, e: expiresAt.getTime() })).toString(
      "base64url",
    );
    return { password: `${PREFIX}.${payload}.${this.mac(payload).toString("base64url")}`, expiresAt };
  }

  /** A bearer token for anonymous pulls of public repositories (the token flow docker uses). */
  issueAnonymous(now: Date): { password: string; expiresAt: Date } {
    return this.issue("", now);
  }

  /** The access key a password was issued to ("" for an anonymous token), if it is genuine and unexpired. */
  verify(password: string, now: Date): string | undefined {
    const [prefix, payload, mac] = password.split(".");
    if (prefix !== PREFIX || payload === undefined || mac === undefined) return undefined;
    const given = Buffer.from(mac, "base64url");
    const expected = this.mac(payload);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    // One spelling only: base64url's unused padding bits must not give a second valid token.
    if (expected.toString("base64url") !== mac) return undefined;
    try {
      const claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as {
        k?: unknown;
        e?: unknown;
      };
      if (typeof claims.k !== "string" || typeof claims.e !== "number" || claims.e <= now.getTime())
        return undefined;
      return claims.k;
    } catch {
      return undefined;
    }
  }
}

/** Reads `Authorization: Basic base64(AWS:<password>)`; undefined for anything else. */
export function basicPassword(header: string | undefined): { user: string; password: string } | undefined {
  if (header === undefined || !/^basic /i.test(header)) return undefined;
  const decoded = Buffer.from(header.slice(6).trim(), "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

// Repository policies (IAM policy documents).

interface Statement {
  Effect?: unknown;
  Principal?: unknown;
  Action?: unknown;
  NotAction?: unknown;
  Condition?: unknown;
}

function list(value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === "string");
  return [];
}

function wildcard(pattern: string, value: string): boolean {
  const regex = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, "\\$&")
      .replaceAll("*", ".*")
      .replaceAll("?", ".")}$`,
    "i",
  );
  return regex.test(value);
}

function principalMatches(principal: unknown, who: Principal, accountId: string): boolean {
  if (principal === "*") return true;
  if (typeof principal !== "object" || principal === null) return false;
  const aws = list((principal as { AWS?: unknown }).AWS);
  return aws.some((entry) => {
    if (entry === "*") return true;
    if (who.kind === "anonymous") return false;
    return entry === accountId || entry === `arn:aws:iam::${accountId}:root` || entry === who.arn;
  });
}

function actionMatches(statement: Statement, action: string): boolean {
  if (statement.NotAction !== undefined) return !list(statement.NotAction).some((p) => wildcard(p, action));
  return list(statement.Action).some((pattern) => wildcard(pattern, action));
}

/** Parses a policy document; undefined when it is not one Wharf can evaluate. */
export function parsePolicy(text: string): Statement[] | undefined {
  try {
    const doc = JSON.parse(text) as { Statement?: unknown };
    const statements = Array.isArray(doc.Statement)
      ? doc.Statement
      : doc.Statement === undefined
        ? undefined
        : [doc.Statement];
    if (statements === undefined || statements.length === 0) return undefined;
    for (const s of statements as Statement[]) {
      if (typeof s !== "object" || s === null) return undefined;
      if (s.Effect !== "Allow" && s.Effect !== "Deny") return undefined;
      if (s.Principal === undefined || (s.Action === undefined && s.NotAction === undefined))
        return undefined;
    }
    return statements as Statement[];
  } catch {
    return undefined;
  }
}

/**
 * IAM's evaluation for one repository action: an explicit Deny wins; the
 * account's own users are allowed by their identity policy (admin); anyone
 * else needs an Allow from the repository policy. A statement with a
 * Condition Wharf does not evaluate never allows and always denies.
 */
export function authorize(
  policyText: string | null,
  who: Principal,
  action: string,
  accountId: string,
): boolean {
  const statements = policyText === null ? [] : (parsePolicy(policyText) ?? []);
  let allowed = who.kind === "user";
  for (const statement of statements) {
    if (!principalMatches(statement.Principal, who, accountId) || !actionMatches(statement, action)) continue;
    if (statement.Effect === "Deny") return false;
    if (statement.Condition === undefined) allowed = true;
  }
  return allowed;
}
