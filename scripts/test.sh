#!/usr/bin/env bash
# The whole test suite: system packages, build, Rust unit and end-to-end tests
# (real daemon, real runc, real volumes), then the official Python SDK against
# the real daemon. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "the tests need root (mounts, namespaces, cgroups): run with sudo" >&2; exit 1; }
scripts/deps.sh
PROFILE=debug scripts/build.sh
tests/s3/setup.sh
echo "==> cargo fmt --check, cargo clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
echo "==> cargo test"
cargo test --workspace -- --test-threads=2
echo "==> official SDK compatibility (sprites-py, @fly/sprites)"
tests/compat/run.sh
