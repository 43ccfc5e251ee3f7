"""FastTransport against real servers: uvicorn for ordinary HTTP, a raw asyncio server for bytes.

The raw server (:class:`RawServer`) runs a per-connection script in the test's own event loop and
counts connections and requests, so keep-alive reuse, retries and malformed answers are seen
from the server's side. TLS uses a self-signed certificate generated here with ``cryptography``.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.serve.upstreams import serve_app

from portcullis.serve.transport import FastTransport
from portcullis.serve.upstream_http import HttpUpstream

pytestmark = pytest.mark.anyio

TIMEOUT = 10.0
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

Script = Callable[["RawServer", asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    """One request (head and Content-Length body) off ``reader``; None at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + (await reader.readexactly(length) if length else b"")


class RawServer:
    """An asyncio server on 127.0.0.1 running ``script`` per connection, counting them."""

    def __init__(self, script: Script, ssl_context: ssl.SSLContext | None = None) -> None:
        """Serve ``script``; TLS when ``ssl_context`` is given."""
        self.script = script
        self.ssl_context = ssl_context
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = asyncio.Event()  # a connection was closed by the server
        self.gate = asyncio.Event()  # scripts may wait for the test
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def request(self, reader: asyncio.StreamReader) -> bytes | None:
        """Read one request and record it."""
        raw = await read_request(reader)
        if raw is not None:
            self.requests.append(raw)
        return raw

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            await self.script(self, reader, writer, self.connections)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()
            self.closed.set()
            self._tasks.discard(task)

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", 0, ssl=self.ssl_context
        )
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=TIMEOUT)
        await self._server.wait_closed()


async def answer_ok(server: RawServer, reader: asyncio.StreamReader, writer: Any, _i: int) -> None:
    """Answer every request on the connection with a small JSON body (keep-alive)."""
    while await server.request(reader) is not None:
        writer.write(OK)
        await writer.drain()


def client(**kw: Any) -> httpx2.AsyncClient:
    """An httpx2 client on a FastTransport with bounded timeouts."""
    return httpx2.AsyncClient(
        transport=FastTransport(**kw), timeout=httpx2.Timeout(TIMEOUT), trust_env=False
    )


# -- ordinary HTTP against uvicorn ---------------------------------------------------------------


async def test_keepalive_reuses_one_connection_with_uvicorn() -> None:
    """Sequential requests to uvicorn travel over one kept-alive connection."""
    peers: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        peers.append(tuple(scope["client"]))
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"echo:" + body})

    with serve_app(app) as url:
        async with client() as http:
            for n in range(5):
                response = await http.post(url + "/mcp", content=b"n%d" % n)
                assert response.status_code == 200
                assert response.content == b"echo:n%d" % n
    assert len(peers) == 5
    assert len(set(peers)) == 1


async def test_connection_limit_per_origin_is_kept() -> None:
    """Concurrent requests beyond max_connections wait for a pooled connection."""

    async def slow(server: RawServer, reader: asyncio.StreamReader, writer: Any, _i: int) -> None:
        while await server.request(reader) is not None:
            await asyncio.sleep(0.02)
            writer.write(OK)
            await writer.drain()

    async with RawServer(slow) as server, client(max_connections=2) as http:
        responses = await asyncio.gather(*(http.post(server.url, content=b"x") for _ in range(8)))
        assert [r.status_code for r in responses] == [200] * 8
        assert len(server.requests) == 8
        assert server.connections == 2


# -- body framings -----------------------------------------------------------------------------


async def test_chunked_body_is_reassembled_and_connection_reused() -> None:
    """A chunked body arrives whole and the connection is reused afterwards."""

    async def chunked(
        server: RawServer, reader: asyncio.StreamReader, writer: Any, _i: int
    ) -> None:
        while await server.request(reader) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            writer.write(b"5\r\nhello\r\n")
            await writer.drain()
            writer.write(b"6\r\n world\r\n0\r\n\r\n")
            await writer.drain()

    async with RawServer(chunked) as server, client() as http:
        for _ in range(3):
            response = await http.post(server.url, content=b"x")
            assert response.content == b"hello world"
        assert server.connections == 1


