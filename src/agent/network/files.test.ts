import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { hostnameFile, hostsFile, taskResolvConf, withExtraHosts, withNameservers } from "./files.ts";

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

  it("appends a container's extraHosts to /etc/hosts and puts its dnsServers in place of the nameservers", () => {
    const hosts = hostsFile("web", "10.1.2.3");
    const extra = withExtraHosts(hosts, [
      { hostname: "db.internal", ipAddress: "10.9.8.7" },
      { hostname: "cache", ipAddress: "fd00::5" },
    ]);
    assert.equal(extra, `${hosts}10.9.8.7\tdb.internal\nfd00::5\tcache\n`);
    assert.equal(withExtraHosts(hosts, []), hosts);

    const resolv = "# generated\nnameserver 10.0.0.2\nsearch example.internal\noptions ndots:2\n";
    assert.equal(
      withNameservers(resolv, ["1.1.1.1", "9.9.9.9"]),
      "nameserver 1.1.1.1\nnameserver 9.9.9.9\n# generated\nsearch example.internal\noptions ndots:2\n",
    );
    assert.equal(withNameservers(resolv, []), resolv);
  });
});
