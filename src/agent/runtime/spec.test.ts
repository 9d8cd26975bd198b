import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { capabilitiesInMask, DEFAULT_CAPABILITIES } from "./capabilities.ts";
import { RuntimeError } from "./errors.ts";
import { CONTAINER_ID_ANNOTATION, type OciSpec, STOP_SIGNAL_ANNOTATION } from "./oci.ts";
import {
  buildSpec,
  type ContainerDefinition,
  type ContainerSpecInput,
  DEFAULT_PATH,
  type ImageConfig,
} from "./spec.ts";

const MIB = 1024 * 1024;

function input(overrides: Partial<ContainerSpecInput> = {}): ContainerSpecInput {
  return {
    id: "task1-web",
    rootfs: "/var/lib/wharf/c/task1-web/rootfs",
    image: { Cmd: ["httpd", "-f"] },
    container: {},
    hostname: "web-host",
    cgroupsPath: "/wharf/task1/web",
    ...overrides,
  };
}

function spec(
  container: ContainerDefinition,
  image: ImageConfig = { Cmd: ["run"] },
  more: Partial<ContainerSpecInput> = {},
) {
  return buildSpec(input({ container, image, ...more }));
}

function refused(fn: () => unknown, pattern: RegExp): void {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof RuntimeError, String(error));
    assert.equal(error.code, "invalid_spec");
    assert.match(error.message, pattern);
    return;
  }
  assert.fail("expected invalid_spec");
}

function mount(s: OciSpec, destination: string) {
  return s.mounts.find((m) => m.destination === destination);
}

describe("buildSpec: process arguments follow Docker", () => {
  const image: ImageConfig = { Entrypoint: ["/entry"], Cmd: ["default"] };
  it("runs the image's entrypoint and cmd", () => {
    assert.deepEqual(spec({}, image).process.args, ["/entry", "default"]);
  });
  it("lets command replace the image cmd only", () => {
    assert.deepEqual(spec({ command: ["x", "y"] }, image).process.args, ["/entry", "x", "y"]);
  });
  it("drops the image cmd when the container sets an entrypoint", () => {
    assert.deepEqual(spec({ entryPoint: ["/mine"] }, image).process.args, ["/mine"]);
    assert.deepEqual(spec({ entryPoint: ["/mine"], command: ["a"] }, image).process.args, ["/mine", "a"]);
  });
  it("treats empty lists and nulls as unset", () => {
    assert.deepEqual(spec({ entryPoint: [], command: [] }, image).process.args, ["/entry", "default"]);
    assert.deepEqual(spec({ command: ["a"] }, { Entrypoint: null, Cmd: null }).process.args, ["a"]);
  });
  it("refuses a container with nothing to run", () => {
    refused(() => spec({}, {}), /no command/);
  });
  it("prepends the init when initProcessEnabled, bound read-only from the node", () => {
    const s = spec({ linuxParameters: { initProcessEnabled: true } }, image, {
      initPath: "/usr/bin/tini-static",
    });
    assert.deepEqual(s.process.args, ["/sbin/docker-init", "--", "/entry", "default"]);
    assert.deepEqual(mount(s, "/sbin/docker-init"), {
      destination: "/sbin/docker-init",
      type: "bind",
      source: "/usr/bin/tini-static",
      options: ["bind", "ro"],
    });
    refused(() => spec({ linuxParameters: { initProcessEnabled: true } }, image), /initPath/);
  });
});

