"""An upstream MCP server reached over Streamable HTTP: a raw JSON-RPC client for both eras.

No SDK: frames are forwarded as the bytes they are, and only an envelope is peeked at (the
method, the id, the 2026 ``_meta`` protocol version, the name a request is about). Every POST
runs in its own task, so :meth:`HttpUpstream.send` returns at once; what the server answers
(JSON, or the messages of an SSE stream) goes to ``on_frame``. A request the server cannot
answer (HTTP error, connection failure, timeout) is answered here with a JSON-RPC error
(-31902) naming the upstream, never its credentials.

Two eras (research notes §3.2, §3.3):

* 2026-07-28: a request whose ``params._meta`` names ``io.modelcontextprotocol/protocolVersion``
  gets ``MCP-Protocol-Version``, ``Mcp-Method`` and ``Mcp-Name`` headers mirrored from its body,
  no session; closing the response stream cancels the request.
* legacy: the ``Mcp-Session-Id`` and the negotiated version from ``initialize`` are sent on every
  later message; a 404 for our session means it expired, and it is re-initialized once,
  transparently; a GET stream carries server-initiated messages; cancellation is a
  ``notifications/cancelled`` message.

Headers are built here and nowhere else: the front client's ``Authorization``, cookies and
session id never reach the upstream, and nothing in a frame can name a header.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.cookiejar
import re
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import httpx2
import msgspec

from portcullis._exceptions import ConfigError, GatewayError
from portcullis.gateway.frames import (
    UPSTREAM_GONE,
    FrameError,
    Oversize,
    decode_frame,
    encode,
    error_response,
    guess_id,
)
from portcullis.serve.transport import FastTransport

__all__ = ["HttpUpstream", "SSEEvent", "SSEParser", "encode_header_value"]

_EDGE: Final = 4096
_ERROR_BODY_CAP: Final = 1 << 16
_LISTEN_RETRIES: Final = 5
_DELETE_TIMEOUT_S: Final = 5.0
_META_VERSION: Final = "io.modelcontextprotocol/protocolVersion"
_NAME_KEYS: Final = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
# Headers this module owns; configured headers may not set them (the protocol depends on them).
_RESERVED: Final = frozenset(
    {
        "accept",
        "connection",
        "content-length",
        "content-type",
        "host",
        "last-event-id",
        "mcp-method",
        "mcp-name",
        "mcp-protocol-version",
        "mcp-session-id",
        "transfer-encoding",
    }
)
_HEADER_SAFE: Final = re.compile(r"[\x20-\x7e]*")
_SENTINEL: Final = re.compile(r"=\?base64\?.*\?=")
_SESSION_ID: Final = re.compile(r"[\x21-\x7e]{1,1024}")
_EOL: Final = re.compile(rb"[\r\n]")
_FIELD_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def encode_header_value(value: str) -> str:
    """``value`` as an HTTP field value: verbatim when safe, else ``=?base64?…?=`` (2026 spec).

    Safe is printable ASCII without edge whitespace that does not itself look like the sentinel;
    anything else (control characters, CR/LF, non-ASCII) is wrapped so it cannot split a header.
    """
    if _HEADER_SAFE.fullmatch(value) and value == value.strip() and not _SENTINEL.fullmatch(value):
        return value
    return f"=?base64?{base64.b64encode(value.encode('utf-8', 'surrogatepass')).decode()}?="


# -- SSE (pure) -------------------------------------------------------------------------------


class SSEEvent(msgspec.Struct, frozen=True):
    """One dispatched server-sent event; ``data`` is an :class:`Oversize` past the cap."""

    event: str
    data: bytes | Oversize
    id: str | None


class SSEParser:
    r"""An incremental ``text/event-stream`` parser (WHATWG HTML §9.2.6) with a per-event cap.

    Lines end in CRLF, CR or LF (also split across chunks); ``data:`` lines are joined with
    ``\n``; comments and unknown fields are ignored. An event whose data exceeds ``max_bytes``
    is not kept: only its size and first and last bytes are (memory stays bounded), and it is
    dispatched as an :class:`Oversize`. The SDK's client caps events at 1 MiB; this one uses the
    policy's ``max_message_bytes``.
    """

    def __init__(self, max_bytes: int) -> None:
        """Parse events of at most ``max_bytes`` bytes of data."""
        self.max_bytes = max_bytes
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None
        self._line = bytearray()
        self._line_cap = max_bytes + 16  # room for the field name: "data: "
        self._line_over = False  # the rest of an oversize data line is being discarded
        self._line_skip = False  # the rest of an oversize non-data line is being discarded
        self._after_cr = False
        self._first_line = True  # a byte order mark may start it
        self._parts: list[bytes] = []
        self._size = 0
        self._has_data = False
        self._over: Oversize | None = None
        self._event = ""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Add bytes of the stream; return the events they complete."""
        out: list[SSEEvent] = []
        pos, n = 0, len(chunk)
        if self._after_cr and chunk[pos : pos + 1] == b"\n":
            pos += 1
        if chunk:
            self._after_cr = False
        while pos < n:
            match = _EOL.search(chunk, pos)
            if match is None:
                self._append(chunk[pos:])
                break
            end = match.start()
            self._append(chunk[pos:end])
            self._end_line(out)
            pos = end + 1
            if chunk[end] == 0x0D:
                if pos == n:
                    self._after_cr = True  # a LF may start the next chunk
                elif chunk[pos] == 0x0A:
                    pos += 1
        return out

    def _append(self, piece: bytes) -> None:
        if not piece or self._line_skip:
            return
        if self._line_over:
            assert self._over is not None
            self._over.size += len(piece)
            self._over.tail = (self._over.tail + piece)[-_EDGE:]
            return
        self._line += piece
        if len(self._line) > self._line_cap:
            self._overflow_line()

    def _take_line(self) -> bytes:
        line = bytes(self._line)
        self._line.clear()
        if self._first_line:
            self._first_line = False
            line = line.removeprefix(b"\xef\xbb\xbf")
        return line

    def _overflow_line(self) -> None:
        field, sep, value = self._take_line().partition(b":")
        if field != b"data" or not sep:
            self._line_skip = True  # a huge comment or unknown field: nothing to keep
            return
        if value[:1] == b" ":
            value = value[1:]
        self._add_data(value, force=True)
        self._line_over = True

    def _add_data(self, value: bytes, *, force: bool = False) -> None:
        extra = len(value) + (1 if self._has_data else 0)
        if self._over is not None:
            self._over.size += extra
            self._over.tail = (self._over.tail + b"\n" + value)[-_EDGE:]
        elif force or self._size + extra > self.max_bytes:
            joined = b"\n".join([*self._parts, value]) if self._has_data else value
            self._over = Oversize(len(joined), joined[:_EDGE], joined[-_EDGE:])
            self._parts, self._size = [], 0
        else:
            self._parts.append(value)
            self._size += extra
        self._has_data = True

    def _end_line(self, out: list[SSEEvent]) -> None:
        if self._line_over or self._line_skip:
            self._line_over = self._line_skip = False
            return
        line = self._take_line()
        if not line:
            self._dispatch(out)
            return
        if line[0] == 0x3A:  # ":" a comment (keep-alive)
            return
        field, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            self._add_data(value)
        elif field == b"event":
            self._event = value.decode("utf-8", "replace")
        elif field == b"id":
            if b"\0" not in value:
                self.last_event_id = value.decode("utf-8", "replace")
        elif field == b"retry" and value.isdigit():
            self.retry_ms = int(value)

    def _dispatch(self, out: list[SSEEvent]) -> None:
        if self._has_data:
            data: bytes | Oversize = (
                self._over if self._over is not None else b"\n".join(self._parts)
            )
            out.append(SSEEvent(self._event or "message", data, self.last_event_id))
        self._parts, self._size, self._has_data, self._over, self._event = [], 0, False, None, ""


