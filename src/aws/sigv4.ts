/**
 * Server-side verification of AWS Signature Version 4 (AWS4-HMAC-SHA256),
 * in both its forms: the `Authorization` header and the presigned query
 * string. The canonical request is rebuilt from the request exactly as
 * received, the way botocore and @smithy/signature-v4 build it for every
 * service but S3, and checks run in the order AWS runs them, so a client sees
 * the error AWS would have given it.
 */

import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import {
  IncompleteSignature,
  InvalidSignature,
  MissingAuthenticationToken,
  UnrecognizedClient,
} from "./errors.ts";

export interface SignedRequest {
  method: string;
  /** The raw request path as received, percent-encoding intact, without the query string. */
  path: string;
  /** The raw query string without the leading '?', possibly empty. */
  query: string;
  /**
   * Node's IncomingHttpHeaders (lower-case names). Node joins repeated headers
   * with ", " while signers join them with ","; pass `headersDistinct` to keep
   * repeated signed headers exact.
   */
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export interface Credential {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
}

export interface VerifyOptions {
  /** The server's region. */
  region: string;
  /** The signing name the route expects, e.g. "ecs", "ecr", "elasticloadbalancing". */
  service: string;
  /** Injectable clock. */
  now: Date;
  /** Allowed clock difference between client and server; default 5 minutes. */
  maxSkewMs?: number;
  lookupSecret(accessKeyId: string): string | undefined;
}

export interface Identity {
  accessKeyId: string;
}

const ALGORITHM = "AWS4-HMAC-SHA256";
const TERMINATOR = "aws4_request";
const UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD";
const DEFAULT_MAX_SKEW_MS = 5 * 60_000;
const MAX_PRESIGN_SECONDS = 604_800;

const SIGNATURE_MISMATCH =
  "The request signature we calculated does not match the signature you provided. " +
  "Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";
const PAYLOAD_MISMATCH = "The provided 'x-amz-content-sha256' header does not match what was computed.";

/** One query parameter: decoded for reading, RFC 3986-encoded for the canonical query. */
interface QueryParam {
  key: string;
  value: string;
  canonicalKey: string;
  canonicalValue: string;
}

/** The request in the shape the checks read: headers by lower-case name, query parsed once. */
interface Incoming {
  req: SignedRequest;
  headers: Map<string, string[]>;
  query: QueryParam[];
}

/** The signature material of a request, from the Authorization header or the presigned query. */
interface AuthParams {
  presigned: boolean;
  algorithm: string;
  credential: string;
  /** Lower-case names, in the order the client listed them. */
  signedHeaders: string[];
  signature: string;
  /** X-Amz-Date, or the Date header in the header form. */
  timestamp: string;
  /** X-Amz-Expires of a presigned URL, undefined when absent. */
  expires: string | undefined;
}

// --- encoding --------------------------------------------------------------

function isUnreserved(byte: number): boolean {
  return (
    (byte >= 0x41 && byte <= 0x5a) || // A-Z
    (byte >= 0x61 && byte <= 0x7a) || // a-z
    (byte >= 0x30 && byte <= 0x39) || // 0-9
    byte === 0x2d || // -
    byte === 0x2e || // .
    byte === 0x5f || // _
    byte === 0x7e // ~
  );
}

/** RFC 3986 encoding of UTF-8 bytes: unreserved characters stay, every other byte becomes %XX. */
function uriEncode(input: string | Buffer): string {
  const bytes = typeof input === "string" ? Buffer.from(input, "utf8") : input;
  let out = "";
  for (const byte of bytes) {
    out += isUnreserved(byte)
      ? String.fromCharCode(byte)
      : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

const HEX_PAIR = /^[0-9A-Fa-f]{2}$/;

/**
 * Percent-decodes a query component to bytes. '+' is a space (a literal '+'
 * arrives as %2B); a '%' not followed by two hex digits is kept as itself.
 */
function decodeComponent(raw: string): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const char = raw[i] ?? "";
    const hex = raw.slice(i + 1, i + 3);
    if (char === "%" && HEX_PAIR.test(hex)) {
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else if (char === "+") {
      bytes.push(0x20);
    } else {
      const code = raw.codePointAt(i) ?? 0;
      const whole = String.fromCodePoint(code);
      bytes.push(...Buffer.from(whole, "utf8"));
      i += whole.length - 1;
    }
  }
  return Buffer.from(bytes);
}

function parseQuery(raw: string): QueryParam[] {
  const params: QueryParam[] = [];
  for (const pair of raw.split("&")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    const key = decodeComponent(eq === -1 ? pair : pair.slice(0, eq));
    const value = decodeComponent(eq === -1 ? "" : pair.slice(eq + 1));
    params.push({
      key: key.toString("utf8"),
      value: value.toString("utf8"),
      canonicalKey: uriEncode(key),
      canonicalValue: uriEncode(value),
    });
  }
  return params;
}

// --- canonical request -----------------------------------------------------

/**
 * The canonical URI for every service but S3: dot segments and empty segments
 * removed, then each raw segment encoded once more, so `%20` signs as `%2520`.
 */
function canonicalUri(path: string): string {
  if (path === "") return "/";
  const segments: string[] = [];
  for (const segment of path.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") segments.pop();
    else segments.push(segment);
  }
  const lead = path.startsWith("/") ? "/" : "";
  const trail = segments.length > 0 && path.endsWith("/") ? "/" : "";
  return lead + segments.map(uriEncode).join("/") + trail;
}

function byCode(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Parameters sorted by encoded key, then encoded value; the presigned form leaves out its signature. */
function canonicalQuery(params: QueryParam[], presigned: boolean): string {
  return params
    .filter((p) => !(presigned && p.key === "X-Amz-Signature"))
    .sort((a, b) => byCode(a.canonicalKey, b.canonicalKey) || byCode(a.canonicalValue, b.canonicalValue))
    .map((p) => `${p.canonicalKey}=${p.canonicalValue}`)
    .join("&");
}

function normaliseHeaders(headers: SignedRequest["headers"]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    const key = name.toLowerCase();
    const values = Array.isArray(value) ? value : [value];
    const before = out.get(key);
    out.set(key, before === undefined ? values : before.concat(values));
  }
  return out;
}

/** Values trimmed with runs of whitespace collapsed, repeated values joined with ','. */
function canonicalHeaderValue(values: string[]): string {
  return values.map((v) => v.replace(/[ \t\r\n]+/g, " ").trim()).join(",");
}

function headerValues(incoming: Incoming, name: string): string[] | undefined {
  const values = incoming.headers.get(name);
  if (values === undefined && name === "host") return incoming.headers.get(":authority");
  return values;
}

function canonicalRequest(incoming: Incoming, auth: AuthParams, payloadHash: string): string {
  const headerLines = auth.signedHeaders.map(
    (name) => `${name}:${canonicalHeaderValue(headerValues(incoming, name) ?? [])}\n`,
  );
  return [
    incoming.req.method.toUpperCase(),
    canonicalUri(incoming.req.path),
    canonicalQuery(incoming.query, auth.presigned),
    headerLines.join(""),
    auth.signedHeaders.join(";"),
    payloadHash,
  ].join("\n");
}

// --- reading the signature -------------------------------------------------

function firstHeader(incoming: Incoming, name: string): string | undefined {
  return incoming.headers.get(name)?.[0];
}

function queryParam(incoming: Incoming, key: string): string | undefined {
  return incoming.query.find((p) => p.key === key)?.value;
}

/** Authorization header parameters, split the way AWS splits them: on commas and whitespace. */
function readAuthHeader(incoming: Incoming, header: string): AuthParams {
  const trimmed = header.trim();
  const space = trimmed.search(/\s/);
  const algorithm = space === -1 ? trimmed : trimmed.slice(0, space);
  const rest = space === -1 ? "" : trimmed.slice(space + 1);
  const params = new Map<string, string>();
  for (const piece of rest.split(/[\s,]+/)) {
    if (piece === "") continue;
    const eq = piece.indexOf("=");
    if (eq === -1) {
      throw IncompleteSignature(
        `'${piece}' not a valid key=value pair (missing equal-sign) in Authorization header: '${trimmed}'.`,
      );
    }
    params.set(piece.slice(0, eq), piece.slice(eq + 1));
  }
  const timestamp = firstHeader(incoming, "x-amz-date") ?? firstHeader(incoming, "date");
  const missing: string[] = [];
  for (const name of ["Credential", "Signature"]) {
    if (!params.get(name)) missing.push(`Authorization header requires '${name}' parameter.`);
  }
  if (!params.has("SignedHeaders")) missing.push("Authorization header requires 'SignedHeaders' parameter.");
  if (!timestamp) {
    missing.push("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.");
  }
  if (missing.length > 0) throw IncompleteSignature(`${missing.join(" ")} Authorization=${trimmed}`);
  return {
    presigned: false,
    algorithm,
    credential: params.get("Credential") ?? "",
    signedHeaders: splitSignedHeaders(params.get("SignedHeaders") ?? ""),
    signature: params.get("Signature") ?? "",
    timestamp: timestamp ?? "",
    expires: undefined,
  };
}

function readPresignedQuery(incoming: Incoming, algorithm: string): AuthParams {
  const read = (key: string) => queryParam(incoming, key);
  const missing = ["X-Amz-Credential", "X-Amz-Signature", "X-Amz-SignedHeaders", "X-Amz-Date"]
    .filter((key) => read(key) === undefined)
    .map((key) => `AWS query-string parameters must include '${key}'.`);
  if (missing.length > 0) {
    throw IncompleteSignature(`${missing.join(" ")} Re-examine the query-string parameters.`);
  }
  return {
    presigned: true,
    algorithm,
    credential: read("X-Amz-Credential") ?? "",
    signedHeaders: splitSignedHeaders(read("X-Amz-SignedHeaders") ?? ""),
    signature: read("X-Amz-Signature") ?? "",
    timestamp: read("X-Amz-Date") ?? "",
    expires: read("X-Amz-Expires"),
  };
}

function splitSignedHeaders(list: string): string[] {
  return list
    .split(";")
    .map((name) => name.trim().toLowerCase())
    .filter((name) => name !== "");
}

/**
 * The signature the request carries, or undefined if it carries none. A
 * presigned query whose X-Amz-Algorithm is not SigV4 counts as none, as at AWS.
 */
function readAuth(incoming: Incoming): AuthParams | undefined {
  const header = firstHeader(incoming, "authorization");
  const algorithm = queryParam(incoming, "X-Amz-Algorithm");
  if (header && algorithm !== undefined) {
    throw InvalidSignature(
      "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, " +
        "Signature query string parameter or the Authorization header should be specified",
    );
  }
  if (header) return readAuthHeader(incoming, header);
  if (algorithm === ALGORITHM) return readPresignedQuery(incoming, algorithm);
  return undefined;
}

function checkAlgorithm(auth: AuthParams): void {
  if (auth.algorithm !== ALGORITHM) {
    throw IncompleteSignature(
      `Unsupported AWS 'algorithm': '${auth.algorithm}' (only ${ALGORITHM} for now).`,
    );
  }
}

interface Scope extends Credential {
  terminator: string;
}

function splitCredential(auth: AuthParams): Scope {
  const parts = auth.credential.split("/");
  const [accessKeyId, date, region, service, terminator] = parts;
  if (
    parts.length !== 5 ||
    accessKeyId === undefined ||
    date === undefined ||
    region === undefined ||
    service === undefined ||
    terminator === undefined
  ) {
    throw IncompleteSignature(
      "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, " +
        `got '${auth.credential}'`,
    );
  }
  return { accessKeyId, date, region, service, terminator };
}

function readIncoming(req: SignedRequest): Incoming {
  return { req, headers: normaliseHeaders(req.headers), query: parseQuery(req.query) };
}

/**
 * Parses the credential (from the header or the presigned query) without
 * verifying anything; undefined if the request carries no signature at all.
 * Throws IncompleteSignature if it is present but malformed. Used to route
 * Query-protocol requests by signing service before verification.
 */
export function parseCredential(req: SignedRequest): Credential | undefined {
  const auth = readAuth(readIncoming(req));
  if (auth === undefined) return undefined;
  checkAlgorithm(auth);
  const { accessKeyId, date, region, service } = splitCredential(auth);
  return { accessKeyId, date, region, service };
}

// --- time ------------------------------------------------------------------

const BASIC_FORMAT = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;

/** Formats a time as an ISO 8601 basic-format timestamp, e.g. 20150830T123600Z. */
function amzDate(time: Date | number): string {
  // 2015-08-30T12:36:00.000Z
  const iso = new Date(time).toISOString();
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
}

/** X-Amz-Date must be in ISO 8601 basic format; a Date header may also be an HTTP date. */
function parseTimestamp(value: string, httpDateAllowed: boolean): Date {
  if (BASIC_FORMAT.test(value)) {
    // 20150830T123600Z as 2015-08-30T12:36:00Z
    const iso = `${value.slice(0, 4)}-${value.slice(4, 6)}-${value.slice(6, 11)}:${value.slice(11, 13)}:${value.slice(13)}`;
    const time = new Date(iso);
    if (!Number.isNaN(time.getTime()) && amzDate(time) === value) return time;
  } else if (httpDateAllowed) {
    const ms = Date.parse(value);
    if (!Number.isNaN(ms)) return new Date(Math.floor(ms / 1000) * 1000);
  }
  throw IncompleteSignature(
    `Date must be in ISO-8601 'basic format'. Got '${value}'. See http://en.wikipedia.org/wiki/ISO_8601`,
  );
}

function span(ms: number): string {
  return ms % 60_000 === 0 ? `${ms / 60_000} min` : `${ms / 1000} sec`;
}

function expired(signedAt: Date, now: Date, windowMs: number): Error {
  return InvalidSignature(
    `Signature expired: ${amzDate(signedAt)} is now earlier than ${amzDate(now.getTime() - windowMs)} ` +
      `(${amzDate(now)} - ${span(windowMs)}.)`,
  );
}

/** Seconds a presigned URL stays valid, or undefined when it does not say. */
function presignLifetimeMs(auth: AuthParams): number | undefined {
  if (auth.expires === undefined) return undefined;
  if (!/^\d+$/.test(auth.expires)) throw IncompleteSignature("X-Amz-Expires should be a number");
  const seconds = Number(auth.expires);
  if (seconds > MAX_PRESIGN_SECONDS) {
    throw IncompleteSignature(
      `X-Amz-Expires must be less than a week (in seconds) that is ${MAX_PRESIGN_SECONDS}`,
    );
  }
  return seconds * 1000;
}

/**
 * The request time must be within the allowed skew of the server's clock; a
 * presigned URL may instead be as old as its X-Amz-Expires.
 */
function checkClock(auth: AuthParams, signedAt: Date, now: Date, maxSkewMs: number): void {
  const lifetime = auth.presigned ? presignLifetimeMs(auth) : undefined;
  const age = now.getTime() - signedAt.getTime();
  if (age > (lifetime ?? maxSkewMs)) throw expired(signedAt, now, lifetime ?? maxSkewMs);
  if (-age > maxSkewMs) {
    throw InvalidSignature(
      `Signature not yet current: ${amzDate(signedAt)} is still later than ${amzDate(now.getTime() + maxSkewMs)} ` +
        `(${amzDate(now)} + ${span(maxSkewMs)}.)`,
    );
  }
}

// --- scope and keys --------------------------------------------------------

/** Every way the credential scope differs from what this route expects, reported together as AWS does. */
function checkScope(scope: Scope, stamp: string, opts: VerifyOptions): void {
  const problems: string[] = [];
  if (scope.region !== opts.region) problems.push("Credential should be scoped to a valid region. ");
  if (scope.service !== opts.service) {
    problems.push(`Credential should be scoped to correct service: '${opts.service}'. `);
  }
  if (scope.terminator !== TERMINATOR) {
    problems.push(
      `Credential should be scoped with a valid terminator: '${TERMINATOR}', not '${scope.terminator}'. `,
    );
  }
  const day = stamp.slice(0, 8);
  if (scope.date !== day) {
    problems.push(
      "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: " +
        `'${scope.date}' != '${day}', from '${stamp}'. `,
    );
  }
  if (problems.length > 0) throw InvalidSignature(problems.join(""));
}

const KEY_CACHE_LIMIT = 64;
const signingKeys = new Map<string, Buffer>();

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac("sha256", key).update(data, "utf8").digest();
}

/** kSigning, derived once per (secret, date, region, service) and kept in a small LRU map. */
function signingKey(secret: string, scope: Scope): Buffer {
  const id = [secret, scope.date, scope.region, scope.service].join("\n");
  const cached = signingKeys.get(id);
  if (cached !== undefined) {
    signingKeys.delete(id);
    signingKeys.set(id, cached);
    return cached;
  }
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, scope.date), scope.region), scope.service), TERMINATOR);
  if (signingKeys.size >= KEY_CACHE_LIMIT) {
    const oldest = signingKeys.keys().next();
    if (oldest.done !== true) signingKeys.delete(oldest.value);
  }
  signingKeys.set(id, key);
  return key;
}

