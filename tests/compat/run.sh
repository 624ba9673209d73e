#!/usr/bin/env bash
# The official Python SDK (sprites-py from PyPI) against the real daemon.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/pytest ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check "sprites-py==0.7.2" "pytest>=8,<9"
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
