"""Reusable upstream MCP servers and helpers for the ``portcullis serve`` tests.

* :func:`serve_app` runs any ASGI app with uvicorn on 127.0.0.1 (a free port) in a thread;
* :func:`sdk_server` is a real SDK ``MCPServer`` with tools for the interesting cases (echo, a
  2 MiB result, progress notifications, a slow call that records its cancellation);
* :class:`FakeUpstream` is a tiny raw ASGI server whose every answer the test scripts, for what
  a real server would not do on demand (expire a session, send CRLF or oversize events), and
  that records each request's headers;
* :class:`Frames` collects what an upstream hands to ``on_frame``;
* the commands of the real stdio servers (npm ``server-everything``/``server-filesystem``, PyPI
  ``mcp-server-time``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from mcp.server import MCPServer
from mcp.server.mcpserver import Context

from portcullis.gateway.frames import Oversize

__all__ = [
    "NODE_BIN",
    "TIMEOUT",
    "FakeUpstream",
    "Frames",
    "Recorded",
    "SlowProbe",
    "everything",
    "filesystem",
    "initialize",
    "rpc",
    "sdk_server",
    "serve_app",
    "time_server",
]

REPO = Path(__file__).resolve().parents[2]
NODE_BIN = REPO / "tests" / "servers" / "node_modules" / ".bin"
# A bound so that a broken upstream fails a test instead of hanging it; never asserted on.
TIMEOUT = 60.0

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _need(path: Path) -> str:
    if not path.exists():
        pytest.fail(
            f"{path} is missing: install the test servers with `npm ci --prefix tests/servers`",
            pytrace=False,
        )
    return str(path)


def everything(*args: str) -> list[str]:
    """The command of @modelcontextprotocol/server-everything (``stdio`` by default)."""
    return [_need(NODE_BIN / "mcp-server-everything"), *(args or ("stdio",))]


def filesystem(*roots: Path) -> list[str]:
    """The command of @modelcontextprotocol/server-filesystem serving ``roots``."""
    return [_need(NODE_BIN / "mcp-server-filesystem"), *map(str, roots)]


def time_server() -> list[str]:
    """The command of PyPI mcp-server-time (from the venv)."""
    return [str(Path(sys.executable).parent / "mcp-server-time")]


def rpc(method: str, params: Any = None, id: Any = None) -> bytes:
    """The bytes of one JSON-RPC request (``id`` given) or notification."""
    msg: dict[str, Any] = {"jsonrpc": "2.0"}
    if id is not None:
        msg["id"] = id
    msg["method"] = method
    if params is not None:
        msg["params"] = params
    return json.dumps(msg, separators=(",", ":")).encode()


def initialize(id: Any = 0, version: str = "2025-06-18") -> bytes:
    """A legacy ``initialize`` request."""
    return rpc(
        "initialize",
        {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "portcullis-tests", "version": "1"},
        },
        id,
    )


class Frames:
    """Collects the frames an upstream delivers, and its ``on_gone`` status."""

    def __init__(self) -> None:
        """Nothing received yet."""
        self.items: list[bytes | Oversize] = []
        self.gone: list[int | None] = []
        self._changed = asyncio.Event()

    def __call__(self, item: bytes | Oversize) -> None:
        """The ``on_frame`` sink."""
        self.items.append(item)
        self._changed.set()

    def on_gone(self, status: int | None) -> None:
        """The ``on_gone`` sink."""
        self.gone.append(status)
        self._changed.set()

    def messages(self) -> list[dict[str, Any]]:
        """The decoded JSON frames received so far (Oversize skipped)."""
        return [json.loads(i) for i in self.items if isinstance(i, bytes)]

    async def wait(self, pred: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
        """Wait until ``pred()`` is truthy (checked on each frame and every 50 ms); return it."""
        async with asyncio.timeout(timeout):
            while not (value := pred()):
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.05)
            return value

    async def response(self, id: Any, timeout: float = TIMEOUT) -> dict[str, Any]:
        """Wait for the response with ``id`` (same JSON type) and return it."""

        def find() -> dict[str, Any] | None:
            for msg in self.messages():
                if "method" not in msg and type(msg.get("id")) is type(id) and msg["id"] == id:
                    return msg
            return None

        result: dict[str, Any] = await self.wait(find, timeout)
        return result


@contextlib.contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Serve ASGI ``app`` on 127.0.0.1 (a free port) in a thread; yield ``http://127.0.0.1:P``."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="error",
        lifespan="auto",
        ws="none",
        # Handlers still running (a slow tool a test abandoned) are cancelled, not awaited.
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-upstream", daemon=True)
    thread.start()
    deadline = time.monotonic() + TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the test upstream did not start", pytrace=False)
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)


class SlowProbe:
    """What the slow tool of :func:`sdk_server` saw: that it started, and that it was cancelled."""

    def __init__(self) -> None:
        """Nothing seen yet."""
        self.started = threading.Event()
        self.cancelled = threading.Event()


def sdk_server(probe: SlowProbe | None = None, **app_kw: Any) -> Any:
    """A Starlette app serving a real SDK ``MCPServer`` over Streamable HTTP at ``/mcp``.

    Tools: ``echo(text)``; ``big(size)`` (a text of ``size`` bytes); ``progress(steps)`` (sends a
    progress notification per step, then answers); ``slow()`` (sleeps up to a minute, recording
    in ``probe`` that it started and whether it was cancelled).
    """
    probe = probe or SlowProbe()
    server = MCPServer("upstream-under-test")

    @server.tool()
    def echo(text: str) -> str:
        """Echo the text."""
        return text

    @server.tool()
    def big(size: int) -> str:
        """A text of ``size`` bytes."""
        return "x" * size

    @server.tool()
    async def progress(steps: int, ctx: Context) -> str:
        """Report progress ``steps`` times, then answer."""
        for step in range(steps):
            await ctx.report_progress(step + 1, steps, f"step {step + 1}")
        return "done"

    @server.tool()
    async def slow() -> str:
        """Sleep for a minute unless cancelled."""
        probe.started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            probe.cancelled.set()
            raise
        return "slept"

    return server.streamable_http_app(host="127.0.0.1", **app_kw)


@dataclass
class Recorded:
    """One request a :class:`FakeUpstream` received."""

    method: str
    headers: dict[str, str]  # lower-case names; a repeated header's values joined with ", "
    body: bytes


Handler = Callable[[Recorded], Awaitable[tuple[int, dict[str, str], list[bytes]]]]


@dataclass
class FakeUpstream:
    """A raw ASGI server: ``handler(request) -> (status, headers, body chunks)``; records all.

    Used where a test needs exact control of the bytes or the status, which a real server does
    not offer on demand.
    """

    handler: Handler
    requests: list[Recorded] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point."""
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        request = Recorded(scope["method"], headers, body)
        self.requests.append(request)
        status, out_headers, chunks = await self.handler(request)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in out_headers.items()],
            }
        )
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
