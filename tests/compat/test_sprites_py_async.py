"""sprites-py's async client (AsyncSpritesClient and what it returns),
unchanged, against sprited: every call of sdk_surface.TESTED under
async_client, async_sprite, async_exec and async_filesystem."""

import asyncio

import pytest
from sprites import AsyncSpritesClient
from sprites import async_exec
from sprites.exceptions import ExitError, FileNotFoundError_, NotFoundError
from sprites.types import ListOptions, NetworkPolicy, PolicyRule, URLSettings

from conftest import CONTROL_MODE


def run_async(daemon, body):
    """Run `body(client)` with a fresh async client on its own loop."""

    async def main():
        client = AsyncSpritesClient(daemon["token"], base_url=daemon["url"],
                                    control_mode=CONTROL_MODE)
        try:
            return await body(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


@pytest.fixture(scope="module")
def name(daemon):
    """One sprite for the module's tests, each with its own client."""

    async def create(client):
        return (await client.create_sprite("py-async")).name

    n = run_async(daemon, create)
    yield n

    async def delete(client):
        await client.delete_sprite(n)

    run_async(daemon, delete)


def test_client_and_sprite_lifecycle(daemon):
    async def body(client):
        handle = client.sprite("py-async-life")
        assert (handle.name, handle.id) == ("py-async-life", None)
        s = await client.create_sprite("py-async-life", labels=["one"],
                                       url_settings=URLSettings(auth="public"))
        assert (s.name, s.labels, s.status) == ("py-async-life", ["one"], "running")
        assert s.url_settings.auth == "public"
        got = await client.get_sprite("py-async-life")
        assert (got.id, got.primary_region) == (s.id, "local")

        page = await client.list_sprites(ListOptions(prefix="py-async-l"))
        assert [x.name for x in page.sprites] == ["py-async-life"] and not page.has_more
        assert [x.name for x in await client.list_all_sprites(prefix="py-async-l")] == ["py-async-life"]

        await client.update_url_settings("py-async-life", URLSettings(auth="sprite"))
        assert (await client.get_sprite("py-async-life")).url_settings.auth == "sprite"
        await s.update_url_settings(URLSettings(auth="public"))
        assert (await client.get_sprite("py-async-life")).url_settings.auth == "public"
        assert (await client.update_sprite("py-async-life", labels=["a"])).labels == ["a"]
        assert (await s.update(labels=["b", "c"])).labels == ["b", "c"]
        assert (await client.get_sprite("py-async-life")).labels == ["b", "c"]

        r = await client.http_client.get(f"{daemon['url']}/v1/sprites/py-async-life")
        assert r.status_code == 200 and r.json()["labels"] == ["b", "c"]

        await s.run("sh", "-c", "echo kept > /home/sprite/f", check=True)
        assert await client.upgrade_sprite("py-async-life") is None
        assert await s.upgrade() is None
        assert (await s.run("cat", "/home/sprite/f", capture_output=True)).stdout == b"kept\n"

        await client.destroy_sprite("py-async-life")
        with pytest.raises(NotFoundError):
            await client.get_sprite("py-async-life")
        for n, end in (("py-async-d1", "destroy"), ("py-async-d2", "delete"),
                       ("py-async-d3", "delete_sprite")):
            other = await client.create_sprite(n)
            if end == "delete_sprite":
                await client.delete_sprite(n)
            else:
                await getattr(other, end)()
            with pytest.raises(NotFoundError):
                await client.get_sprite(n)

    run_async(daemon, body)


def test_commands_and_sessions(daemon, name):
    async def body(client):
        sp = client.sprite(name)
        assert sp.use_control_mode() is CONTROL_MODE
        cmd = sp.command("sh", "-c", "echo out; echo err >&2")
        assert cmd.exit_code == -1
        assert await cmd.combined_output() == b"out\nerr\n"
        assert cmd.exit_code == 0
        assert await sp.command("echo", "hi").output() == b"hi\n"
        await sp.command("true").run()
        with pytest.raises(ExitError) as e:
            await sp.command("sh", "-c", "exit 6").run()
        assert e.value.exit_code() == 6

        tty = sp.command("stty", "size")
        tty.set_tty(True)
        tty.set_tty_size(33, 77)
        assert (await tty.output()).strip() == b"33 77"

        r = await sp.run("sh", "-c", "echo $V; pwd; exit 2", capture_output=True,
                         env={"V": "vee"}, cwd="/tmp")
        assert (r.returncode, r.stdout, r.stderr) == (2, b"vee\n/tmp\n", b"")
        r = await async_exec.run(sp, "echo", "module", capture_output=True, check=True)
        assert (r.args, r.stdout) == (["echo", "module"], b"module\n")

        # A TTY session, listed, then joined from a second command that
        # sees its scrollback and ends with it.
        first = asyncio.create_task(
            sp.command("sh", "-c", "echo started; sleep 3", tty=True).run())
        mine = []
        for _ in range(100):
            mine = [s for s in await sp.list_sessions() if "sleep 3" in s.command]
            if mine:
                break
            await asyncio.sleep(0.05)
        assert len(mine) == 1 and mine[0].tty is True and isinstance(mine[0].id, str)
        joined = sp.attach_session(mine[0].id, timeout=30)
        out = await joined.output()
        assert b"started" in out, out
        await first
        assert not [s for s in await sp.list_sessions() if "sleep 3" in s.command]

    run_async(daemon, body)


def test_checkpoints(daemon, name):
    async def body(client):
        sp = client.sprite(name)
        await sp.run("sh", "-c", "echo one > /home/sprite/cp", check=True)
        made = list(await sp.create_checkpoint("async one"))
        assert made[-1].type == "complete", made
        listed = await sp.list_checkpoints()
        first = listed[0]
        assert first.comment == "async one"
        got = await sp.get_checkpoint(first.id)
        assert (got.id, got.comment) == (first.id, "async one")
        with pytest.raises(NotFoundError):
            await sp.get_checkpoint("v999")

        await sp.run("sh", "-c", "echo two > /home/sprite/cp", check=True)
        assert list(await sp.create_checkpoint("async two"))[-1].type == "complete"
        second = (await sp.list_checkpoints())[0]
        restored = list(await sp.restore_checkpoint(first.id))
        assert restored[-1].type == "complete", restored
        assert (await sp.run("cat", "/home/sprite/cp", capture_output=True)).stdout == b"one\n"
        assert [c.id for c in await sp.list_checkpoints(history_filter=second.id)][:2] == [
            second.id, first.id]

    run_async(daemon, body)


def test_services(daemon, name):
    async def body(client):
        sp = client.sprite(name)
        events = list(await sp.create_service("py-asvc", "sh", ["-c", "echo up; exec sleep 1000"],
                                              duration=1.0, env={"K": "v"}))
        assert events[0].type == "started" and events[-1].type == "complete", events
        assert any(e.type == "stdout" and e.data == "up\n" for e in events), events
        assert [s.name for s in await sp.list_services()] == ["py-asvc"]
        svc = await sp.get_service("py-asvc")
        assert (svc.cmd, svc.env, svc.state.status) == ("sh", {"K": "v"}, "running")
        await sp.signal_service("py-asvc", "SIGCONT")
        stopped = list(await sp.stop_service("py-asvc", timeout=2.0))
        assert any(e.type == "stopped" for e in stopped), stopped
        assert (await sp.get_service("py-asvc")).state.status == "stopped"
        started = list(await sp.start_service("py-asvc", duration=0.5))
        assert started[-1].type == "complete", started
        assert (await sp.get_service("py-asvc")).state.status == "running"
        await sp.delete_service("py-asvc")
        assert await sp.list_services() == []

    run_async(daemon, body)


def test_network_policy(daemon, name):
    async def body(client):
        sp = client.sprite(name)
        await sp.update_network_policy(NetworkPolicy(rules=[
            PolicyRule(include="defaults"), PolicyRule(domain="b.example", action="deny")]))
        got = await sp.get_network_policy()
        assert [(r.domain, r.action, r.include) for r in got.rules] == [
            (None, None, "defaults"), ("b.example", "deny", None)]
        await sp.update_network_policy(NetworkPolicy(rules=[]))
        assert (await sp.get_network_policy()).rules == []

    run_async(daemon, body)


def test_filesystem(daemon, name):
    async def body(client):
        sp = client.sprite(name)
        fs = sp.filesystem("/home/sprite")
        assert str(fs.root) == "/" and str(fs.cwd) == "/home/sprite"
        p = fs.path("afs", "notes.md.txt")
        assert (p.name, p.stem, p.suffix, p.suffixes) == ("notes.md.txt", "notes.md", ".txt",
                                                          [".md", ".txt"])
        assert str(p.parent) == "/home/sprite/afs"
        assert [str(x) for x in p.parents] == ["/home/sprite/afs", "/home/sprite", "/home", "/"]
        assert p.parts == ("/", "home", "sprite", "afs", "notes.md.txt")
        assert p.is_absolute() and p.is_relative_to("/home") and not p.is_relative_to("/tmp")
        assert str(p.relative_to("/home/sprite")) == "/home/sprite/afs/notes.md.txt"
        assert str(fs.path("afs").joinpath("x", "y")) == "/home/sprite/afs/x/y"
        assert str(p.with_name("n")) == "/home/sprite/afs/n"
        assert str(p.with_stem("s")) == "/home/sprite/afs/s.txt"
        assert str(p.with_suffix(".rst")) == "/home/sprite/afs/notes.md.rst"

        await (fs / "afs").mkdir()
        await (fs / "afs" / "sub" / "deep").mkdir(parents=True)
        await p.write_text("hello async\n")
        assert await p.read_text() == "hello async\n"
        await (fs / "afs" / "bin").write_bytes(b"\x00\xff" * 1000, mode=0o600)
        assert await (fs / "afs" / "bin").read_bytes() == b"\x00\xff" * 1000
        st = await p.stat()
        assert (st.name, st.size, st.mode, st.is_dir) == ("notes.md.txt", 12, "0644", False)
        assert await p.exists() and await p.is_file() and not await p.is_dir()
        assert not await (fs / "afs" / "none").exists()
        assert await fs.path("/home").is_dir()  # its first entry is a directory (see sweep)
        assert sorted(await (fs / "afs").listdir()) == ["bin", "notes.md.txt", "sub"]
        assert sorted([x.name async for x in (fs / "afs").iterdir()]) == ["bin", "notes.md.txt", "sub"]

        moved = await p.rename("renamed.txt")
        # A bare name renames within the directory.
        assert str(moved) == "/home/sprite/afs/renamed.txt" and not await p.exists()
        assert await moved.read_text() == "hello async\n"
        replaced = await moved.replace(fs / "afs" / "back.txt")
        assert await replaced.read_text() == "hello async\n"
        copy = await replaced.copy_to(fs / "afs" / "copy.txt")
        assert await copy.read_text() == "hello async\n"
        await copy.chmod(0o700)
        assert (await copy.stat()).mode == "0700"
        await (fs / "afs" / "sub").chmod(0o750, recursive=True)
        out = await sp.run("stat", "-c", "%a", "/home/sprite/afs/sub/deep", capture_output=True)
        assert out.stdout == b"750\n"
        await (fs / "afs" / "touched").touch()
        assert await (fs / "afs" / "touched").read_bytes() == b""

        await copy.unlink()
        await copy.unlink(missing_ok=True)
        with pytest.raises(FileNotFoundError_):
            await copy.unlink()
        await (fs / "afs" / "sub" / "deep").rmdir()
        await (fs / "afs").rmtree()
        assert not await (fs / "afs").exists()

    run_async(daemon, body)
