#!/bin/sh
# Installs what Wharf and its tests need on a fresh Debian machine: the npm
# dependencies (when missing or out of date) and the system packages below.
# Safe to run again: it does nothing when everything is in place.
set -eu
cd "$(dirname "$0")/.."

# program-path:debian-package (paths, not names: a pyenv or pip `aws` on PATH is not Debian's AWS CLI v2)
SYSTEM_PACKAGES="/usr/bin/aws:awscli /usr/bin/openssl:openssl /usr/bin/curl:curl
  /usr/sbin/dockerd:docker.io /usr/bin/skopeo:skopeo /bin/busybox:busybox-static
  /usr/bin/docker-registry:docker-registry /usr/bin/umoci:umoci
  /usr/sbin/runc:runc /usr/sbin/ip:iproute2 /usr/sbin/iptables:iptables"

missing=""
for entry in $SYSTEM_PACKAGES; do
  [ -x "${entry%%:*}" ] || missing="$missing ${entry#*:}"
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
  echo "bootstrap: installing npm dependencies"
  npm ci --no-audit --no-fund
fi