# -- envelope peeks -------------------------------------------------------------------------


class _MetaPeek(msgspec.Struct):
    version: Any = msgspec.field(default=None, name=_META_VERSION)


class _ParamsPeek(msgspec.Struct):
    meta: _MetaPeek | None = msgspec.field(default=None, name="_meta")
    name: Any = None
    uri: Any = None


class _ResultPeek(msgspec.Struct):
    protocolVersion: Any = None  # the wire name


class _ResponsePeek(msgspec.Struct):
    result: _ResultPeek | None = None


class _Call:
    """One message on its way to the upstream, with what its headers need."""

    __slots__ = ("answered", "id", "method", "modern", "name", "raw", "request")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.request = False
        self.id: Any = None
        self.method: str | None = None
        self.modern: str | None = None  # the 2026 protocol version from _meta
        self.name: str | None = None
        self.answered = False
        try:
            frame = decode_frame(raw)
        except FrameError:
            return  # forwarded as it is; the session decided to send it
        self.request = frame.kind == "request"
        self.id = frame.id
        self.method = frame.method
        if frame.method is None or not frame.has_params:
            return
        try:
            params = msgspec.json.decode(
                msgspec.json.decode(raw, type=dict[str, msgspec.Raw])["params"], type=_ParamsPeek
            )
        except (msgspec.DecodeError, KeyError):
            return
        if params.meta is not None and isinstance(params.meta.version, str):
            self.modern = params.meta.version
        key = _NAME_KEYS.get(frame.method)
        value = getattr(params, key) if key else None
        self.name = value if isinstance(value, str) else None


