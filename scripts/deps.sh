#!/usr/bin/env bash
# System packages sprited needs at run time and to build its images.
set -euo pipefail
PKGS=(runc runsc xfsprogs e2fsprogs busybox-static mmdebstrap util-linux procps curl wrk passt nftables)
# `--tests`: what only the tests need (the web console's, in a real browser).
if [ "${1:-}" = --tests ]; then
    PKGS+=(chromium chromium-driver)
fi
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "==> installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
