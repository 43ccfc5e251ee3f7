"""Regression tests from the security review of the HTTP front (app, front, identity).

The App is driven in-process over ASGI with a real TokenSealer and MemoryState, a stub
authenticator (bearer token -> Principal) and a hub whose links answer at once, so each test
shows one refusal without starting upstream servers.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from portcullis.gateway import frames as fr
from portcullis.policy.compiled import Identity, Rules, ServeSettings
from portcullis.serve import app as app_module
from portcullis.serve.app import App
from portcullis.serve.front import Front
from portcullis.serve.identity import access_for, labels, may_approve
from portcullis.serve.state import MemoryState
from portcullis.serve.tokens import TokenSealer
from portcullis.serve.types import AuthFailure, Principal

pytestmark = pytest.mark.anyio

HOST = "gw.test"
SERVERS = ["time", "shell"]


# -- identity -----------------------------------------------------------------------------


def test_a_name_that_looks_like_a_group_scope_or_star_gets_no_rights_by_name() -> None:
    """A principal named group:admins, scope:x or * does not match those identity entries."""
    settings = ServeSettings(
        identities=(
            Identity("group:admins", servers=("shell",), approve=("*",)),
            Identity("scope:root", servers=("shell",)),
            Identity("*", servers=("time",)),
        )
    )
    for name in ("group:admins", "scope:root", "*"):
        who = Principal(name=name, kind="oauth")
        assert access_for(settings, who, SERVERS).servers == ("time",), name
        assert not may_approve(settings, who, "bob\n*")
    admin = Principal(name="ann", kind="oauth", groups=("admins",))
    assert access_for(settings, admin, SERVERS).servers == ("time", "shell")


def test_labels_hold_no_line_breaks() -> None:
    """A name or group with a line break cannot smuggle an extra label into a question."""
    sneaky = Principal(name="bob\ngroup:admins", kind="oauth", groups=("x\nscope:root", "ok"))
    assert labels(sneaky) == ("group:ok", "*")


# -- front --------------------------------------------------------------------------------


class _Recorder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.gone = False
        self.frames: list[bytes] = []

    def from_client(self, raw: bytes) -> None:
        self.frames.append(raw)

    async def cancel(self, rid: Any) -> None:
        """Nothing to stop."""

    async def close(self) -> None:
        """Nothing to close."""


def _req(rid: Any, method: str, params: dict[str, Any] | None = None) -> fr.Frame:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        msg["params"] = params
    return fr.decode_frame(json.dumps(msg).encode())


def _res(rid: Any, result: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}).encode()


def test_a_server_cannot_answer_a_call_sent_to_another() -> None:
    """A response from a link the request did not go to is dropped; the right one gets through."""
    a, b = _Recorder("a"), _Recorder("b")
    front = Front({"a": a, "b": b}, aggregate=True)  # type: ignore[dict-item]
    waiter = front.request(_req(7, "tools/call", {"name": "b__t", "arguments": {}}))
    front.deliver(a, _res(7, {"content": [{"type": "text", "text": "forged"}]}))  # type: ignore[arg-type]
    assert waiter.queue.empty()
    front.deliver(b, _res(7, {"content": [{"type": "text", "text": "real"}]}))  # type: ignore[arg-type]
    final, raw = waiter.queue.get_nowait()
    assert final and b"real" in raw


def test_a_fan_out_ignores_a_server_it_did_not_ask() -> None:
    """During a cursor-limited fan-out, an answer from a link not asked is not the result."""
    a, b = _Recorder("a"), _Recorder("b")
    front = Front({"a": a, "b": b}, aggregate=True)  # type: ignore[dict-item]
    first = front.request(_req(1, "tools/list"))
    front.deliver(a, _res(1, {"tools": [], "nextCursor": "next"}))  # type: ignore[arg-type]
    front.deliver(b, _res(1, {"tools": []}))  # type: ignore[arg-type]
    cursor = json.loads(first.queue.get_nowait()[1])["result"]["nextCursor"]
    waiter = front.request(_req(2, "tools/list", {"cursor": cursor}))  # asks a only
    front.deliver(b, _res(2, {"tools": [{"name": "evil", "inputSchema": {}}]}))  # type: ignore[arg-type]
    assert waiter.queue.empty()
    front.deliver(a, _res(2, {"tools": [{"name": "x", "inputSchema": {}}]}))  # type: ignore[arg-type]
    tools = json.loads(waiter.queue.get_nowait()[1])["result"]["tools"]
    assert [t["name"] for t in tools] == ["a__x"]


def test_a_get_stream_nobody_reads_does_not_grow_without_end() -> None:
    """Frames for a full GET stream queue are dropped instead of raising or piling up."""
    a = _Recorder("a")
    front = Front({"a": a}, aggregate=False)  # type: ignore[dict-item]
    front.stream = asyncio.Queue(maxsize=2)
    note = b'{"jsonrpc":"2.0","method":"notifications/message","params":{}}'
    for _ in range(5):
        front.deliver(a, note)  # type: ignore[arg-type]
    assert front.stream.qsize() == 2


# -- the app over ASGI --------------------------------------------------------------------


class _AnsweringLink(_Recorder):
    def __init__(self, name: str, front: Front) -> None:
        super().__init__(name)
        self._front = front

    def from_client(self, raw: bytes) -> None:
        super().from_client(raw)
        frame = fr.decode_frame(raw)
        if frame.kind == "request":
            self._front.deliver(self, _res(frame.id, {"ok": self.name}))  # type: ignore[arg-type]


class _Hub:
    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.sessions: dict[str, Any] = {}
        self.pools: dict[tuple[str, str], Front] = {}
        self.fronts = 0

    async def front(
        self, access: Any, names: list[str], *, aggregate: bool, sid: str, modern: bool
    ) -> Front:
        self.fronts += 1
        front = Front({}, aggregate=aggregate, modern=modern)
        for name in names:
            front.links[name] = _AnsweringLink(name, front)  # type: ignore[assignment]
        return front

    async def pooled(self, access: Any, path: str, names: list[str], aggregate: bool) -> Front:
        key = (f"{access.principal.kind}:{access.principal.name}", path)
        if key not in self.pools:
            self.pools[key] = await self.front(
                access, names, aggregate=aggregate, sid="pool", modern=True
            )
        return self.pools[key]

    async def close(self) -> None:
        """Nothing running."""


class _Auth:
    def __init__(self) -> None:
        self.who: dict[str, Principal] = {}

    async def authenticate(self, headers: dict[str, str]) -> Principal:
        token = headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.who:
            raise AuthFailure(401, "unknown")
        return self.who[token]

    def challenge(self, failure: AuthFailure) -> tuple[int, dict[str, str], bytes]:
        return failure.status, {}, b'{"error":"unauthorized"}'


class _Metrics:
    def http_request(self, route: str, status: int, seconds: float) -> None:
        """Not counted."""

    def sessions(self, count: int) -> None:
        """Not counted."""

    def render(self) -> tuple[bytes, str]:
        return b"", "text/plain"


class _Policy:
    def __init__(self, settings: ServeSettings) -> None:
        self.serve = settings
        self.servers = dict.fromkeys(SERVERS)


def _app(settings: ServeSettings) -> tuple[App, _Auth, _Hub, MemoryState]:
    policy = _Policy(settings)
    hub = _Hub(policy)
    auth = _Auth()
    state = MemoryState()

    async def ready() -> str | None:
        return None

    app = App(
        policy,  # type: ignore[arg-type]
        hub=hub,  # type: ignore[arg-type]
        auth=auth,
        state=state,
        metrics=_Metrics(),
        tokens=TokenSealer(b"k" * 32),
        resource_url=f"http://{HOST}/mcp",
        hosts={HOST},
        origins=set(),
        ready=ready,
        log=lambda _: None,
    )
    return app, auth, hub, state


async def _call(
    app: App,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes | None = b"",
) -> tuple[int, dict[str, str], bytes]:
    """One request; ``body`` None sends nothing at all (a client that stalls)."""
    sent = False
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent and body is not None:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await never.wait()
        return {"type": "http.disconnect"}

    out: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        out.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [
            (k.lower().encode(), v.encode("latin-1")) for k, v in [("host", HOST), *headers]
        ],
    }
    await asyncio.wait_for(app(scope, receive, send), 10)
    start = out[0]
    head = {k.decode(): v.decode() for k, v in start["headers"]}
    data = b"".join(m.get("body", b"") for m in out[1:])
    return start["status"], head, data


def _json(rid: Any, method: str, params: Any = None) -> bytes:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        msg["params"] = params
    return json.dumps(msg).encode()


_CT = ("content-type", "application/json")
_INIT = _json(
    0,
    "initialize",
    {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
)


async def test_an_authorization_header_sent_twice_is_refused() -> None:
    """Two Authorization headers are ambiguous: 400 before anyone is authenticated."""
    app, auth, _, _ = _app(ServeSettings())
    auth.who["good"] = Principal(name="alice", kind="key")
    status, _, body = await _call(
        app,
        "POST",
        "/servers/time/mcp",
        [("authorization", "Bearer good"), ("authorization", "Bearer other"), _CT],
        _INIT,
    )
    assert status == 400 and b"authorization header sent twice" in body


async def test_a_host_header_sent_twice_is_refused() -> None:
    """A second Host (that a proxy might route by) is refused, not ignored."""
    app, _, _, _ = _app(ServeSettings())
    status, _, _ = await _call(app, "GET", "/healthz", [("host", "evil.test")])
    assert status == 400


async def test_a_content_length_of_non_ascii_digits_is_refused_cleanly() -> None:
    """Content-Length '²' (a latin-1 digit) is a 413, not a crash."""
    app, auth, _, _ = _app(ServeSettings())
    auth.who["good"] = Principal(name="alice", kind="key")
    status, _, _ = await _call(
        app,
        "POST",
        "/servers/time/mcp",
        [("authorization", "Bearer good"), _CT, ("content-length", "\u00b2")],
        _INIT,
    )
    assert status == 413


async def test_a_stalled_body_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that never sends its body gets 408 instead of holding the request forever."""
    monkeypatch.setattr(app_module, "_BODY_TIMEOUT_S", 0.2)
    app, auth, _, _ = _app(ServeSettings())
    auth.who["good"] = Principal(name="alice", kind="key")
    status, _, _ = await _call(
        app, "POST", "/servers/time/mcp", [("authorization", "Bearer good"), _CT], None
    )
    assert status == 408


