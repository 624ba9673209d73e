#!/usr/bin/env bash
# Bring sprited up with its embedded defaults: install what it needs, build in
# release mode, build the base images once, start the daemon (foreground; Ctrl-C
# stops the daemon, sprites keep their data) and log the local `sprite` CLI in.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "sprited needs root (mounts, namespaces, cgroups): run with sudo" >&2; exit 1; }
DATA_DIR=${SPRITED_DATA_DIR:-/var/lib/sprited}
LISTEN=${SPRITED_LISTEN:-127.0.0.1:7070}
scripts/deps.sh
PROFILE=release scripts/build.sh
install -m 0755 target/release/sprited target/release/sprite /usr/local/bin/
install -m 0755 target/x86_64-unknown-linux-gnu/release/sprite-agent /usr/local/bin/sprite-agent
echo "==> base images (built once; standard takes a few minutes)"
sprited images --data-dir "$DATA_DIR" tiny standard
# The CAs this host was told to trust (a company's TLS-inspecting proxy):
# the sprites trust them too, so package installs inside work as outside.
ARGS=()
for ca in /usr/local/share/ca-certificates/*.crt; do
    [ -f "$ca" ] && ARGS+=(--ca-file "$ca")
done
# More flags, e.g. SPRITED_ARGS="--sprite-env HTTPS_PROXY=http://proxy:3128".
read -r -a EXTRA <<<"${SPRITED_ARGS:-}"
echo "==> starting sprited on $LISTEN (data in $DATA_DIR)"
sprited --listen "$LISTEN" --data-dir "$DATA_DIR" "${ARGS[@]}" "${EXTRA[@]}" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' INT TERM
for _ in $(seq 1 300); do
    [ -s "$DATA_DIR/admin.token" ] && curl -fsS -o /dev/null -H "Authorization: Bearer $(cat "$DATA_DIR/admin.token")" "http://$LISTEN/v1/sprites" 2>/dev/null && break
    kill -0 $pid 2>/dev/null || { echo "sprited exited" >&2; exit 1; }
    sleep 0.1
done
SPRITE_TOKEN=$(cat "$DATA_DIR/admin.token") sprite login "http://$LISTEN" >/dev/null
echo "==> sprited is up. In another terminal: sprite create demo && sprite exec -s demo -- echo hi"
wait $pid
