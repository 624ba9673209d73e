"""Start a real sprited (debug build, tiny image) for the SDK tests."""

import os
import secrets
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

import sdk_surface

# Before any test runs: every public call of the SDK notes that it was made.
sdk_surface.record()

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))

# SPRITES_CONTROL_MODE=1: the suite's clients are made with
# control_mode=True, so their commands go through the SDK's pool of
# control WebSockets; the run fails unless the daemon ran them there.
CONTROL_MODE = os.environ.get("SPRITES_CONTROL_MODE") == "1"
CONTROL_EXECS = []


def control_ops(url, token, kind="exec"):
    """How many operations of `kind` the daemon ran on control WebSockets."""
    req = urllib.request.Request(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"})
    text = urllib.request.urlopen(req, timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(f'sprited_control_operations_total{{op="{kind}"}}'):
            return int(float(line.split()[-1]))
    return 0


def _binary(name: str) -> Path:
    for profile in ("debug", "release"):
        p = TARGET / profile / name
        if p.is_file():
            return p
    raise RuntimeError(f"{name} is not built: run scripts/build.sh first")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# SPRITED_TEST_CLUSTER=postgres: three hosts share a PostgreSQL database of
# the run's own (tests/compat/postgres.sh) and one object store, and the
# suite talks to host SPRITED_TEST_CLUSTER_ASK (1, 2 or 3; default 3),
# cordoned (`--cordon`: it takes no sprite), so the sprites are placed on
# the other two and every request about one is forwarded: every sprite
# lives on another host than the one asked.
CLUSTER = os.environ.get("SPRITED_TEST_CLUSTER") == "postgres"
ASKED = int(os.environ.get("SPRITED_TEST_CLUSTER_ASK", "3"))
HERE = Path(__file__).resolve().parent


def _start_sprited(sprited, token, extra_env=None, extra_args=()):
    data_dir = tempfile.mkdtemp(prefix="sprited-compat-", dir="/var/tmp")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, SPRITED_TOKEN=token, RUST_LOG="info", **(extra_env or {}))
    log = open(Path(data_dir).with_suffix(".log"), "wb")
    proc = subprocess.Popen(
        [str(sprited), "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir,
         "--default-image", "tiny",
         # The isolation level of the run (CI runs the suites at both).
         "--isolation", os.environ.get("SPRITED_TEST_ISOLATION", "container"),
         *extra_args],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"sprited exited with {proc.returncode}; see {log.name}")
        try:
            req = urllib.request.Request(f"{url}/v1/sprites",
                                         headers={"Authorization": f"Bearer {token}"})
            urllib.request.urlopen(req, timeout=2).read()
            break
        except OSError:
            if time.time() > deadline:
                raise RuntimeError("sprited did not come up in 120 s")
            time.sleep(0.1)
    return {"url": url, "data_dir": data_dir, "proc": proc, "log": log}


def _stop_sprited(sprited, d):
    proc = d["proc"]
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    subprocess.run([str(sprited), "purge", "--data-dir", d["data_dir"]], check=False)
    d["log"].close()
    Path(d["log"].name).unlink(missing_ok=True)


@pytest.fixture(scope="session")
def daemon():
    sprited = _binary("sprited")
    token = secrets.token_hex(16)
    started = []
    pg_dir = None
    try:
        if CLUSTER:
            pg_dir = tempfile.mkdtemp(prefix="sprited-compat-pg-", dir="/var/tmp")
            db_url = subprocess.run(
                [str(HERE / "postgres.sh"), "start", pg_dir, str(_free_port())],
                check=True, capture_output=True, text=True).stdout.strip()
            objects = Path(pg_dir) / "objects"
            objects.mkdir()
            for i in (1, 2, 3):
                extra = ["--cordon"] if i == ASKED else []
                started.append(_start_sprited(
                    sprited, token, {"SPRITED_DATABASE": db_url},
                    ["--host-id", f"h{i}", "--object-store", f"file://{objects}", *extra]))
        else:
            started.append(_start_sprited(sprited, token))
        # In a cluster, the one asked (cordoned).
        front = started[ASKED - 1] if CLUSTER else started[-1]
        url = front["url"]
        # Every host: a sprite's operations are counted where it runs.
        hosts = [d["url"] for d in started]
        yield {"url": url, "token": token, "data_dir": front["data_dir"], "hosts": hosts}
        if CONTROL_MODE:
            CONTROL_EXECS.append(sum(control_ops(h, token) for h in hosts))
    finally:
        for d in reversed(started):
            _stop_sprited(sprited, d)
        if pg_dir:
            subprocess.run([str(HERE / "postgres.sh"), "stop", pg_dir], check=False)
            subprocess.run(["rm", "-rf", pg_dir], check=False)


@pytest.fixture()
def client(daemon):
    from sprites import SpritesClient

    c = SpritesClient(daemon["token"], base_url=daemon["url"], control_mode=CONTROL_MODE)
    yield c
    c.close()


@pytest.fixture()
def sprite(client, request):
    name = "py-" + request.node.name.replace("_", "-")[:40].strip("-").lower()
    s = client.create_sprite(name)
    yield s
    try:
        client.delete_sprite(name)
    except Exception:
        pass


def pytest_sessionfinish(session, exitstatus):
    """A full run must have made every call sdk_surface.TESTED claims.

    Only a run of every test here can: a run narrowed by -k, -m, a file or a
    node id skips the check."""
    config = session.config
    if CONTROL_MODE and session.testscollected and not any(CONTROL_EXECS):
        config.pluginmanager.get_plugin("terminalreporter").write_line(
            "SPRITES_CONTROL_MODE=1 but no command ran on a control WebSocket", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    here = Path(__file__).resolve().parent
    narrowed = (
        config.getoption("keyword")
        or config.getoption("markexpr")
        or any(Path(a).resolve() != here for a in config.args)
        or session.testscollected != len(session.items)
    )
    if narrowed or session.testscollected == 0:
        return
    missing = sorted(sdk_surface.TESTED - sdk_surface.CALLED)
    if missing:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        reporter.write_line(
            f"sdk_surface: {len(missing)} public calls listed as tested were never made: "
            + ", ".join(missing), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
