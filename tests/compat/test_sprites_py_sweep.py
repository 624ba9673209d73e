"""The rest of sprites-py's sync surface against sprited: the calls that
test_sprites_py.py and test_sprites_py_fs.py leave out (sdk_surface.TESTED
lists them all). One sprite serves the module."""

import io
import threading
import time

import pytest
from sprites import checkpoint, exec as sdk_exec, loop, policy, services, session, websocket
from sprites.exceptions import (
    APIError, ExecError, NotFoundError, SpriteError, TimeoutError, parse_api_error,
)
from sprites.types import DirEntry, NetworkPolicy, PolicyRule, SpriteConfig, URLSettings


@pytest.fixture(scope="module")
def sp(daemon):
    from sprites import SpritesClient

    client = SpritesClient(daemon["token"], base_url=daemon["url"])
    s = client.create_sprite("py-sweep")
    yield s
    client.delete_sprite("py-sweep")
    client.close()


def test_client_calls(client, daemon):
    handle = client.sprite("py-sweep-life")
    assert (handle.name, handle.id, handle.status) == ("py-sweep-life", None, None)
    s = client.create_sprite("py-sweep-life", config=SpriteConfig(ram_mb=512, cpus=1),
                             labels=["x"])
    assert s.name == "py-sweep-life" and s.id and s.labels == ["x"]
    # sprites-py reads no `config` back; the rest of the answer it does.
    assert (s.status, s.primary_region, s.organization_name) == ("running", "local", "local")
    assert s.created_at.tzinfo is not None

    client.update_url_settings("py-sweep-life", URLSettings(auth="public"))
    assert client.get_sprite("py-sweep-life").url_settings.auth == "public"
    s.update_url_settings(URLSettings(auth="sprite"))
    assert client.get_sprite("py-sweep-life").url_settings.auth == "sprite"
    updated = client.update_sprite("py-sweep-life", labels=["a", "b"])
    assert (updated.name, updated.labels) == ("py-sweep-life", ["a", "b"])
    assert s.update(labels=["c"]).labels == ["c"]
    assert client.get_sprite("py-sweep-life").labels == ["c"]

    # The SDK's raw client carries the token.
    r = client.http_client.get(f"{daemon['url']}/v1/sprites/py-sweep-life")
    assert r.status_code == 200 and r.json()["name"] == "py-sweep-life"

    s.run("sh", "-c", "echo kept > /home/sprite/f", check=True)
    assert client.upgrade_sprite("py-sweep-life") is None
    assert s.upgrade() is None
    assert s.run("cat", "/home/sprite/f", capture_output=True).stdout == b"kept\n"

    client.destroy_sprite("py-sweep-life")
    with pytest.raises(NotFoundError):
        client.get_sprite("py-sweep-life")
    for name, end in (("py-sweep-d1", "destroy"), ("py-sweep-d2", "delete")):
        other = client.create_sprite(name)
        getattr(other, end)()
        with pytest.raises(NotFoundError):
            client.get_sprite(name)


def test_commands(sp):
    cmd = sp.command("sh", "-c", "echo out; echo err >&2")
    assert cmd.exit_code == -1
    assert cmd.combined_output() == b"out\nerr\n"
    assert cmd.exit_code == 0

    tty = sp.command("stty", "size")
    tty.set_tty(True)
    tty.set_tty_size(40, 100)
    assert tty.output().strip() == b"40 100"

    assert sp.command("cat", stdin=io.BytesIO(b"from stdin")).output() == b"from stdin"
    sink = io.BytesIO()
    sp.command("echo", "to a sink", stdout=sink).run()
    assert sink.getvalue() == b"to a sink\n"

    with pytest.raises(ExecError) as e:
        sp.run("sh", "-c", "echo no >&2; exit 4", capture_output=True, check=True)
    assert (e.value.exit_code(), e.value.stderr) == (4, b"no\n")
    done = sdk_exec.run(sp, "sh", "-c", "exit 5")
    assert (done.args, done.returncode, done.stdout) == (["sh", "-c", "exit 5"], 5, None)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        sp.run("sleep", "30", timeout=1)
    assert time.monotonic() - started < 10


