"""The console channel: a real Unix socket, answered by real ``portcullis approvals`` processes."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portcullis.approval import console
from portcullis.approval.console import ConsoleChannel, answer, pending
from portcullis.approval.request import ApprovalRequest, new_request
from tests.approval.conftest import WAIT_S, Done

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "SO_PEERCRED"), reason="peer credentials are read with SO_PEERCRED here"
)


@pytest.fixture
def logs() -> list[str]:
    return []


@pytest.fixture
def channel(home: Path, logs: list[str]) -> Iterator[ConsoleChannel]:
    ch = ConsoleChannel(home / "approvals", log=logs.append)
    ch.start()
    assert ch.unavailable() is None
    yield ch
    ch.close()


def request(**kw: Any) -> ApprovalRequest:
    return new_request(
        "files", "tools/call", "write_file", {"path": "/srv/a.txt"}, timeout_s=60, **kw
    )


def cli(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PORTCULLIS_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "portcullis", "approvals", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def test_approved_from_another_process(channel: ConsoleChannel, home: Path) -> None:
    """``portcullis approvals approve ID --code CODE`` in another process approves the call."""
    req, done = request(), Done()
    channel.ask(req, done)
    result = cli(home, "approve", req.id, "--code", req.code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"approved {req.id}"
    outcome = done.wait()
    assert outcome.outcome == "approved"
    assert outcome.channel == "console"
    import pwd

    assert outcome.approver == pwd.getpwuid(os.getuid()).pw_name
    assert not outcome.for_session
    assert pending(home / "approvals") == []


def test_denied_from_another_process(channel: ConsoleChannel, home: Path) -> None:
    """``deny`` with the code reports a denial."""
    req, done = request(), Done()
    channel.ask(req, done)
    result = cli(home, "deny", req.id, "--code", req.code)
    assert result.returncode == 0, result.stderr
    assert done.wait().outcome == "denied"


def test_code_is_case_insensitive_and_dash_optional(channel: ConsoleChannel, home: Path) -> None:
    """``abcdef`` answers a request whose code is ``ABC-DEF``."""
    req, done = request(), Done()
    channel.ask(req, done)
    loose = req.code.replace("-", "").lower()
    assert answer(home / "approvals", req.id, loose, "approve") == {
        "ok": True,
        "outcome": "approved",
    }
    assert done.wait().approved


def test_wrong_codes_are_refused_then_deny(channel: ConsoleChannel, home: Path) -> None:
    """A wrong code changes nothing; the fifth wrong code denies the request."""
    req, done = request(), Done()
    channel.ask(req, done)
    result = cli(home, "approve", req.id, "--code", "AAA-AAA")
    assert result.returncode == 1
    assert "wrong code" in result.stderr
    done.assert_silent()
    for _ in range(3):
        assert answer(home / "approvals", req.id, "AAA-AAA", "approve")["status"] == "bad-code"
    last = answer(home / "approvals", req.id, "AAA-AAA", "approve")
    assert last["status"] == "bad-code"
    assert "denied" in last["error"]
    outcome = done.wait()
    assert outcome.outcome == "denied"
    assert outcome.reason == "too many wrong codes"
    # Once decided, even the right code finds nothing.
    assert answer(home / "approvals", req.id, req.code, "approve")["status"] == "unknown"


def test_unknown_id_exits_1(channel: ConsoleChannel, home: Path) -> None:
    """An id no gateway holds is exit status 1."""
    result = cli(home, "approve", "no-such-id", "--code", "ABC-DEF")
    assert result.returncode == 1
    assert "no pending request" in result.stderr


def test_list_json_never_has_codes(channel: ConsoleChannel, home: Path) -> None:
    """``list --json`` shows the request but not its code; the socket gives it to a person."""
    req = request()
    channel.ask(req, Done())
    result = cli(home, "list", "--json")
    assert result.returncode == 0
    listed = json.loads(result.stdout)["pending"]
    assert [e["id"] for e in listed] == [req.id]
    assert "code" not in listed[0]
    assert req.code not in result.stdout
    assert listed[0]["subject"] == "write_file"
    assert pending(home / "approvals")[0]["code"] == req.code


def test_log_line_names_the_tool_but_never_the_code(
    channel: ConsoleChannel, logs: list[str]
) -> None:
    """The gateway's stderr line points at ``portcullis approvals`` and hides the code."""
    req = request()
    channel.ask(req, Done())
    assert logs == [
        'approval needed for write_file on server "files": run `portcullis approvals` in a terminal'
    ]
    assert req.code not in logs[0]


def test_withdraw_removes_the_request(channel: ConsoleChannel, home: Path) -> None:
    """A withdrawn request is gone from the list and can no longer be answered."""
    req, done = request(), Done()
    ticket = channel.ask(req, done)
    ticket.withdraw()
    ticket.withdraw()  # idempotent
    assert pending(home / "approvals") == []
    assert answer(home / "approvals", req.id, req.code, "approve")["status"] == "unknown"
    done.assert_silent()


