#!/bin/sh
# Installs what Wharf and its tests need on a fresh Debian machine: the npm
# dependencies (when missing or out of date), the system packages below, and
# the AES-GCM addon (native/*.c, rebuilt when a source is newer).
# Safe to run again: it does nothing when everything is in place.
set -eu
cd "$(dirname "$0")/.."

# path:debian-package (paths, not names: a pyenv or pip `aws` on PATH is not Debian's AWS CLI v2);
# libc6-dev has no program, so its C library's header stands for it.
SYSTEM_PACKAGES="/usr/bin/aws:awscli /usr/bin/openssl:openssl /usr/bin/curl:curl
  /usr/sbin/dockerd:docker.io /usr/bin/skopeo:skopeo /bin/busybox:busybox-static
  /usr/bin/docker-registry:docker-registry /usr/bin/umoci:umoci
  /usr/sbin/runc:runc /usr/sbin/ip:iproute2 /usr/sbin/iptables:iptables
  /usr/bin/gcc:gcc /usr/include/stdlib.h:libc6-dev"

missing=""
for entry in $SYSTEM_PACKAGES; do
  [ -e "${entry%%:*}" ] || missing="$missing ${entry#*:}"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: please install these Debian packages (needs root):$missing" >&2
    exit 1
  fi
  echo "bootstrap: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  if [ -L node_modules ]; then
    # A checkout sharing another's install (a git worktree): `npm ci` would empty the linked
    # directory under every checkout using it. A fresh checkout's lock file is merely newer.
    echo "bootstrap: node_modules links to $(readlink node_modules); not reinstalling it (run npm ci there if it is stale)" >&2
  else
    echo "bootstrap: installing npm dependencies"
    npm ci --no-audit --no-fund
  fi
fi

# AES-256-GCM into a given buffer for the registry (src/registry/native-gcm.ts), and a
# sealed blob sent straight to a socket from a thread of its own (src/registry/sealed-send.ts).
# It links nothing: Node's own OpenSSL and N-API resolve when node loads it. Node's headers (with
# OpenSSL's) come with the Node package, beside its binary; without them Wharf uses
# node:crypto, more slowly.
ADDON=build/aesgcm.node
NODE_INCLUDE="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")/include/node"
if [ ! -f "$NODE_INCLUDE/node_api.h" ] || [ ! -f "$NODE_INCLUDE/openssl/evp.h" ]; then
  echo "bootstrap: no Node headers in $NODE_INCLUDE; the registry will use node:crypto (slower pulls)" >&2
elif [ ! -f "$ADDON" ] || [ -n "$(find native -newer "$ADDON" -name '*.[ch]')" ]; then
  echo "bootstrap: building $ADDON"
  mkdir -p build
  cc -O2 -Wall -pthread -shared -fPIC -I"$NODE_INCLUDE" -o "$ADDON.tmp" native/aesgcm.c native/gcm-vaes.c \
    native/send-sealed.c
  mv "$ADDON.tmp" "$ADDON"
fi