def test_websocket_command_and_loop(sp):
    """The SDK's lower layer: its WebSocket command with a resize, and the
    persistent event loop the sync calls run on."""
    # It waits for the resize, however late it comes.
    wait_resize = 'while [ "$(stty size)" = "24 80" ]; do sleep 0.05; done; stty size; echo $X'
    cmd = sdk_exec.Cmd(sp, ["sh", "-c", wait_resize], env={"X": "env"}, tty=True)

    async def drive():
        ws = websocket.WSCommand(cmd)
        await ws.start()
        await ws.resize(120, 50)
        code = await ws.wait()
        out, err = ws.get_stdout(), ws.get_stderr()
        await ws.close()
        return code, out, err

    code, out, err = loop.run_sync(drive(), timeout=30)
    assert code == 0
    assert out.replace(b"\r", b"").split(b"\n")[:2] == [b"50 120", b"env"]
    assert err == b""  # a TTY has one stream

    plain = sdk_exec.Cmd(sp, ["sh", "-c", "exit 9"])
    assert loop.run_sync(websocket.run_ws_command(plain)) == 9

    running = loop.get_loop()
    assert running.is_running() and loop.get_existing_loop() is running

    async def answer():
        return 42

    assert loop.run_sync(answer()) == 42
    loop.stop_loop()
    assert loop.get_existing_loop() is None
    # The next call starts a new loop.
    assert sp.run("echo", "again", capture_output=True).stdout == b"again\n"
    assert loop.get_existing_loop() is not None


