import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseChallenges } from "./auth.ts";
import { formatReference, isLoopbackRegistry, parseReference } from "./reference.ts";

const DIGEST = `sha256:${"a".repeat(64)}`;

describe("parseReference", () => {
  const cases: [string, ReturnType<typeof parseReference>][] = [
    ["busybox", { registry: "docker.io", repository: "library/busybox", tag: "latest" }],
    ["busybox:1.36", { registry: "docker.io", repository: "library/busybox", tag: "1.36" }],
    ["library/busybox", { registry: "docker.io", repository: "library/busybox", tag: "latest" }],
    ["docker.io/busybox", { registry: "docker.io", repository: "library/busybox", tag: "latest" }],
    ["index.docker.io/user/app", { registry: "docker.io", repository: "user/app", tag: "latest" }],
    ["user/app:v2", { registry: "docker.io", repository: "user/app", tag: "v2" }],
    ["localhost:4700/app:v1", { registry: "localhost:4700", repository: "app", tag: "v1" }],
    ["localhost/app", { registry: "localhost", repository: "app", tag: "latest" }],
    ["127.0.0.1:5000/ns/app", { registry: "127.0.0.1:5000", repository: "ns/app", tag: "latest" }],
    ["[::1]:5000/app:x", { registry: "[::1]:5000", repository: "app", tag: "x" }],
    ["Host/app", { registry: "Host", repository: "app", tag: "latest" }],
    [`host.example/ns/app@${DIGEST}`, { registry: "host.example", repository: "ns/app", digest: DIGEST }],
    [`app:v1@${DIGEST}`, { registry: "docker.io", repository: "library/app", tag: "v1", digest: DIGEST }],
    ["a.b/c/d/e_f-g.h__i:T_1.x-y", { registry: "a.b", repository: "c/d/e_f-g.h__i", tag: "T_1.x-y" }],
  ];
  for (const [ref, expected] of cases) {
    it(`parses ${ref}`, () => assert.deepEqual(parseReference(ref), expected));
  }

  for (const bad of [
    "",
    "UPPER",
    "app:",
    "app:-bad",
    "host:5000/",
    "a//b",
    "app@sha256:abc",
    `app@md5:${"a".repeat(32)}`,
    "app/..",
    "bad_/x",
    `x:${"t".repeat(129)}`,
  ]) {
    it(`refuses "${bad}"`, () => assert.throws(() => parseReference(bad), { code: "INVALID_REFERENCE" }));
  }

  it("formats canonically", () => {
    assert.equal(formatReference(parseReference("busybox")), "docker.io/library/busybox:latest");
    assert.equal(formatReference(parseReference(`h:1/a@${DIGEST}`)), `h:1/a@${DIGEST}`);
  });

  it("knows loopback registries", () => {
    for (const host of ["localhost:4700", "localhost", "127.0.0.1:5000", "127.1.2.3", "[::1]:80"]) {
      assert.ok(isLoopbackRegistry(host), host);
    }
    for (const host of ["docker.io", "10.0.0.1:5000", "localhost.example:1", "[::2]:80"]) {
      assert.ok(!isLoopbackRegistry(host), host);
    }
  });
});

describe("parseChallenges", () => {
  it("reads a Bearer challenge with quoted parameters", () => {
    assert.deepEqual(
      parseChallenges([
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"',
      ]),
      [
        {
          scheme: "bearer",
          params: {
            realm: "https://auth.example/token",
            service: "registry.example",
            scope: "repository:a/b:pull,push",
          },
        },
      ],
    );
  });

  it("reads several challenges, tokens, escapes and odd spacing", () => {
    assert.deepEqual(
      parseChallenges(['Basic realm="a \\"b\\"", charset=UTF-8 ,  Bearer realm=x', "Negotiate"]),
      [
        { scheme: "basic", params: { realm: 'a "b"', charset: "UTF-8" } },
        { scheme: "bearer", params: { realm: "x" } },
        { scheme: "negotiate", params: {} },
      ],
    );
  });

  it("survives garbage", () => {
    assert.deepEqual(parseChallenges(['Bearer realm="unterminated']), [{ scheme: "bearer", params: {} }]);
    assert.deepEqual(parseChallenges(["", "  ,  "]), []);
  });
});
