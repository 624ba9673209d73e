"""The official Python SDK, unchanged, pointed at sprited with base_url."""

import pytest
from sprites import SpritesClient
from sprites.exceptions import ExitError, NotFoundError


def test_create_get_list_delete(client):
    s = client.create_sprite("py-crud")
    try:
        assert s.name == "py-crud"
        got = client.get_sprite("py-crud")
        assert got.name == "py-crud"
        names = [x.name for x in client.list_sprites().sprites]
        assert "py-crud" in names
        prefixed = client.list_all_sprites(prefix="py-cr")
        assert [x.name for x in prefixed] == ["py-crud"]
    finally:
        client.delete_sprite("py-crud")
    with pytest.raises(NotFoundError):
        client.get_sprite("py-crud")


def test_pagination(client):
    names = [f"py-page-{i}" for i in range(5)]
    for n in names:
        client.create_sprite(n)
    try:
        from sprites.types import ListOptions

        first = client.list_sprites(ListOptions(prefix="py-page-", max_results=2))
        assert len(first.sprites) == 2 and first.has_more
        everything = client.list_all_sprites(prefix="py-page-")
        assert sorted(x.name for x in everything) == names
    finally:
        for n in names:
            client.delete_sprite(n)


def test_run_and_command(sprite):
    r = sprite.run("sh", "-c", "echo out; echo err >&2; exit 3", capture_output=True)
    assert r.returncode == 3
    assert r.stdout == b"out\n"
    assert r.stderr == b"err\n"
    out = sprite.command("echo", "hello", "world").output()
    assert out == b"hello world\n"
    with pytest.raises(ExitError) as e:
        sprite.command("sh", "-c", "exit 7").run()
    assert e.value.exit_code() == 7


def test_env_dir_and_persistence(sprite):
    r = sprite.run("sh", "-c", "echo $GREETING; pwd", capture_output=True,
                   env={"GREETING": "hi"}, cwd="/tmp")
    assert r.stdout == b"hi\n/tmp\n"
    sprite.run("sh", "-c", "echo kept > /home/sprite/f", check=True)
    again = sprite.run("cat", "/home/sprite/f", capture_output=True)
    assert again.stdout == b"kept\n"


def test_fast_commands_never_lose_output(sprite):
    for _ in range(50):
        r = sprite.run("echo", "x", capture_output=True)
        assert (r.returncode, r.stdout) == (0, b"x\n")


def test_sessions_list(sprite):
    import threading

    t = threading.Thread(target=lambda: sprite.run("sleep", "3"))
    t.start()
    try:
        import time

        deadline = time.time() + 5
        found = []
        while time.time() < deadline and not found:
            found = [s for s in sprite.list_sessions() if "sleep" in s.command]
            time.sleep(0.1)
        assert found, "the running sleep shows up as a session"
    finally:
        t.join()


def test_wrong_token_is_refused(daemon):
    from sprites.exceptions import AuthenticationError

    bad = SpritesClient("not-the-token", base_url=daemon["url"])
    with pytest.raises(AuthenticationError):
        bad.list_sprites()


def test_checkpoints(sprite):
    sprite.run("sh", "-c", "echo clean > /home/sprite/state", check=True)
    msgs = list(sprite.create_checkpoint("py clean"))
    assert msgs, "no progress messages"
    assert msgs[-1].type == "complete", msgs
    assert all(m.type in ("info", "complete") for m in msgs), msgs
    ids = [c.id for c in sprite.list_checkpoints()]
    assert ids == ["v0"]
    cp = sprite.get_checkpoint("v0")
    assert cp.id == "v0" and cp.comment == "py clean"
    assert cp.create_time.tzinfo is not None

    sprite.run("sh", "-c", "echo broken > /home/sprite/state", check=True)
    assert list(sprite.create_checkpoint())[-1].type == "complete"
    assert [c.id for c in sprite.list_checkpoints()] == ["v1", "v0"]

    msgs = list(sprite.restore_checkpoint("v0"))
    assert msgs[-1].type == "complete", msgs
    out = sprite.run("cat", "/home/sprite/state", capture_output=True)
    assert out.stdout == b"clean\n"
    # The newest checkpoints are readable inside the sprite.
    seen = b""
    for _ in range(50):
        seen = sprite.run("sh", "-c", "cat /.sprite/checkpoints/v1/home/sprite/state",
                          capture_output=True).stdout
        if seen:
            break
        import time
        time.sleep(0.1)
    assert seen == b"broken\n"

    with pytest.raises(NotFoundError):
        sprite.get_checkpoint("v99")
    from sprites.exceptions import APIError
    with pytest.raises(APIError) as e:
        list(sprite.restore_checkpoint("v99"))
    assert e.value.status_code == 404


def test_services(sprite):
    events = list(sprite.create_service(
        "py-web", "sh", ["-c", "echo up; sleep 1000"], duration=1.0, env={"X": "1"}))
    kinds = [e.type for e in events]
    assert kinds[0] == "started" and kinds[-1] == "complete", kinds
    assert any(e.type == "stdout" and "up" in (e.data or "") for e in events), events
    names = [s.name for s in sprite.list_services()]
    assert names == ["py-web"]
    svc = sprite.get_service("py-web")
    assert svc.cmd == "sh" and svc.env == {"X": "1"}
    assert svc.state.status == "running" and svc.state.pid
    sprite.signal_service("py-web", "SIGCONT")
    stopped = list(sprite.stop_service("py-web", timeout=2.0))
    assert any(e.type == "stopped" for e in stopped), stopped
    assert sprite.get_service("py-web").state.status == "stopped"
    from sprites.exceptions import APIError
    with pytest.raises(APIError) as e:
        list(sprite.stop_service("py-web"))
    assert e.value.status_code == 409
    started = list(sprite.start_service("py-web", duration=0.5))
    assert started[-1].type == "complete", started
    assert sprite.get_service("py-web").state.status == "running"
    sprite.delete_service("py-web")
    assert sprite.list_services() == []


def test_network_policy(sprite):
    from sprites.types import NetworkPolicy, PolicyRule
    assert sprite.get_network_policy().rules == []
    sprite.update_network_policy(NetworkPolicy(rules=[
        PolicyRule(include="defaults"),
        PolicyRule(domain="example.com", action="allow"),
        PolicyRule(domain="*", action="deny"),
    ]))
    got = sprite.get_network_policy()
    assert [(r.domain, r.action, r.include) for r in got.rules] == [
        (None, None, "defaults"), ("example.com", "allow", None), ("*", "deny", None)]
    # The sprite sees it, read-only.
    shown = sprite.run("cat", "/.sprite/policy/network.json", capture_output=True)
    assert b"example.com" in shown.stdout
    sprite.update_network_policy(NetworkPolicy(rules=[]))
    assert sprite.get_network_policy().rules == []
