"""The egress proxy, over real loopback sockets.

Stand-ins for the allowed hosts are a TCP echo server and an ``http.server`` on 127.0.0.1. Name
resolution is the one boundary a test cannot cross for real (there is no DNS here, and a test
must not depend on one), so ``resolve`` is injected: it maps the test names to addresses.
"""

from __future__ import annotations

import http.server
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from portcullis.sandbox.egress import EgressProxy
from tests.sandbox.conftest import TIMEOUT, EchoServer, tcp_echo


class Web:
    """An HTTP server on 127.0.0.1 whose every answer is a redirect, recording each request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        requests = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(302)
                self.send_header("Location", "http://elsewhere.test/next")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(TIMEOUT)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = tcp_echo()
    yield server
    server.close()


@pytest.fixture
def web() -> Iterator[Web]:
    server = Web()
    yield server
    server.close()


class Harness:
    """Builds proxies on a socket in a short temporary directory and closes them afterwards."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.logs: list[str] = []
        self.records: list[dict[str, Any]] = []
        self.proxies: list[EgressProxy] = []

    def start(
        self,
        allow_hosts: list[str],
        *,
        names: dict[str, list[str]] | None = None,
        resolve: Callable[[str], list[str]] | None = None,
        **kwargs: Any,
    ) -> Path:
        table = names or {}

        def lookup(host: str) -> list[str]:
            if host not in table:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return table[host]

        proxy = EgressProxy(
            allow_hosts,
            log=self.logs.append,
            record=self.records.append,
            resolve=resolve or lookup,
            **kwargs,
        )
        path = self.home / f"egress{len(self.proxies)}.sock"
        proxy.start(path)
        self.proxies.append(proxy)
        return path


@pytest.fixture
def harness(home: Path) -> Iterator[Harness]:
    h = Harness(home)
    yield h
    for proxy in h.proxies:
        proxy.close()


def connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.connect(str(path))
    return sock


