"""Egress proxy: the only way out of a sandbox run with ``sandbox.network: allow_hosts``.

Such a sandbox has its own network namespace with nothing but loopback in it. The gateway, outside,
runs this proxy on a Unix socket that is bind-mounted into the sandbox, where a small forwarder
(:mod:`portcullis.sandbox.forwarder`) relays TCP ``127.0.0.1:PORT`` to it and the server is given
``HTTP_PROXY``/``HTTPS_PROXY`` pointing there. The server can reach nothing the proxy does not
connect to itself, so the proxy, not the server's HTTP client, decides where bytes go.

What it accepts
---------------
* ``CONNECT host:port`` (also ``[v6]:port``), for TLS and anything else tunnelled: the proxy
  answers ``200`` once it is connected and then relays bytes both ways.
* Absolute-form plain HTTP (``GET http://host[:port]/path HTTP/1.1``): the request line is
  rewritten to origin-form, ``Host`` is set from the checked URL (so a forged ``Host`` header
  cannot name another virtual host on the same address), ``Proxy-*``, ``Connection`` and
  ``Keep-Alive`` headers are dropped and ``Connection: close`` is added, so each connection
  carries one request to one checked host. Responses are relayed untouched: a redirect reaches
  the client, whose next request is checked afresh; the proxy never follows one.

Refused: ``https://`` in absolute form (use ``CONNECT``) and origin-form requests with ``400``,
headers over 16 KiB with ``431``, headers not complete within the header timeout with ``408``,
disallowed destinations with ``403``, unreachable ones with ``502``, and connections over the
concurrency bound with ``503``. Every refusal is a one-line plain-text body, one ``log`` line and
one ``record`` dict. Any parse error or unexpected exception refuses the connection: fail closed.

Which hosts
-----------
The destination is checked by :class:`~portcullis.detect.urls.UrlGuard` on ``http://host:port/``,
so the proxy shares the URL guard's strict parsing (no userinfo, no non-canonical IPv4, no
percent-encoded hosts), its ``allow_hosts`` pattern semantics (``docs.example.com`` exactly,
``*.example.com`` every subdomain but not the apex, ``*`` anything, an optional ``:port``) and its
``deny_private`` rules (local-only names, and every resolved address must be public).

Unlike the URL guard, an **empty** ``allow_hosts`` allows **nothing**: the URL guard's empty list
means "any host", but a sandbox asked to control egress with no hosts listed must have none.

DNS rebinding
-------------
The proxy resolves each name exactly once and connects to an address from that answer, the one
it checked; it never hands the name to ``connect``. A name whose answer changes between the check
and the connection therefore cannot redirect the connection. With ``deny_private`` every address
in the answer must be public (any private one refuses the request).

Limits
------
Inside a ``CONNECT`` tunnel the bytes are opaque: TLS SNI or an inner ``Host`` header naming
another site served from the same checked address (domain fronting) is not seen. A client that
pipelines a second plain-HTTP request on one connection sends it to the checked address, with
``Connection: close`` asking the server to ignore it. IPv6 scope ids in resolver answers are
dropped when connecting.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import stat
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from portcullis.detect.urls import UrlGuard, classify, default_resolve

__all__ = ["EgressProxy"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_MAX_HEADER: Final = 16 * 1024
_CHUNK: Final = 64 * 1024
_MAX_ADDRESSES: Final = 4
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SPLIT_RE: Final = re.compile(r"[/?#\\\x00-\x20\x7f]")
_VERSIONS: Final = frozenset({"HTTP/1.0", "HTTP/1.1"})
_DROPPED: Final = frozenset({"host", "connection", "keep-alive"})
_STATUS: Final = {
    400: "Bad Request",
    403: "Forbidden",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
_GUARD_PREFIX: Final = 'URL guard: argument "destination": '


class _Refusal(Exception):
    """A request the proxy answers with an error status instead of relaying."""

    def __init__(self, status: int, reason: str, host: str = "", port: int = 0) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.host = _shown(host)
        self.port = port


class _ClientGone(Exception):
    """The client closed before sending a whole request: nothing to answer."""


class _Request:
    __slots__ = ("connect", "headers", "host", "method", "path", "port", "version")

    def __init__(
        self,
        *,
        method: str,
        host: str,
        port: int,
        path: str,
        version: str,
        headers: list[tuple[str, bytes]],
        connect: bool,
    ) -> None:
        self.method = method
        self.host = host
        self.port = port
        self.path = path
        self.version = version
        self.headers = headers
        self.connect = connect

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"


class EgressProxy:
    """An HTTP proxy on a Unix socket that lets a sandbox reach only the allowed hosts.

    ``allow_hosts`` are URL-guard host patterns; an empty list allows nothing (see the module
    docstring). ``log`` gets one line per refusal; ``record``, if given, one dict per decision
    ``{"host", "port", "decision": "allow" | "deny", "reason"}`` for the audit log. ``resolve``
    replaces the resolver (``getaddrinfo``, as the URL guard uses) in tests only. ``log`` and
    ``record`` are called from the proxy's threads. The remaining keywords bound the proxy:
    concurrent connections (more are answered ``503``), seconds to receive the request head,
    to connect upstream, and of silence in both directions before a tunnel is cut.
    """

    def __init__(
        self,
        allow_hosts: Sequence[str],
        *,
        deny_private: bool = True,
        log: Callable[[str], None],
        record: Callable[[dict[str, Any]], None] | None = None,
        resolve: Callable[[str], list[str]] | None = None,
        max_connections: int = 64,
        header_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        idle_timeout: float = 600.0,
    ) -> None:
        self.allow_hosts = tuple(allow_hosts)
        self.deny_private = deny_private
        self._log = log
        self._record = record
        self._resolve = resolve if resolve is not None else default_resolve
        self._header_timeout = header_timeout
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._active: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._path: Path | None = None
        self._inode: int | None = None
        # Bad patterns raise here, when the gateway starts the server, not on the first request.
        UrlGuard(schemes=("http",), allow_hosts=self.allow_hosts)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, socket_path: Path) -> None:
        """Listen on ``socket_path`` (mode 0600) and serve on daemon threads; returns at once."""
        if self._listener is not None:
            raise RuntimeError("egress proxy already started")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(socket_path))
            # Tighten the mode before listen(): until then nobody can connect, so there is no
            # window in which the socket is open to other users.
            socket_path.chmod(0o600)
            self._inode = socket_path.stat().st_ino
            listener.listen(64)
            listener.settimeout(0.5)
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self._path = socket_path
        self._thread = threading.Thread(
            target=self._accept_loop, args=(listener,), name="egress-proxy", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop accepting, cut open connections and remove the socket file."""
        self._stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            active = list(self._active)
        for conn in active:
            # shutdown, not close: it wakes the relaying thread, which closes its own sockets.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)
        path, self._path = self._path, None
        if path is not None:
            # Only our own socket: a file put there since is not ours to delete.
            with contextlib.suppress(OSError):
                st = path.lstat()
                if stat.S_ISSOCK(st.st_mode) and st.st_ino == self._inode:
                    path.unlink()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.05)  # e.g. EMFILE: back off rather than spin
                continue
            if not self._slots.acquire(blocking=False):
                self._busy(conn)
                continue
            try:
                threading.Thread(
                    target=self._serve, args=(conn,), name="egress-conn", daemon=True
                ).start()
            except BaseException:
                self._slots.release()
                conn.close()
                raise

    def _busy(self, conn: socket.socket) -> None:
        # Answered without a thread or a wait: a flood must not grow the proxy past its bound.
        reason = "too many concurrent connections"
        with contextlib.suppress(Exception):
            self._log(f"egress proxy: refused request: {reason}")
        with contextlib.suppress(Exception):
            self._note("", 0, "deny", reason)
        with conn, contextlib.suppress(OSError):
            conn.setblocking(False)
            conn.send(_response(503, f"egress proxy: refused request: {reason}"))

    # -- one connection --------------------------------------------------------------------

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        what = "request"
        try:
            self._track(client)
            head, rest = self._read_head(client)
            request = self._parse(head)
            what = _shown(
                f"CONNECT {request.authority}"
                if request.connect
                else f"{request.method} http://{request.authority}"
            )
            addresses = self._decide(request)
            upstream = self._open(request, addresses)
            self._track(upstream)
            if request.connect:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    upstream.sendall(rest)
            else:
                upstream.sendall(_rewrite(request) + rest)
            _relay(client, upstream, self._idle_timeout)
        except _Refusal as refusal:
            self._refuse(client, refusal, what)
        except _ClientGone:
            pass
        except Exception as exc:  # fail closed: whatever broke, the connection goes
            if upstream is None:
                self._refuse(client, _Refusal(502, f"internal error ({type(exc).__name__})"), what)
        finally:
            for sock in (upstream, client):
                if sock is not None:
                    self._untrack(sock)
                    sock.close()
            self._slots.release()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._active.add(sock)
        if self._stopping.is_set():
            raise _ClientGone

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._active.discard(sock)

    def _read_head(self, client: socket.socket) -> tuple[bytes, bytes]:
        buf = bytearray()
        deadline = time.monotonic() + self._header_timeout
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                if end > _MAX_HEADER:
                    break
                return bytes(buf[:end]), bytes(buf[end + 4 :])
            if len(buf) > _MAX_HEADER:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Refusal(408, "the request headers did not arrive in time")
            client.settimeout(remaining)
            try:
                chunk = client.recv(_MAX_HEADER + 4 - len(buf))
            except TimeoutError:
                raise _Refusal(408, "the request headers did not arrive in time") from None
            except OSError:
                raise _ClientGone from None
            if not chunk:
                raise _ClientGone
            buf += chunk
        raise _Refusal(431, f"the request headers are longer than {_MAX_HEADER} bytes")

    def _parse(self, head: bytes) -> _Request:
        lines = head.split(b"\r\n")
        try:
            line = lines[0].decode("ascii")
        except UnicodeDecodeError:
            raise _Refusal(400, "the request line is not ASCII") from None
        parts = line.split(" ")
        if len(parts) != 3 or not _TOKEN_RE.fullmatch(parts[0]) or parts[2] not in _VERSIONS:
            raise _Refusal(400, "malformed request line")
        method, target, version = parts
        headers: list[tuple[str, bytes]] = []
        for raw in lines[1:]:
            name, sep, value = raw.partition(b":")
            # Folded lines, bare CR/LF and odd names are where parsers disagree: refuse them.
            if not sep or b"\r" in raw or b"\n" in raw or b"\0" in raw:
                raise _Refusal(400, "malformed header line")
            try:
                text = name.decode("ascii")
            except UnicodeDecodeError:
                raise _Refusal(400, "malformed header name") from None
            if not _TOKEN_RE.fullmatch(text):
                raise _Refusal(400, "malformed header name")
            headers.append((text, value.strip(b" \t")))
        if method == "CONNECT":
            host, port = _split_authority(target, default_port=None)
            return _Request(
                method=method,
                host=host,
                port=port,
                path="",
                version=version,
                headers=headers,
                connect=True,
            )
        lowered = target[:8].lower()
        if lowered.startswith("https://"):
            raise _Refusal(400, "an https:// request must use CONNECT")
        if not lowered.startswith("http://"):
            raise _Refusal(
                400, "only CONNECT and absolute-form http:// requests are accepted by this proxy"
            )
        rest = target[7:]
        cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
        authority, tail = rest[:cut], rest[cut:]
        host, port = _split_authority(authority, default_port=80)
        path = tail.split("#", 1)[0]
        if any(c <= " " or c >= "\x7f" for c in path):
            # A control character (a bare LF, a tab) would let the request line carry a second
            # header block past the check; a conforming client percent-encodes all of these.
            raise _Refusal(400, "the request target holds a control or non-ASCII character")
        if not path.startswith("/"):
            path = "/" + path
        return _Request(
            method=method,
            host=host,
            port=port,
            path=path,
            version=version,
            headers=headers,
            connect=False,
        )

    def _decide(self, request: _Request) -> list[IPAddress]:
        """The checked addresses to connect to, in resolver order; refuses with 403."""
        host, port = request.host, request.port
        if not self.allow_hosts:
            raise _Refusal(
                403, "no host is allowed (the server's allow_hosts list is empty)", host, port
            )
        answers: list[str] = []
        calls = 0

        def capture(name: str) -> list[str]:
            nonlocal calls
            calls += 1
            answers[:] = list(self._resolve(name))
            return list(answers)

        guard = UrlGuard(
            schemes=("http",),
            allow_hosts=self.allow_hosts,
            deny_private=self.deny_private,
            resolve=capture,
        )
        verdict = guard.check(f"http://{request.authority}/", argument="destination")
        if verdict.decision != "allow":
            reason = verdict.reason.removeprefix(_GUARD_PREFIX)
            raise _Refusal(403, f"({verdict.rule}) {reason}", host, port)
        literal = _literal(host)
        if literal is not None:
            addresses = [literal]
        else:
            if calls == 0:  # deny_private off: the guard did not resolve, so resolve once here
                try:
                    answers = list(self._resolve(host.lower()))
                except (OSError, UnicodeError, ValueError) as exc:
                    detail = getattr(exc, "strerror", None) or type(exc).__name__
                    raise _Refusal(
                        403, f"host {host} does not resolve ({detail})", host, port
                    ) from None
            addresses = []
            for answer in answers:
                try:
                    addr = ipaddress.ip_address(str(answer).split("%", 1)[0])
                except ValueError:
                    raise _Refusal(
                        403, f"host {host} resolved to something that is not an address", host, port
                    ) from None
                if addr not in addresses:
                    addresses.append(addr)
        # The guard has already refused any private answer; checking the connect list again
        # keeps the two in step should either ever change.
        if self.deny_private and any(classify(a) is not None for a in addresses):
            raise _Refusal(403, f"host {host} has a private address", host, port)
        if not addresses:
            raise _Refusal(403, f"host {host} resolves to no address", host, port)
        self._note(host, port, "allow", f"allowed; connecting to {addresses[0]}")
        return addresses

    def _open(self, request: _Request, addresses: list[IPAddress]) -> socket.socket:
        error: OSError | None = None
        tried = addresses[:_MAX_ADDRESSES]
        for addr in tried:
            family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(self._connect_timeout)
                # A numeric address, never the name: the connection goes where the check said.
                sock.connect((str(addr), request.port))
            except OSError as exc:
                sock.close()
                error = exc
                continue
            return sock
        detail = (error.strerror if error is not None else None) or type(error).__name__
        shown = ", ".join(str(a) for a in tried)
        raise _Refusal(502, f"could not connect to {request.authority} ({shown}): {detail}")

    # -- answers ---------------------------------------------------------------------------

    def _refuse(self, client: socket.socket, refusal: _Refusal, what: str) -> None:
        line = f"egress proxy: refused {what}: {refusal.reason}"
        with contextlib.suppress(Exception):
            self._log(line)
        if refusal.status != 502:
            with contextlib.suppress(Exception):
                self._note(refusal.host, refusal.port, "deny", refusal.reason)
        try:
            client.settimeout(2.0)
            client.sendall(_response(refusal.status, line))
            client.shutdown(socket.SHUT_WR)
            # Drain what the client is still sending, so that closing does not reset the
            # connection and discard the answer before the client reads it.
            deadline = time.monotonic() + 1.0
            drained = 0
            while drained < 4 * _MAX_HEADER and time.monotonic() < deadline:
                chunk = client.recv(_CHUNK)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass

    def _note(self, host: str, port: int, decision: str, reason: str) -> None:
        if self._record is not None:
            self._record({"host": host, "port": port, "decision": decision, "reason": reason})