describe("buildSpec: environment, working directory, user", () => {
  it("starts from PATH and HOSTNAME, overlaid by the image, then the container", () => {
    const s = spec(
      {
        environment: [
          { name: "B", value: "container" },
          { name: "C", value: "x=y" },
        ],
      },
      { Cmd: ["run"], Env: ["A=image", "B=image"] },
    );
    assert.deepEqual(s.process.env, [
      `PATH=${DEFAULT_PATH}`,
      "HOSTNAME=web-host",
      "A=image",
      "B=container",
      "C=x=y",
    ]);
  });
  it("keeps the image's PATH and lets the container set HOSTNAME", () => {
    const s = spec(
      { environment: [{ name: "HOSTNAME", value: "h" }] },
      { Cmd: ["run"], Env: ["PATH=/opt/bin"] },
    );
    assert.deepEqual(s.process.env, ["PATH=/opt/bin", "HOSTNAME=h"]);
  });
  it("refuses a bad variable name", () => {
    refused(() => spec({ environment: [{ name: "A=B", value: "1" }] }), /environment variable/);
  });
  it("takes the working directory from the container, else the image, else /", () => {
    assert.equal(spec({}).process.cwd, "/");
    assert.equal(spec({}, { Cmd: ["r"], WorkingDir: "/srv" }).process.cwd, "/srv");
    assert.equal(spec({ workingDirectory: "/app" }, { Cmd: ["r"], WorkingDir: "/srv" }).process.cwd, "/app");
    refused(() => spec({ workingDirectory: "app" }), /absolute/);
  });
  it("resolves the user from the container, else the image, with the image's passwd and group", () => {
    const more = {
      passwd: "root:x:0:0::/root:/bin/sh\nweb:x:33:33::/var/www:/bin/sh\n",
      group: "www:x:33:\nlog:x:4:web\n",
    };
    assert.deepEqual(spec({}, { Cmd: ["r"], User: "web" }, more).process.user, {
      uid: 33,
      gid: 33,
      additionalGids: [4],
    });
    assert.deepEqual(spec({ user: "1:2" }, { Cmd: ["r"], User: "web" }, more).process.user, {
      uid: 1,
      gid: 2,
    });
    assert.deepEqual(spec({}, { Cmd: ["r"] }, more).process.user, { uid: 0, gid: 0 });
    refused(() => spec({ user: "nobody" }, { Cmd: ["r"] }, more), /unable to find user "nobody"/);
  });
});

describe("buildSpec: resources", () => {
  it("maps cpu units to shares with the ECS agent's floor of 2", () => {
    assert.equal(spec({}).linux.resources.cpu?.shares, 2);
    assert.equal(spec({ cpu: 0 }).linux.resources.cpu?.shares, 2);
    assert.equal(spec({ cpu: 1 }).linux.resources.cpu?.shares, 2);
    assert.equal(spec({ cpu: 512 }).linux.resources.cpu?.shares, 512);
  });
  it("sets the hard limit without swap, and the reservation as the soft limit", () => {
    assert.deepEqual(spec({ memory: 128, memoryReservation: 64 }).linux.resources.memory, {
      limit: 128 * MIB,
      swap: 128 * MIB,
      reservation: 64 * MIB,
    });
    assert.deepEqual(spec({ memoryReservation: 64 }).linux.resources.memory, { reservation: 64 * MIB });
    assert.equal(spec({}).linux.resources.memory, undefined);
    refused(() => spec({ memory: 64, memoryReservation: 128 }), /memoryReservation/);
  });
  it("caps a container without memory at the task's memory", () => {
    assert.equal(spec({}, undefined, { taskMemoryLimitMiB: 512 }).linux.resources.memory?.limit, 512 * MIB);
    assert.equal(
      spec({ memory: 100 }, undefined, { taskMemoryLimitMiB: 512 }).linux.resources.memory?.limit,
      100 * MIB,
    );
  });
  it("sets rlimits, and only those asked for", () => {
    assert.deepEqual(spec({}).process.rlimits, []);
    assert.deepEqual(
      spec({
        ulimits: [
          { name: "nofile", softLimit: 1000, hardLimit: 2000 },
          { name: "core", softLimit: -1, hardLimit: -1 },
        ],
      }).process.rlimits,
      [
        { type: "RLIMIT_NOFILE", soft: 1000, hard: 2000 },
        { type: "RLIMIT_CORE", soft: Number.MAX_SAFE_INTEGER, hard: Number.MAX_SAFE_INTEGER },
      ],
    );
    refused(() => spec({ ulimits: [{ name: "files", softLimit: 1, hardLimit: 1 }] }), /unknown ulimit/);
    refused(() => spec({ ulimits: [{ name: "nproc", softLimit: 5, hardLimit: 1 }] }), /exceeds/);
  });
  it("denies all devices unless privileged (runc adds its standard allowed set)", () => {
    assert.deepEqual(spec({}).linux.resources.devices, [{ allow: false, access: "rwm" }]);
    assert.deepEqual(spec({ privileged: true }).linux.resources.devices, [{ allow: true, access: "rwm" }]);
  });
});