async def test_a_2026_call_without_a_name_is_refused() -> None:
    """tools/call with no name and no Mcp-Name header fails the header check (400, -32020)."""
    app, auth, _, _ = _app(ServeSettings())
    auth.who["good"] = Principal(name="alice", kind="key")
    body = _json(
        1, "tools/call", {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}
    )
    status, _, data = await _call(
        app,
        "POST",
        "/servers/time/mcp",
        [
            ("authorization", "Bearer good"),
            _CT,
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
        ],
        body,
    )
    assert status == 400 and b"-32020" in data


async def _open_session(app: App, token: str, path: str) -> str:
    status, head, _ = await _call(
        app, "POST", path, [("authorization", f"Bearer {token}"), _CT], _INIT
    )
    assert status == 200
    return head["mcp-session-id"]


def _ops_settings(**kw: Any) -> ServeSettings:
    return ServeSettings(
        identities=(
            Identity("alice", servers=("time",)),
            Identity("group:ops", servers=("shell",), tools=Rules("allow")),
        ),
        **kw,
    )


async def test_a_session_ends_when_the_principal_loses_rights() -> None:
    """A session begun with group ops is refused once the same principal comes without it."""
    app, auth, hub, _ = _app(_ops_settings())
    auth.who["with"] = Principal(name="alice", kind="oauth", groups=("ops",))
    auth.who["without"] = Principal(name="alice", kind="oauth")
    sid = await _open_session(app, "with", "/mcp")
    assert set(hub.sessions[next(iter(hub.sessions))].front.links) == {"time", "shell"}
    ping = _json(1, "ping")
    same = [_CT, ("mcp-session-id", sid)]
    status, _, _ = await _call(app, "POST", "/mcp", [("authorization", "Bearer with"), *same], ping)
    assert status == 200
    status, _, body = await _call(
        app, "POST", "/mcp", [("authorization", "Bearer without"), *same], ping
    )
    assert status == 404 and b"access changed" in body