def test_session_approval_needs_session_ok(channel: ConsoleChannel, home: Path) -> None:
    """``--session`` is refused for a once-only request and recorded when allowed."""
    once, done_once = request(), Done()
    channel.ask(once, done_once)
    result = cli(home, "approve", once.id, "--code", once.code, "--session")
    assert result.returncode == 2
    assert "only be approved once" in result.stderr
    done_once.assert_silent(0.1)

    session, done_session = request(session_ok=True), Done()
    channel.ask(session, done_session)
    got = answer(home / "approvals", session.id, session.code, "approve", for_session=True)
    assert got == {"ok": True, "outcome": "approved"}
    outcome = done_session.wait()
    assert outcome.approved
    assert outcome.for_session


def test_expired_request_is_unknown(channel: ConsoleChannel, home: Path) -> None:
    """A request past its expiry is neither listed nor answerable."""
    req = new_request("files", "tools/call", "write_file", {}, timeout_s=-1)
    channel.ask(req, Done())
    assert pending(home / "approvals") == []
    assert cli(home, "approve", req.id, "--code", req.code).returncode == 1


# A fake MCP server: waits for a go line, then runs an approver as its child and reports.
SERVER = """
import json, subprocess, sys
from pathlib import Path
from portcullis.approval.console import answer, pending
directory, home = sys.argv[1], sys.argv[2]
request_id, code = sys.stdin.readline().split()
listed = pending(Path(directory))
got = answer(Path(directory), request_id, code, "approve")
child = subprocess.run(
    [sys.executable, "-m", "portcullis", "approvals", "approve", request_id, "--code", code],
    capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
)
print(json.dumps({"codes": ["code" in e for e in listed], "answer": got,
                  "rc": child.returncode, "stderr": child.stderr}), flush=True)
"""


def run_server(home: Path, on: ConsoleChannel, req: ApprovalRequest) -> dict[str, Any]:
    """Start the fake server in its own session, register it with ``on``, let it answer."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(home / "approvals"), str(home)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PORTCULLIS_HOME": str(home)},
    )
    try:
        on.launched(proc.pid, "evil")
        out, _ = proc.communicate(f"{req.id} {req.code}\n", timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    result: dict[str, Any] = json.loads(out)
    return result


def test_process_started_by_the_server_cannot_answer(channel: ConsoleChannel, home: Path) -> None:
    """The launched server and its children see no codes and are refused (exit 2)."""
    req, done = request(), Done()
    channel.ask(req, done)
    got = run_server(home, channel, req)
    assert got["codes"] == [False]
    assert got["answer"]["status"] == "refused"
    assert "started by an MCP server (evil)" in got["answer"]["error"]
    assert got["rc"] == 2
    assert "cannot answer approvals" in got["stderr"]
    done.assert_silent()
    registry = json.loads(channel.registry_path.read_text())
    assert registry["gateway_pid"] == os.getpid()
    assert isinstance(registry["server_pid"], int)


def test_server_of_another_gateway_cannot_answer(channel: ConsoleChannel, home: Path) -> None:
    """A server launched by a second gateway is barred from the first gateway's queue too."""
    other = ConsoleChannel(home / "approvals", log=lambda _: None)
    other.start()
    try:
        req, done = request(), Done()
        channel.ask(req, done)
        got = run_server(home, other, req)
        assert got["answer"]["status"] == "refused"
        assert got["rc"] == 2
        done.assert_silent()
    finally:
        other.close()


def test_dead_gateway_is_cleaned_up(home: Path) -> None:
    """A socket nobody listens on, whose registry names a dead pid, is removed by a client."""
    directory = home / "approvals"
    directory.mkdir(mode=0o700)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=10)
    sock_path, registry = directory / "dead.sock", directory / "dead.json"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(sock_path))
    registry.write_text(json.dumps({"gateway_pid": proc.pid, "server_pid": None}))
    assert pending(directory) == []
    assert not sock_path.exists()
    assert not registry.exists()


def test_unreachable_socket_of_a_live_gateway_is_kept(home: Path) -> None:
    """A refused connection from a gateway that is still alive is skipped, not removed."""
    directory = home / "approvals"
    directory.mkdir(mode=0o700)
    sock_path, registry = directory / "busy.sock", directory / "busy.json"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(sock_path))
    registry.write_text(json.dumps({"gateway_pid": os.getpid(), "server_pid": None}))
    assert pending(directory) == []
    assert sock_path.exists()
    assert registry.exists()