async def test_close_delimited_body_is_read_until_eof() -> None:
    """A body without length ends with the connection, which is then not reused."""

    async def until_close(
        server: RawServer, reader: asyncio.StreamReader, writer: Any, _i: int
    ) -> None:
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ")
        await writer.drain()
        writer.write(b"part two")
        await writer.drain()

    async with RawServer(until_close) as server, client() as http:
        first = await http.get(server.url)
        second = await http.get(server.url)
        assert first.content == second.content == b"part one, part two"
        assert server.connections == 2


async def test_truncated_content_length_body_is_a_protocol_error() -> None:
    """A connection that ends before Content-Length bytes arrived raises RemoteProtocolError."""

    async def short(server: RawServer, reader: asyncio.StreamReader, writer: Any, _i: int) -> None:
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        await writer.drain()

    async with RawServer(short) as server, client() as http:
        with pytest.raises(httpx2.RemoteProtocolError):
            await http.get(server.url)


async def test_sse_events_stream_incrementally() -> None:
    """The first SSE event reaches the client before the server sends the second one."""

    async def sse(server: RawServer, reader: asyncio.StreamReader, writer: Any, _i: int) -> None:
        await server.request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        event = b"data: first\n\n"
        writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        await writer.drain()
        await server.gate.wait()  # only once the client has the first event
        event = b"data: second\n\n"
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(event), event))
        await writer.drain()
        await server.request(reader)

    async with RawServer(sse) as server, client() as http:
        received = b""
        async with asyncio.timeout(TIMEOUT):
            async with http.stream("POST", server.url, content=b"{}") as response:
                async for chunk in response.aiter_bytes():
                    received += chunk
                    if b"first" in received:
                        server.gate.set()
        assert received == b"data: first\n\ndata: second\n\n"


# -- stale pooled connections and retries ------------------------------------------------------


async def test_idle_connection_closed_by_server_is_replaced() -> None:
    """A pooled connection the server closed while idle is not used; a new one serves."""

    async def once(server: RawServer, reader: asyncio.StreamReader, writer: Any, _i: int) -> None:
        await server.request(reader)
        writer.write(OK)  # keep-alive advertised, then closed anyway
        await writer.drain()

    async with RawServer(once) as server, client() as http:
        assert (await http.post(server.url, content=b"1")).status_code == 200
        await asyncio.wait_for(server.closed.wait(), TIMEOUT)
        assert (await http.post(server.url, content=b"2")).status_code == 200
        assert server.connections == 2
        assert len(server.requests) == 2


async def test_stale_pooled_connection_failing_before_response_is_retried_once() -> None:
    """EOF before any response byte on a reused connection: resent once on a new connection."""

    async def drop_second(
        server: RawServer, reader: asyncio.StreamReader, writer: Any, _i: int
    ) -> None:
        await server.request(reader)
        writer.write(OK)
        await writer.drain()
        await server.request(reader)  # the reused connection dies without answering
        writer.transport.abort()

    async with RawServer(drop_second) as server, client() as http:
        assert (await http.post(server.url, content=b"1")).status_code == 200
        assert (await http.post(server.url, content=b"2")).status_code == 200
        assert server.connections == 2
        assert [r.endswith(b"2") for r in server.requests] == [False, True, True]


async def test_post_on_a_new_connection_is_never_resent() -> None:
    """A fresh connection closed without an answer raises; the POST is not sent twice."""

    async def mute(server: RawServer, reader: asyncio.StreamReader, writer: Any, _i: int) -> None:
        await server.request(reader)

    async with RawServer(mute) as server, client() as http:
        with pytest.raises(httpx2.RemoteProtocolError):
            await http.post(server.url, content=b"once")
        assert len(server.requests) == 1


async def test_connection_close_response_is_not_pooled() -> None:
    """``Connection: close`` from the server means the next request opens a new connection."""

    async def closing(
        server: RawServer, reader: asyncio.StreamReader, writer: Any, _i: int
    ) -> None:
        while await server.request(reader) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with RawServer(closing) as server, client() as http:
        for _ in range(2):
            assert (await http.get(server.url)).content == b"ok"
        assert server.connections == 2


