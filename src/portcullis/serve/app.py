"""The ASGI application of ``portcullis serve`` (pure ASGI: responses are streamed, never buffered).

Routes: ``/mcp`` (every server the caller may reach, names ``server__name``),
``/servers/NAME/mcp`` (one server), ``/approvals`` (the shared approval queue),
``/healthz``, ``/readyz``, ``/metrics`` and the RFC 9728 protected-resource metadata under
``/.well-known/oauth-protected-resource``. Every request is checked for its ``Host`` (and
``Origin`` when sent) against the allowlists before anything else, so a DNS-rebinding page
never reaches a server; every MCP and approvals request is authenticated, rate-limited and
size-limited per principal.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Container
from typing import Any, Final

import msgspec

from portcullis._exceptions import ConfigError, GatewayError
from portcullis.gateway import frames as fr
from portcullis.gateway.methods import MODERN_KEY
from portcullis.policy.compiled import CompiledPolicy, ServeSettings
from portcullis.serve.front import Front, Waiter
from portcullis.serve.hub import Hub, Live, principal_key
from portcullis.serve.identity import Access, access_for, may_approve
from portcullis.serve.tokens import SessionState, TokenError, TokenSealer
from portcullis.serve.types import AuthFailure, Principal

__all__ = ["App"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_JSON: Final = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
_SSE: Final = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
]
_NAMED_HEADER = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
_KEEPALIVE_S: Final = 15.0
_BODY_TIMEOUT_S: Final = 30.0
_STREAM_QUEUE: Final = 1024  # frames waiting for a GET stream's client to read them
_INITIALIZED: Final = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
HEADER_MISMATCH: Final = -32020
UPSTREAM_TIMEOUT: Final = -31903


class _Reply(Exception):
    """An HTTP answer decided before the MCP exchange (an error status)."""

    def __init__(
        self, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body if isinstance(body, bytes) else msgspec.json.encode(body)
        self.headers = headers or []


def _rpc_error(code: int, message: str, rid: Any = None) -> bytes:
    return fr.error_response(rid, code, message)


# Redis down: refused (503), never waved through.
_UNAVAILABLE: Final = _rpc_error(-31905, "the gateway's shared state is unreachable; try later")


class App:
    """``portcullis serve``'s ASGI app; ``reload`` swaps the policy in place (SIGHUP)."""

    def __init__(
        self,
        policy: CompiledPolicy,
        *,
        hub: Hub,
        auth: Any,
        state: Any,
        metrics: Any,
        tokens: TokenSealer,
        resource_url: str,
        hosts: Container[str],
        origins: Container[str],
        ready: Callable[[], Awaitable[str | None]],
        log: Callable[[str], None],
        on_shutdown: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.policy = policy
        self.settings: ServeSettings = policy.serve or ServeSettings()
        self.hub = hub
        self.auth = auth
        self.state = state
        self.metrics = metrics
        self.tokens = tokens
        self.resource_url = resource_url
        self.hosts = hosts
        self.origins = origins
        self._ready = ready
        self._log = log
        self._on_shutdown = on_shutdown
        self.draining = False
        self._reaper: asyncio.Task[None] | None = None

    def reload(self, policy: CompiledPolicy) -> None:
        """Use ``policy`` for every new request and link (open links keep theirs)."""
        self.policy = policy
        self.settings = policy.serve or ServeSettings()
        self.hub.policy = policy

    # -- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection (HTTP requests and the lifespan)."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        t0 = time.perf_counter()
        route = "other"
        status = 500
        try:
            route, status = await self._http(scope, receive, send)
        except _Reply as reply:
            status = reply.status
            await _send_simple(send, reply.status, reply.body, reply.headers)
        except (GatewayError, ConfigError) as exc:
            # An upstream that cannot be started or reached (a missing command, an unresolvable
            # secret reference, the gateway shutting down): the client learns why, not a 500.
            self._log(f"cannot serve {scope.get('path')}: {exc}")
            status = 502
            await _send_simple(send, 502, _rpc_error(-31902, f"upstream unavailable: {exc}"))
        finally:
            self.metrics.http_request(route, status, time.perf_counter() - t0)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._reaper = asyncio.create_task(self._reap())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.draining = True
                if self._reaper is not None:
                    self._reaper.cancel()
                with contextlib.suppress(Exception):
                    await self.hub.close()
                if self._on_shutdown is not None:
                    with contextlib.suppress(Exception):
                        await self._on_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(min(60.0, self.settings.session_idle_s / 4))
            with contextlib.suppress(Exception):
                await self.hub.reap(self.settings.session_idle_s)
            self.metrics.sessions(len(self.hub.sessions))

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> tuple[str, int]:
        headers = _headers(scope)
        self._check_host(headers)
        path: str = scope["path"]
        verb: str = scope["method"]
        if path == "/healthz":
            await _send_simple(send, 200, b'{"status":"ok"}')
            return "healthz", 200
        if path == "/readyz":
            problem = "draining" if self.draining else await self._ready()
            code = 200 if problem is None else 503
            body = {"status": "ready"} if problem is None else {"status": "unready", "why": problem}
            await _send_simple(send, code, msgspec.json.encode(body))
            return "readyz", code
        if path.startswith("/.well-known/oauth-protected-resource"):
            from portcullis.serve.auth import protected_resource_metadata

            meta = protected_resource_metadata(self.resource_url, self.settings)
            await _send_simple(send, 200, msgspec.json.encode(meta))
            return "metadata", 200
        self._check_origin(headers)
        if path == "/metrics":
            if not self.settings.metrics_public:
                await self._authenticate(headers)
            body, ctype = self.metrics.render()
            await _send_simple(send, 200, body, [(b"content-type", ctype.encode())], json=False)
            return "metrics", 200
        if path == "/mcp" or (path.startswith("/servers/") and path.endswith("/mcp")):
            return "mcp", await self._mcp(scope, headers, path, verb, receive, send)
        if path == "/approvals" or path.startswith("/approvals/"):
            return "approvals", await self._approvals(headers, path, verb, receive, send)
        raise _Reply(404, {"error": "not_found"})

    # -- checks ----------------------------------------------------------------------------

    def _check_host(self, headers: dict[str, str]) -> None:
        host = headers.get("host", "").lower()
        if host not in self.hosts:
            raise _Reply(
                421 if host else 400,
                {
                    "error": "misdirected",
                    "error_description": "Host is not one this gateway serves",
                },
            )

    def _check_origin(self, headers: dict[str, str]) -> None:
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/").lower() not in self.origins:
            raise _Reply(
                403,
                _rpc_error(-32600, f"Origin {origin[:200]!r} is not allowed"),
            )

    async def _authenticate(self, headers: dict[str, str]) -> Principal:
        try:
            principal: Principal = await self.auth.authenticate(headers)
        except AuthFailure as failure:
            status, extra, body = self.auth.challenge(failure)
            head = [(k.lower().encode(), v.encode()) for k, v in extra.items()]
            raise _Reply(status, body, [h for h in head if h[0] != b"content-type"]) from None
        return principal

    async def _limit(self, principal: Principal, access: Access) -> None:
        try:
            retry = await self.state.hit(
                f"rate:{principal_key(principal)}", access.limits.requests_per_minute, 60.0
            )
        except GatewayError:
            raise _Reply(503, _UNAVAILABLE) from None
        if retry is not None:
            raise _Reply(
                429,
                {"error": "rate_limited", "error_description": "too many requests"},
                [(b"retry-after", str(max(1, int(retry + 0.999))).encode())],
            )

    # -- MCP -------------------------------------------------------------------------------

    async def _mcp(
        self,
        scope: Scope,
        headers: dict[str, str],
        path: str,
        verb: str,
        receive: Receive,
        send: Send,
    ) -> int:
        principal = await self._authenticate(headers)
        access = access_for(self.settings, principal, list(self.policy.servers))
        await self._limit(principal, access)
        aggregate = path == "/mcp"
        if aggregate:
            names = list(access.servers)
            if not names:
                raise _Reply(403, {"error": "forbidden", "error_description": "no servers for you"})
        else:
            name = path[len("/servers/") : -len("/mcp")]
            if name not in self.policy.servers:
                raise _Reply(404, {"error": "not_found", "error_description": "no such server"})
            if not access.may_use(name):
                raise _Reply(
                    403,
                    {"error": "forbidden", "error_description": f"not allowed to use {name!r}"},
                )
            names = [name]
        sid = headers.get("mcp-session-id")
        if verb == "GET":
            return await self._get_stream(principal, access, path, sid, names, receive, send)
        if verb == "DELETE":
            return await self._delete(principal, access, path, sid, send)
        if verb != "POST":
            raise _Reply(405, {"error": "method_not_allowed"}, [(b"allow", b"GET, POST, DELETE")])
        body = await _read_body(receive, headers, access.limits.max_body_bytes)
        try:
            frame = fr.decode_frame(body)
        except fr.FrameError as exc:
            raise _Reply(400, _rpc_error(exc.code, str(exc), exc.id)) from None
        if frame.method != "initialize" and MODERN_KEY.encode() in body:
            modern = _modern_meta(body, frame)
            if modern is not None:
                _check_mirrored(headers, body, frame, modern)
                # Pools are keyed by what the principal may do as well as who it is: a
                # principal whose rights shrank (fewer groups, a narrower key) never reuses
                # links built for its former rights.
                pool = f"{path}#{_fingerprint(access)}"
                front = await self.hub.pooled(access, pool, names, aggregate)
                return await self._exchange(front, frame, receive, send, [])
        if frame.method == "initialize" and frame.kind == "request":
            return await self._initialize(principal, access, path, names, frame, receive, send)
        live = await self._live(principal, access, path, sid, names)
        live.last_used = time.monotonic()
        return await self._exchange(live.front, frame, receive, send, [])

    async def _initialize(
        self,
        principal: Principal,
        access: Access,
        path: str,
        names: list[str],
        frame: fr.Frame,
        receive: Receive,
        send: Send,
    ) -> int:
        if len(self.hub.sessions) >= self.settings.max_sessions:
            raise _Reply(503, _rpc_error(-31904, "too many open sessions; try again later"))
        sid = self.tokens.new_sid()
        front = await self.hub.front(access, names, aggregate=path == "/mcp", sid=sid, modern=False)
        state = SessionState(
            sid=sid,
            principal=principal_key(principal),
            expires=time.time() + self.settings.session_ttl_s,
            path=path,
            init=frame.raw,
            access=_fingerprint(access),
        )
        token = self.tokens.seal(state)
        live = Live(state, front)
        self.hub.sessions[sid] = live
        self.metrics.sessions(len(self.hub.sessions))
        status = await self._exchange(
            front, frame, receive, send, [(b"mcp-session-id", token.encode())]
        )
        return status

    async def _live(
        self, principal: Principal, access: Access, path: str, sid: str | None, names: list[str]
    ) -> Live:
        if sid is None:
            raise _Reply(400, _rpc_error(-32600, "missing Mcp-Session-Id: send initialize first"))
        state = self._open(principal, access, path, sid)
        try:
            revoked = await self.state.session_revoked(state.sid)
        except GatewayError:
            raise _Reply(503, _UNAVAILABLE) from None
        if revoked:
            raise _Reply(404, _rpc_error(-32600, "the session was closed"))
        live = self.hub.sessions.get(state.sid)
        if live is not None:
            return live
        if len(self.hub.sessions) >= self.settings.max_sessions:
            # Rebuilding counts like opening: else idle-reaped sessions exceed max_sessions.
            raise _Reply(503, _rpc_error(-31904, "too many open sessions; try again later"))
        # Begun on another replica, or its links were stopped while idle: start them afresh
        # and replay the client's handshake, so the client goes on with the same session id.
        front = await self.hub.front(
            access, names, aggregate=path == "/mcp", sid=state.sid, modern=False
        )
        live = self.hub.sessions.setdefault(state.sid, Live(state, front))
        if live.front is not front:
            await front.close()
            return live
        async with live.lock:
            waiter = front.request(fr.decode_frame(state.init))
            try:
                await asyncio.wait_for(waiter.queue.get(), self.settings.upstream_timeout_s)
            except TimeoutError:
                self.hub.sessions.pop(state.sid, None)
                await front.close()
                raise _Reply(503, _rpc_error(-31903, "the upstream did not start")) from None
            front.notify(fr.decode_frame(_INITIALIZED))
        return live

    def _open(self, principal: Principal, access: Access, path: str, sid: str) -> SessionState:
        """The state of session ``sid``, if it is the caller's, on ``path``, with its rights."""
        try:
            state = self.tokens.open(sid, principal_key(principal))
        except TokenError as exc:
            raise _Reply(404, _rpc_error(-32600, str(exc))) from None
        if state.path != path:
            raise _Reply(404, _rpc_error(-32600, "unknown session id"))
        if state.access != _fingerprint(access):
            # Its links were built for other rights (a group or key scope taken away, a new
            # policy): they must not outlive the change.
            raise _Reply(
                404,
                _rpc_error(
                    -32600, "your access changed since this session began; initialize again"
                ),
            )
        return state

    async def _exchange(
        self,
        front: Front,
        frame: fr.Frame,
        receive: Receive,
        send: Send,
        extra: list[tuple[bytes, bytes]],
    ) -> int:
        if frame.kind != "request":
            front.notify(frame)
            await _send_simple(send, 202, b"", extra, json=False)
            return 202
        waiter = front.request(frame)
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            first = await self._next(front, waiter, gone)
            if first is None:
                return 499
            final, raw = first
            if final:
                await _send_simple(send, 200, raw, extra)
                return 200
            await send({"type": "http.response.start", "status": 200, "headers": _SSE + extra})
            await _event(send, raw)
            while not final:
                item = await self._next(front, waiter, gone)
                if item is None:
                    return 499
                final, raw = item
                await _event(send, raw)
            await send({"type": "http.response.body", "body": b""})
            return 200
        finally:
            gone.cancel()
            front.close_waiter(waiter)

    async def _next(
        self, front: Front, waiter: Waiter, gone: asyncio.Future[None]
    ) -> tuple[bool, bytes] | None:
        if not waiter.queue.empty():
            return waiter.queue.get_nowait()
        getter = asyncio.ensure_future(waiter.queue.get())
        watched: set[asyncio.Future[Any]] = {getter, gone}
        done, _ = await asyncio.wait(
            watched,
            timeout=self.settings.upstream_timeout_s,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if getter in done:
            return getter.result()
        getter.cancel()
        if gone in done:
            await front.cancel(waiter)
            return None
        await front.cancel(waiter)
        seconds = f"{self.settings.upstream_timeout_s:g}"
        return True, _rpc_error(
            UPSTREAM_TIMEOUT, f"the upstream did not answer within {seconds} s", waiter.client_rid
        )

    async def _get_stream(
        self,
        principal: Principal,
        access: Access,
        path: str,
        sid: str | None,
        names: list[str],
        receive: Receive,
        send: Send,
    ) -> int:
        if sid is None:
            raise _Reply(405, {"error": "method_not_allowed"}, [(b"allow", b"POST")])
        live = await self._live(principal, access, path, sid, names)
        front = live.front
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=_STREAM_QUEUE)
        while front.backlog and not queue.full():
            queue.put_nowait(front.backlog.popleft())
        front.stream = queue
        gone = asyncio.ensure_future(_disconnected(receive))
        await send({"type": "http.response.start", "status": 200, "headers": _SSE})
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {getter, gone}, timeout=_KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED
                )
                if gone in done:
                    getter.cancel()
                    return 200
                if getter in done:
                    await _event(send, getter.result())
                else:
                    getter.cancel()
                    if front.closed:  # the session ended (DELETE, a rebuild): so does its stream
                        return 200
                    await send(
                        {
                            "type": "http.response.body",
                            "body": b": keep-alive\n\n",
                            "more_body": True,
                        }
                    )
        finally:
            gone.cancel()
            if front.stream is queue:
                front.stream = None
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b""})

    async def _delete(
        self, principal: Principal, access: Access, path: str, sid: str | None, send: Send
    ) -> int:
        if sid is None:
            raise _Reply(405, {"error": "method_not_allowed"}, [(b"allow", b"POST")])
        state = self._open(principal, access, path, sid)
        await self.state.session_revoke(state.sid, max(1.0, state.expires - time.time()))
        live = self.hub.sessions.pop(state.sid, None)
        if live is not None:
            await live.front.close()
        self.metrics.sessions(len(self.hub.sessions))
        await _send_simple(send, 204, b"", json=False)
        return 204

    # -- approvals -------------------------------------------------------------------------

    async def _approvals(
        self, headers: dict[str, str], path: str, verb: str, receive: Receive, send: Send
    ) -> int:
        from portcullis.serve.approvals import public_entry

        principal = await self._authenticate(headers)
        access = access_for(self.settings, principal, list(self.policy.servers))
        await self._limit(principal, access)
        if path == "/approvals" and verb == "GET":
            entries = [
                public_entry(r)
                for r in await self.state.approval_list()
                if may_approve(self.settings, principal, str(r.get("requester", "")))
                and r.get("owner", "") != f"{principal.kind}:{principal.name}"
            ]
            await _send_simple(send, 200, msgspec.json.encode({"approvals": entries}))
            return 200
        rid = path[len("/approvals/") :]
        if verb != "POST" or not rid or "/" in rid:
            raise _Reply(405, {"error": "method_not_allowed"}, [(b"allow", b"GET, POST")])
        body = await _read_body(receive, headers, 64 * 1024)
        try:
            answer = msgspec.json.decode(body)
        except msgspec.DecodeError:
            raise _Reply(
                400, {"error": "invalid_request", "error_description": "not JSON"}
            ) from None
        decision = answer.get("decision") if isinstance(answer, dict) else None
        if decision not in ("approve", "deny"):
            raise _Reply(
                400,
                {"error": "invalid_request", "error_description": 'decision: "approve" or "deny"'},
            )
        record = await self.state.approval_get(rid)
        if record is None:
            raise _Reply(404, {"error": "not_found", "error_description": "no such question"})
        if not may_approve(self.settings, principal, str(record.get("requester", ""))):
            # The same answer as for an unknown id: who asked what stays private.
            raise _Reply(404, {"error": "not_found", "error_description": "no such question"})
        mine = f"{principal.kind}:{principal.name}"
        if record.get("owner", mine) == mine:
            # The agent that made the call holds the same credential: it must not wave its own
            # call through (a question that names no owner is treated as the caller's own).
            raise _Reply(
                403,
                {"error": "forbidden", "error_description": "nobody may approve their own call"},
            )
        code = answer.get("code")
        if decision == "approve" and code != record.get("code"):
            raise _Reply(
                400,
                {"error": "invalid_request", "error_description": "repeat the question's code"},
            )
        outcome = {
            "outcome": "approved" if decision == "approve" else "denied",
            "approver": principal.name,
            "for_session": bool(answer.get("for_session")),
        }
        if not await self.state.approval_answer(rid, outcome):
            raise _Reply(409, {"error": "conflict", "error_description": "already answered"})
        await _send_simple(send, 200, msgspec.json.encode({"id": rid, **outcome}))
        return 200


