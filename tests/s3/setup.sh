#!/usr/bin/env bash
# A real S3-compatible server for the cold-tier tests: moto in server mode,
# from PyPI, in a venv of its own (tests/s3/.venv/bin/moto_server). The
# tests start it on loopback themselves, one per test, and stop it by PID.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/moto_server ]; then
    echo "==> installing moto (S3 test server) from PyPI"
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check "moto[server]==5.2.5"
fi
