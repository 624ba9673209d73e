#!/usr/bin/env bash
# Build sprited, the sprite CLI and the static agent. PROFILE=release|debug.
#
#   build.sh                 sprited and sprite
#   build.sh --all-targets   every package's binaries and tests, in one
#                            build whose features are those `cargo test
#                            --workspace` asks for (what scripts/test.sh
#                            uses: its test run then builds nothing again)
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-release}
flag=(); [ "$PROFILE" = release ] && flag=(--release)
packages=(-p sprited -p sprite)
if [ "${1:-}" = --all-targets ]; then
    packages=(--workspace --all-targets)
fi
echo "==> building the static sprite-agent ($PROFILE)"
RUSTFLAGS='-C target-feature=+crt-static' cargo build "${flag[@]}" --target x86_64-unknown-linux-gnu -p sprite-agent
echo "==> building sprited and sprite ($PROFILE${1:+, $1})"
cargo build "${flag[@]}" "${packages[@]}"