def _shown(text: str) -> str:
    """``text`` cut short and with control characters replaced, for log lines and records."""
    clean = "".join(c if c.isprintable() else "?" for c in text[:300])
    return clean if len(text) <= 300 else clean + "…"


def _response(status: int, line: str) -> bytes:
    body = (line + "\n").encode("utf-8", "replace")
    return (
        f"HTTP/1.1 {status} {_STATUS[status]}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("ascii") + body


def _split_authority(authority: str, *, default_port: int | None) -> tuple[str, int]:
    """``host`` and ``port`` of ``host[:port]`` or ``[v6][:port]``; the guard checks the host."""
    # The guard cuts a URL's authority at the first of these; refusing them here keeps the host
    # it checks and the host connected to the same string.
    if _SPLIT_RE.search(authority):
        raise _Refusal(400, "malformed destination")
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise _Refusal(400, "malformed destination (an IPv6 host is missing its ']')")
        host, after = authority[: end + 1], authority[end + 1 :]
        port_text: str | None = after[1:] if after.startswith(":") else None
        if after and port_text is None:
            raise _Refusal(400, "malformed destination")
    elif ":" in authority:
        host, _, port_text = authority.rpartition(":")
    else:
        host, port_text = authority, None
    if port_text is None:
        if default_port is None:
            raise _Refusal(400, "CONNECT needs a host:port destination")
        return host, default_port
    if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5):
        raise _Refusal(400, "malformed destination port")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise _Refusal(400, "malformed destination port")
    if not host:
        raise _Refusal(400, "malformed destination (no host)")
    return host, port


