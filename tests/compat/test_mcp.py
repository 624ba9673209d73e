"""The official MCP client (the `mcp` package) against sprited's `/mcp`:
Streamable HTTP with the API's bearer token, the tools listed, a command
run, a file written and read back; no token (or a wrong one) refused."""

import asyncio
import json
import urllib.error
import urllib.request

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

TOOLS = {
    "list_sprites", "create_sprite", "destroy_sprite", "run_command",
    "read_file", "write_file", "create_checkpoint", "list_checkpoints",
    "restore_checkpoint", "service_logs",
}


def with_client(daemon, token, body, statuses=None):
    """Run `body(client)` with an MCP client connected to the daemon; the
    HTTP status of every answer it got goes to `statuses`."""

    async def main():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        hooks = {}
        if statuses is not None:
            async def seen(response):
                statuses.append(response.status_code)
            hooks["response"] = [seen]
        async with httpx2.AsyncClient(headers=headers, timeout=120, event_hooks=hooks) as http:
            transport = streamable_http_client(f"{daemon['url']}/mcp", http_client=http)
            async with Client(transport) as client:
                return await body(client)

    return asyncio.run(main())


def test_mcp_client_lists_tools_runs_a_command_and_moves_a_file(daemon, sprite):
    name = sprite.name

    async def body(client):
        tools = await client.list_tools()
        assert {t.name for t in tools.tools} == TOOLS
        run = next(t for t in tools.tools if t.name == "run_command")
        assert "command" in run.input_schema["properties"]
        assert run.description

        ran = await client.call_tool("run_command", {"sprite": name, "command": ["echo", "hello"]})
        assert not ran.is_error, ran
        assert ran.structured_content["stdout"] == "hello\n"
        assert ran.structured_content["exit_code"] == 0

        wrote = await client.call_tool(
            "write_file", {"sprite": name, "path": "mcp/note.txt", "content": "from mcp\n"})
        assert not wrote.is_error, wrote
        read = await client.call_tool("read_file", {"sprite": name, "path": "mcp/note.txt"})
        assert read.structured_content["content"] == "from mcp\n"

        missing = await client.call_tool("read_file", {"sprite": "no-such-sprite", "path": "x"})
        assert missing.is_error
        assert json.loads(missing.content[0].text) == {
            "error": "not_found", "message": "no sprite named no-such-sprite"}

    with_client(daemon, daemon["token"], body)


@pytest.mark.parametrize("token", [None, "not-the-token"])
def test_mcp_refuses_a_missing_or_wrong_token(daemon, token):
    async def body(client):
        await client.list_tools()

    statuses = []
    with pytest.raises(BaseException):
        with_client(daemon, token, body, statuses)
    assert statuses and set(statuses) == {401}, statuses

    # The refusal itself: 401 in the API's error format.
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(
        f"{daemon['url']}/mcp", method="POST", headers=headers,
        data=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode())
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 401
    assert json.loads(e.value.read())["error"] == "unauthorized"
