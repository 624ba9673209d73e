"""sprites-py's create_token (sync and async), unchanged, against sprited.

The SDK always asks https://api.sprites.dev: its httpx clients are given a
transport that sends that one host to the local daemon and refuses any
other, so nothing leaves the machine.
"""

import asyncio

import httpx
import pytest

from sprites import SpritesClient
from sprites.async_client import AsyncSpritesClient

SDK_HOST = "api.sprites.dev"


def _to_daemon(request: httpx.Request, daemon_url: str) -> httpx.Request:
    if request.url.host != SDK_HOST:
        raise httpx.ConnectError(f"unexpected request to {request.url}")
    target = httpx.URL(daemon_url)
    request.url = request.url.copy_with(
        scheme=target.scheme, host=target.host, port=target.port
    )
    request.headers["host"] = f"{target.host}:{target.port}"
    return request


@pytest.fixture()
def seen(daemon, monkeypatch):
    """Route the SDK's httpx clients to the daemon; the requests they made."""
    requests = []

    class Local(httpx.HTTPTransport):
        def handle_request(self, request):
            requests.append(request)
            return super().handle_request(_to_daemon(request, daemon["url"]))

    class AsyncLocal(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request):
            requests.append(request)
            return await super().handle_async_request(_to_daemon(request, daemon["url"]))

    real_client, real_async = httpx.Client, httpx.AsyncClient

    class Client(real_client):
        def __init__(self, *args, **kwargs):
            kwargs["transport"] = Local()
            super().__init__(*args, **kwargs)

    class AsyncClient(real_async):
        def __init__(self, *args, **kwargs):
            kwargs["transport"] = AsyncLocal()
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(httpx, "Client", Client)
    monkeypatch.setattr(httpx, "AsyncClient", AsyncClient)
    return requests


def _works(daemon, token):
    req = httpx.Request(
        "GET", f"{daemon['url']}/v1/sprites", headers={"Authorization": f"Bearer {token}"}
    )
    with httpx.HTTPTransport() as t:
        r = t.handle_request(req)
        r.read()
        return r.status_code


def test_create_token(daemon, seen):
    token = SpritesClient.create_token(daemon["token"], "personal")
    assert token.startswith("spr_")
    assert [str(r.url.path) for r in seen] == ["/v1/organizations/personal/tokens"]
    assert seen[0].headers["authorization"] == f"FlyV1 {daemon['token']}"
    assert _works(daemon, token) == 200


def test_create_token_async(daemon, seen):
    token = asyncio.run(AsyncSpritesClient.create_token(daemon["token"], "my-org"))
    assert token.startswith("spr_")
    assert _works(daemon, token) == 200
