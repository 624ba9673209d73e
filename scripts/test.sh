#!/usr/bin/env bash
# The whole test suite: system packages, build, Rust unit and end-to-end tests
# (real daemon, real runc, real volumes), then the official Python SDK against
# the real daemon. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "the tests need root (mounts, namespaces, cgroups): run with sudo" >&2; exit 1; }
# What the disk has free, before and after the build: the suites make real
# volumes, and a short disk fails them with insufficient_storage.
df -h / /var/tmp
# What the compile needs first; the other packages (runc, gVisor,
# mmdebstrap, chromium, PostgreSQL, ...: minutes of downloads on a fresh
# machine) install while it runs.
scripts/deps.sh --build
deps_log=$(mktemp /var/tmp/sprited-test-deps-XXXXXX.log)
scripts/deps.sh --tests > "$deps_log" 2>&1 &
deps_install=$!
# If the build fails, the install still ends before the script does.
trap 'wait "$deps_install" || true; rm -f "$deps_log"' EXIT
# One build of every binary and test, with the features the test run asks
# for: `cargo build -p sprited -p sprite` would build the dependencies a
# second time, with other features, and so would `cargo run -p` the soak.
PROFILE=debug scripts/build.sh --all-targets
trap - EXIT
deps_rc=0
wait "$deps_install" || deps_rc=$?
cat "$deps_log"
rm -f "$deps_log"
if [ "$deps_rc" != 0 ]; then
    echo "installing the system packages failed (its output is above)" >&2
    exit 1
fi
target=${CARGO_TARGET_DIR:-target}
# The standard image (mmdebstrap, ~2.5 min, mostly downloads and dpkg) is
# built into the tests' image cache beside the lint, which needs neither:
# the suites that use it (dev_image, standard_image) then copy it. Its data
# dir is purged however the script ends (waiting for the build first, so
# that nothing of it stays mounted).
echo "==> building the standard image into $target/tmp/image-cache (in the background)"
images=$(mktemp -d /var/tmp/sprited-test-images-XXXXXX)
"$target/debug/sprited" images standard --data-dir "$images" \
    --image-cache "$target/tmp/image-cache" > "$images.log" 2>&1 &
image_build=$!
end_image_build() {
    local rc=0
    wait "$image_build" || rc=$?
    "$target/debug/sprited" purge --data-dir "$images" > /dev/null 2>&1 || true
    rm -rf "$images"
    return "$rc"
}
trap 'end_image_build || true; rm -f "$images.log"' EXIT
tests/s3/setup.sh
echo "==> cargo fmt --check, cargo clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
trap - EXIT
if ! end_image_build; then
    tail -n 40 "$images.log"
    rm -f "$images.log"
    echo "building the standard image failed (its log is above)" >&2
    exit 1
fi
rm -f "$images.log"
echo "==> cargo test"
df -h / /var/tmp
cargo test --workspace -- --test-threads=2
tests/compat/run.sh console
# The end-to-end suites whose cases differ between isolation levels, again
# with every sprite under gVisor (a matrix: the same tests, the daemon
# started with --isolation gvisor; tests/gvisor.rs runs both side by side
# in every run). The suites that look only at the daemon (API shapes,
# tokens, abuse bounds, images) are not repeated. --workspace, as above, so
# that nothing is built again (`-p sprited` resolves other features); the
# names also match sprite-agent's exec, fs, services and sprite_env suites
# and sprite-env's checkpoints and services (~15 s; no daemon, so the
# isolation does not touch them).
echo "==> the same suites with gvisor sprites"
SPRITED_TEST_ISOLATION=gvisor cargo test --workspace \
    --test lifecycle --test exec --test checkpoints --test egress --test cold \
    --test services --test usage --test restart --test persistence \
    --test urls --test fs --test fs_watch \
    --test sdk_fs --test sdk_checkpoints --test sprite_env -- --test-threads=2
# Random operations from 4 clients while the daemon is SIGKILLed every
# ~30 s and the object store stops answering for 6 s every ~45 s (README,
# "Soak"); the 30-minute run is the same command by hand.
echo "==> soak (2 min)"
"${CARGO_TARGET_DIR:-target}"/debug/sprites-bench soak --minutes 2 --clients 4
echo "==> official SDK compatibility (sprites-py, @fly/sprites)"
tests/compat/run.sh
# The suites whose commands control mode changes, again with the SDKs'
# controlMode clients: every command then goes through /control (the run
# fails unless the daemon counted them there).
echo "==> the same SDKs in control mode"
SPRITES_CONTROL_MODE=1 tests/compat/run.sh py test_sprites_py.py test_sprites_py_async.py
SPRITES_CONTROL_MODE=1 tests/compat/run.sh js sprites.test.mjs sweep.test.mjs
# Three hosts on a shared PostgreSQL database; every request through a
# cordoned one, which forwards it to the host holding the sprite. Each of
# the three is the one asked in turn: Python through the first and the
# third, JavaScript through the second.
echo "==> the same SDKs through each host of a shared database in turn"
SPRITED_TEST_CLUSTER=postgres SPRITED_TEST_CLUSTER_ASK=1 tests/compat/run.sh py
SPRITED_TEST_CLUSTER=postgres SPRITED_TEST_CLUSTER_ASK=2 tests/compat/run.sh js
SPRITED_TEST_CLUSTER=postgres SPRITED_TEST_CLUSTER_ASK=3 tests/compat/run.sh py
echo "==> the SDKs' sprite suites with gvisor sprites"
SPRITED_TEST_ISOLATION=gvisor tests/compat/run.sh py test_sprites_py.py
SPRITED_TEST_ISOLATION=gvisor tests/compat/run.sh js sprites.test.mjs
