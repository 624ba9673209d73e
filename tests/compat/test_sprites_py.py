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
