import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { hostnameFile, hostsFile, taskResolvConf } from "./files.ts";

describe("task files", () => {
  it("names the task's address in /etc/hosts", () => {
    const hosts = hostsFile("web", "10.1.2.3");
    assert.match(hosts, /^127\.0\.0\.1\tlocalhost$/m);
    assert.match(hosts, /^10\.1\.2\.3\tweb$/m);
    assert.match(hostsFile("quiet", undefined), /^127\.0\.0\.1\tlocalhost quiet$/m);
    assert.equal(hostnameFile("web"), "web\n");
  });

  it("drops loopback nameservers from the host's resolv.conf", () => {
    const host =
      "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nsearch example.internal\n";
    assert.equal(taskResolvConf(host), "# generated\nnameserver 10.0.0.2\nsearch example.internal\n");
    assert.equal(taskResolvConf("nameserver 127.0.0.1\n"), "");
  });
});