// --- verification ----------------------------------------------------------

function sha256Hex(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

function sameSignature(expected: string, provided: string): boolean {
  const a = Buffer.from(expected, "utf8");
  const b = Buffer.from(provided, "utf8");
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The payload hash the client declared: the x-amz-content-sha256 header, or its presigned query twin. */
function declaredPayloadHash(incoming: Incoming, auth: AuthParams): string | undefined {
  const header = firstHeader(incoming, "x-amz-content-sha256");
  if (header !== undefined || !auth.presigned) return header;
  return incoming.query.find((p) => p.key.toLowerCase() === "x-amz-content-sha256")?.value;
}

/**
 * A declared hash must match the body; UNSIGNED-PAYLOAD is accepted only in a
 * presigned URL. Checked after the signature, so a wrong key always reads as one.
 */
function checkPayload(declared: string | undefined, actual: string, presigned: boolean): void {
  if (declared === undefined) return;
  if (declared === UNSIGNED_PAYLOAD && presigned) return;
  if (declared.toLowerCase() !== actual) throw InvalidSignature(PAYLOAD_MISMATCH);
}

/**
 * Verifies a SigV4-signed request and returns who signed it; throws the AWS
 * error a real endpoint would give otherwise.
 */
export function verifySigV4(req: SignedRequest, opts: VerifyOptions): Identity {
  const inc = readIncoming(req);
  const auth = readAuth(inc);
  if (auth === undefined) throw MissingAuthenticationToken("Missing Authentication Token");

  const fromDateHeader = !auth.presigned && firstHeader(inc, "x-amz-date") === undefined;
  const signedAt = parseTimestamp(auth.timestamp, fromDateHeader);
  checkClock(auth, signedAt, opts.now, opts.maxSkewMs ?? DEFAULT_MAX_SKEW_MS);
  if (!auth.signedHeaders.includes("host") && !auth.signedHeaders.includes(":authority")) {
    throw InvalidSignature("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.");
  }
  checkAlgorithm(auth);
  const scope = splitCredential(auth);
  const stamp = amzDate(signedAt);
  checkScope(scope, stamp, opts);

  const secret = opts.lookupSecret(scope.accessKeyId);
  if (secret === undefined)
    throw UnrecognizedClient("The security token included in the request is invalid.");

  const declared = declaredPayloadHash(inc, auth);
  const actual = sha256Hex(req.body);
  // Presigners differ on an undeclared payload: botocore and smithy hash the
  // (empty) body, S3-style presigners sign UNSIGNED-PAYLOAD.
  const candidates =
    declared !== undefined ? [declared] : auth.presigned ? [actual, UNSIGNED_PAYLOAD] : [actual];
  const key = signingKey(secret, scope);
  const credentialScope = [scope.date, scope.region, scope.service, scope.terminator].join("/");
  const matches = candidates.some((payloadHash) => {
    const stringToSign = [
      ALGORITHM,
      stamp,
      credentialScope,
      sha256Hex(canonicalRequest(inc, auth, payloadHash)),
    ];
    return sameSignature(hmac(key, stringToSign.join("\n")).toString("hex"), auth.signature);
  });
  if (!matches) throw InvalidSignature(SIGNATURE_MISMATCH);
  checkPayload(declared, actual, auth.presigned);
  return { accessKeyId: scope.accessKeyId };
}
