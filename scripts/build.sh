#!/usr/bin/env bash
# Build sprited, the sprite CLI and the static agent. PROFILE=release|debug.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-release}
flag=(); [ "$PROFILE" = release ] && flag=(--release)
echo "==> building the static sprite-agent ($PROFILE)"
RUSTFLAGS='-C target-feature=+crt-static' cargo build "${flag[@]}" --target x86_64-unknown-linux-gnu -p sprite-agent
echo "==> building sprited and sprite ($PROFILE)"
cargo build "${flag[@]}" -p sprited -p sprite
