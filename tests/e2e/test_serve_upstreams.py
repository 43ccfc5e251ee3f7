"""``portcullis serve`` end to end in front of an HTTP upstream (a real SDK server).

The upstream is the official SDK's ``MCPServer`` over Streamable HTTP (:func:`sdk_server`),
served by uvicorn on 127.0.0.1 in a thread of the test, wrapped in a recorder that keeps the
headers of every request it receives. The gateway is a real ``portcullis serve`` process whose
policy reaches the upstream by ``url:`` with a credential of its own (``X-Upstream-Key`` from
the environment): the tests check what crosses the trust boundary, and that tools work through
the gateway in both protocol eras, large results included.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_serve_replicas import Mcp, final, modern_call, text
from tests.serve.conftest import Served, http, sdk_client, text_of
from tests.serve.upstreams import Scope, sdk_server, serve_app

pytestmark = pytest.mark.anyio

# Above the SDK client's default 1 MiB SSE event cap, far below the gateway's 64 MiB default.
BIG = 2 * 1024 * 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recorder:
    """ASGI middleware: records each HTTP request's headers, then passes it on."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[dict[str, str]] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers: dict[str, str] = {}
            for name, value in scope["headers"]:
                key = name.decode("latin-1").lower()
                text = value.decode("latin-1")
                headers[key] = f"{headers[key]}, {text}" if key in headers else text
            headers[":method"] = scope["method"]
            self.seen.append(headers)
        await self.app(scope, receive, send)

    def values(self, name: str) -> list[str]:
        """Every value of header ``name`` the upstream received."""
        return [h[name] for h in self.seen if name in h]


@pytest.fixture
def upstream() -> Iterator[tuple[str, Recorder]]:
    """A recorded SDK server over Streamable HTTP: (its MCP URL, the recorder)."""
    recorder = Recorder(sdk_server())
    with serve_app(recorder) as base:
        yield base + "/mcp", recorder


def http_policy(url: str) -> str:
    """Serve the HTTP upstream as ``up`` to alice, with the upstream's own credential."""
    return f"""\
version: 1
defaults:
  tools: {{default: allow}}
servers:
  up:
    url: {json.dumps(url)}
    headers:
      X-Upstream-Key: "${{env:UPSTREAM_KEY}}"
serve:
  identities:
    alice: {{servers: ["*"]}}
"""


async def test_upstream_sees_its_own_credential_never_the_clients(
    upstream: tuple[str, Recorder],
) -> None:
    """The HTTP upstream gets X-Upstream-Key, never the client's bearer token or session id."""
    url, recorder = upstream
    secret = secrets.token_hex(16)
    with Served(http_policy(url), env={"UPSTREAM_KEY": secret}) as served:
        token = served.key("alice")
        endpoint = served.url + "/servers/up/mcp"
        async with http() as client:
            mcp = Mcp(client, token)
            await mcp.initialize(endpoint)
            assert text(await mcp.call(endpoint, "echo", {"text": "legacy"})) == "legacy"
            body, head = modern_call("echo", {"text": "modern"}, 50)
            assert text(final(await mcp.post(endpoint, body, head))) == "modern"
            client_sid = mcp.sid
            gone = await client.delete(endpoint, headers=mcp.headers())
            assert gone.status_code == 204, gone.text
        assert "Traceback" not in served.stderr_text()
        assert secret not in served.stderr_text()
    assert recorder.seen, "the upstream received nothing"
    assert all(h.get("x-upstream-key") == secret for h in recorder.seen), recorder.seen
    assert recorder.values("authorization") == []
    assert client_sid is not None
    for headers in recorder.seen:
        for name, value in headers.items():
            assert token not in value, name
            assert client_sid not in value, name
    # The upstream's own session ids do travel (the gateway keeps its own session with it).
    assert recorder.values("mcp-session-id")


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_tools_and_a_2_mib_result_pass_through_in_both_eras(
    upstream: tuple[str, Recorder], mode: str
) -> None:
    """Through the gateway, the SDK client lists and calls the HTTP upstream's tools, 2 MiB too."""
    url, _ = upstream
    with Served(http_policy(url), env={"UPSTREAM_KEY": "k-" + secrets.token_hex(8)}) as served:
        token = served.key("alice")
        async with sdk_client(served, token, "/servers/up/mcp", mode=mode) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert {"echo", "big", "progress", "slow"} <= tools
            echoed = await client.call_tool("echo", {"text": f"hello {mode}"})
            assert text_of(echoed) == f"hello {mode}"
            big = await client.call_tool("big", {"size": BIG})
            assert not big.is_error, text_of(big)[:300]
            assert text_of(big) == "x" * BIG
        async with sdk_client(served, token, "/mcp", mode=mode) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert "up__echo" in names
            echoed = await client.call_tool("up__echo", {"text": "aggregated"})
            assert text_of(echoed) == "aggregated"
        assert "Traceback" not in served.stderr_text()
