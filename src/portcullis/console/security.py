"""The console's gate: one-time token → session cookie, CSRF, Host/Origin checks, headers.

Anyone on the machine can reach a loopback port, and any web page the person visits can make
their browser send requests to it. So: the URL printed on stdout carries a 256-bit token that
works once and is exchanged at once for an HttpOnly, SameSite=Strict cookie whose value names a
server-side session; a request whose Host is not the console's (DNS rebinding) is refused, as
is a foreign Origin or a cross-site fetch that changes state; every POST carries the session's
CSRF token; every response carries a strict Content-Security-Policy. Bodies are capped.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import struct
import sys
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qs

__all__ = [
    "COOKIE",
    "CSP",
    "MAX_BODY",
    "Gate",
    "Session",
    "Sessions",
    "allowed_hosts",
    "peer_uid",
    "socket_owner",
]

COOKIE: Final = "portcullis_console"
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
MAX_BODY: Final = 64 * 1024  # a form post is a few hundred bytes
_MAX_SESSIONS: Final = 16
_SESSION_IDLE_S: Final = 12 * 3600.0
_HEADERS: Final = (
    (b"content-security-policy", CSP.encode()),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
_SAFE_METHODS: Final = frozenset({"GET", "HEAD"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class Session:
    """One logged-in browser: its CSRF token and messages to show once."""

    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    seen: float = field(default_factory=time.monotonic)
    flash: list[str] = field(default_factory=list)

    def csrf_ok(self, given: str | None) -> bool:
        """Whether ``given`` is this session's CSRF token (constant-time)."""
        if not given:
            return False
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.csrf.encode())


class Sessions:
    """The one-time login token and the server-side session table."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(32)  # 256 bits
        self._used = False
        self._lock = threading.Lock()
        self._table: dict[bytes, Session] = {}

    def login(self, given: str) -> str | None:
        """Exchange the token for a new session's cookie value; None when wrong or used."""
        with self._lock:
            right = hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode())
            if not right or self._used:
                return None
            self._used = True
            cookie = secrets.token_urlsafe(32)
            if len(self._table) >= _MAX_SESSIONS:
                oldest = min(self._table, key=lambda k: self._table[k].seen)
                del self._table[oldest]
            self._table[_key(cookie)] = Session()
            return cookie

    def get(self, cookie: str | None) -> Session | None:
        """The session a cookie value names, if it is live."""
        if not cookie:
            return None
        with self._lock:
            key = _key(cookie)
            session = self._table.get(key)
            if session is None:
                return None
            now = time.monotonic()
            if now - session.seen > _SESSION_IDLE_S:
                del self._table[key]
                return None
            session.seen = now
            return session


def _key(cookie: str) -> bytes:
    # Looked up by digest: a dict lookup's timing then says nothing about the cookie itself.
    return hashlib.sha256(cookie.encode("utf-8", "replace")).digest()


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """The Host header values the console answers to (lower-case)."""
    names = {"127.0.0.1", "localhost", host.lower()}
    if ":" in host.strip("[]"):
        names.discard(host.lower())
        names.add(f"[{host.strip('[]').lower()}]")
    if host.strip("[]") == "::1":
        names.add("[::1]")
    return frozenset(f"{name}:{port}" for name in names)


def _proc_address(host: str, port: int) -> str | None:
    """``host:port`` as /proc/net/tcp{,6} writes it (32-bit words in host byte order, hex)."""
    try:
        packed = ipaddress.ip_address(host).packed
    except ValueError:
        return None
    words = struct.unpack(f"={len(packed) // 4}I", packed)
    return "".join(f"{w:08X}" for w in words) + f":{port:04X}"


def socket_owner(table: str, local: str, remote: str) -> int | None:
    """The uid owning the socket ``local`` → ``remote`` in a /proc/net/tcp text, or None."""
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 7 and fields[1] == local and fields[2] == remote:
            try:
                return int(fields[7])
            except ValueError:
                return None
    return None


def peer_uid(client: tuple[str, int], server: tuple[str, int]) -> int | None:
    """The uid of the local process at ``client`` talking to us at ``server`` (Linux), or None.

    The kernel lists both ends of a loopback connection; the client's end (its local address
    is ``client``) is owned by the connecting process's user.
    """
    if ":" in client[0]:
        tables = [("tcp6", client, server)]
    else:
        # An IPv4 peer of a dual-stack socket shows in tcp6 as ::ffff:a.b.c.d.
        mapped = (f"::ffff:{client[0]}", client[1]), (f"::ffff:{server[0]}", server[1])
        tables = [("tcp", client, server), ("tcp6", *mapped)]
    for name, near, far in tables:
        local, remote = _proc_address(*near), _proc_address(*far)
        if local is None or remote is None:
            return None
        try:
            with open(f"/proc/net/{name}", encoding="ascii", errors="replace") as f:
                owner = socket_owner(f.read(), local, remote)
        except OSError:
            continue
        if owner is not None:
            return owner
    return None


def _local_peer(scope: Scope) -> tuple[tuple[str, int], tuple[str, int]] | None:
    """(client, server) when the request came over loopback TCP, else None."""
    client, server = scope.get("client"), scope.get("server")
    if not client or not server or not isinstance(client[0], str):
        return None
    near, far = _unmapped(client[0]), _unmapped(str(server[0]))
    if near is None or far is None or not near.is_loopback:
        return None
    return (str(near), int(client[1])), (str(far), int(server[1]))