def _literal(host: str) -> IPAddress | None:
    """The address a guard-approved host names literally, or ``None`` for a name."""
    if host.startswith("[") and host.endswith("]"):
        return ipaddress.IPv6Address(host[1:-1])
    try:
        # The guard has refused every non-canonical IPv4 form, so this reading is the only one.
        return ipaddress.IPv4Address(host)
    except ValueError:
        return None


def _rewrite(request: _Request) -> bytes:
    """The request head in origin-form for the upstream server."""
    host_header = request.host if request.port == 80 else request.authority
    out = [
        f"{request.method} {request.path} {request.version}".encode("ascii"),
        f"Host: {host_header}".encode("ascii"),
    ]
    for name, value in request.headers:
        lowered = name.lower()
        if lowered in _DROPPED or lowered.startswith("proxy-"):
            continue
        out.append(name.encode("ascii") + b": " + value)
    out.append(b"Connection: close")
    return b"\r\n".join(out) + b"\r\n\r\n"


def _relay(client: socket.socket, upstream: socket.socket, idle: float) -> None:
    """Copy bytes both ways until upstream closes, an error, or ``idle`` seconds of silence.

    One thread per direction, each with blocking writes: a single loop that blocks writing one
    way while the other way fills up can deadlock a full-duplex exchange. The client's end of
    stream is passed on as a half-close (a client may shut its side and still wait for the
    answer); upstream's end of stream, or any error, ends the exchange in both directions.
    """
    last = [time.monotonic()]
    client.settimeout(idle)
    upstream.settimeout(idle)
    outbound = threading.Thread(
        target=_pump, args=(client, upstream, idle, last, False), name="egress-out", daemon=True
    )
    outbound.start()
    _pump(upstream, client, idle, last, True)
    outbound.join()


def _pump(
    src: socket.socket, dst: socket.socket, idle: float, last: list[float], final: bool
) -> None:
    try:
        while True:
            try:
                data = src.recv(_CHUNK)
            except TimeoutError:
                if time.monotonic() - last[0] < idle:
                    continue  # the other direction is busy: the exchange is not idle
                break
            if not data:
                if not final:
                    dst.shutdown(socket.SHUT_WR)
                    return
                break
            last[0] = time.monotonic()
            dst.sendall(data)
            last[0] = time.monotonic()
    except OSError:
        pass
    # Ending one direction ends both: shutting the sockets wakes the other thread's recv.
    for sock in (src, dst):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