# -- malformed responses, timeouts, injection ---------------------------------------------------


async def test_oversized_header_block_is_a_protocol_error() -> None:
    """A response header block past the cap raises RemoteProtocolError."""

    async def huge(server: RawServer, reader: asyncio.StreamReader, writer: Any, _i: int) -> None:
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for n in range(2000):
            writer.write(b"X-Filler-%d: %s\r\n" % (n, b"a" * 64))
        writer.write(b"Content-Length: 0\r\n\r\n")
        await writer.drain()
        await server.request(reader)

    async with RawServer(huge) as server, client() as http:
        with pytest.raises(httpx2.RemoteProtocolError, match="too large"):
            await http.get(server.url)


async def test_endless_header_line_is_a_protocol_error() -> None:
    """One header line that never ends is cut off at the cap, not buffered forever."""

    async def endless(
        server: RawServer, reader: asyncio.StreamReader, writer: Any, _i: int
    ) -> None:
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Long: ")
        while True:
            writer.write(b"b" * 65536)
            await writer.drain()

    async with RawServer(endless) as server, client() as http:
        with pytest.raises(httpx2.RemoteProtocolError, match="too large"):
            await http.get(server.url)


async def test_garbage_response_is_a_protocol_error() -> None:
    """Bytes that are not HTTP raise RemoteProtocolError."""

    async def garbage(
        server: RawServer, reader: asyncio.StreamReader, writer: Any, _i: int
    ) -> None:
        await server.request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        await server.request(reader)

    async with RawServer(garbage) as server, client() as http:
        with pytest.raises(httpx2.RemoteProtocolError, match="malformed"):
            await http.get(server.url)


async def test_silent_server_raises_read_timeout() -> None:
    """No answer within the read timeout raises ReadTimeout."""

    async def silent(server: RawServer, reader: asyncio.StreamReader, writer: Any, _i: int) -> None:
        await server.request(reader)
        await server.request(reader)

    async with RawServer(silent) as server, client() as http:
        with pytest.raises(httpx2.ReadTimeout):
            await http.post(server.url, content=b"x", timeout=httpx2.Timeout(TIMEOUT, read=0.2))


async def test_header_injection_is_refused_before_sending() -> None:
    """CR/LF in a header value is refused (LocalProtocolError); nothing reaches the server."""
    async with RawServer(answer_ok) as server, client() as http:
        request = httpx2.Request(
            "POST", server.url, headers={"x-note": "a\r\nX-Evil: 1"}, content=b"x"
        )
        with pytest.raises(httpx2.LocalProtocolError):
            await http.send(request)
        nul = httpx2.Request("GET", server.url, headers={"x-note": "a\x00b"})
        with pytest.raises(httpx2.LocalProtocolError):
            await http.send(nul)
        assert server.requests == []
        assert (await http.get(server.url)).status_code == 200  # the pool is still usable


async def test_connect_failure_is_a_connect_error() -> None:
    """A refused connection raises ConnectError."""
    async with RawServer(answer_ok) as server:
        url = server.url
    async with client() as http:
        with pytest.raises(httpx2.ConnectError):
            await http.get(url)


async def test_aclose_closes_idle_connections() -> None:
    """aclose() closes pooled connections (the server sees EOF) and refuses later requests."""
    async with RawServer(answer_ok) as server:
        http = client()
        assert (await http.get(server.url)).status_code == 200
        await http.aclose()
        await asyncio.wait_for(server.closed.wait(), TIMEOUT)
        with pytest.raises(RuntimeError):
            await http.get(server.url)  # httpx2 refuses a closed client


# -- TLS ---------------------------------------------------------------------------------------