def _key(rid: Any) -> tuple[bool, Any]:
    # 1 and "1" are different requests.
    return (isinstance(rid, str), rid)


def _same_id(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _ignore_frame(_frame: bytes | Oversize) -> None:
    return None


def _ignore_gone(_status: int | None) -> None:
    return None


class HttpUpstream:
    """A Streamable HTTP client session with one remote MCP server (both eras).

    ``headers`` are the upstream's own, already resolved credentials and settings; nothing of
    the front request is ever forwarded. ``on_gone(None)`` is called only when an expired legacy
    session cannot be re-initialized; other failures are answered per request (-31902).
    TLS certificates are always verified; redirects are not followed (credentials stay with
    the configured origin).
    """

    def __init__(
        self,
        name: str,
        url: str,
        *,
        headers: Mapping[str, str],
        max_message_bytes: int,
        timeout_s: float,
        log: Callable[[str], None],
        client: httpx2.AsyncClient | None = None,
    ) -> None:
        """Describe the upstream; ``client`` (shared, caller-owned) or one made in :meth:`start`."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f'the upstream "{name}" needs an http(s) URL')
        lowered: dict[str, str] = {}
        for key, value in headers.items():
            if key.lower() in _RESERVED:
                raise ConfigError(
                    f'the upstream "{name}": header {key!r} is set by the gateway itself'
                )
            if not _FIELD_NAME.fullmatch(key) or any(c in value for c in "\r\n\x00"):
                # Caught here, with the header named, instead of failing every request later.
                raise ConfigError(
                    f'the upstream "{name}": header {key!r} has an invalid name, or its value '
                    "contains a line break or NUL"
                )
            lowered[key.lower()] = value
        self.name = name
        self.url = url
        self._url = httpx2.URL(url)  # parsed once, not per request
        self.max_message_bytes = max_message_bytes
        self.timeout_s = timeout_s
        self.log = log
        self.on_frame: Callable[[bytes | Oversize], None] = _ignore_frame
        self.on_gone: Callable[[int | None], None] = _ignore_gone
        # Where logs say the upstream is: never its userinfo, path or query (they may be keys).
        self._where = f"{parts.scheme}://{parts.hostname}" + (
            f":{parts.port}" if parts.port else ""
        )
        self._headers = lowered
        self._client = client
        self._own_client = client is None
        self._timeout = httpx2.Timeout(connect=10.0, read=timeout_s, write=30.0, pool=10.0)
        self._session_id: str | None = None
        self._version: str | None = None
        self._init_raw: bytes | None = None
        self._initialized_raw: bytes | None = None
        # In-flight requests: their task, and whether they are legacy (cancelled by message).
        self._inflight: dict[tuple[bool, Any], tuple[asyncio.Task[None], bool]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._chain: asyncio.Task[None] | None = None  # the last notification/response sent
        self._listener: asyncio.Task[None] | None = None
        self._reinit_lock = asyncio.Lock()
        self._closing = False

    # -- the Upstream protocol ----------------------------------------------------------------

    async def start(self) -> None:
        """Create the HTTP client (nothing is sent before the first message)."""
        if self._closing:
            raise GatewayError(f'the upstream "{self.name}" is closed')
        if self._client is None:
            # No cookie is ever stored or sent: one upstream session's cookies must not
            # become another's credentials.
            jar = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
            # FastTransport: HTTP/1.1 keep-alive on asyncio streams (httpcore2 is the bottleneck);
            # trust_env off: no proxy or .netrc from the environment.
            self._client = httpx2.AsyncClient(
                transport=FastTransport(max_connections=32, max_keepalive_connections=8),
                timeout=self._timeout,
                cookies=jar,
                follow_redirects=False,
                trust_env=False,
            )

    async def send(self, raw: bytes) -> None:
        """POST one message in a task of its own; answers arrive through ``on_frame``."""
        if self._client is None or self._closing:
            raise GatewayError(f'the upstream "{self.name}" is not open')
        call = _Call(raw)
        if call.modern is None and call.method == "initialize":
            self._init_raw = raw
            self._session_id = None  # a new initialize starts a new session
            self._version = None
        elif call.modern is None and call.method == "notifications/initialized":
            self._initialized_raw = raw
        after = self._chain
        task = asyncio.create_task(self._run(call, after), name=f"upstream-{self.name}-post")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if call.request:
            key = _key(call.id)
            self._inflight[key] = (task, call.modern is None)
            task.add_done_callback(lambda t: self._forget(key, t))
        else:
            # Notifications and responses go out in order (initialized before anything
            # else, cancelled after what it cancels): each waits for the previous one.
            self._chain = task

    async def cancel(self, rid: Any) -> None:
        """Stop request ``rid``: close its response stream, and for legacy send a cancel.

        Closing the stream is the 2026 cancellation signal; a legacy server is told with
        ``notifications/cancelled`` (a disconnect is not a cancellation there).
        """
        entry = self._inflight.pop(_key(rid), None)
        if entry is None:
            return
        task, legacy = entry
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if legacy and not self._closing:
            note = encode(
                {
                    "jsonrpc": "2.0",
                    "method": "notifications/cancelled",
                    "params": {"requestId": rid, "reason": "the client went away"},
                }
            )
            await self.send(note)

    async def close(self) -> None:
        """Cancel everything in flight, end a legacy session (DELETE), close our client."""
        if self._closing:
            return
        self._closing = True
        tasks = [*self._tasks, *([self._listener] if self._listener else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        client = self._client
        if client is None:
            return
        if self._session_id is not None:
            headers = self._base_headers(accept="application/json, text/event-stream")
            headers["mcp-session-id"] = self._session_id
            if self._version:
                headers["mcp-protocol-version"] = encode_header_value(self._version)
            try:
                request = self._request(
                    "DELETE", headers, timeout=httpx2.Timeout(_DELETE_TIMEOUT_S)
                )
                response = await client.send(request)
                await response.aclose()
            except httpx2.HTTPError as exc:  # the session expires on its own anyway
                self.log(
                    f'portcullis: upstream "{self.name}": ending the session failed '
                    f"({type(exc).__name__})"
                )
        if self._own_client:
            await client.aclose()

    def state(self) -> dict[str, Any]:
        """The legacy upstream session as it stands (for logs and tests)."""
        return {"session_id": self._session_id, "protocol_version": self._version}

    def start_listening(self) -> None:
        """Open the legacy GET stream for server-initiated messages (idempotent; 405 = none)."""
        if self._listener is None and not self._closing and self._client is not None:
            self._listener = asyncio.create_task(
                self._listen(), name=f"upstream-{self.name}-listen"
            )

    # -- posting -------------------------------------------------------------------------------

    def _forget(self, key: tuple[bool, Any], task: asyncio.Task[None]) -> None:
        entry = self._inflight.get(key)
        if entry is not None and entry[0] is task:
            del self._inflight[key]

    async def _run(self, call: _Call, after: asyncio.Task[None] | None) -> None:
        if after is not None and not after.done():
            await asyncio.wait([after])
        try:
            status, sent_sid = await self._exchange(call, self.on_frame)
            if status == 404 and sent_sid is not None and call.method != "initialize":
                if not await self._reinitialize(sent_sid):
                    self._fail(call, "ended the session and re-initializing it failed")
                    self._gone()
                    return
                status, _ = await self._exchange(call, self.on_frame)
            if status >= 300 and not call.answered:
                self._fail(call, f"answered HTTP {status}")
            elif status < 300 and status != 202 and call.request and not call.answered:
                self._fail(call, "ended its response before answering")
            elif status < 300 and call.method == "notifications/initialized" and not call.modern:
                self.start_listening()
        except httpx2.TimeoutException:
            self._fail(call, f"did not answer within {self.timeout_s:g} s")
        except httpx2.HTTPError as exc:
            self._fail(call, f"could not be reached ({type(exc).__name__})")
        except Exception as exc:  # fail closed: the request is answered, never left hanging
            self._fail(call, f"failed ({type(exc).__name__})")

    def _fail(self, call: _Call, why: str) -> None:
        if self._closing:
            return
        what = call.method or "a response"
        self.log(f'portcullis: upstream "{self.name}" ({self._where}) {why} ({what})')
        if call.request and not call.answered:
            call.answered = True
            message = f'the upstream MCP server "{self.name}" {why}'
            self._deliver(error_response(call.id, UPSTREAM_GONE, message), self.on_frame)

    def _gone(self) -> None:
        try:
            self.on_gone(None)
        except Exception as exc:
            self.log(f'portcullis: error handling the loss of "{self.name}": {exc!r}')

    def _base_headers(self, *, accept: str) -> dict[str, str]:
        headers = dict(self._headers)
        headers["accept"] = accept
        return headers

    def _headers_for(self, call: _Call) -> dict[str, str]:
        headers = self._base_headers(accept="application/json, text/event-stream")
        headers["content-type"] = "application/json"
        if call.modern is not None:
            headers["mcp-protocol-version"] = encode_header_value(call.modern)
            if call.method is not None:
                headers["mcp-method"] = encode_header_value(call.method)
            if call.name is not None:
                headers["mcp-name"] = encode_header_value(call.name)
        elif call.method != "initialize":
            if self._session_id is not None:
                headers["mcp-session-id"] = self._session_id
            if self._version is not None:
                headers["mcp-protocol-version"] = encode_header_value(self._version)
        return headers

    def _request(
        self,
        method: str,
        headers: dict[str, str],
        *,
        content: bytes | None = None,
        timeout: httpx2.Timeout | None = None,
    ) -> httpx2.Request:
        timeout = timeout or self._timeout
        # A bare Request: a shared client's default headers and cookies are not merged in.
        return httpx2.Request(
            method,
            self._url,
            headers=headers,
            content=content,
            extensions={"timeout": timeout.as_dict()},
        )

    async def _exchange(
        self, call: _Call, sink: Callable[[bytes | Oversize], None]
    ) -> tuple[int, str | None]:
        """POST ``call``; deliver what comes back; return the status and the session id sent."""
        assert self._client is not None
        headers = self._headers_for(call)
        sent_sid = headers.get("mcp-session-id")
        request = self._request("POST", headers, content=call.raw)
        response = await self._client.send(request, stream=True)
        try:
            status = response.status_code
            if status == 404 and sent_sid is not None:
                return status, sent_sid
            if call.method == "initialize" and call.modern is None and status < 300:
                sid = response.headers.get("mcp-session-id")
                if sid is not None and _SESSION_ID.fullmatch(sid):
                    self._session_id = sid
                elif sid is not None:
                    self.log(f'portcullis: upstream "{self.name}" sent an invalid session id')
            ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if status >= 300:
                # A JSON-RPC error for this request (e.g. 400 with -32020) is passed on as is.
                if ctype == "application/json" and call.request:
                    body = await self._read_body(response, _ERROR_BODY_CAP)
                    if isinstance(body, bytes) and _answers(body, call.id):
                        self._deliver_for(call, body, sink)
                return status, sent_sid
            if status in (202, 204):
                return status, sent_sid  # accepted; nothing to deliver
            if ctype == "application/json":
                body = await self._read_body(response)
                if body:
                    self._deliver_for(call, body, sink)
            elif ctype == "text/event-stream":
                await self._read_events(response, call, sink)
            else:
                self.log(f'portcullis: upstream "{self.name}" answered with {ctype or "no type"}')
            return status, sent_sid
        finally:
            await response.aclose()

    async def _read_body(self, response: httpx2.Response, cap: int = 0) -> bytes | Oversize:
        cap = cap or self.max_message_bytes
        parts: list[bytes] = []
        size = 0
        over: Oversize | None = None
        async for chunk in response.aiter_bytes():
            if over is not None:
                over.size += len(chunk)
                over.tail = (over.tail + chunk)[-_EDGE:]
                continue
            parts.append(chunk)
            size += len(chunk)
            if size > cap:
                joined = b"".join(parts)
                over = Oversize(size, joined[:_EDGE], joined[-_EDGE:])
                parts = []
        return over if over is not None else b"".join(parts).strip()

    async def _read_events(
        self,
        response: httpx2.Response,
        call: _Call | None,
        sink: Callable[[bytes | Oversize], None],
    ) -> SSEParser:
        parser = SSEParser(self.max_message_bytes)
        async for chunk in response.aiter_bytes():
            for event in parser.feed(chunk):
                if event.event != "message" or event.data == b"":
                    continue  # priming events (an id, no data) and foreign event types
                if call is None:
                    self._deliver(event.data, sink)
                else:
                    self._deliver_for(call, event.data, sink)
        return parser

    def _deliver_for(
        self, call: _Call, item: bytes | Oversize, sink: Callable[[bytes | Oversize], None]
    ) -> None:
        if call.request and not call.answered:
            if isinstance(item, Oversize):
                call.answered = _same_id(guess_id(item.head, item.tail), call.id)
            elif _answers(item, call.id):
                call.answered = True
                if call.method == "initialize" and call.modern is None:
                    self._note_version(item)
        self._deliver(item, sink)

    def _note_version(self, body: bytes) -> None:
        with contextlib.suppress(msgspec.DecodeError):
            peek = msgspec.json.decode(body, type=_ResponsePeek)
            if peek.result is not None and isinstance(peek.result.protocolVersion, str):
                self._version = peek.result.protocolVersion

    def _deliver(self, item: bytes | Oversize, sink: Callable[[bytes | Oversize], None]) -> None:
        if self._closing:
            return
        try:
            sink(item)
        except Exception as exc:
            self.log(f'portcullis: error handling a frame from "{self.name}": {exc!r}')

    # -- legacy session upkeep ---------------------------------------------------------------

    async def _reinitialize(self, expired: str) -> bool:
        """Replay initialize + initialized after a 404; True when a new session is in place."""
        async with self._reinit_lock:
            if self._session_id != expired:
                return self._session_id is not None  # another task re-initialized already
            if self._init_raw is None:
                return False
            self.log(f'portcullis: upstream "{self.name}": session expired; re-initializing')
            self._session_id = None

            def swallow(_item: bytes | Oversize) -> None:
                return None  # the client has its initialize result already

            init = _Call(self._init_raw)
            try:
                status, _ = await self._exchange(init, swallow)
                if status >= 300 or self._session_id is None:
                    return False
                if self._initialized_raw is not None:
                    status, _ = await self._exchange(_Call(self._initialized_raw), swallow)
            except httpx2.HTTPError as exc:
                self.log(
                    f'portcullis: upstream "{self.name}": re-initializing failed '
                    f"({type(exc).__name__})"
                )
                self._session_id = None
                return False
            return status < 300

    async def _listen(self) -> None:
        """Hold the GET stream open; reconnect with Last-Event-ID, at most a few times in a row."""
        assert self._client is not None
        failures = 0
        last_id: str | None = None
        while not self._closing and failures < _LISTEN_RETRIES and self._session_id:
            headers = self._base_headers(accept="text/event-stream")
            headers["mcp-session-id"] = self._session_id
            if self._version:
                headers["mcp-protocol-version"] = encode_header_value(self._version)
            if last_id is not None:
                headers["last-event-id"] = encode_header_value(last_id)
            delay = min(30.0, 2.0**failures)
            try:
                response = await self._client.send(self._request("GET", headers), stream=True)
                try:
                    if response.status_code == 405:
                        return  # the server offers no GET stream
                    if response.status_code == 404:
                        sid = self._session_id
                        if sid is None or not await self._reinitialize(sid):
                            self._gone()
                            return
                        failures += 1
                        continue
                    if response.status_code != 200:
                        self.log(
                            f'portcullis: upstream "{self.name}" refused its event stream '
                            f"(HTTP {response.status_code})"
                        )
                        failures += 1
                    else:
                        failures = 0
                        parser = await self._read_events(response, None, self.on_frame)
                        last_id = parser.last_event_id or last_id
                        if parser.retry_ms is not None:
                            delay = min(30.0, parser.retry_ms / 1000)
                finally:
                    await response.aclose()
            except httpx2.ReadTimeout:
                delay = 0.0  # a quiet stream is healthy; reopen it
            except Exception as exc:  # HTTP or otherwise: retry a bounded number of times
                failures += 1
                self.log(
                    f'portcullis: upstream "{self.name}": event stream dropped '
                    f"({type(exc).__name__})"
                )
            await asyncio.sleep(delay)
        if failures >= _LISTEN_RETRIES:
            self.log(f'portcullis: upstream "{self.name}": giving up on its event stream')


def _answers(body: bytes, rid: Any) -> bool:
    try:
        frame = decode_frame(body)
    except FrameError:
        return False
    return frame.kind == "response" and _same_id(frame.id, rid)