def _wait_for(predicate, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_sessions_attach_and_kill(sp):
    ended = {}

    def first():
        try:
            sp.command("sh", "-c", "echo started; exec sleep 60", tty=True).run()
            ended["first"] = 0
        except ExecError as e:
            ended["first"] = e.exit_code()

    t = threading.Thread(target=first)
    t.start()
    try:
        mine = _wait_for(lambda: [s for s in session.list_sessions(sp) if "sleep 60" in s.command])
        assert len(mine) == 1 and mine[0].tty is True
        sid = mine[0].id
        assert isinstance(sid, str) and sid, repr(sid)  # Session.id: str
        assert [s.id for s in sp.list_sessions() if s.id == sid] == [sid]

        attached = {}

        def second():
            out = io.BytesIO()
            try:
                cmd = sp.attach_session(str(sid), timeout=30)
                cmd.stdout = out
                cmd.run()
            except ExecError:
                pass
            attached["out"] = out.getvalue()

        t2 = threading.Thread(target=second)
        t2.start()
        time.sleep(1)

        messages = []
        stream = session.kill_session(sp, sid, "SIGTERM", 5)
        stream.process_all(messages.append)
        stream.close()
        assert messages[-1].type == "complete", messages
        assert any(m.type == "signal" for m in messages), messages
        t2.join(30)
        assert b"started" in attached["out"], attached
    finally:
        t.join(30)
    assert ended["first"] != 0
    with pytest.raises(APIError) as e:
        session.kill_session(sp, "999999")
    assert e.value.status_code == 404


def test_checkpoint_calls(sp):
    sp.run("sh", "-c", "echo one > /home/sprite/cp", check=True)
    with sp.create_checkpoint("first") as stream:
        made = list(stream)
    assert made[-1].type == "complete", made
    made.clear()
    stream = checkpoint.create_checkpoint(sp, "second")
    made = list(stream)
    stream.close()
    assert made[-1].type == "complete", made
    listed = checkpoint.list_checkpoints(sp)
    ids = [c.id for c in listed]
    assert len(ids) == 2
    newest, older = listed[0], listed[1]
    assert (newest.comment, older.comment) == ("second", "first")
    got = checkpoint.get_checkpoint(sp, older.id)
    assert (got.id, got.comment) == (older.id, "first")
    assert got.create_time.tzinfo is not None

    sp.run("sh", "-c", "echo two > /home/sprite/cp", check=True)
    stream = checkpoint.restore_checkpoint(sp, older.id)
    restored = list(stream)
    stream.close()
    assert restored[-1].type == "complete", restored
    assert sp.run("cat", "/home/sprite/cp", capture_output=True).stdout == b"one\n"
    with pytest.raises(APIError) as e:
        checkpoint.get_checkpoint(sp, "v999")
    assert e.value.status_code == 404

    # The SDK's stream classes over a streamed answer of the server's own
    # (the SDK's calls hand back a list-backed subclass).
    base = f"{sp.client.base_url}/v1/sprites/py-sweep"
    with sp.client._client.stream("POST", f"{base}/checkpoint", headers=sp._headers(),
                                  json={"comment": "streamed"}) as r:
        stream = checkpoint.CheckpointStream(r)
        made = list(stream)
        stream.close()
    assert made[-1].type == "complete", made
    newest = sp.list_checkpoints()[0]
    assert newest.comment == "streamed"
    with sp.client._client.stream("POST", f"{base}/checkpoints/{older.id}/restore",
                                  headers=sp._headers()) as r:
        stream = checkpoint.RestoreStream(r)
        restored = list(stream)
        stream.close()
    assert restored[-1].type == "complete", restored
    assert sp.run("cat", "/home/sprite/cp", capture_output=True).stdout == b"one\n"

    # The error's own helpers, on a real error.
    assert e.value.is_rate_limit_error() is False
    assert e.value.is_creation_rate_limited() is False
    assert e.value.is_concurrent_limit_exceeded() is False
    assert e.value.get_retry_after_seconds() is None

    # `?history=vN` is vN's branch: `second` was taken on `first`, and
    # after the restores to `first` the next ones are too, beside it.
    assert list(sp.create_checkpoint("fourth"))[-1].type == "complete"
    everything = [c.id for c in sp.list_checkpoints()]
    fourth, streamed, second, first = everything
    assert [c.id for c in sp.list_checkpoints(history_filter=second)] == [second, first]
    assert [c.id for c in checkpoint.list_checkpoints(sp, fourth)] == [fourth, first]
    assert [c.id for c in sp.list_checkpoints(history_filter=first)] == everything


def test_parse_api_error_on_a_real_answer(client, daemon):
    r = client.http_client.get(f"{daemon['url']}/v1/sprites/py-no-such")
    assert r.status_code == 404
    err = parse_api_error(r.status_code, r.content, dict(r.headers))
    assert isinstance(err, APIError) and err.status_code == 404
    assert (err.error_code, err.response) == ("not_found", r.text)
    assert "no sprite named py-no-such" in str(err)
    ok = client.http_client.get(f"{daemon['url']}/v1/sprites")
    assert parse_api_error(ok.status_code, ok.content, dict(ok.headers)) is None


def test_service_module_calls(sp):
    stream = services.create_service(sp, "py-svc", "sh", ["-c", "echo hello; exec sleep 1000"],
                                     None, None, 1.0, env={"A": "b"}, dir="/tmp")
    events = []
    stream.process_all(events.append)
    stream.close()
    assert events[0].type == "started" and events[-1].type == "complete", events
    assert any(e.type == "stdout" and e.data == "hello\n" for e in events), events
    assert [s.name for s in services.list_services(sp)] == ["py-svc"]
    svc = services.get_service(sp, "py-svc")
    assert (svc.cmd, svc.args, svc.env, svc.dir) == ("sh", ["-c", "echo hello; exec sleep 1000"],
                                                      {"A": "b"}, "/tmp")
    assert svc.state.status == "running"
    services.signal_service(sp, "py-svc", "SIGCONT")
    stopped = list(services.stop_service(sp, "py-svc", 2.0))
    assert any(e.type == "stopped" for e in stopped), stopped
    assert services.get_service(sp, "py-svc").state.status == "stopped"
    started = list(services.start_service(sp, "py-svc", 0.5))
    assert started[-1].type == "complete", started
    assert services.get_service(sp, "py-svc").state.status == "running"
    services.delete_service(sp, "py-svc")
    assert services.list_services(sp) == []
    with pytest.raises(APIError) as e:
        services.get_service(sp, "py-svc")
    assert e.value.status_code == 404


def test_policy_module_calls(sp):
    policy.update_network_policy(sp, NetworkPolicy(rules=[PolicyRule(domain="a.example", action="allow"),
                                                          PolicyRule(domain="*", action="deny")]))
    got = policy.get_network_policy(sp)
    assert [(r.domain, r.action) for r in got.rules] == [("a.example", "allow"), ("*", "deny")]
    policy.update_network_policy(sp, NetworkPolicy(rules=[]))
    assert policy.get_network_policy(sp).rules == []
    # A rule that does not parse: 400 in the Sprites error format.
    from sprites.exceptions import SpriteError
    with pytest.raises(SpriteError) as e:
        sp.update_network_policy(NetworkPolicy(rules=[PolicyRule(domain="x.com", action="maybe")]))
    assert "(status 400)" in str(e.value) and '"error":"bad_request"' in str(e.value)


def test_filesystem_rest(sp, client, daemon):
    fs = sp.filesystem("/home/sprite")
    assert str(fs.root) == "/" and str(fs.cwd) == "/home/sprite"
    p = fs.path("work", "data.tar.gz")
    assert str(p) == "/home/sprite/work/data.tar.gz"
    assert (p.name, p.stem, p.suffix, p.suffixes) == ("data.tar.gz", "data.tar", ".gz", [".tar", ".gz"])
    assert str(p.parent) == "/home/sprite/work"
    assert [str(x) for x in p.parents] == ["/home/sprite/work", "/home/sprite", "/home", "/"]
    assert p.parts == ("/", "home", "sprite", "work", "data.tar.gz")
    assert p.is_absolute()
    assert p.is_relative_to("/home/sprite") and not p.is_relative_to("/etc")
    # The relative path resolves against the filesystem's working directory.
    assert str(p.relative_to("/home/sprite")) == "/home/sprite/work/data.tar.gz"
    with pytest.raises(ValueError):
        p.relative_to("/etc")
    assert str(fs.path("work").joinpath("a", "b.txt")) == "/home/sprite/work/a/b.txt"
    assert str(p.with_name("x.zip")) == "/home/sprite/work/x.zip"
    assert str(p.with_stem("other")) == "/home/sprite/work/other.gz"
    assert str(p.with_suffix(".bz2")) == "/home/sprite/work/data.tar.bz2"

    p.write_bytes(b"payload", mkdir_parents=True)
    assert not p.is_dir() and not (fs / "nothing").is_dir()
    # sprites-py's stat (and so is_dir) lists the path and describes the
    # first entry: for a directory, its first child (an SDK quirk, not the
    # server's). /home's first child is the directory `sprite`.
    assert fs.path("/home").is_dir() is True
    st = p.stat()
    assert st.is_file is True and st.size == 7
    target = p.replace(fs / "work" / "moved.gz")
    assert str(target) == "/home/sprite/work/moved.gz"
    assert target.read_bytes() == b"payload" and not p.exists()

    r = client.http_client.get(f"{daemon['url']}/v1/sprites/py-sweep/fs/list",
                               params={"path": "/home/sprite/work"})
    assert r.status_code == 200
    entries = [DirEntry(name=e["name"], path=e["path"], is_dir=e["isDir"], size=e["size"])
               for e in r.json()["entries"]]
    assert [(e.name, e.is_file, e.size) for e in entries] == [("moved.gz", True, 7)]


def test_create_with_runtime(client):
    # runtime "default" is the daemon's default image (tiny here); an
    # unknown runtime is refused with 400 before anything is made.
    s = client.create_sprite("py-runtime", runtime="default")
    try:
        assert s.run("echo", "rt", capture_output=True).stdout == b"rt\n"
        assert client.get_sprite("py-runtime").name == "py-runtime"
        r = client.http_client.get(f"{client.base_url}/v1/sprites/py-runtime")
        assert r.json()["image"] == "tiny"
    finally:
        client.delete_sprite("py-runtime")
    # The SDK raises its plain SpriteError for a 400, with the answer.
    with pytest.raises(SpriteError) as refused:
        client.create_sprite("py-runtime-2", runtime="gpu")
    assert "status 400" in str(refused.value)
    assert 'runtime \\"gpu\\" is not one of' in str(refused.value)