# -- HTTP helpers ----------------------------------------------------------------------------


# Headers that decide who is calling, where to and what: sent twice, they are ambiguous (a
# proxy may check one copy and this gateway read the other), so the request is refused.
_SINGLE: Final = frozenset(
    {
        "authorization",
        "host",
        "origin",
        "content-length",
        "content-type",
        "mcp-session-id",
        "mcp-protocol-version",
        "mcp-method",
        "mcp-name",
    }
)


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in scope["headers"]:
        name = key.decode("latin-1").lower()
        if name in out and name in _SINGLE:
            raise _Reply(
                400,
                {"error": "invalid_request", "error_description": f"{name} header sent twice"},
            )
        out.setdefault(name, value.decode("latin-1"))
    return out


async def _read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    length = headers.get("content-length")
    if length is not None and (not (length.isascii() and length.isdigit()) or int(length) > limit):
        raise _Reply(413, _rpc_error(-31901, f"request body over {limit} bytes"))
    ctype = headers.get("content-type", "")
    if not ctype.lower().startswith("application/json"):
        raise _Reply(415, _rpc_error(-32600, "Content-Type must be application/json"))
    parts: list[bytes] = []
    size = 0
    deadline = asyncio.get_running_loop().time() + _BODY_TIMEOUT_S
    while True:
        # A client that trickles its body (slowloris) may not hold a request open forever.
        left = deadline - asyncio.get_running_loop().time()
        try:
            message = await asyncio.wait_for(receive(), max(left, 0.001))
        except TimeoutError:
            raise _Reply(408, _rpc_error(-32600, "the request body was not sent in time")) from None
        if message["type"] == "http.disconnect":
            raise _Reply(400, b"")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _Reply(413, _rpc_error(-31901, f"request body over {limit} bytes"))
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _send_simple(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    json: bool = True,
) -> None:
    head = list(_JSON) if json and body else []
    head += headers or []
    head.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def _event(send: Send, raw: bytes) -> None:
    # JSON may hold line breaks between tokens (an HTTP upstream pretty-printing): each line
    # becomes a data: line, which the client joins back with "\n".
    if b"\n" in raw or b"\r" in raw:
        lines = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        data = b"".join(b"data: " + line + b"\n" for line in lines)
    else:
        data = b"data: " + raw + b"\n"
    await send(
        {
            "type": "http.response.body",
            "body": b"event: message\n" + data + b"\n",
            "more_body": True,
        }
    )