def _unmapped(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # A dual-stack socket sees 127.0.0.1 as ::ffff:127.0.0.1, which the kernel lists (for the
    # IPv4 client's end) as plain 127.0.0.1.
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _cookie(scope: Scope) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    for part in raw.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


class Gate:
    """Pure ASGI middleware in front of the console's routes.

    ``public`` paths (static files) need no session. Authenticated requests get
    ``scope["state"]["session"]``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        sessions: Sessions,
        hosts: frozenset[str],
        scheme: str,
        public: tuple[str, ...] = ("/static/",),
        render_refusal: Callable[[int, str], bytes] | None = None,
        owner_of: Callable[[tuple[str, int], tuple[str, int]], int | None] | None = None,
    ) -> None:
        self.app = app
        self.sessions = sessions
        self.hosts = hosts
        self.origins = frozenset(f"{scheme}://{h}" for h in hosts)
        self.secure = scheme == "https"
        self.public = public
        self._render = render_refusal or (lambda status, text: text.encode())
        # Who is at the other end of a loopback connection: the kernel knows (Linux only).
        if owner_of is None and sys.platform.startswith("linux") and hasattr(os, "getuid"):
            owner_of = peer_uid
        self._owner_of = owner_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check, authenticate and pass on one request; add the security headers."""
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            # No websockets here: nothing but plain HTTP reaches the routes ungated.
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in {name for name, _ in _HEADERS}
                ]
                message["headers"] = headers + list(_HEADERS)
            await send(message)

        refusal = self._check(scope) or self._check_peer(scope)
        if refusal is not None:
            await self._refuse(with_headers, *refusal)
            return
        path: str = scope.get("path", "")
        if path.startswith(self.public):
            await self.app(scope, receive, with_headers)
            return
        cookie = _cookie(scope)
        session = self.sessions.get(cookie)
        query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
        token = query.get("token")
        if token is not None and path == "/":
            if session is None:
                fresh = self.sessions.login(token[0])
                if fresh is None:
                    await self._refuse(with_headers, 401, _LOGIN_AGAIN)
                    return
                flags = "; HttpOnly; SameSite=Strict; Path=/" + ("; Secure" if self.secure else "")
                await self._redirect(with_headers, "/", f"{COOKIE}={fresh}{flags}")
                return
            # Already logged in: just drop the spent token from the address bar.
            await self._redirect(with_headers, "/", None)
            return
        if session is None:
            await self._refuse(with_headers, 401, _LOGIN_AGAIN)
            return
        if scope.get("method") not in _SAFE_METHODS:
            length = _header(scope, b"content-length")
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
                await self._refuse(with_headers, 413, "The request body is too large.")
                return
            body = await _read_body(receive, MAX_BODY)
            if body is None:
                await self._refuse(with_headers, 413, "The request body is too large.")
                return
            if not session.csrf_ok(_csrf(scope, body)):
                await self._refuse(
                    with_headers, 403, "Missing or wrong CSRF token: reload the page and retry."
                )
                return
            receive = _replay(body, receive)
        scope.setdefault("state", {})["session"] = session
        await self.app(scope, receive, with_headers)

    def _check(self, scope: Scope) -> tuple[int, str] | None:
        host = (_header(scope, b"host") or "").lower()
        if host not in self.hosts:
            return 421, "This console does not answer to that host name (DNS rebinding guard)."
        origin = _header(scope, b"origin")
        site = (_header(scope, b"sec-fetch-site") or "").lower()
        # Under Referrer-Policy: no-referrer a browser sends "Origin: null" even for our own
        # forms; it is ours only when the browser also says the fetch is same-origin.
        ours = origin is None or origin.lower() in self.origins
        if not ours and not (origin == "null" and site == "same-origin"):
            return 403, "Requests from other origins are refused."
        if scope.get("method") not in _SAFE_METHODS and site in ("cross-site", "same-site"):
            return 403, "Cross-site requests that change state are refused."
        return None

    def _check_peer(self, scope: Scope) -> tuple[int, str] | None:
        # Cookies ignore ports: any local program listening on 127.0.0.1 may receive the
        # session cookie from the browser, and other users can read a browser's command line
        # (the login URL). Neither helps another user: their connections are refused here.
        if self._owner_of is None:
            return None
        ends = _local_peer(scope)
        if ends is None:
            return None
        uid = self._owner_of(*ends)
        if uid is None:
            return 403, "The console cannot tell which user is connecting; refused."
        if uid != os.getuid():
            return 403, "This console answers only its own user's programs."
        return None

    async def _refuse(self, send: Send, status: int, text: str) -> None:
        body = self._render(status, text)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/html; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _redirect(self, send: Send, to: str, cookie: str | None) -> None:
        headers = [(b"location", to.encode()), (b"content-length", b"0")]
        if cookie is not None:
            headers.append((b"set-cookie", cookie.encode()))
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


_LOGIN_AGAIN: Final = (
    "Not logged in. Open the URL that `portcullis console` printed (it works once); "
    "if it was used already, restart `portcullis console` for a new one."
)


def _csrf(scope: Scope, body: bytes) -> str | None:
    """The CSRF token of a state-changing request: its header, else its form field."""
    given = _header(scope, b"x-csrf-token")
    if given is not None:
        return given
    kind = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return None
    values = parse_qs(body.decode("utf-8", "replace")).get("csrf")
    return values[0] if values else None


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None when it exceeds ``limit`` (or the client left)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
