import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createPrivateKey, generateKeyPairSync, X509Certificate } from "node:crypto";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, request, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ensureTls, readCaCertificate, type TlsMaterial } from "./tls.ts";

const DAY_MS = 86_400_000;
const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";

const scratch = mkdtempSync(join(tmpdir(), "wharf-tls-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

let counter = 0;
/** A fresh, not yet existing TLS directory inside the scratch area. */
function freshDir(): string {
  counter += 1;
  return join(scratch, `case-${counter}`, "tls");
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion with a timeout; `code` is 127 if it could not start. */
function run(file: string, args: string[], input = ""): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { timeout: 20_000 }, (error, stdout, stderr) => {
      if (error === null) return resolve({ code: 0, stdout, stderr });
      const code = typeof error.code === "number" ? error.code : error.code === "ENOENT" ? 127 : 1;
      resolve({ code, stdout, stderr: `${stderr}${error.message}` });
    });
    child.stdin?.end(input);
  });
}

/** The text openssl prints for some of a certificate's extensions. */
async function extensions(certPath: string, names: string): Promise<string> {
  const result = await run("openssl", ["x509", "-in", certPath, "-noout", "-ext", names]);
  assert.equal(result.code, 0, result.stderr);
  return result.stdout;
}

function modeOf(path: string): number {
  return statSync(path).mode & 0o777;
}