def self_signed(tmp: Path, *, names: list[x509.GeneralName]) -> tuple[ssl.SSLContext, bytes]:
    """A server context with a fresh self-signed certificate for ``names``, and its PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "portcullis-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp / "cert.pem").write_bytes(pem)
    (tmp / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    return server_ctx, pem


async def test_https_self_signed_is_refused_by_default(tmp_path: Path) -> None:
    """An untrusted certificate fails verification: ConnectError, no request sent."""
    server_ctx, _ = self_signed(tmp_path, names=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    async with RawServer(answer_ok, server_ctx) as server, client() as http:
        with pytest.raises(httpx2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.get(server.url)
        assert server.requests == []


async def test_https_works_with_a_trusting_ssl_context(tmp_path: Path) -> None:
    """With ssl_context trusting the certificate, HTTPS works and keeps the connection alive."""
    server_ctx, pem = self_signed(
        tmp_path, names=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    trusting = ssl.create_default_context(cadata=pem.decode())
    async with RawServer(answer_ok, server_ctx) as server, client(ssl_context=trusting) as http:
        for _ in range(3):
            response = await http.post(server.url, content=b"{}")
            assert response.json() == {}
        assert server.connections == 1


async def test_https_hostname_mismatch_is_refused(tmp_path: Path) -> None:
    """A trusted certificate for another name still fails hostname verification."""
    server_ctx, pem = self_signed(tmp_path, names=[x509.DNSName("elsewhere.example")])
    trusting = ssl.create_default_context(cadata=pem.decode())
    async with RawServer(answer_ok, server_ctx) as server, client(ssl_context=trusting) as http:
        with pytest.raises(httpx2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.get(server.url)
        assert server.requests == []


# -- HttpUpstream wiring -----------------------------------------------------------------------


async def test_http_upstream_uses_fast_transport_by_default() -> None:
    """HttpUpstream's own client is built on FastTransport, with proxies from the env off."""
    upstream = HttpUpstream(
        "u",
        "http://127.0.0.1:9/mcp",
        headers={},
        max_message_bytes=1 << 20,
        timeout_s=5.0,
        log=lambda _m: None,
    )
    await upstream.start()
    try:
        own = upstream._client
        assert own is not None
        assert isinstance(own._transport, FastTransport)
        assert own.trust_env is False
    finally:
        await upstream.close()


# -- pool poisoning ------------------------------------------------------------------------------


async def _half_then_ok(
    server: RawServer, reader: asyncio.StreamReader, writer: Any, i: int
) -> None:
    """First request: a head promising 10 bytes, 5 of them, then silence; later ones: OK."""
    while await server.request(reader) is not None:
        if len(server.requests) == 1 and i == 1:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        else:
            writer.write(OK)
        await writer.drain()


async def test_body_left_unread_is_not_pooled() -> None:
    """A response closed before its body ended never lends its connection to the next request."""
    async with RawServer(_half_then_ok) as server, client() as http:
        async with http.stream("GET", server.url) as response:
            async for _chunk in response.aiter_raw():
                break
        again = await asyncio.wait_for(http.get(server.url), TIMEOUT)
        assert again.content == b"{}"
        assert server.connections == 2


async def test_request_cancelled_mid_body_is_not_pooled() -> None:
    """A request cancelled while its body streams leaves nothing of it for the next request."""
    async with RawServer(_half_then_ok) as server, client() as http:
        task = asyncio.ensure_future(http.get(server.url))
        while not server.requests:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # the five bytes arrive; the rest never does
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        again = await asyncio.wait_for(http.get(server.url), TIMEOUT)
        assert again.content == b"{}"
        assert server.connections == 2


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
    ],
)
async def test_ambiguous_body_length_is_a_protocol_error(head: bytes) -> None:
    """Both Content-Length and chunked, or two lengths (smuggling material), are refused."""

    async def ambiguous(
        server: RawServer, reader: asyncio.StreamReader, writer: Any, _i: int
    ) -> None:
        if await server.request(reader) is not None:
            writer.write(head + b"2\r\nok\r\n0\r\n\r\n")
            await writer.drain()
            await server.gate.wait()

    async with RawServer(ambiguous) as server, client() as http:
        with pytest.raises(httpx2.RemoteProtocolError):
            await asyncio.wait_for(http.get(server.url), TIMEOUT)
