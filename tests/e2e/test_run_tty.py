"""Approvals on the terminal: the gateway's controlling terminal is a pseudo-terminal here.

The gateway is started as a session leader whose controlling terminal is the slave side of a
pty; the test types into the master side as the person would. stdin and stdout stay pipes: the
protocol never touches the terminal.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import pty
import select
import termios
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.conftest import TIMEOUT, Gateway, fixture_server

pytestmark = pytest.mark.e2e

TTY = """\
version: 1
approvals: {channels: [tty], timeout_s: 60}
defaults:
  tools: {default: allow, confirm: [echo]}
"""


@pytest.fixture
def terminal() -> Iterator[tuple[int, Callable[[], None]]]:
    """A pty master, and a preexec that makes its slave the child's controlling terminal."""
    master, slave = pty.openpty()
    name = os.ttyname(slave)

    def preexec() -> None:
        os.setsid()
        fd = os.open(name, os.O_RDWR)
        with contextlib.suppress(OSError):
            fcntl.ioctl(fd, termios.TIOCSCTTY, 0)

    try:
        yield master, preexec
    finally:
        os.close(slave)
        os.close(master)


def read_until(master: int, text: str) -> str:
    """What the gateway wrote on the terminal, up to and including ``text``."""
    seen = ""
    deadline = time.monotonic() + TIMEOUT
    while text not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"the terminal never showed {text!r}; it showed {seen!r}")
        ready, _, _ = select.select([master], [], [], left)
        if ready:
            seen += os.read(master, 4096).decode(errors="replace")
    return seen


def approval_of(gw: Gateway) -> dict[str, Any]:
    records = [r for r in gw.audit_records() if r.get("tool") == "echo" and "approval" in r]
    return records[-1]


@pytest.mark.parametrize(("typed", "outcome"), [("y", "approved"), ("n", "denied"), ("", "denied")])
def test_terminal_answer_decides(
    gw: Gateway, terminal: tuple[int, Callable[[], None]], typed: str, outcome: str
) -> None:
    """Y approves; n, or just Enter, denies; the approver is the OS user."""
    master, preexec = terminal
    raw = gw.raw(fixture_server(), TTY, preexec=preexec)
    raw.initialize()
    raw.send(
        {"id": 9, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "t"}}}
    )
    shown = read_until(master, "Approve?")
    assert 'wants to run tool "echo"' in shown
    os.write(master, typed.encode() + b"\n")
    result = raw.response(9)["result"]
    record = approval_of(gw)
    assert record["approval"] == {
        "channel": "tty",
        "outcome": outcome,
        "approver": getpass.getuser(),
    }
    if outcome == "approved":
        assert result["content"][0]["text"] == "t"
    else:
        assert result["isError"] is True


def test_without_a_terminal_the_channel_is_skipped(gw: Gateway) -> None:
    """No controlling terminal: tty is unavailable; with no other channel, denied."""
    raw = gw.raw(fixture_server(), TTY)
    raw.initialize()
    result = raw.call("echo", {"text": "t"})["result"]
    assert result["isError"] is True
    assert "tty: no controlling terminal" in result["content"][0]["text"]
    assert approval_of(gw)["approval"] == {"channel": "none", "outcome": "unavailable"}


def test_server_stderr_cannot_draw_on_the_terminal(gw: Gateway) -> None:
    """With the tty channel configured, escape sequences on the server's stderr are defused."""
    raw = gw.raw(fixture_server(), TTY)
    raw.initialize()
    forged = '\x1b[2J\x1b[H MCP server wants to run tool "read_file"\nApprove? '
    assert raw.call("complain", {"text": forged})["result"]["content"][0]["text"] == "done"
    raw.close_stdin()
    raw.wait()
    err = gw.stderr()
    assert "\x1b" not in err
    assert "<U+001B>[2J<U+001B>[H MCP server wants" in err