function validityDays(cert: X509Certificate): number {
  return (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / DAY_MS;
}

describe("ensureTls: generated material", () => {
  it("creates a CA and a server certificate covering every host, keys mode 0600", async () => {
    const dir = freshDir();
    const material = await ensureTls({ dir, hosts: ["wharf.test", "10.1.2.3", "0.0.0.0"] });
    const files = material.files;
    assert.ok(files.caCertPath !== undefined);
    assert.deepEqual(readdirSync(dir).sort(), ["ca.crt", "ca.key", "server.crt", "server.key"]);
    assert.equal(modeOf(join(dir, "ca.key")), 0o600);
    assert.equal(modeOf(files.keyPath), 0o600);
    assert.deepEqual(readFileSync(files.certPath), material.cert);
    assert.deepEqual(readFileSync(files.keyPath), material.key);
    assert.deepEqual(readFileSync(files.caCertPath), material.ca);

    const ca = new X509Certificate(readFileSync(files.caCertPath));
    assert.equal(ca.ca, true);
    assert.match(ca.subject, /^CN=Wharf CA [0-9a-f]{8}$/);
    assert.ok(ca.checkIssued(ca) && ca.verify(ca.publicKey), "CA is self-signed");
    assert.ok(Math.abs(validityDays(ca) - 3650) <= 1);
    const caExtensions = await extensions(files.caCertPath, "basicConstraints,keyUsage");
    assert.match(caExtensions, /Basic Constraints: critical\s+CA:TRUE/);
    assert.match(caExtensions, /Key Usage: critical\s+Certificate Sign, CRL Sign/);

    const cert = new X509Certificate(material.cert);
    assert.equal(cert.ca, false);
    assert.ok(cert.checkIssued(ca) && cert.verify(ca.publicKey), "server certificate is signed by the CA");
    assert.ok(cert.checkPrivateKey(createPrivateKey(material.key)));
    for (const host of ["localhost", "wharf.test"]) {
      assert.equal(cert.checkHost(host, { subject: "never" }), host);
    }
    for (const ip of ["127.0.0.1", "::1", "10.1.2.3"]) assert.ok(cert.checkIP(ip), `covers ${ip}`);
    assert.equal(cert.checkIP("0.0.0.0"), undefined, "a wildcard bind address is no name");
    assert.deepEqual(cert.keyUsage, [SERVER_AUTH]);
    assert.ok(Math.abs(validityDays(cert) - 397) <= 1);
    const certExtensions = await extensions(files.certPath, "basicConstraints,keyUsage");
    assert.match(certExtensions, /CA:FALSE/);
    assert.match(certExtensions, /Key Usage: critical\s+Digital Signature, Key Encipherment/);

    const key = createPrivateKey(material.key);
    assert.equal(key.asymmetricKeyType, "ec");
    assert.equal(key.asymmetricKeyDetails?.namedCurve, "prime256v1");
    const text = await run("openssl", ["x509", "-in", files.certPath, "-noout", "-text"]);
    assert.match(text.stdout, /Signature Algorithm: ecdsa-with-SHA256/);
  });

  it("reuses both certificates on a second call, byte for byte", async () => {
    const dir = freshDir();
    const first = await ensureTls({ dir, hosts: ["wharf.test"] });
    const second = await ensureTls({ dir, hosts: ["WHARF.test", "localhost"] });
    assert.deepEqual(second, first);
  });

  it("re-issues the server certificate for a new host name but keeps the CA", async () => {
    const dir = freshDir();
    const first = await ensureTls({ dir, hosts: ["wharf.test"] });
    const caKey = readFileSync(join(dir, "ca.key"));
    const second = await ensureTls({ dir, hosts: ["wharf.test", "registry.wharf.test", "192.168.7.7"] });
    assert.deepEqual(second.ca, first.ca);
    assert.deepEqual(readFileSync(join(dir, "ca.key")), caKey);
    assert.notDeepEqual(second.cert, first.cert);
    assert.notDeepEqual(second.key, first.key);
    const cert = new X509Certificate(second.cert);
    assert.equal(cert.checkHost("registry.wharf.test", { subject: "never" }), "registry.wharf.test");
    assert.equal(cert.checkHost("wharf.test", { subject: "never" }), "wharf.test");
    assert.ok(cert.checkIP("192.168.7.7"));
    assert.deepEqual(readdirSync(dir).sort(), ["ca.crt", "ca.key", "server.crt", "server.key"]);
  });

  it("re-issues a server certificate that expires within 30 days, keeping the CA", async () => {
    const dir = freshDir();
    const first = await ensureTls({ dir, hosts: [] });
    const in360Days = () => new Date(Date.now() + 360 * DAY_MS);
    const in370Days = () => new Date(Date.now() + 370 * DAY_MS);
    assert.deepEqual(await ensureTls({ dir, hosts: [], clock: in360Days }), first);
    const renewed = await ensureTls({ dir, hosts: [], clock: in370Days });
    assert.deepEqual(renewed.ca, first.ca);
    assert.notDeepEqual(renewed.cert, first.cert);
  });

  it("recovers from an interrupted start: a CA key alone, a server key that lost its certificate", async () => {
    const dir = freshDir();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "ca.key"), "half a key", { mode: 0o600 });
    mkdirSync(join(dir, ".staging-999999999-abc"));
    const first = await ensureTls({ dir, hosts: [] });
    assert.deepEqual(readdirSync(dir).sort(), ["ca.crt", "ca.key", "server.crt", "server.key"]);

    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    writeFileSync(join(dir, "server.key"), privateKey.export({ format: "pem", type: "pkcs8" }));
    const second = await ensureTls({ dir, hosts: [] });
    assert.deepEqual(second.ca, first.ca);
    assert.ok(new X509Certificate(second.cert).checkPrivateKey(createPrivateKey(second.key)));
  });

  it("refuses to replace a CA whose key is missing, since clients may trust it", async () => {
    const dir = freshDir();
    await ensureTls({ dir, hosts: [] });
    rmSync(join(dir, "ca.key"));
    await assert.rejects(
      ensureTls({ dir, hosts: [] }),
      /Wharf CA key .*ca\.key is missing; remove .*ca\.crt/,
    );
  });

  it("rejects a host name that is neither a DNS name nor an IP address", async () => {
    const dir = freshDir();
    await assert.rejects(ensureTls({ dir, hosts: ["bad host\nIP.9 = 1.2.3.4"] }), /invalid TLS host name/);
    await assert.rejects(ensureTls({ dir, hosts: ["-leading.test"] }), /invalid TLS host name/);
  });

  it("says so clearly when openssl cannot be run", async () => {
    const dir = freshDir();
    await assert.rejects(
      ensureTls({ dir, hosts: [], openssl: join(scratch, "no-openssl-here") }),
      /needs the openssl command/,
    );
  });

  it("prints the CA for `wharf ca`, and explains when there is none", async () => {
    const dir = freshDir();
    assert.throws(() => readCaCertificate(dir), /no Wharf CA at .*ca\.crt/);
    const material = await ensureTls({ dir, hosts: [] });
    const pem = readCaCertificate(dir);
    assert.equal(pem, material.ca?.toString("utf8"));
    assert.match(pem, /^-----BEGIN CERTIFICATE-----\n/);
  });
});

