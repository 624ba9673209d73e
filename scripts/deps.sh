#!/usr/bin/env bash
# System packages sprited needs at run time and to build its images.
set -euo pipefail
PKGS=(runc runsc xfsprogs e2fsprogs busybox-static mmdebstrap util-linux procps curl wrk passt nftables libseccomp-dev)
# `--tests`: what only the tests need (the web console's, in a real browser;
# a PostgreSQL server for `--database postgres://`, which the tests start
# themselves on clusters of their own).
if [ "${1:-}" = --tests ]; then
    PKGS+=(chromium chromium-driver postgresql)
fi
# `--build`: only what compiling needs (scripts/test.sh installs the rest
# while it compiles).
if [ "${1:-}" = --build ]; then
    PKGS=(libseccomp-dev)
fi
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ " ${missing[*]:-} " == *" postgresql "* ]]; then
    # Only the programs: no cluster of the package's own, nor a server it
    # would start on port 5432.
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/sprited-tests.conf
fi
if ((${#missing[@]})); then
    echo "==> installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
