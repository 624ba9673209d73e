"""Nothing of sprites-py's public surface goes untested: the installed
package's public calls are exactly those sdk_surface.py lists, and the calls
of the control WebSocket (issue 20) fail clearly against sprited."""

import asyncio
from pathlib import Path

import pytest
import websockets.exceptions
from sprites import AsyncSpritesClient, SpritesClient

import sdk_surface


def test_every_public_call_is_listed():
    installed = sdk_surface.public_names()
    listed = sdk_surface.TESTED | sdk_surface.ISSUE_20 | set(sdk_surface.ELSEWHERE)
    # Each call in one place only.
    assert not sdk_surface.TESTED & sdk_surface.ISSUE_20
    assert not (sdk_surface.TESTED | sdk_surface.ISSUE_20) & set(sdk_surface.ELSEWHERE)
    assert sorted(installed - listed) == [], "public calls of sprites-py that no test lists"
    assert sorted(listed - installed) == [], "listed calls that sprites-py no longer has"
    # The sync client and the async client, each whole.
    assert len([n for n in installed if not n.startswith("async")]) >= 150
    assert len([n for n in installed if n.startswith("async")]) >= 80


def test_calls_tested_elsewhere_are_tested_there():
    here = Path(__file__).resolve().parent
    for name, file in sdk_surface.ELSEWHERE.items():
        path = here / file
        if not path.exists():
            # The endpoint lands with that file (org tokens, issue 22 item 6).
            continue
        member = name.rsplit(".", 1)[1]
        assert member in path.read_text(), f"{file} does not call {name}"


def _refusal(e):
    """The control endpoint's answer: 404 with the reason in the body."""
    assert isinstance(e, websockets.exceptions.InvalidStatus), repr(e)
    assert e.response.status_code == 404
    assert b"control endpoint is not available" in e.response.body


def test_control_mode_is_refused_sync(daemon):
    """Issue 20: sprited has no `/control`. The SDK's control calls get a
    404 that says so, and control_mode=True commands fall back to the plain
    exec WebSocket (the SDK's own fallback) and still work."""
    from sprites.loop import run_sync

    client = SpritesClient(daemon["token"], base_url=daemon["url"], control_mode=True)
    try:
        sp = client.create_sprite("py-control")
        assert sp.use_control_mode() is True
        with pytest.raises(Exception) as e:
            run_sync(sp.get_control_connection())
        _refusal(e.value)
        assert sp.has_control_connection() is False
        run_sync(sp.close_control_connection())
        assert sp.run("echo", "via", "fallback", capture_output=True).stdout == b"via fallback\n"
        assert sp.use_control_mode() is False
        client.delete_sprite("py-control")
    finally:
        client.close()


def test_control_mode_is_refused_async(daemon):
    from sprites.control import ControlConnection

    async def main():
        async with AsyncSpritesClient(daemon["token"], base_url=daemon["url"],
                                      control_mode=True) as client:
            sp = await client.create_sprite("py-control-async")
            try:
                assert sp.use_control_mode() is True
                with pytest.raises(Exception) as e:
                    await sp.get_control_connection()
                _refusal(e.value)
                with pytest.raises(Exception) as e:
                    await ControlConnection(sp).connect()
                _refusal(e.value)
                assert sp.has_control_connection() is False
                await sp.close_control_connection()
                assert await sp.command("echo", "async fallback").output() == b"async fallback\n"
                assert sp.use_control_mode() is False
            finally:
                await client.delete_sprite("py-control-async")

    asyncio.run(main())