async def test_a_pooled_front_is_not_shared_across_different_rights() -> None:
    """2026 pools are per principal and rights: a narrower token gets its own links."""
    app, auth, hub, _ = _app(_ops_settings())
    auth.who["with"] = Principal(name="alice", kind="oauth", groups=("ops",))
    auth.who["without"] = Principal(name="alice", kind="oauth")
    body = _json(
        1, "tools/list", {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}
    )
    heads = [_CT, ("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/list")]
    for token in ("with", "without"):
        status, _, _ = await _call(
            app, "POST", "/mcp", [("authorization", f"Bearer {token}"), *heads], body
        )
        assert status == 200
    assert len(hub.pools) == 2
    assert sorted(len(f.links) for f in hub.pools.values()) == [1, 2]


async def test_delete_must_name_the_path_the_session_is_on() -> None:
    """DELETE of a /mcp session id on /servers/time/mcp is a 404 and closes nothing."""
    app, auth, hub, _ = _app(ServeSettings())
    auth.who["good"] = Principal(name="alice", kind="key")
    sid = await _open_session(app, "good", "/mcp")
    head = [("authorization", "Bearer good"), ("mcp-session-id", sid)]
    status, _, _ = await _call(app, "DELETE", "/servers/time/mcp", head)
    assert status == 404
    assert len(hub.sessions) == 1
    status, _, _ = await _call(app, "DELETE", "/mcp", head)
    assert status == 204 and not hub.sessions