def _modern_meta(body: bytes, frame: fr.Frame) -> str | None:
    msg = fr.loads_fast(body)
    params = msg.get("params") if isinstance(msg, dict) else None
    meta = params.get("_meta") if isinstance(params, dict) else None
    version = meta.get(MODERN_KEY) if isinstance(meta, dict) else None
    return version if isinstance(version, str) else None


def _check_mirrored(headers: dict[str, str], body: bytes, frame: fr.Frame, version: str) -> None:
    """2026-07-28: the Mcp-* headers must say what the body says (else 400, -32020)."""
    problems = []
    if headers.get("mcp-protocol-version") != version:
        problems.append("MCP-Protocol-Version")
    if headers.get("mcp-method") != frame.method:
        problems.append("Mcp-Method")
    field = _NAMED_HEADER.get(frame.method or "")
    if field is not None:
        msg = fr.loads_fast(body)
        params = msg.get("params") if isinstance(msg, dict) else None
        value = params.get(field) if isinstance(params, dict) else None
        if value is None or _header_value(headers.get("mcp-name")) != value:
            problems.append("Mcp-Name")
    if problems:
        raise _Reply(
            400,
            _rpc_error(
                HEADER_MISMATCH,
                f"{', '.join(problems)} does not match the request body",
                frame.id,
            ),
        )


def _header_value(value: str | None) -> str | None:
    # Values that are not plain ASCII travel as =?base64?...?= (2026-07-28 transports).
    if value is not None and value.startswith("=?base64?") and value.endswith("?="):
        import base64

        with contextlib.suppress(ValueError, UnicodeDecodeError):
            return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
        return None
    return value


def _fingerprint(access: Access) -> str:
    """A digest of what ``access`` lets its principal reach and do (not when it expires)."""
    import hashlib

    what = (access.principal.servers, access.servers, access.tools, access.matched)
    return hashlib.sha256(msgspec.msgpack.encode(what)).hexdigest()[:32]
