"""HttpUpstream against a real SDK server over Streamable HTTP, and a scripted fake.

The real ``MCPServer`` (tests/serve/upstreams.py) proves interoperability: sessions, SSE, large
results, progress, cancellation, both eras. The fake (:class:`FakeUpstream`) is used where the
test must control exact bytes or statuses a real server produces only by accident: an expired
session (404), CRLF line endings and multi-line data, an event past the cap, and recording the
exact headers that arrive upstream.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from tests.serve.upstreams import (
    TIMEOUT,
    FakeUpstream,
    Frames,
    Recorded,
    SlowProbe,
    initialize,
    rpc,
    sdk_server,
    serve_app,
)

from portcullis._exceptions import ConfigError
from portcullis.gateway.frames import UPSTREAM_GONE, Oversize
from portcullis.serve.upstream_http import HttpUpstream, SSEParser, encode_header_value

pytestmark = pytest.mark.anyio

SECRET = "upstream-secret-token"
MODERN = "2026-07-28"


@pytest.fixture(scope="module")
def probe() -> SlowProbe:
    return SlowProbe()


@pytest.fixture(scope="module")
def sdk_url(probe: SlowProbe) -> Iterator[str]:
    with serve_app(sdk_server(probe)) as base:
        yield f"{base}/mcp"


class Harness:
    """Upstreams made by a test, closed at its end."""

    def __init__(self) -> None:
        self.ups: list[HttpUpstream] = []
        self.logs: list[str] = []

    async def make(
        self, url: str, *, max_bytes: int = 64 << 20, timeout_s: float = 30.0, **kw: Any
    ) -> tuple[HttpUpstream, Frames]:
        frames = Frames()
        up = HttpUpstream(
            "remote",
            url,
            headers=kw.pop("headers", {}),
            max_message_bytes=max_bytes,
            timeout_s=timeout_s,
            log=self.logs.append,
            **kw,
        )
        up.on_frame = frames
        up.on_gone = frames.on_gone
        await up.start()
        self.ups.append(up)
        return up, frames


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = Harness()
    yield harness
    for up in harness.ups:
        await up.close()


async def legacy_handshake(up: HttpUpstream, frames: Frames) -> dict[str, Any]:
    await up.send(initialize())
    init = await frames.response(0)
    await up.send(rpc("notifications/initialized"))
    return init


def modern(method: str, params: dict[str, Any], id: Any) -> bytes:
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    return rpc(method, {**params, "_meta": meta}, id)


def text(msg: dict[str, Any]) -> str:
    return "".join(block.get("text", "") for block in msg["result"]["content"])


# -- the real SDK server ----------------------------------------------------------------------


async def test_legacy_session_initialize_then_calls(sdk_url: str, h: Harness) -> None:
    """The session id and version from initialize are carried by later requests, which succeed."""
    up, frames = await h.make(sdk_url)
    init = await legacy_handshake(up, frames)
    state = up.state()
    assert state["session_id"]
    assert state["protocol_version"] == init["result"]["protocolVersion"]
    await up.send(rpc("tools/list", {}, 1))
    tools = await frames.response(1)
    assert {"echo", "big", "progress", "slow"} <= {t["name"] for t in tools["result"]["tools"]}
    await up.send(rpc("tools/call", {"name": "echo", "arguments": {"text": "hé"}}, "c"))
    assert text(await frames.response("c")) == "hé"


@pytest.mark.parametrize("json_response", [False, True])
async def test_two_mib_result_passes(json_response: bool, h: Harness) -> None:
    """A 2 MiB result (above the SDK client's 1 MiB SSE cap) arrives whole, SSE or JSON."""
    with serve_app(sdk_server(json_response=json_response)) as base:
        up, frames = await h.make(f"{base}/mcp")
        await legacy_handshake(up, frames)
        await up.send(rpc("tools/call", {"name": "big", "arguments": {"size": 2 << 20}}, 9))
        assert len(text(await frames.response(9))) == 2 << 20
        await up.close()


async def test_progress_notifications_come_before_the_result(sdk_url: str, h: Harness) -> None:
    """Progress notifications streamed on the request's SSE response are delivered in order."""
    up, frames = await h.make(sdk_url)
    await legacy_handshake(up, frames)
    params = {"name": "progress", "arguments": {"steps": 3}, "_meta": {"progressToken": "p"}}
    await up.send(rpc("tools/call", params, 4))
    await frames.response(4)
    methods = [m.get("method") for m in frames.messages() if m.get("id") != 0]
    assert methods == ["notifications/progress"] * 3 + [None]


async def test_legacy_cancel_stops_the_slow_tool(
    sdk_url: str, probe: SlowProbe, h: Harness
) -> None:
    """cancel() closes the stream and sends notifications/cancelled: the server's task ends."""
    probe.started.clear()
    probe.cancelled.clear()
    up, frames = await h.make(sdk_url)
    await legacy_handshake(up, frames)
    await up.send(rpc("tools/call", {"name": "slow", "arguments": {}}, 11))
    assert await asyncio.to_thread(probe.started.wait, TIMEOUT)
    await up.cancel(11)
    assert await asyncio.to_thread(probe.cancelled.wait, TIMEOUT)
    assert all(m.get("id") != 11 for m in frames.messages())


async def test_modern_requests_work_without_a_session(sdk_url: str, h: Harness) -> None:
    """2026-07-28 requests (version in _meta) are answered with no initialize and no session."""
    up, frames = await h.make(sdk_url)
    await up.send(modern("tools/call", {"name": "echo", "arguments": {"text": "now"}}, 1))
    assert text(await frames.response(1)) == "now"
    assert up.state()["session_id"] is None


async def test_modern_cancel_closes_the_stream(sdk_url: str, probe: SlowProbe, h: Harness) -> None:
    """2026: closing the request's response stream is the cancellation; the task ends."""
    probe.started.clear()
    probe.cancelled.clear()
    up, _frames = await h.make(sdk_url)
    await up.send(modern("tools/call", {"name": "slow", "arguments": {}}, 12))
    assert await asyncio.to_thread(probe.started.wait, TIMEOUT)
    await up.cancel(12)
    assert await asyncio.to_thread(probe.cancelled.wait, TIMEOUT)


# -- the scripted fake ------------------------------------------------------------------------

JSON = {"content-type": "application/json"}
SSE = {"content-type": "text/event-stream"}


def result(body: bytes, value: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": json.loads(body)["id"], "result": value}).encode()


@pytest.fixture
def fake() -> Iterator[Callable[..., tuple[FakeUpstream, str]]]:
    """Start FakeUpstreams with given handlers; all stopped at the end of the test."""
    stacks: list[Any] = []

    def start(handler: Any) -> tuple[FakeUpstream, str]:
        app = FakeUpstream(handler)
        ctx = serve_app(app)
        base = ctx.__enter__()
        stacks.append(ctx)
        return app, f"{base}/mcp?key=in-url-secret"

    yield start
    for ctx in stacks:
        ctx.__exit__(None, None, None)


class SessionServer:
    """A legacy server: sessions s1, s2, …; answers any request with its method as result."""

    def __init__(self) -> None:
        self.sessions = 0
        self.expired: set[str] = set()

    async def __call__(self, req: Recorded) -> tuple[int, dict[str, str], list[bytes]]:
        if req.method == "DELETE":
            return 200, {}, []
        if req.method == "GET":
            return 405, {}, []
        msg = json.loads(req.body)
        if msg.get("method") == "initialize":
            self.sessions += 1
            headers = {**JSON, "mcp-session-id": f"s{self.sessions}", "set-cookie": "c=1; Path=/"}
            init = {"protocolVersion": "2025-06-18", "capabilities": {}}
            return 200, headers, [result(req.body, init)]
        if "id" not in msg:
            return 202, {}, []
        if req.headers.get("mcp-session-id") in self.expired:
            return 404, {}, []
        if msg["method"] == "slow":
            await asyncio.sleep(30)
        return 200, JSON, [result(req.body, {"method": msg["method"]})]


@pytest.fixture
def sessions() -> SessionServer:
    return SessionServer()


async def test_exact_headers_reach_the_upstream(
    fake: Any, sessions: SessionServer, h: Harness
) -> None:
    """Only the configured and protocol headers reach the upstream (no cookie it set)."""
    app, url = fake(sessions)
    up, frames = await h.make(url, headers={"Authorization": f"Bearer {SECRET}", "X-Team": "blue"})
    await legacy_handshake(up, frames)
    await up.send(rpc("tools/list", {}, 1))
    await frames.response(1)
    transport = {"host", "user-agent", "accept-encoding", "connection", "content-length"}
    init, note, listed = [r for r in app.requests if r.method == "POST"][:3]
    assert {k: v for k, v in init.headers.items() if k not in transport} == {
        "authorization": f"Bearer {SECRET}",
        "x-team": "blue",
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
    }
    expected = {
        "authorization": f"Bearer {SECRET}",
        "x-team": "blue",
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-session-id": "s1",
        "mcp-protocol-version": "2025-06-18",
    }
    assert {k: v for k, v in listed.headers.items() if k not in transport} == expected
    assert {k: v for k, v in note.headers.items() if k not in transport} == expected


async def test_reserved_configured_headers_are_refused() -> None:
    """Configured headers may not set what the protocol relies on (session id, version…)."""
    with pytest.raises(ConfigError, match=r"(?i)mcp-session-id"):
        HttpUpstream(
            "r",
            "http://127.0.0.1:1/mcp",
            headers={"Mcp-Session-Id": "forged"},
            max_message_bytes=1,
            timeout_s=1,
            log=print,
        )


async def test_modern_headers_mirror_the_body(fake: Any, h: Harness) -> None:
    """2026 requests mirror version, method and name into headers (base64 when unsafe)."""

    async def handler(req: Recorded) -> tuple[int, dict[str, str], list[bytes]]:
        return 200, JSON, [result(req.body, {})]

    app, url = fake(handler)
    up, frames = await h.make(url)
    await up.send(modern("tools/call", {"name": "plain_tool", "arguments": {}}, 1))
    await up.send(modern("resources/read", {"uri": "file:///tmp/é\r\nX-Evil: 1"}, 2))
    await up.send(modern("tools/list", {}, 3))
    for rid in (1, 2, 3):
        await frames.response(rid)
    by_id = {json.loads(r.body)["id"]: r.headers for r in app.requests}
    assert by_id[1]["mcp-protocol-version"] == MODERN
    assert by_id[1]["mcp-method"] == "tools/call"
    assert by_id[1]["mcp-name"] == "plain_tool"
    encoded = base64.b64encode("file:///tmp/é\r\nX-Evil: 1".encode()).decode()
    assert by_id[2]["mcp-name"] == f"=?base64?{encoded}?="
    assert "x-evil" not in by_id[2]
    assert "mcp-name" not in by_id[3]
    assert all("mcp-session-id" not in hdrs for hdrs in by_id.values())


async def test_expired_session_is_reinitialized_transparently(
    fake: Any, sessions: SessionServer, h: Harness
) -> None:
    """A 404 for our session replays initialize + initialized and resends the request."""
    app, url = fake(sessions)
    up, frames = await h.make(url)
    await legacy_handshake(up, frames)
    sessions.expired.add("s1")
    await up.send(rpc("tools/list", {}, 5))
    assert (await frames.response(5))["result"] == {"method": "tools/list"}
    assert up.state()["session_id"] == "s2"
    sent = [
        (r.headers.get("mcp-session-id"), json.loads(r.body).get("method"))
        for r in app.requests
        if r.method == "POST"
    ]
    assert sent[-4:] == [
        ("s1", "tools/list"),
        (None, "initialize"),
        ("s2", "notifications/initialized"),
        ("s2", "tools/list"),
    ]
    assert [m.get("id") for m in frames.messages()] == [0, 5]  # one initialize answer only


async def test_legacy_cancel_sends_notifications_cancelled(
    fake: Any, sessions: SessionServer, h: Harness
) -> None:
    """cancel() of a legacy request POSTs notifications/cancelled naming it; no answer comes."""
    app, url = fake(sessions)
    up, frames = await h.make(url)
    await legacy_handshake(up, frames)
    await up.send(rpc("slow", {}, "s-1"))
    await frames.wait(lambda: any(r.body and b'"slow"' in r.body for r in app.requests))
    await up.cancel("s-1")
    await up.cancel("s-1")  # a second cancel (or of an unknown id) does nothing
    bodies = [json.loads(r.body) for r in app.requests if r.method == "POST"]
    await frames.wait(lambda: len(bodies) < len([r for r in app.requests if r.method == "POST"]))
    notes = [
        json.loads(r.body)
        for r in app.requests
        if r.method == "POST" and b"notifications/cancelled" in r.body
    ]
    assert [n["params"]["requestId"] for n in notes] == ["s-1"]
    assert all(m.get("id") != "s-1" for m in frames.messages())


async def test_close_deletes_the_session(fake: Any, sessions: SessionServer, h: Harness) -> None:
    """close() sends DELETE with the session id; a second close does nothing."""
    app, url = fake(sessions)
    up, frames = await h.make(url)
    await legacy_handshake(up, frames)
    await up.close()
    await up.close()
    deletes = [r for r in app.requests if r.method == "DELETE"]
    assert len(deletes) == 1
    assert deletes[0].headers["mcp-session-id"] == "s1"


async def test_sse_with_crlf_comments_and_multiline_data(fake: Any, h: Harness) -> None:
    """SSE with CRLF/CR ends, comments, priming and multi-line data yields the message events."""

    async def handler(req: Recorded) -> tuple[int, dict[str, str], list[bytes]]:
        note = b'{"jsonrpc":"2.0",\r\ndata: "method":"notifications/message"}'
        final = result(req.body, {"ok": True})
        return (
            200,
            SSE,
            [
                b": keep-alive\r\nid: 1\r\ndata:\r\n\r",
                b"\nevent: message\r\ndata: " + note + b"\r\n\r\n",
                b"event: other\rdata: {}\r\r",
                b"id: 2\ndata: " + final[:10],
                final[10:] + b"\n\n",
            ],
        )

    _app, url = fake(handler)
    up, frames = await h.make(url)
    await up.send(rpc("x", {}, 1))
    await frames.response(1)
    assert frames.items[0] == b'{"jsonrpc":"2.0",\n"method":"notifications/message"}'
    assert len(frames.items) == 2


async def test_oversize_event_and_body(fake: Any, h: Harness) -> None:
    """An SSE event or JSON body past max_message_bytes arrives as Oversize with its size."""
    big = b'{"jsonrpc":"2.0","id":1,"result":{"t":"' + b"y" * 300_000 + b'"}}'

    async def handler(req: Recorded) -> tuple[int, dict[str, str], list[bytes]]:
        if json.loads(req.body)["id"] == 1:
            return (
                200,
                SSE,
                [b"data: ", *(big[i : i + 65536] for i in range(0, len(big), 65536)), b"\n\n"],
            )
        return 200, JSON, [big.replace(b'"id":1', b'"id":2')]

    _app, url = fake(handler)
    up, frames = await h.make(url, max_bytes=100_000)
    await up.send(rpc("x", {}, 1))
    await up.send(rpc("x", {}, 2))
    await frames.wait(lambda: len(frames.items) == 2)
    assert all(isinstance(i, Oversize) and i.size == len(big) for i in frames.items)
    assert not [line for line in h.logs if "before answering" in line]  # the id was guessed


async def test_upstream_down_answers_with_an_error(h: Harness) -> None:
    """A refused connection answers a request with -31902 and no secrets; notifications log."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    up, frames = await h.make(
        f"http://127.0.0.1:{port}/mcp?key=in-url-secret", headers={"Authorization": SECRET}
    )
    await up.send(rpc("notifications/initialized"))
    await up.send(rpc("tools/list", {}, "r1"))
    err = await frames.response("r1")
    assert err["error"]["code"] == UPSTREAM_GONE
    assert '"remote"' in err["error"]["message"]
    assert len(frames.items) == 1
    everything = json.dumps(frames.messages()) + "\n".join(h.logs)
    assert SECRET not in everything
    assert "in-url-secret" not in everything


async def test_http_error_and_timeout_answer_with_errors(fake: Any, h: Harness) -> None:
    """An HTTP 500 and a server that does not answer in time both give -31902 for the id."""

    async def handler(req: Recorded) -> tuple[int, dict[str, str], list[bytes]]:
        if json.loads(req.body)["id"] == "slow":
            await asyncio.sleep(5)
        return 500, {"content-type": "text/plain"}, [b"boom"]

    _app, url = fake(handler)
    up, frames = await h.make(url, timeout_s=0.5)
    await up.send(rpc("x", {}, "slow"))
    await up.send(rpc("x", {}, "bad"))
    bad = await frames.response("bad")
    slow = await frames.response("slow")
    assert "HTTP 500" in bad["error"]["message"]
    assert "did not answer" in slow["error"]["message"]
    assert {bad["error"]["code"], slow["error"]["code"]} == {UPSTREAM_GONE}


async def test_get_stream_delivers_and_resumes(
    fake: Any, sessions: SessionServer, h: Harness
) -> None:
    """The GET stream's messages are delivered; it reopens with Last-Event-ID; 405 ends it."""
    gets: list[Recorded] = []

    async def handler(req: Recorded) -> tuple[int, dict[str, str], list[bytes]]:
        if req.method != "GET":
            return await sessions(req)
        gets.append(req)
        if len(gets) == 1:
            note = rpc("notifications/tools/list_changed")
            return 200, {**SSE, "retry": "0"}, [b"retry: 10\nid: e7\ndata: " + note + b"\n\n"]
        return 405, {}, []

    _app, url = fake(handler)
    up, frames = await h.make(url)
    await legacy_handshake(up, frames)
    await frames.wait(
        lambda: any(
            m.get("method") == "notifications/tools/list_changed" for m in frames.messages()
        )
    )
    await frames.wait(lambda: len(gets) >= 2)
    assert gets[0].headers["accept"] == "text/event-stream"
    assert gets[0].headers["mcp-session-id"] == "s1"
    assert gets[1].headers["last-event-id"] == "e7"


def test_sse_parser_any_chunking() -> None:
    """Feeding byte by byte gives the same events as feeding all at once."""
    stream = b"\xef\xbb\xbfdata: a\r\ndata: b\r\rid: 3\nevent: message\ndata:c\n\n: x\ndata\n\n"
    whole = SSEParser(1000).feed(stream)
    parser = SSEParser(1000)
    single = [e for i in range(len(stream)) for e in parser.feed(stream[i : i + 1])]
    assert whole == single
    assert [(e.data, e.id) for e in whole] == [(b"a\nb", None), (b"c", "3"), (b"", "3")]


def test_sse_parser_caps_events_and_stays_bounded() -> None:
    """An event over the cap becomes Oversize without being buffered; the next one is whole."""
    parser = SSEParser(1000)
    out = parser.feed(b"data: " + b"z" * 600 + b"\ndata: ")
    for _ in range(100):
        out += parser.feed(b"q" * 10_000)
        assert len(parser._line) == 0  # nothing of the huge line is kept
    out += parser.feed(b"\n\ndata: ok\n\n")
    over, ok = out
    assert isinstance(over.data, Oversize)
    assert over.data.size == 600 + 1 + 1_000_000
    assert over.data.head.startswith(b"zzz")
    assert over.data.tail.endswith(b"qqq")
    assert ok.data == b"ok"


def test_encode_header_value() -> None:
    """Plain ASCII passes; non-ASCII, CR/LF, edge spaces and sentinel look-alikes are wrapped."""
    assert encode_header_value("tools/call") == "tools/call"
    for value in ("é", "a\r\nb", " a", "=?base64?x?="):
        wrapped = encode_header_value(value)
        assert wrapped.startswith("=?base64?")
        assert base64.b64decode(wrapped[9:-2]).decode() == value


async def test_redirect_is_not_followed(fake: Any, h: Harness) -> None:
    """A 307 to another origin (say, a metadata address) is an error; nothing reaches it."""
    elsewhere, elsewhere_url = fake(lambda req: _answer_ok(req))

    async def redirect(req: Recorded) -> tuple[int, dict[str, str], list[bytes]]:
        return 307, {"location": elsewhere_url}, []

    _app, url = fake(redirect)
    up, frames = await h.make(url, headers={"Authorization": f"Bearer {SECRET}"})
    await up.send(modern("tools/list", {}, "r"))
    err = await frames.response("r")
    assert err["error"]["code"] == UPSTREAM_GONE
    assert "HTTP 307" in err["error"]["message"]
    assert elsewhere.requests == []


async def _answer_ok(req: Recorded) -> tuple[int, dict[str, str], list[bytes]]:
    return 200, JSON, [result(req.body, {})]


@pytest.mark.parametrize("bad", ["has space", "x" * 2000, "caf\u00e9"])
async def test_invalid_upstream_session_id_is_not_echoed(fake: Any, h: Harness, bad: str) -> None:
    """A session id outside visible ASCII (or too long) is ignored, never sent back as a header."""

    async def handler(req: Recorded) -> tuple[int, dict[str, str], list[bytes]]:
        msg = json.loads(req.body) if req.body else {}
        if msg.get("method") == "initialize":
            init = {"protocolVersion": "2025-06-18", "capabilities": {}}
            return 200, {**JSON, "mcp-session-id": bad}, [result(req.body, init)]
        if "id" not in msg:
            return 202, {}, []
        return 200, JSON, [result(req.body, {})]

    app, url = fake(handler)
    up, frames = await h.make(url)
    await legacy_handshake(up, frames)
    await up.send(rpc("tools/list", {}, 1))
    await frames.response(1)
    assert any("invalid session id" in line for line in h.logs)
    assert all("mcp-session-id" not in r.headers for r in app.requests)


@pytest.mark.parametrize(
    ("name", "value"),
    [("X-Key", "secret-value\r\nX-Injected: 1"), ("X-Key", "secret-value\x00"), ("X Key", "v")],
)
async def test_configured_header_that_could_split_is_refused(name: str, value: str) -> None:
    """A configured header with CR/LF/NUL in its value, or a bad name, is a ConfigError."""
    with pytest.raises(ConfigError, match="invalid name, or its value") as info:
        HttpUpstream(
            "r",
            "http://127.0.0.1:1/mcp",
            headers={name: value},
            max_message_bytes=1,
            timeout_s=1,
            log=print,
        )
    assert "secret-value" not in str(info.value)
