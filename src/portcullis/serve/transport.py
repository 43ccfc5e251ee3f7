"""A small, fast HTTP/1.1 transport for httpx2: keep-alive pooling on asyncio streams.

httpx2's default transport (httpcore2 + h11 + anyio) costs far more per request than the
gateway can afford on its upstream leg. :class:`FastTransport` does the same job for what
:class:`~portcullis.serve.upstream_http.HttpUpstream` needs, and nothing more:

* HTTP/1.1 only, over ``asyncio.open_connection`` (uvloop in the server), responses parsed by
  httptools' C parser; request bodies are sent with ``Content-Length``;
* response bodies (``Content-Length``, chunked, or delimited by the close of the connection)
  are handed to httpx2 as an async byte stream, read from the socket as they are consumed, so
  an SSE stream is never buffered whole;
* keep-alive pooling per origin with a limit on open connections; a connection goes back to
  the pool only once its response was read to the end and both sides allow keep-alive;
* TLS with certificate and hostname verification (``ssl.create_default_context()`` unless a
  context is given), ALPN ``http/1.1``;
* timeouts from ``request.extensions["timeout"]`` and failures mapped to httpx2's exceptions
  (``ConnectTimeout``, ``ReadTimeout``, ``WriteTimeout``, ``PoolTimeout``, ``ConnectError``,
  ``ReadError``, ``WriteError``, ``RemoteProtocolError``, ``LocalProtocolError``);
* no proxies, redirects or cookies (the client above decides about the last two).

Retries: a request is re-sent, once and on a fresh connection, only when it went out on a
*pooled* connection that turned out to be stale: writing failed, or the connection ended
(EOF or reset) before a single byte of a response arrived. That is the keep-alive race of
RFC 9112 §9.3.1: the server closed an idle connection while our request was in flight, so it
cannot have processed it (a server that reads a request and then closes without answering
breaks HTTP/1.1). A request on a new connection is never retried, nor is one whose response
had begun, so a POST is never sent twice to a server that may have acted on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Final

import httptools
import httpx2

__all__ = ["FastTransport"]

_READ_SIZE: Final = 1 << 16
_MAX_HEADER_BYTES: Final = 1 << 16
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE: Final = re.compile(rb"[\r\n\x00]")
_BAD_TARGET: Final = re.compile(rb"[\x00-\x20\x7f]")
_NO_BODY_STATUS: Final = frozenset({204, 304})
_Origin = tuple[bytes, bytes, int]


class _Stale(Exception):
    """A pooled connection failed before the server can have seen the request."""


class _Conn:
    """One open HTTP/1.1 connection."""

    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self, now: float, expiry: float) -> bool:
        """Whether an idle connection may carry another request (not closed, not expired)."""
        return (
            now - self.idle_since < expiry
            and not self.reader.at_eof()
            and self.reader.exception() is None
            and not self.writer.is_closing()
        )

    def close(self) -> None:
        """Drop the connection at once (no graceful TLS shutdown: nothing more is sent)."""
        self.writer.transport.abort()


class _Pool:
    """The connections to one origin: a limit on open ones, and the idle ones, newest last."""

    __slots__ = ("idle", "slots")

    def __init__(self, limit: int) -> None:
        self.slots = asyncio.Semaphore(limit)
        self.idle: deque[_Conn] = deque()


class _Parsed:
    """httptools callbacks: the response head, body pieces, and where the message stands."""

    __slots__ = (
        "begun",
        "body",
        "complete",
        "extra",
        "fed",
        "head_bytes",
        "headers",
        "headers_done",
        "informational",
        "keep_alive",
        "parser",
        "reason",
        "status",
    )

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0  # the header block as parsed
        self.fed = 0  # raw bytes fed before the head was complete (bounds a partial line)
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.informational = False
        self.begun = 0
        self.extra = False  # bytes after the response: the connection is not reusable
        self.status = 0
        self.reason = b""
        self.body: list[bytes] = []

    def on_message_begin(self) -> None:
        if self.complete:
            self.extra = True
        self.begun += 1

    def on_status(self, status: bytes) -> None:
        self.head_bytes += len(status)
        self.reason = status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.informational = True  # 100 Continue, 103 Early Hints: skipped
            self.headers = []
            return
        self.status = status
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        # llhttp forgets this once the call that completed the message returns.
        self.keep_alive = self.parser.should_keep_alive()
        self.complete = True


def _timeouts(
    request: httpx2.Request,
) -> tuple[float | None, float | None, float | None, float | None]:
    timeout: Any = request.extensions.get("timeout") or {}
    return (
        timeout.get("connect"),
        timeout.get("read"),
        timeout.get("write"),
        timeout.get("pool"),
    )


def _head(request: httpx2.Request, body: bytes) -> bytes:
    """The request line and header block, refusing anything that could split them."""
    method = request.method.encode("ascii", "replace")  # "?" is no token char: refused
    target = request.url.raw_path
    if not _TOKEN.fullmatch(method):
        raise httpx2.LocalProtocolError("invalid HTTP method")
    if not target or _BAD_TARGET.search(target):
        raise httpx2.LocalProtocolError("invalid request target")
    lines = [method, b" ", target, b" HTTP/1.1\r\n"]
    has_host = False
    had_length = False
    for name, value in request.headers.raw:
        if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
            raise httpx2.LocalProtocolError("invalid header name or value (CR, LF or NUL)")
        lower = name.lower()
        if lower in (b"content-length", b"transfer-encoding"):
            had_length = True  # replaced below: the body is always sent with a length
            continue
        if lower == b"host":
            has_host = True
        lines += (name, b": ", value, b"\r\n")
    if not has_host:
        host = request.url.netloc
        if _BAD_VALUE.search(host):
            raise httpx2.LocalProtocolError("invalid host")
        lines += (b"Host: ", host, b"\r\n")
    if body or had_length:
        lines += (b"Content-Length: ", str(len(body)).encode(), b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


class _Body(httpx2.AsyncByteStream):
    """A response body read from the connection as it is consumed."""

    def __init__(
        self,
        owner: FastTransport,
        pool: _Pool,
        conn: _Conn,
        parsed: _Parsed,
        *,
        read_timeout: float | None,
        until_close: bool,
        reusable: bool,
    ) -> None:
        self._owner = owner
        self._pool = pool
        self._conn: _Conn | None = conn
        self._parsed = parsed
        self._read_timeout = read_timeout
        self._until_close = until_close
        self._reusable = reusable

    async def __aiter__(self) -> AsyncIterator[bytes]:
        parsed = self._parsed
        conn = self._conn
        if conn is None:
            return
        try:
            while True:
                if parsed.body:
                    chunks, parsed.body = parsed.body, []
                    for chunk in chunks:
                        yield chunk
                if parsed.complete:
                    break
                data = await _read(conn, self._read_timeout)
                if not data:
                    if self._until_close:
                        self._reusable = False
                        break
                    raise httpx2.RemoteProtocolError("the server closed the connection mid-body")
                _feed(parsed, data, _MAX_HEADER_BYTES)
            if parsed.body:
                chunks, parsed.body = parsed.body, []
                for chunk in chunks:
                    yield chunk
        except BaseException:
            self._finish(reuse=False)  # a failed or abandoned body: the connection is unusable
            raise
        keep = self._reusable and not parsed.extra and parsed.keep_alive
        self._finish(reuse=keep)

    def _finish(self, *, reuse: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._owner._release(self._pool, conn, reuse=reuse)

    async def aclose(self) -> None:
        """Give the connection back: unread body left means it cannot be reused."""
        self._finish(reuse=False)


async def _read(conn: _Conn, timeout: float | None) -> bytes:
    try:
        if timeout is None:
            return await conn.reader.read(_READ_SIZE)
        async with asyncio.timeout(timeout):
            return await conn.reader.read(_READ_SIZE)
    except TimeoutError:
        raise httpx2.ReadTimeout("timed out reading the response") from None
    except OSError as exc:
        raise httpx2.ReadError(f"reading the response failed ({type(exc).__name__})") from None


def _feed(parsed: _Parsed, data: bytes, max_head: int) -> None:
    in_head = not parsed.headers_done
    if in_head:
        parsed.fed += len(data)
    try:
        parsed.parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        raise httpx2.RemoteProtocolError("unexpected protocol upgrade") from None
    except httptools.HttpParserError as exc:
        raise httpx2.RemoteProtocolError(f"malformed HTTP response ({exc})") from None
    if in_head and (
        parsed.head_bytes > max_head or (not parsed.headers_done and parsed.fed > max_head)
    ):
        raise httpx2.RemoteProtocolError("the response header block is too large")


class FastTransport(httpx2.AsyncBaseTransport):
    """An HTTP/1.1 keep-alive transport for httpx2 on asyncio streams and httptools.

    ``max_connections`` bounds the open connections per origin (a request waits for one up to
    the pool timeout); at most ``max_keepalive_connections`` idle ones are kept per origin, each
    for ``keepalive_expiry`` seconds. ``ssl_context`` replaces the default verifying context
    (e.g. to trust a private CA); verification is never turned off here.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 100,
        max_keepalive_connections: int | None = None,
        keepalive_expiry: float = 5.0,
        max_header_bytes: int = _MAX_HEADER_BYTES,
    ) -> None:
        """Configure the pool; nothing is connected before the first request."""
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if ssl_context is None:
            ssl_context = ssl.create_default_context()
            ssl_context.set_alpn_protocols(["http/1.1"])
        self._ssl = ssl_context
        self._limit = max_connections
        self._keep = (
            max_connections if max_keepalive_connections is None else max_keepalive_connections
        )
        self._expiry = keepalive_expiry
        self._max_head = max_header_bytes
        self._pools: dict[_Origin, _Pool] = {}
        self._open: set[_Conn] = set()
        self._closed = False

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send ``request`` and return its response, whose body streams from the connection."""
        if self._closed:
            raise httpx2.TransportError("the transport is closed")
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx2.UnsupportedProtocol(f"unsupported URL scheme {scheme.decode()!r}")
        port = url.port or (443 if scheme == b"https" else 80)
        origin = (scheme, url.raw_host, port)
        connect_t, read_t, write_t, pool_t = _timeouts(request)
        body = await request.aread()
        data = _head(request, body) + body
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _Pool(self._limit)
        try:
            if pool_t is None:
                await pool.slots.acquire()
            else:
                async with asyncio.timeout(pool_t):
                    await pool.slots.acquire()
        except TimeoutError:
            raise httpx2.PoolTimeout("no connection available in time") from None
        conn: _Conn | None = None
        try:
            conn = self._take_idle(pool)
            if conn is not None:
                try:
                    return await self._exchange(request, pool, conn, data, read_t, write_t)
                except _Stale:
                    conn.close()
                    self._open.discard(conn)
            conn = await self._connect(origin, connect_t)
            try:
                return await self._exchange(request, pool, conn, data, read_t, write_t)
            except _Stale:
                raise httpx2.RemoteProtocolError(
                    "the server closed the connection without a response"
                ) from None
        except BaseException:
            if conn is not None:
                conn.close()
                self._open.discard(conn)
            pool.slots.release()
            raise

    def _take_idle(self, pool: _Pool) -> _Conn | None:
        now = time.monotonic()
        while pool.idle:
            conn = pool.idle.pop()
            if conn.usable(now, self._expiry):
                return conn
            conn.close()
            self._open.discard(conn)
        return None

    async def _connect(self, origin: _Origin, timeout: float | None) -> _Conn:
        scheme, raw_host, port = origin
        host = raw_host.decode("ascii")
        tls = scheme == b"https"
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    ssl=self._ssl if tls else None,
                    server_hostname=host if tls else None,
                    limit=_READ_SIZE,
                )
        except TimeoutError:
            raise httpx2.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except OSError as exc:
            # ssl.SSLCertVerificationError is an OSError: the reason is kept (it holds no secret).
            raise httpx2.ConnectError(f"connecting to {host}:{port} failed: {exc}") from None
        conn = _Conn(reader, writer)
        self._open.add(conn)
        return conn

    async def _exchange(
        self,
        request: httpx2.Request,
        pool: _Pool,
        conn: _Conn,
        data: bytes,
        read_t: float | None,
        write_t: float | None,
    ) -> httpx2.Response:
        """Write the request and read the response head; :class:`_Stale` when safe to resend."""
        reused = conn.idle_since != 0.0
        writer = conn.writer
        try:
            if writer.is_closing():
                raise ConnectionResetError
            writer.write(data)
            if writer.transport.get_write_buffer_size():
                async with asyncio.timeout(write_t):
                    await writer.drain()
        except TimeoutError:
            raise httpx2.WriteTimeout("timed out sending the request") from None
        except (OSError, RuntimeError) as exc:  # uvloop: RuntimeError on a closed handle
            if reused:
                raise _Stale from None
            raise httpx2.WriteError(f"sending the request failed ({type(exc).__name__})") from None
        parsed = _Parsed()
        received = False
        while not parsed.headers_done:
            try:
                chunk = await _read(conn, read_t)
            except httpx2.ReadError:
                if reused and not received:
                    raise _Stale from None
                raise
            if not chunk:
                if reused and not received:
                    raise _Stale
                raise httpx2.RemoteProtocolError("the server closed the connection mid-response")
            received = True
            _feed(parsed, chunk, self._max_head)
        headers = parsed.headers
        chunked = False
        has_length = False
        for name, value in headers:
            lower = name.lower()
            if lower == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif lower == b"content-length":
                has_length = True
        head_only = request.method == "HEAD"
        no_body = head_only or parsed.status in _NO_BODY_STATUS
        until_close = not (chunked or has_length or no_body)
        if head_only:
            parsed.complete = True  # the parser would wait for a body the server won't send
        reusable = not head_only and not _asks_close(request)
        stream = _Body(
            self,
            pool,
            conn,
            parsed,
            read_timeout=read_t,
            until_close=until_close,
            reusable=reusable,
        )
        version = parsed.parser.get_http_version()
        return httpx2.Response(
            parsed.status,
            headers=headers,
            stream=stream,
            extensions={
                "http_version": b"HTTP/" + version.encode(),
                "reason_phrase": parsed.reason,
            },
        )

    def _release(self, pool: _Pool, conn: _Conn, *, reuse: bool) -> None:
        if reuse and not self._closed and len(pool.idle) < self._keep:
            conn.idle_since = time.monotonic()
            pool.idle.append(conn)
        else:
            conn.close()
            self._open.discard(conn)
        pool.slots.release()

    async def aclose(self) -> None:
        """Close every connection, idle or busy; later requests fail."""
        self._closed = True
        for pool in self._pools.values():
            pool.idle.clear()
        conns, self._open = self._open, set()
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()


def _asks_close(request: httpx2.Request) -> bool:
    value = request.headers.get("connection")
    return value is not None and "close" in value.lower()
