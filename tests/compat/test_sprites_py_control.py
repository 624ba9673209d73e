"""sprites-py's control mode against sprited's `/v1/sprites/{name}/control`:
commands of a control_mode=True client run through the SDK's pool of
control connections (not its fallback), sync and async, and the pool's and
connection's own calls work as the SDK documents them."""

import asyncio
import io

import pytest
from sprites import AsyncSpritesClient, SpritesClient
from sprites.exceptions import ExitError

import conftest


def control_ops(daemon):
    # Summed over the hosts (a cluster runs each sprite on one of them).
    return sum(conftest.control_ops(h, daemon["token"]) for h in daemon["hosts"])


def test_control_mode_sync(daemon):
    from sprites.loop import run_sync

    client = SpritesClient(daemon["token"], base_url=daemon["url"], control_mode=True)
    try:
        sp = client.create_sprite("py-control")
        assert sp.use_control_mode() is True
        before = control_ops(daemon)
        # Ten commands, one pooled connection.
        for i in range(10):
            out = sp.run("sh", "-c", f"echo out{i}; echo err{i} >&2", capture_output=True)
            assert (out.stdout, out.stderr, out.returncode) == (
                f"out{i}\n".encode(), f"err{i}\n".encode(), 0)
        with pytest.raises(ExitError) as e:
            sp.run("sh", "-c", "exit 3", capture_output=True, check=True)
        assert e.value.exit_code() == 3
        piped = sp.command("cat", stdin=io.BytesIO(b"through stdin")).output()
        assert piped == b"through stdin"
        assert sp.use_control_mode() is True, "the SDK fell back to the plain WebSocket"
        assert sp.has_control_connection() is True
        assert control_ops(daemon) - before == 12
        run_sync(sp.close_control_connection())
        assert sp.has_control_connection() is False
        cc = run_sync(sp.get_control_connection())
        assert cc.is_closed() is False
        client.delete_sprite("py-control")
    finally:
        client.close()


def test_control_mode_async_and_the_pool(daemon):
    from sprites.control import (ControlConnection, ControlPool, close_control_connection,
                                 close_control_pools, get_control_connection,
                                 has_control_connection, release_control_connection)

    async def main():
        async with AsyncSpritesClient(daemon["token"], base_url=daemon["url"],
                                      control_mode=True) as client:
            sp = await client.create_sprite("py-control-async")
            try:
                before = control_ops(daemon)
                assert await sp.command("echo", "async").output() == b"async\n"
                # Concurrent commands: the pool grows a connection each.
                outs = await asyncio.gather(*[
                    sp.command("sh", "-c", f"sleep 0.2; echo {i}").output() for i in range(4)
                ])
                assert outs == [f"{i}\n".encode() for i in range(4)]
                assert sp.use_control_mode() is True
                assert sp.has_control_connection() is True
                assert control_ops(daemon) - before == 5

                # The connection and an operation driven by hand.
                cc = await sp.get_control_connection()
                op = await cc.start_op("exec", cmd=["sh", "-c", "read x; echo got $x >&2; exit 4"],
                                       stdin=True)
                await op.write(b"it\n")
                await op.send_eof()
                assert await op.wait() == 4
                assert op.get_exit_code() == 4
                assert op.get_stderr() == b"got it\n"
                assert op.get_stdout() == b""
                assert op.is_closed() is True
                # TTY: a resize before the command reads its size.
                op = await cc.start_op("exec", cmd=["sh", "-c", "sleep 0.5; stty size"],
                                       tty=True, rows=24, cols=80)
                await op.resize(120, 40)
                assert await op.wait() == 0
                assert b"40 120" in op.get_stdout()
                # A signal ends a command.
                op = await cc.start_op("exec", cmd=["sleep", "30"], stdin=False)
                await asyncio.sleep(0.3)
                await op.signal("TERM")
                assert await op.wait() == 143
                release_control_connection(sp, cc)

                # The module's pool functions and a pool of its own.
                again = await get_control_connection(sp)
                assert again is cc
                release_control_connection(sp, again)
                assert has_control_connection(sp) is True
                pool = ControlPool(sp)
                a = await pool.acquire()
                b = await pool.acquire()
                assert a is not b and pool.size() == 2 and pool.has_connections()
                pool.release(a)
                assert await pool.acquire() is a
                pool.release(a)
                pool.release(b)
                await pool.close()
                assert pool.has_connections() is False
                direct = ControlConnection(sp)
                await direct.connect()
                op = await direct.start_op("exec", cmd=["echo", "direct"], stdin=False)
                assert await op.wait() == 0 and op.get_stdout() == b"direct\n"
                op.close()
                await direct.close()
                assert direct.is_closed() is True
                await close_control_connection(sp)
                assert has_control_connection(sp) is False
                await sp.get_control_connection()
                await close_control_pools(client)
                assert has_control_connection(sp) is False
                await sp.close_control_connection()
            finally:
                await client.delete_sprite("py-control-async")

    asyncio.run(main())
