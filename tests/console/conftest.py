"""Shared pieces of the console tests: a real console on 127.0.0.1, logged-in clients, logs."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn

from portcullis._state import install_key
from portcullis.audit import AuditLog
from portcullis.console.app import ConsoleConfig, build_app
from portcullis.policy import builtin_policy

__all__ = ["WAIT_S", "Console", "csrf_of", "write_log"]

WAIT_S = 10.0

# Hostile strings a tool argument or an audit field may carry.
XSS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "\u202egnp.exe",  # right-to-left override
    "pass\u200bword",  # zero-width space
]


@dataclass
class Console:
    """A console served by uvicorn in a thread, bound to a free port on 127.0.0.1."""

    config: ConsoleConfig
    server: uvicorn.Server
    thread: threading.Thread
    clients: list[httpx2.Client] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    def client(self, **kw: Any) -> httpx2.Client:
        c = httpx2.Client(base_url=self.base, timeout=WAIT_S, follow_redirects=False, **kw)
        self.clients.append(c)
        return c

    def login(self) -> httpx2.Client:
        """A client holding the session cookie (uses up the one-time token)."""
        c = self.client()
        r = c.get(f"/?token={self.config.sessions.token}")
        assert r.status_code == 303, r.text
        return c


def csrf_of(html: str) -> str:
    """The CSRF token of a rendered page."""
    marker = 'name="csrf-token" content="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def start_console(state: Path, log: Path, **kw: Any) -> Console:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    holder: dict[str, uvicorn.Server] = {}
    config = ConsoleConfig(
        policy=kw.pop("policy", builtin_policy()),
        state=state,
        log=log,
        queue=state / "approvals",
        host=kw.pop("host", "127.0.0.1"),
        port=port,
        stopping=lambda: holder["server"].should_exit,
        poll_s=0.1,
        **kw,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(config),
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=3,
        )
    )
    holder["server"] = server
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started:
        assert time.monotonic() < deadline, "the console did not start"
        time.sleep(0.01)
    return Console(config, server, thread)


def stop_console(console: Console) -> None:
    for c in console.clients:
        c.close()
    console.server.should_exit = True
    console.thread.join(timeout=WAIT_S)
    assert not console.thread.is_alive(), "the console did not stop"


@pytest.fixture
def console(home: Path) -> Iterator[Console]:
    """A console over the private state directory ``home``."""
    c = start_console(home, home / "audit.jsonl")
    yield c
    stop_console(c)


def write_log(home: Path, records: list[dict[str, Any]]) -> Path:
    """Append ``records`` to ``home/audit.jsonl`` with the install key; the log path."""
    path = home / "audit.jsonl"
    with AuditLog(path, install_key(home)) as log:
        for rec in records:
            log.append(rec)
    return path