describe("buildSpec: capabilities and privilege", () => {
  function caps(container: ContainerDefinition): string[] {
    const c = spec(container).process.capabilities;
    assert.deepEqual(c.effective, c.bounding);
    assert.deepEqual(c.permitted, c.bounding);
    assert.deepEqual(c.inheritable, []);
    assert.deepEqual(c.ambient, []);
    return c.bounding;
  }
  it("grants Docker's default set", () => {
    assert.deepEqual(caps({}), DEFAULT_CAPABILITIES);
    assert.equal(DEFAULT_CAPABILITIES.length, 14);
  });
  it("adds and drops, in any case, with or without CAP_", () => {
    const c = caps({
      linuxParameters: { capabilities: { add: ["sys_admin", "CAP_NET_ADMIN"], drop: ["CHOWN", "cap_kill"] } },
    });
    assert.ok(c.includes("CAP_SYS_ADMIN") && c.includes("CAP_NET_ADMIN"));
    assert.ok(!c.includes("CAP_CHOWN") && !c.includes("CAP_KILL"));
    assert.equal(c.length, 14);
  });
  it("supports ALL on either side", () => {
    assert.deepEqual(
      caps({ linuxParameters: { capabilities: { drop: ["ALL"], add: ["NET_BIND_SERVICE"] } } }),
      ["CAP_NET_BIND_SERVICE"],
    );
    const all = caps({ linuxParameters: { capabilities: { add: ["ALL"], drop: ["SYS_ADMIN"] } } });
    assert.equal(all.length, 40);
    assert.ok(!all.includes("CAP_SYS_ADMIN"));
  });
  it("grants only what the node has, and refuses to add what it lacks", () => {
    const available = capabilitiesInMask("000001fffeffffff"); // every capability but CAP_SYS_RESOURCE
    assert.equal(available.length, 40);
    const privileged = spec({ privileged: true }, undefined, { availableCapabilities: available });
    assert.deepEqual(privileged.process.capabilities.bounding, available);
    const all = spec({ linuxParameters: { capabilities: { add: ["ALL"] } } }, undefined, {
      availableCapabilities: available,
    });
    assert.ok(!all.process.capabilities.bounding.includes("CAP_SYS_RESOURCE"));
    refused(
      () =>
        spec({ linuxParameters: { capabilities: { add: ["SYS_RESOURCE"] } } }, undefined, {
          availableCapabilities: available,
        }),
      /CAP_SYS_RESOURCE is not available/,
    );
    // Docker's default set, as a running container's CapEff shows it.
    assert.deepEqual(capabilitiesInMask("00000000a80425fb").sort(), [...DEFAULT_CAPABILITIES].sort());
  });
  it("refuses an unknown capability", () => {
    refused(() => spec({ linuxParameters: { capabilities: { add: ["FLY"] } } }), /unknown capability "FLY"/);
  });
  it("sets no_new_privileges, masks and read-only paths unless privileged", () => {
    const plain = spec({});
    assert.equal(plain.process.noNewPrivileges, true);
    assert.ok(plain.linux.maskedPaths.includes("/proc/kcore"));
    assert.ok(plain.linux.readonlyPaths.includes("/proc/sys"));
    assert.ok(mount(plain, "/sys")?.options?.includes("ro"));
    const privileged = spec({ privileged: true });
    assert.equal(privileged.process.noNewPrivileges, false);
    assert.equal(privileged.process.capabilities.bounding.length, 41);
    assert.deepEqual(privileged.linux.maskedPaths, []);
    assert.deepEqual(privileged.linux.readonlyPaths, []);
    assert.ok(!mount(privileged, "/sys")?.options?.includes("ro"));
  });
});

