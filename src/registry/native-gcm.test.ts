import assert from "node:assert/strict";
import { createCipheriv, createDecipheriv, randomBytes, randomInt } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { describe, it } from "node:test";
import { ADDON_PATH, type NativeGcm, type NativeGcmAddon, nativeGcm } from "./native-gcm.ts";

// The addon itself, whatever WHARF_NATIVE_GCM says: npm test builds it (scripts/bootstrap.sh).
assert.ok(existsSync(ADDON_PATH), `${ADDON_PATH} is missing: run sh scripts/bootstrap.sh`);
const addon = createRequire(import.meta.url)(ADDON_PATH) as NativeGcmAddon;

/** What this CPU offers for the addon's own code, as the kernel reports it. */
const cpuFlags = new Set(
  (/^flags\s*:(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "").trim().split(/\s+/),
);
const vaesCpu = ["aes", "pclmulqdq", "avx2", "avx512f", "avx512bw", "vaes", "vpclmulqdq"].every((flag) =>
  cpuFlags.has(flag),
);

/** A buffer over shared memory, as the sealing workers write into. */
function shared(bytes: number): Buffer {
  return Buffer.from(new SharedArrayBuffer(bytes));
}

interface Case {
  key: Buffer;
  nonce: Buffer;
  aad: Buffer;
  plaintext: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

function reference(length: number): Case {
  const key = randomBytes(32);
  const nonce = randomBytes(12);
  const aad = randomBytes(randomInt(0, 3) === 0 ? 0 : randomInt(1, 40));
  const plaintext = randomBytes(length);
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { key, nonce, aad, plaintext, ciphertext, tag: cipher.getAuthTag() };
}

/**
 * Lengths around GCM's 16-byte blocks, OpenSSL's 96-byte stitched batches and the VAES code's
 * 256-byte steps, and random ones.
 */
const LENGTHS = [
  0,
  1,
  15,
  16,
  17,
  95,
  96,
  97,
  255,
  256,
  257,
  511,
  512,
  527,
  4096,
  4111,
  1024 * 1024,
  ...Array.from({ length: 60 }, () => randomInt(0, 200_000)),
];

/** A buffer holding `bytes` at a random offset, random bytes around them, shared or not. */
function placed(bytes: Buffer): { buffer: Buffer; offset: number } {
  const offset = randomInt(0, 100);
  const buffer =
    randomInt(0, 2) === 0 ? shared(offset + bytes.length + 50) : Buffer.alloc(offset + bytes.length + 50);
  randomBytes(buffer.length).copy(buffer);
  bytes.copy(buffer, offset);
  return { buffer, offset };
}

/** Runs `fn` (open or seal) over `length` bytes of case `c`, from one placed range into another. */
function across(
  fn: NativeGcm["open"] | NativeGcm["seal"],
  c: Case,
  from: { buffer: Buffer; offset: number },
  to: { buffer: Buffer; offset: number },
  length: number,
  tag: Buffer,
): unknown {
  return fn(c.key, c.nonce, c.aad, from.buffer, from.offset, to.buffer, to.offset, length, tag);
}

function flipBit(bytes: Buffer): Buffer {
  const out = Buffer.from(bytes);
  const at = randomInt(0, out.length);
  out[at] = (out[at] as number) ^ (1 << randomInt(0, 8));
  return out;
}

describe("AES-256-GCM in place (native/aesgcm.c)", () => {
  it("is what this process uses unless WHARF_NATIVE_GCM=0", () => {
    if (process.env.WHARF_NATIVE_GCM === "0") assert.equal(nativeGcm, undefined);
    else assert.notEqual(nativeGcm, undefined);
  });

  it("runs its own VAES code where the CPU has VAES and VPCLMULQDQ, and OpenSSL's elsewhere", () => {
    assert.equal(addon.engine, vaesCpu ? "vaes" : "openssl");
  });
});

for (const [engine, gcm] of [
  [addon.engine, addon],
  ["openssl", addon.openssl],
] as Array<[string, NativeGcm]>) {
  describe(`AES-256-GCM in place, ${engine === addon.engine ? "as used" : "always"} (${engine})`, () => {
    it("seals to node:crypto's ciphertext and tag, into another buffer or in place", () => {
      for (const length of LENGTHS) {
        const c = reference(length);
        const input = placed(c.plaintext);
        const output = placed(Buffer.alloc(length));
        const tag = Buffer.alloc(16);
        const around = Buffer.from(output.buffer);
        across(gcm.seal, c, input, output, length, tag);
        assert.ok(
          output.buffer.subarray(output.offset, output.offset + length).equals(c.ciphertext),
          `${length}`,
        );
        assert.ok(tag.equals(c.tag), `tag ${length}`);
        // Nothing outside the range is touched.
        assert.ok(output.buffer.subarray(0, output.offset).equals(around.subarray(0, output.offset)));
        assert.ok(
          output.buffer.subarray(output.offset + length).equals(around.subarray(output.offset + length)),
        );

        const same = placed(c.plaintext);
        across(gcm.seal, c, same, same, length, tag);
        assert.ok(
          same.buffer.subarray(same.offset, same.offset + length).equals(c.ciphertext),
          `in place ${length}`,
        );
        assert.ok(tag.equals(c.tag), `in place tag ${length}`);
      }
    });

    it("opens node:crypto's ciphertext to the same plaintext, into another buffer or in place", () => {
      for (const length of LENGTHS) {
        const c = reference(length);
        const input = placed(c.ciphertext);
        const output = placed(Buffer.alloc(length));
        assert.equal(across(gcm.open, c, input, output, length, c.tag), true);
        assert.ok(
          output.buffer.subarray(output.offset, output.offset + length).equals(c.plaintext),
          `${length}`,
        );

        const same = placed(c.ciphertext);
        assert.equal(across(gcm.open, c, same, same, length, c.tag), true);
        assert.ok(
          same.buffer.subarray(same.offset, same.offset + length).equals(c.plaintext),
          `in place ${length}`,
        );
      }
    });

    it("rejects a flipped bit in the ciphertext, tag, nonce or associated data, leaving the range zeroed", () => {
      for (const length of LENGTHS.slice(0, 30)) {
        const c = reference(length);
        const forgeries: Array<[string, Case]> = [
          ["tag", { ...c, tag: flipBit(c.tag) }],
          ["nonce", { ...c, nonce: flipBit(c.nonce) }],
          ["key", { ...c, key: flipBit(c.key) }],
          ["aad", { ...c, aad: c.aad.length === 0 ? Buffer.from([0]) : flipBit(c.aad) }],
        ];
        if (length > 0) forgeries.push(["ciphertext", { ...c, ciphertext: flipBit(c.ciphertext) }]);
        if (length > 0)
          forgeries.push(["length", { ...c, ciphertext: c.ciphertext.subarray(0, length - 1) }]);
        for (const [what, forged] of forgeries) {
          const at = placed(forged.ciphertext);
          const around = Buffer.from(at.buffer);
          const end = at.offset + forged.ciphertext.length;
          const ok = gcm.open(
            forged.key,
            forged.nonce,
            forged.aad,
            at.buffer,
            at.offset,
            at.buffer,
            at.offset,
            forged.ciphertext.length,
            forged.tag,
          );
          assert.equal(ok, false, `${what} ${length}`);
          assert.ok(
            at.buffer.subarray(at.offset, end).every((byte) => byte === 0),
            `${what} ${length}: range zeroed`,
          );
          assert.ok(at.buffer.subarray(0, at.offset).equals(around.subarray(0, at.offset)));
          assert.ok(at.buffer.subarray(end).equals(around.subarray(end)));
        }
        // The context is fit for use after a failure.
        const output = Buffer.alloc(length);
        assert.equal(gcm.open(c.key, c.nonce, c.aad, c.ciphertext, 0, output, 0, length, c.tag), true);
        assert.ok(output.equals(c.plaintext));
      }
    });

    it("agrees with node:crypto the other way round: node:crypto opens what it sealed", () => {
      const c = reference(300_001);
      const out = shared(c.plaintext.length);
      const tag = Buffer.alloc(16);
      gcm.seal(c.key, c.nonce, c.aad, c.plaintext, 0, out, 0, c.plaintext.length, tag);
      const decipher = createDecipheriv("aes-256-gcm", c.key, c.nonce);
      decipher.setAAD(c.aad);
      decipher.setAuthTag(tag);
      assert.ok(Buffer.concat([decipher.update(out), decipher.final()]).equals(c.plaintext));
    });

    it("refuses ranges outside their buffers, partly overlapping ranges and wrong sizes", () => {
      const key = randomBytes(32);
      const nonce = randomBytes(12);
      const tag = Buffer.alloc(16);
      const aad = Buffer.alloc(8);
      const buffer = Buffer.alloc(100);
      const other = Buffer.alloc(100);
      const bad: Array<[string, unknown[]]> = [
        ["past the end of input", [key, nonce, aad, buffer, 50, other, 0, 51, tag]],
        ["past the end of output", [key, nonce, aad, buffer, 0, other, 50, 51, tag]],
        ["inputOffset", [key, nonce, aad, buffer, 101, other, 0, 0, tag]],
        ["outputOffset", [key, nonce, aad, buffer, 0, other, -1, 0, tag]],
        ["inputOffset", [key, nonce, aad, buffer, 1.5, other, 0, 1, tag]],
        ["length", [key, nonce, aad, buffer, 0, other, 0, Number.NaN, tag]],
        ["length", [key, nonce, aad, buffer, 0, other, 0, "10", tag]],
        ["overlap", [key, nonce, aad, buffer, 0, buffer, 1, 10, tag]],
        ["overlap", [key, nonce, aad, buffer, 5, buffer.subarray(2), 0, 10, tag]],
        ["key", [key.subarray(1), nonce, aad, buffer, 0, other, 0, 10, tag]],
        ["nonce", [key, randomBytes(16), aad, buffer, 0, other, 0, 10, tag]],
        ["tag", [key, nonce, aad, buffer, 0, other, 0, 10, tag.subarray(4)]],
        ["input", [key, nonce, aad, new Float32Array(25), 0, other, 0, 10, tag]],
        ["aad", [key, nonce, "aad", buffer, 0, other, 0, 10, tag]],
        ["9 arguments", [key, nonce, aad, buffer, 0, other, 0, 10]],
      ];
      for (const [message, args] of bad) {
        for (const fn of [gcm.open, gcm.seal] as Array<(...args: unknown[]) => unknown>) {
          assert.throws(() => fn(...args), new RegExp(message), message);
        }
      }
      // Adjacent ranges of one buffer do not overlap.
      gcm.seal(key, nonce, aad, buffer, 0, buffer, 10, 10, tag);
      assert.equal(gcm.open(key, nonce, aad, buffer, 10, buffer, 20, 10, tag), true);
      assert.ok(buffer.subarray(20, 30).equals(buffer.subarray(0, 10)));
    });
  });
}