describe("ensureTls: a real HTTPS server", () => {
  let material: TlsMaterial;
  let caPath: string;
  let port: number;
  let server: Server;

  before(async () => {
    material = await ensureTls({ dir: freshDir(), hosts: ["wharf.test"] });
    caPath = material.files.caCertPath ?? assert.fail("generated material names its CA file");
    server = createServer({ cert: material.cert, key: material.key }, (_req, res) => res.end("ok"));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    port = (server.address() as AddressInfo).port;
  });
  after(() => {
    server.close();
  });

  /**
   * GET / as a client that connects to 127.0.0.1 (`host` is localhost or
   * 127.0.0.1) and checks the certificate against `servername`.
   */
  function get(host: string, ca: Buffer | undefined, servername = host): Promise<string> {
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host,
          port,
          path: "/",
          family: 4,
          timeout: 10_000,
          ...(ca === undefined ? {} : { ca }),
          ...(servername === host ? {} : { servername }),
        },
        (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            body += chunk;
          });
          res.on("end", () => resolve(body));
        },
      );
      req.on("timeout", () => req.destroy(new Error("request timed out")));
      req.on("error", reject);
      req.end();
    });
  }

  it("is trusted under localhost and 127.0.0.1 by a client that trusts only the CA", async () => {
    assert.equal(await get("localhost", material.ca), "ok");
    assert.equal(await get("127.0.0.1", material.ca), "ok");
  });

  it("is refused, with a certificate error, by a client without the CA", async () => {
    await assert.rejects(get("localhost", undefined), { code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" });
    await assert.rejects(get("127.0.0.1", undefined), { code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" });
  });

  it("is refused, even with the CA, under a name it does not cover", async () => {
    await assert.rejects(get("127.0.0.1", material.ca, "uncovered.test"), {
      code: "ERR_TLS_CERT_ALTNAME_INVALID",
    });
    assert.equal(await get("127.0.0.1", material.ca, "wharf.test"), "ok");
  });

  it("satisfies curl --cacert (or openssl s_client when curl is absent)", async () => {
    const curl = await run("curl", ["--version"]);
    if (curl.code === 127) {
      const verify = await run("openssl", [
        "s_client",
        "-connect",
        `127.0.0.1:${port}`,
        "-servername",
        "localhost",
        "-verify_hostname",
        "localhost",
        "-verify_return_error",
        "-CAfile",
        caPath,
      ]);
      assert.equal(verify.code, 0, verify.stderr);
      assert.match(verify.stdout, /Verify return code: 0 \(ok\)/);
      return;
    }
    for (const host of ["localhost", "127.0.0.1"]) {
      const url = `https://${host}:${port}/`;
      const trusted = await run("curl", [
        "--silent",
        "--show-error",
        "--max-time",
        "10",
        "--cacert",
        caPath,
        url,
      ]);
      assert.equal(trusted.code, 0, trusted.stderr);
      assert.equal(trusted.stdout, "ok");
    }
    const untrusted = await run("curl", ["--silent", "--max-time", "10", `https://localhost:${port}/`]);
    assert.equal(untrusted.code, 60, "curl exit 60: peer certificate cannot be authenticated");
  });
});

describe("ensureTls: operator-provided material", () => {
  let generated: TlsMaterial;
  let caPath: string;

  before(async () => {
    generated = await ensureTls({ dir: freshDir(), hosts: ["operator.test"] });
    caPath = generated.files.caCertPath ?? assert.fail("generated material names its CA file");
  });

  it("loads the operator's certificate, key and CA without generating anything", async () => {
    const dir = freshDir();
    const { certPath, keyPath } = generated.files;
    const material = await ensureTls({ dir, hosts: ["other.test"], provided: { certPath, keyPath, caPath } });
    assert.deepEqual(material, {
      cert: generated.cert,
      key: generated.key,
      ca: generated.ca,
      files: { certPath, keyPath, caCertPath: caPath },
    });
    const withoutCa = await ensureTls({ dir, hosts: [], provided: { certPath, keyPath } });
    assert.equal(withoutCa.ca, undefined);
    assert.deepEqual(withoutCa.files, { certPath, keyPath });
    assert.throws(() => statSync(dir), { code: "ENOENT" });
  });

  it("refuses a key that does not match the certificate", async () => {
    const keyPath = join(scratch, "stranger.key");
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    writeFileSync(keyPath, privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o600 });
    await assert.rejects(
      ensureTls({ dir: freshDir(), hosts: [], provided: { certPath: generated.files.certPath, keyPath } }),
      {
        message: `TLS key ${keyPath} does not match the certificate ${generated.files.certPath} (their public keys differ)`,
      },
    );
  });

  it("refuses files that are missing, not PEM, or not signed by the given CA", async () => {
    const { certPath, keyPath } = generated.files;
    const missing = join(scratch, "missing.crt");
    await assert.rejects(
      ensureTls({ dir: freshDir(), hosts: [], provided: { certPath: missing, keyPath } }),
      /cannot read TLS certificate .*missing\.crt: ENOENT/,
    );
    await assert.rejects(
      ensureTls({ dir: freshDir(), hosts: [], provided: { certPath: keyPath, keyPath } }),
      /TLS certificate .*server\.key holds no PEM certificate/,
    );
    await assert.rejects(
      ensureTls({ dir: freshDir(), hosts: [], provided: { certPath, keyPath: certPath } }),
      /TLS key .*server\.crt is not a PEM private key/,
    );
    const otherCa = (await ensureTls({ dir: freshDir(), hosts: [] })).files.caCertPath ?? "";
    await assert.rejects(
      ensureTls({ dir: freshDir(), hosts: [], provided: { certPath, keyPath, caPath: otherCa } }),
      /is not signed by the CA in .*ca\.crt/,
    );
  });
});