async def test_rebuilding_a_session_counts_against_max_sessions() -> None:
    """A session whose links were reaped is not rebuilt past serve.max_sessions."""
    app, auth, hub, _ = _app(ServeSettings(max_sessions=1))
    auth.who["good"] = Principal(name="alice", kind="key")
    first = await _open_session(app, "good", "/servers/time/mcp")
    hub.sessions.clear()  # as the idle reaper does
    await _open_session(app, "good", "/servers/time/mcp")
    status, _, _ = await _call(
        app,
        "POST",
        "/servers/time/mcp",
        [("authorization", "Bearer good"), _CT, ("mcp-session-id", first)],
        _json(1, "ping"),
    )
    assert status == 503
    assert len(hub.sessions) == 1


def _question(owner: Principal, code: str = "C0DE") -> dict[str, Any]:
    return {
        "id": "q1",
        "code": code,
        "server": "shell",
        "method": "tools/call",
        "subject": "run",
        "principal": owner.name,
        "owner": f"{owner.kind}:{owner.name}",
        "requester": "\n".join(labels(owner)),
    }


async def test_nobody_approves_their_own_call() -> None:
    """A principal allowed to approve its group cannot list or approve its own question."""
    settings = ServeSettings(
        identities=(Identity("group:ops", servers=("*",), approve=("group:ops",)),)
    )
    app, auth, _, state = _app(settings)
    bob = Principal(name="bob", kind="oauth", groups=("ops",))
    auth.who["bob"] = bob
    auth.who["carol"] = Principal(name="carol", kind="oauth", groups=("ops",))
    await state.approval_put("q1", _question(bob), 60)
    answer = json.dumps({"decision": "approve", "code": "C0DE"}).encode()
    status, _, body = await _call(app, "GET", "/approvals", [("authorization", "Bearer bob")])
    assert status == 200 and json.loads(body)["approvals"] == []
    status, _, _ = await _call(
        app, "POST", "/approvals/q1", [("authorization", "Bearer bob"), _CT], answer
    )
    assert status == 403
    status, _, body = await _call(app, "GET", "/approvals", [("authorization", "Bearer carol")])
    assert [q["id"] for q in json.loads(body)["approvals"]] == ["q1"]
    status, _, _ = await _call(
        app, "POST", "/approvals/q1", [("authorization", "Bearer carol"), _CT], answer
    )
    assert status == 200


async def test_a_question_you_may_not_answer_looks_like_no_question() -> None:
    """POST to another tenant's question is a 404 that does not name who asked."""
    app, auth, _, state = _app(ServeSettings(identities=(Identity("*", servers=("*",)),)))
    auth.who["eve"] = Principal(name="eve", kind="key")
    await state.approval_put("q1", _question(Principal(name="secret-bob", kind="key")), 60)
    answer = json.dumps({"decision": "deny"}).encode()
    status, _, body = await _call(
        app, "POST", "/approvals/q1", [("authorization", "Bearer eve"), _CT], answer
    )
    assert status == 404 and b"secret-bob" not in body


# -- the HTTP server's request head ---------------------------------------------------------


async def _tiny_server(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, asyncio.Task[None], int]:
    import socket

    import uvicorn

    from portcullis.serve.listen import guarded_protocol

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, http=guarded_protocol(head_timeout_s=0.5), lifespan="off", log_level="critical"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    return server, task, sock.getsockname()[1]


async def test_a_huge_request_head_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A header of megabytes gets 400 and a closed connection instead of being buffered."""
    server, task, port = await _tiny_server(monkeypatch)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:
            while sent < 25 * 2**20:  # unless the server hangs up first
                writer.write(b"a" * 65536)
                await asyncio.wait_for(writer.drain(), 5)
                sent += 65536
        except OSError:  # the server hung up
            pass
        assert sent < 25 * 2**20  # hung up long before (uvicorn alone takes it all)
        writer.close()
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_a_head_that_never_ends_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that trickles its headers has the connection closed; a normal one is served."""
    server, task, port = await _tiny_server(monkeypatch)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, nothing answered
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 200")
        writer.close()
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
