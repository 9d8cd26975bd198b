import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { engineAuthFromEnv, parseEngineAuth, registryCredentials } from "./engine-auth.ts";

const base64 = (text: string) => Buffer.from(text).toString("base64");

describe("ECS_ENGINE_AUTH_TYPE and ECS_ENGINE_AUTH_DATA", () => {
  it("reads the docker format, keys with or without a scheme", () => {
    const auths = parseEngineAuth({
      type: "docker",
      data: JSON.stringify({
        "my.registry.example.com": { username: "me", password: "p:w" },
        "https://index.docker.io/v1/": { username: "hub", password: "secret", email: "me@example.com" },
      }),
    });
    assert.deepEqual(registryCredentials(auths, "my.registry.example.com", "team/app"), {
      username: "me",
      password: "p:w",
    });
    assert.deepEqual(registryCredentials(auths, "docker.io", "library/busybox"), {
      username: "hub",
      password: "secret",
    });
    assert.equal(registryCredentials(auths, "other.example.com", "team/app"), undefined);
  });

  it("reads the dockercfg format (base64 of username:password, as docker login wrote .dockercfg)", () => {
    const auths = parseEngineAuth({
      type: "dockercfg",
      data: JSON.stringify({
        "http://127.0.0.1:5000/v1/": { auth: base64("user:pass:word"), email: "e" },
      }),
    });
    // "host/v1/" names the host alone
    assert.deepEqual(registryCredentials(auths, "127.0.0.1:5000", "app"), {
      username: "user",
      password: "pass:word",
    });
    assert.equal(registryCredentials(auths, "127.0.0.1:5001", "app"), undefined);
  });

  it("prefers the longest key that prefixes the image's name on a path boundary", () => {
    const auths = parseEngineAuth({
      type: "docker",
      data: JSON.stringify({
        "registry.tld": { username: "all", password: "1" },
        "registry.tld/team": { username: "team", password: "2" },
        "registry.tld/team/app": { username: "app", password: "3" },
      }),
    });
    const user = (repository: string) => registryCredentials(auths, "registry.tld", repository)?.username;
    assert.equal(user("team/app"), "app");
    assert.equal(user("team/web"), "team");
    assert.equal(user("teams/web"), "all");
    assert.equal(user("other"), "all");
  });

  it("is empty when neither variable is set, and refuses settings it cannot use without echoing secrets", () => {
    assert.equal(engineAuthFromEnv({}), undefined);
    assert.equal(parseEngineAuth(undefined).size, 0);
    assert.deepEqual(engineAuthFromEnv({ ECS_ENGINE_AUTH_TYPE: "docker", ECS_ENGINE_AUTH_DATA: "{}" }), {
      type: "docker",
      data: "{}",
    });
    const refused: Array<[string, string, RegExp]> = [
      ["", "{}", /ECS_ENGINE_AUTH_TYPE is not/],
      ["basic", "{}", /must be docker or dockercfg/],
      ["docker", "", /not set/],
      ["docker", "{not json secret", /not valid JSON/],
      ["docker", "[]", /JSON object/],
      ["docker", JSON.stringify({ host: { username: "u" } }), /"host" needs a username and a password/],
      ["docker", JSON.stringify({ host: "secret" }), /must be an object/],
      ["dockercfg", JSON.stringify({ host: { auth: base64("nocolon-secret") } }), /"host" needs "auth"/],
      ["dockercfg", JSON.stringify({ auths: { host: { auth: base64("u:p") } } }), /"auths" needs "auth"/],
    ];
    for (const [type, data, message] of refused) {
      assert.throws(
        () => parseEngineAuth(engineAuthFromEnv({ ECS_ENGINE_AUTH_TYPE: type, ECS_ENGINE_AUTH_DATA: data })),
        (error: Error) => message.test(error.message) && !error.message.includes("secret"),
        `${type} ${data}`,
      );
    }
  });
});