def read_head(sock: socket.socket) -> tuple[int, bytes, bytes]:
    """Status, head, and whatever followed the head."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, rest


def read_all(sock: socket.socket) -> bytes:
    buf = b""
    while chunk := sock.recv(4096):
        buf += chunk
    return buf


def ask(path: Path, request: bytes) -> tuple[int, str]:
    """Send one request and return the status and the whole answer."""
    with connect(path) as sock:
        sock.sendall(request)
        answer = read_all(sock)
    head = answer.split(b"\r\n", 1)[0]
    return int(head.split(b" ", 2)[1]), answer.decode("utf-8", "replace")


def exchange(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


# -- CONNECT --------------------------------------------------------------------------------


def test_connect_to_allowed_host_relays_bytes(harness: Harness, echo: EchoServer) -> None:
    path = harness.start(
        ["allowed.test"], deny_private=False, names={"allowed.test": ["127.0.0.1"]}
    )
    with connect(path) as sock:
        sock.sendall(f"CONNECT allowed.test:{echo.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, _, rest = read_head(sock)
        assert status == 200
        assert rest == b""
        assert exchange(sock, b"ping") == b"ping"
        assert exchange(sock, b"pong" * 1000) == b"pong" * 1000
    assert harness.records == [
        {
            "host": "allowed.test",
            "port": echo.port,
            "decision": "allow",
            "reason": "allowed; connecting to 127.0.0.1",
        }
    ]
    assert harness.logs == []


def test_bytes_sent_with_the_connect_head_are_forwarded(harness: Harness, echo: EchoServer) -> None:
    """A client may send its first bytes (a TLS ClientHello) right behind the CONNECT head."""
    path = harness.start(
        ["allowed.test"], deny_private=False, names={"allowed.test": ["127.0.0.1"]}
    )
    with connect(path) as sock:
        sock.sendall(f"CONNECT allowed.test:{echo.port} HTTP/1.1\r\n\r\nearly".encode())
        status, _, rest = read_head(sock)
        assert status == 200
        while len(rest) < 5:
            rest += sock.recv(4096)
        assert rest == b"early"


def test_connect_to_host_not_allowed_is_403(harness: Harness, echo: EchoServer) -> None:
    path = harness.start(
        ["allowed.test"],
        deny_private=False,
        names={"allowed.test": ["127.0.0.1"], "evil.test": ["127.0.0.1"]},
    )
    status, answer = ask(path, f"CONNECT evil.test:{echo.port} HTTP/1.1\r\n\r\n".encode())
    assert status == 403
    assert "evil.test is not in allow_hosts" in answer
    assert echo.accepted == 0
    assert harness.records == [
        {
            "host": "evil.test",
            "port": echo.port,
            "decision": "deny",
            "reason": "(urls.host) host evil.test is not in allow_hosts (allowed.test).",
        }
    ]
    assert len(harness.logs) == 1
    assert harness.logs[0].startswith(f"egress proxy: refused CONNECT evil.test:{echo.port}: ")


def test_connect_to_address_literal_not_allowed_is_403(harness: Harness, echo: EchoServer) -> None:
    path = harness.start(
        ["allowed.test"], deny_private=False, names={"allowed.test": ["127.0.0.1"]}
    )
    status, answer = ask(path, f"CONNECT 127.0.0.1:{echo.port} HTTP/1.1\r\n\r\n".encode())
    assert status == 403
    assert "127.0.0.1 is not in allow_hosts" in answer
    assert echo.accepted == 0


def test_allowed_name_resolving_to_loopback_is_refused_as_private(
    harness: Harness, echo: EchoServer
) -> None:
    calls: list[str] = []

    def resolve(host: str) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"]

    path = harness.start(["allowed.test"], deny_private=True, resolve=resolve)
    status, answer = ask(path, f"CONNECT allowed.test:{echo.port} HTTP/1.1\r\n\r\n".encode())
    assert status == 403
    assert "urls.private-address" in answer
    assert "127.0.0.1, a loopback address" in answer
    assert calls == ["allowed.test"]
    assert echo.accepted == 0
    assert harness.records[0]["decision"] == "deny"


def test_any_private_address_in_the_answer_refuses(harness: Harness, echo: EchoServer) -> None:
    path = harness.start(
        ["allowed.test"],
        deny_private=True,
        names={"allowed.test": ["93.184.216.34", "2606:2800:220:1::1", "10.0.0.7"]},
    )
    status, answer = ask(path, b"CONNECT allowed.test:443 HTTP/1.1\r\n\r\n")
    assert status == 403
    assert "10.0.0.7" in answer
    assert "private" in answer


def test_rebinding_resolves_once_and_connects_to_the_checked_address(
    harness: Harness, echo: EchoServer
) -> None:
    """A second lookup would answer an unreachable address; the proxy must not make one."""
    answers = [["127.0.0.1"], ["192.0.2.1"]]
    calls: list[str] = []

    def rebinding(host: str) -> list[str]:
        calls.append(host)
        return answers[min(len(calls), 2) - 1]

    path = harness.start(
        ["allowed.test"], deny_private=False, resolve=rebinding, connect_timeout=1.0
    )
    with connect(path) as sock:
        sock.sendall(f"CONNECT allowed.test:{echo.port} HTTP/1.1\r\n\r\n".encode())
        status, _, _ = read_head(sock)
        assert status == 200
        assert exchange(sock, b"same address") == b"same address"
    assert calls == ["allowed.test"]
    assert echo.accepted == 1


def test_rebinding_with_deny_private_checks_what_it_connects_to(harness: Harness) -> None:
    """The answer that is checked is the answer used: a private second answer never comes in."""
    calls: list[str] = []

    def rebinding(host: str) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"] if len(calls) == 1 else ["93.184.216.34"]

    path = harness.start(["allowed.test"], deny_private=True, resolve=rebinding)
    status, _ = ask(path, b"CONNECT allowed.test:443 HTTP/1.1\r\n\r\n")
    assert status == 403
    assert calls == ["allowed.test"]


def test_empty_allow_hosts_refuses_everything(harness: Harness, echo: EchoServer, web: Web) -> None:
    path = harness.start([], deny_private=False, names={"allowed.test": ["127.0.0.1"]})
    status, answer = ask(path, f"CONNECT allowed.test:{echo.port} HTTP/1.1\r\n\r\n".encode())
    assert status == 403
    assert "allow_hosts list is empty" in answer
    status, _ = ask(path, f"CONNECT 127.0.0.1:{echo.port} HTTP/1.1\r\n\r\n".encode())
    assert status == 403
    status, _ = ask(path, f"GET http://allowed.test:{web.port}/ HTTP/1.1\r\n\r\n".encode())
    assert status == 403
    assert echo.accepted == 0
    assert web.requests == []
    assert [r["decision"] for r in harness.records] == ["deny", "deny", "deny"]


@pytest.mark.parametrize(
    ("target", "rule"),
    [
        ("user@allowed.test:443", "urls.credentials"),
        ("0x7f.1:443", "urls.malformed"),
        ("127.1:443", "urls.malformed"),
        ("allowed.test.:443", "urls.malformed"),
        ("allowed%2etest:443", "urls.malformed"),
        ("[::1]:443", "urls.host"),
    ],
)
def test_malformed_destinations_are_refused(harness: Harness, target: str, rule: str) -> None:
    path = harness.start(
        ["allowed.test"], deny_private=False, names={"allowed.test": ["127.0.0.1"]}
    )
    status, answer = ask(path, f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
    assert status == 403
    assert rule in answer


@pytest.mark.parametrize(
    "target",
    [
        "allowed.test",
        "allowed.test:0",
        "allowed.test:99999",
        "allowed.test:x",
        "[::1",
        "allowed.test/evil.test:443",
        "allowed.test?:443",
        "allowed.test#:443",
        "allowed.test\t:443",
        "allowed.test\\@evil.test:443",
    ],
)
def test_connect_needs_a_valid_port(harness: Harness, target: str) -> None:
    path = harness.start(
        ["allowed.test"], deny_private=False, names={"allowed.test": ["127.0.0.1"]}
    )
    status, _ = ask(path, f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
    assert status == 400


def test_ipv6_literal_is_parsed_and_judged(harness: Harness) -> None:
    path = harness.start(["[::1]"], deny_private=True)
    status, answer = ask(path, b"CONNECT [::1]:443 HTTP/1.1\r\n\r\n")
    assert status == 403
    assert "loopback" in answer


def test_unreachable_allowed_host_is_502(harness: Harness) -> None:
    with socket.create_server(("127.0.0.1", 0)) as spare:
        closed_port = spare.getsockname()[1]
    path = harness.start(
        ["allowed.test"], deny_private=False, names={"allowed.test": ["127.0.0.1"]}
    )
    status, answer = ask(path, f"CONNECT allowed.test:{closed_port} HTTP/1.1\r\n\r\n".encode())
    assert status == 502
    assert "could not connect" in answer
    assert len(harness.logs) == 1


def test_unresolvable_name_is_refused(harness: Harness) -> None:
    path = harness.start(["*.test"], deny_private=False)
    status, answer = ask(path, b"CONNECT nowhere.test:443 HTTP/1.1\r\n\r\n")
    assert status == 403
    assert "does not resolve" in answer


# -- plain HTTP -----------------------------------------------------------------------------


def test_plain_get_is_forwarded_and_redirect_relayed_not_followed(
    harness: Harness, web: Web
) -> None:
    path = harness.start(
        [f"allowed.test:{web.port}"], deny_private=False, names={"allowed.test": ["127.0.0.1"]}
    )
    request = (
        f"GET http://allowed.test:{web.port}/x?q=1#frag HTTP/1.1\r\n"
        "Host: forged.example\r\n"
        "Proxy-Authorization: Basic c2VjcmV0\r\n"
        "Proxy-Connection: keep-alive\r\n"
        "X-Test: kept\r\n"
        "\r\n"
    ).encode()
    status, answer = ask(path, request)
    assert status == 302
    assert "Location: http://elsewhere.test/next" in answer
    assert len(web.requests) == 1
    seen_path, headers = web.requests[0]
    assert seen_path == "/x?q=1"
    assert headers["host"] == f"allowed.test:{web.port}"
    assert headers["x-test"] == "kept"
    assert headers["connection"] == "close"
    assert not any(name.startswith("proxy-") for name in headers)
    assert harness.records[0]["decision"] == "allow"


def test_plain_get_with_userinfo_is_refused(harness: Harness, web: Web) -> None:
    path = harness.start(
        ["allowed.test"], deny_private=False, names={"allowed.test": ["127.0.0.1"]}
    )
    status, answer = ask(
        path, f"GET http://user:pw@allowed.test:{web.port}/ HTTP/1.1\r\n\r\n".encode()
    )
    assert status == 403
    assert "urls.credentials" in answer
    assert web.requests == []


def test_control_characters_in_the_target_are_refused(harness: Harness, web: Web) -> None:
    """A bare LF in the path cannot smuggle a second Host header past the check."""
    path = harness.start(
        ["allowed.test"], deny_private=False, names={"allowed.test": ["127.0.0.1"]}
    )
    smuggled = f"GET http://allowed.test:{web.port}/\tHTTP/1.1\nHost:\tother\nX: HTTP/1.1\r\n\r\n"
    status, _ = ask(path, smuggled.encode())
    assert status == 400
    assert web.requests == []


def test_plain_get_to_host_not_allowed_is_403(harness: Harness, web: Web) -> None:
    path = harness.start(["allowed.test"], deny_private=False, names={"other.test": ["127.0.0.1"]})
    status, _ = ask(path, f"GET http://other.test:{web.port}/ HTTP/1.1\r\n\r\n".encode())
    assert status == 403
    assert web.requests == []


def test_port_in_pattern_is_enforced(harness: Harness, web: Web) -> None:
    path = harness.start(
        ["allowed.test:1"], deny_private=False, names={"allowed.test": ["127.0.0.1"]}
    )
    status, _ = ask(path, f"GET http://allowed.test:{web.port}/ HTTP/1.1\r\n\r\n".encode())
    assert status == 403
    assert web.requests == []


@pytest.mark.parametrize(
    "request_line",
    [
        "GET https://allowed.test/ HTTP/1.1",
        "GET / HTTP/1.1",
        "GET ftp://allowed.test/ HTTP/1.1",
        "GET http://allowed.test/ HTTP/2.0",
        "GET  http://allowed.test/ HTTP/1.1",
        "G(T http://allowed.test/ HTTP/1.1",
    ],
)
def test_unsupported_requests_are_400(harness: Harness, request_line: str) -> None:
    path = harness.start(
        ["allowed.test"], deny_private=False, names={"allowed.test": ["127.0.0.1"]}
    )
    status, _ = ask(path, f"{request_line}\r\n\r\n".encode())
    assert status == 400


@pytest.mark.parametrize(
    "header", [" folded: line", "no colon", "bad name: x", "x: a\rb", "\xe9: x"]
)
def test_malformed_headers_are_400(harness: Harness, header: str) -> None:
    path = harness.start(
        ["allowed.test"], deny_private=False, names={"allowed.test": ["127.0.0.1"]}
    )
    status, _ = ask(
        path, f"GET http://allowed.test/ HTTP/1.1\r\nA: b\r\n{header}\r\n\r\n".encode("latin-1")
    )
    assert status == 400


# -- limits ---------------------------------------------------------------------------------


def test_oversized_headers_are_431(harness: Harness) -> None:
    path = harness.start(
        ["allowed.test"], deny_private=False, names={"allowed.test": ["127.0.0.1"]}
    )
    big = "X-Big: " + "a" * 20_000
    status, _ = ask(path, f"CONNECT allowed.test:443 HTTP/1.1\r\n{big}\r\n\r\n".encode())
    assert status == 431


def test_slow_headers_time_out_with_408(harness: Harness) -> None:
    path = harness.start(
        ["allowed.test"],
        deny_private=False,
        names={"allowed.test": ["127.0.0.1"]},
        header_timeout=0.3,
    )
    with connect(path) as sock:
        sock.sendall(b"CONNECT allowed.test:443 HTTP/1.1\r\n")
        start = time.monotonic()
        status, _, _ = read_head(sock)
    assert status == 408
    assert time.monotonic() - start < TIMEOUT


def test_connections_over_the_bound_get_503(harness: Harness) -> None:
    path = harness.start(["allowed.test"], max_connections=1, header_timeout=TIMEOUT)
    with connect(path) as first:
        first.sendall(b"CONNECT allowed.test:443 HTTP/1.1\r\n")  # holds the only slot
        time.sleep(0.2)
        with connect(path) as second:  # answered at once, before it sends anything
            answer = read_all(second)
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert b"too many" in answer


def test_client_closing_early_is_harmless(harness: Harness, echo: EchoServer) -> None:
    path = harness.start(
        ["allowed.test"], deny_private=False, names={"allowed.test": ["127.0.0.1"]}
    )
    with connect(path) as sock:
        sock.sendall(b"CONNECT allow")
    with connect(path) as sock:
        sock.sendall(f"CONNECT allowed.test:{echo.port} HTTP/1.1\r\n\r\n".encode())
        assert read_head(sock)[0] == 200


# -- lifecycle ------------------------------------------------------------------------------


def test_socket_is_private_and_removed_on_close(home: Path) -> None:
    proxy = EgressProxy(["allowed.test"], log=lambda line: None)
    path = home / "p.sock"
    proxy.start(path)
    try:
        mode = path.stat().st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
    finally:
        proxy.close()
    assert not path.exists()
    proxy.close()  # idempotent


def test_close_cuts_open_tunnels(harness: Harness, echo: EchoServer) -> None:
    path = harness.start(
        ["allowed.test"], deny_private=False, names={"allowed.test": ["127.0.0.1"]}
    )
    with connect(path) as sock:
        sock.sendall(f"CONNECT allowed.test:{echo.port} HTTP/1.1\r\n\r\n".encode())
        assert read_head(sock)[0] == 200
        harness.proxies[0].close()
        assert sock.recv(10) == b""


def test_bad_pattern_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="allow_hosts pattern"):
        EgressProxy(["bad host!"], log=lambda line: None)


def test_existing_file_at_socket_path_is_not_replaced(home: Path) -> None:
    path = home / "taken.sock"
    path.write_text("mine")
    proxy = EgressProxy(["allowed.test"], log=lambda line: None)
    with pytest.raises(OSError, match="in use"):
        proxy.start(path)
    assert path.read_text() == "mine"
    assert os.path.exists(path)


def test_a_decision_that_cannot_be_audited_refuses_the_connection(
    home: Path, echo: EchoServer
) -> None:
    """When the allow cannot be recorded (audit log full), the connection is not made."""
    from portcullis._exceptions import AuditError

    def unwritable(fields: dict[str, Any]) -> None:
        raise AuditError("disk full")

    proxy = EgressProxy(
        ["allowed.test"],
        deny_private=False,
        log=lambda text: None,
        record=unwritable,
        resolve=lambda host: ["127.0.0.1"],
    )
    path = home / "unaudited.sock"
    proxy.start(path)
    try:
        with connect(path) as sock:
            sock.sendall(f"CONNECT allowed.test:{echo.port} HTTP/1.1\r\n\r\n".encode())
            status, _, _ = read_head(sock)
        assert status == 502
        assert echo.accepted == 0
    finally:
        proxy.close()