def test_close_removes_socket_and_registry(home: Path) -> None:
    """After close() the gateway leaves nothing behind and is unavailable."""
    ch = ConsoleChannel(home / "approvals", log=lambda _: None)
    assert ch.unavailable() == "the console channel was not started"
    ch.start()
    assert ch.socket_path.exists()
    assert ch.registry_path.exists()
    assert ch.socket_path.stat().st_mode & 0o777 == 0o600
    assert ch.registry_path.stat().st_mode & 0o777 == 0o600
    assert (home / "approvals").stat().st_mode & 0o777 == 0o700
    req, done = request(), Done()
    ch.ask(req, done)
    ch.close()
    assert not ch.socket_path.exists()
    assert not ch.registry_path.exists()
    assert ch.unavailable() is not None
    done.assert_silent(0.1)


def test_unsafe_directory_makes_the_channel_unavailable(home: Path) -> None:
    """A queue writable by others, or a symlink, is refused with the reason."""
    loose = home / "approvals"
    loose.mkdir(mode=0o700)
    loose.chmod(0o770)
    ch = ConsoleChannel(loose, log=lambda _: None)
    ch.start()
    assert "writable by others" in (ch.unavailable() or "")
    link = home / "link"
    link.symlink_to(loose)
    ch = ConsoleChannel(link, log=lambda _: None)
    ch.start()
    assert "symlink" in (ch.unavailable() or "")


def test_too_long_socket_path_is_unavailable(home: Path) -> None:
    """A directory too deep for AF_UNIX gives a clear reason instead of a crash."""
    deep = home / ("d" * 60) / ("e" * 60)
    deep.mkdir(mode=0o700, parents=True)
    ch = ConsoleChannel(deep, log=lambda _: None)
    ch.start()
    assert "PORTCULLIS_HOME" in (ch.unavailable() or "")
    assert list(deep.iterdir()) == []


def test_ask_on_an_unavailable_channel_reports_unavailable(home: Path) -> None:
    """Asked anyway, an unstarted channel answers "unavailable" later, never approved."""
    ch = ConsoleChannel(home / "approvals", log=lambda _: None)
    done = Done()
    ch.ask(request(), done)
    outcome = done.wait()
    assert outcome.outcome == "unavailable"
    assert outcome.channel == "console"


def raw(channel: ConsoleChannel, data: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(WAIT_S)
        s.connect(str(channel.socket_path))
        # The gateway may hang up on an oversize line before reading it all.
        with contextlib.suppress(OSError):
            s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        reply = console._read_line(s, 1 << 20)
    result: dict[str, Any] = json.loads(reply)
    return result


def test_bad_requests_are_refused(channel: ConsoleChannel) -> None:
    """Oversize lines, non-objects, unknown ops and malformed answers are refused."""
    assert raw(channel, b"x" * (70 * 1024))["status"] == "refused"
    assert raw(channel, b"[1, 2]\n")["status"] == "refused"
    assert raw(channel, b'{"op": "approve-all"}\n')["status"] == "refused"
    bad = {"op": "answer", "id": 1, "code": None, "decision": "approve"}
    assert raw(channel, json.dumps(bad).encode() + b"\n")["status"] == "refused"
    weird = {"op": "answer", "id": "x", "code": "y", "decision": "maybe"}
    assert raw(channel, json.dumps(weird).encode() + b"\n")["status"] == "refused"


def test_stuck_peer_does_not_block_others(channel: ConsoleChannel, home: Path) -> None:
    """A client that connects and says nothing does not delay the next one."""
    req = request()
    channel.ask(req, Done())
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stuck:
        stuck.connect(str(channel.socket_path))
        start = time.monotonic()
        assert [e["id"] for e in pending(home / "approvals")] == [req.id]
        assert time.monotonic() - start < 1.5


def test_server_stays_barred_after_deleting_its_registry(
    channel: ConsoleChannel, home: Path
) -> None:
    """A registry removed after a gateway has read it does not unbar that gateway's server."""
    other = ConsoleChannel(home / "approvals", log=lambda _: None)
    other.start()
    try:
        other.launched(os.getpid(), "this-test")
        req, done = request(), Done()
        channel.ask(req, done)
        got = answer(home / "approvals", req.id, req.code, "approve")
        assert got["status"] == "refused"
        other.registry_path.unlink()
        got = answer(home / "approvals", req.id, req.code, "approve")
        assert got["status"] == "refused"
        done.assert_silent(0.1)
    finally:
        other.close()


def test_slow_peer_is_cut_off(channel: ConsoleChannel) -> None:
    """A peer trickling bytes without a newline is dropped within the I/O deadline."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(WAIT_S)
        s.connect(str(channel.socket_path))
        start = time.monotonic()
        reply = b""
        with contextlib.suppress(OSError):
            while time.monotonic() - start < WAIT_S:
                s.sendall(b" ")
                ready, _, _ = select.select([s], [], [], 0.2)
                if ready:
                    reply = s.recv(4096)
                    break
        assert time.monotonic() - start < 4
        assert b"refused" in reply
