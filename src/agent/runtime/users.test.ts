import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RuntimeError } from "./errors.ts";
import { parseGroup, parsePasswd, resolveUser } from "./users.ts";

const PASSWD = [
  "root:x:0:0:root:/root:/bin/sh",
  "# a comment",
  "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
  "broken line",
  "app:x:1000:1000:App:/home/app:/bin/sh",
  "nohome:x:1001:100::",
].join("\n");

const GROUP = [
  "root:x:0:",
  "wheel:x:10:root,app",
  "users:x:100:",
  "app:x:1000:",
  "docker:x:999:app , other",
  "audio:x:29:app",
  "bad:x:notanumber:app",
].join("\n");

function refused(fn: () => unknown): RuntimeError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof RuntimeError);
    assert.equal(error.code, "invalid_spec");
    return error;
  }
  assert.fail("expected a RuntimeError");
}

describe("parsePasswd and parseGroup", () => {
  it("skip comments, blank and malformed lines", () => {
    assert.deepEqual(
      parsePasswd(PASSWD).map((u) => u.name),
      ["root", "daemon", "app", "nohome"],
    );
    assert.deepEqual(parsePasswd(PASSWD)[2], { name: "app", uid: 1000, gid: 1000, home: "/home/app" });
    const groups = parseGroup(GROUP);
    assert.deepEqual(
      groups.map((g) => g.name),
      ["root", "wheel", "users", "app", "docker", "audio"],
    );
    assert.deepEqual(groups.find((g) => g.name === "docker")?.members, ["app", "other"]);
  });
});

describe("resolveUser", () => {
  it("resolves a name to its uid, primary gid and member groups", () => {
    assert.deepEqual(resolveUser("app", PASSWD, GROUP), {
      uid: 1000,
      gid: 1000,
      additionalGids: [10, 999, 29],
      home: "/home/app",
    });
  });

  it("treats an empty user as root, with root's groups", () => {
    assert.deepEqual(resolveUser("", PASSWD, GROUP), { uid: 0, gid: 0, additionalGids: [10], home: "/root" });
    assert.deepEqual(resolveUser(""), { uid: 0, gid: 0, additionalGids: [] });
  });

  it("looks a numeric uid up for its gid, and needs no entry", () => {
    assert.deepEqual(resolveUser("1000", PASSWD, GROUP).gid, 1000);
    assert.deepEqual(resolveUser("4242", PASSWD, GROUP), { uid: 4242, gid: 0, additionalGids: [] });
    assert.deepEqual(resolveUser("4242"), { uid: 4242, gid: 0, additionalGids: [] });
  });

  it("takes an explicit group and then adds no supplementary groups", () => {
    assert.deepEqual(resolveUser("app:users", PASSWD, GROUP), {
      uid: 1000,
      gid: 100,
      additionalGids: [],
      home: "/home/app",
    });
    assert.deepEqual(resolveUser("1000:4242", PASSWD, GROUP).gid, 4242);
    assert.deepEqual(resolveUser("7:8"), { uid: 7, gid: 8, additionalGids: [] });
  });

  it("leaves out an empty home", () => {
    assert.equal(resolveUser("nohome", PASSWD, GROUP).home, undefined);
  });

  it("refuses names the image does not define, saying why", () => {
    assert.match(refused(() => resolveUser("ghost", PASSWD, GROUP)).message, /unable to find user "ghost"/);
    assert.match(
      refused(() => resolveUser("app:ghosts", PASSWD, GROUP)).message,
      /unable to find group "ghosts"/,
    );
    assert.match(refused(() => resolveUser("app")).message, /no \/etc\/passwd/);
    assert.match(refused(() => resolveUser("1000:staff", PASSWD)).message, /no \/etc\/group/);
  });
});