describe("buildSpec: mounts", () => {
  it("has runc's standard mounts, with a 64 MiB /dev/shm by default", () => {
    const s = spec({});
    assert.deepEqual(
      s.mounts.map((m) => m.destination),
      ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"],
    );
    assert.ok(mount(s, "/dev/shm")?.options?.includes("size=64m"));
    assert.ok(
      mount(spec({ linuxParameters: { sharedMemorySize: 256 } }), "/dev/shm")?.options?.includes("size=256m"),
    );
  });
  it("adds tmpfs mounts with Docker's defaults and the user's options", () => {
    const s = spec({
      linuxParameters: {
        tmpfs: [
          { containerPath: "/scratch", size: 16 },
          { containerPath: "/run/exec/", size: 8, mountOptions: ["exec", "mode=700", "noatime", "defaults"] },
        ],
      },
    });
    assert.deepEqual(mount(s, "/scratch")?.options, ["rw", "noexec", "nosuid", "nodev", "size=16m"]);
    assert.deepEqual(mount(s, "/run/exec")?.options, [
      "rw",
      "nosuid",
      "nodev",
      "exec",
      "noatime",
      "mode=700",
      "size=8m",
    ]);
  });
  it("binds volumes and the network files, read-only when asked, parents first", () => {
    const s = spec({}, undefined, {
      mounts: [
        { source: "/data/sub", destination: "/data/sub", readonly: true },
        { source: "/data", destination: "/data" },
        { source: "/t/hosts", destination: "/etc/hosts" },
      ],
    });
    const user = s.mounts.slice(7);
    assert.deepEqual(
      user.map((m) => [m.destination, m.options]),
      [
        ["/data", ["rbind", "rprivate", "rw"]],
        ["/data/sub", ["rbind", "rprivate", "ro"]],
        ["/etc/hosts", ["rbind", "rprivate", "rw"]],
      ],
    );
  });
  it("lets a container mount replace a standard one", () => {
    const s = spec({ linuxParameters: { tmpfs: [{ containerPath: "/dev/shm", size: 1 }] } });
    assert.equal(s.mounts.filter((m) => m.destination === "/dev/shm").length, 1);
    assert.equal(mount(s, "/dev/shm")?.source, "tmpfs");
  });
  it("refuses relative, escaping or duplicate destinations", () => {
    refused(() => spec({}, undefined, { mounts: [{ source: "/a", destination: "data" }] }), /absolute/);
    refused(() => spec({}, undefined, { mounts: [{ source: "/a", destination: "/x/../etc" }] }), /absolute/);
    refused(() => spec({}, undefined, { mounts: [{ source: "a", destination: "/x" }] }), /source/);
    refused(() => spec({}, undefined, { mounts: [{ source: "/a", destination: "/" }] }), /root/);
    refused(
      () =>
        spec({ linuxParameters: { tmpfs: [{ containerPath: "/x", size: 1 }] } }, undefined, {
          mounts: [{ source: "/a", destination: "/x/" }],
        }),
      /two mounts/,
    );
  });
});

describe("buildSpec: namespaces, root, annotations", () => {
  it("joins the given network namespace, makes a new one, or shares the host's", () => {
    const types = (s: OciSpec) => s.linux.namespaces;
    assert.deepEqual(types(spec({}, undefined, { netnsPath: "/run/netns/t1" })).at(-1), {
      type: "network",
      path: "/run/netns/t1",
    });
    assert.deepEqual(types(spec({}, undefined, { newNetns: true })).at(-1), { type: "network" });
    assert.deepEqual(
      types(spec({})).map((n) => n.type),
      ["pid", "ipc", "uts", "mount"],
    );
    refused(() => spec({}, undefined, { netnsPath: "netns" }), /absolute/);
  });
  it("sets root, hostname, cgroups path and no user namespace", () => {
    const s = buildSpec(input({ readonlyRootfs: true }));
    assert.deepEqual(s.root, { path: "/var/lib/wharf/c/task1-web/rootfs", readonly: true });
    assert.equal(s.hostname, "web-host");
    assert.equal(s.linux.cgroupsPath, "/wharf/task1/web");
    assert.ok(!s.linux.namespaces.some((n) => n.type === "user"));
    assert.equal(s.process.terminal, false);
    assert.equal(buildSpec(input()).root.readonly, false);
  });
  it("carries docker labels, the image's stop signal and the container id", () => {
    const s = spec(
      { dockerLabels: { team: "web", [CONTAINER_ID_ANNOTATION]: "spoof" } },
      { Cmd: ["r"], StopSignal: "SIGQUIT" },
    );
    assert.deepEqual(s.annotations, {
      team: "web",
      [CONTAINER_ID_ANNOTATION]: "task1-web",
      [STOP_SIGNAL_ANNOTATION]: "SIGQUIT",
    });
  });
  it("refuses unsafe ids and relative paths", () => {
    assert.throws(
      () => buildSpec(input({ id: "../etc" })),
      (e: unknown) => e instanceof RuntimeError && e.code === "invalid_id",
    );
    assert.throws(() => buildSpec(input({ id: "-x" })), RuntimeError);
    refused(() => buildSpec(input({ rootfs: "rootfs" })), /rootfs/);
    refused(() => buildSpec(input({ cgroupsPath: "wharf/x" })), /cgroupsPath/);
  });
  it("is plain JSON", () => {
    const s = buildSpec(input({ container: { memory: 64, cpu: 256 } }));
    assert.deepEqual(JSON.parse(JSON.stringify(s)), s);
  });
});
