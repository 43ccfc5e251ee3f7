"""``portcullis approvals``: exit codes, messages and where codes are (not) shown."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portcullis.approval.console import ConsoleChannel
from portcullis.approval.request import ApprovalRequest, Outcome, new_request
from tests.approval.conftest import WAIT_S, Terminal

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "SO_PEERCRED"), reason="peer credentials are read with SO_PEERCRED here"
)


@pytest.fixture
def channel(home: Path) -> Iterator[ConsoleChannel]:
    ch = ConsoleChannel(home / "approvals", log=lambda _: None)
    ch.start()
    yield ch
    ch.close()


def ask(channel: ConsoleChannel, **kw: Any) -> tuple[ApprovalRequest, queue.Queue[Outcome]]:
    req = new_request("files", "tools/call", "write_file", {"path": "/srv/a"}, timeout_s=60, **kw)
    outcomes: queue.Queue[Outcome] = queue.Queue()
    channel.ask(req, outcomes.put)
    return req, outcomes


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portcullis", "approvals", *args],
        env={**os.environ, "PORTCULLIS_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def test_nothing_pending_without_a_queue(home: Path) -> None:
    """With no gateway ever started: exit 0, "no pending approvals", no directory created."""
    result = cli(home / "fresh", "list")
    assert result.returncode == 0
    assert result.stdout.strip() == "no pending approvals"
    assert not (home / "fresh").exists()
    result = cli(home, "list", "--json")
    assert json.loads(result.stdout) == {"pending": []}


def test_text_list_off_a_terminal_hides_codes(channel: ConsoleChannel, home: Path) -> None:
    """Piped, ``list`` shows the summary and how to get the code, but not the code."""
    req, _ = ask(channel)
    result = cli(home, "list")
    assert result.returncode == 0
    assert req.id in result.stdout
    assert 'MCP server "files" wants to run tool "write_file"' in result.stdout
    assert req.code not in result.stdout
    assert "codes are shown only on a terminal" in result.stdout


def test_no_subcommand_off_a_terminal_lists(channel: ConsoleChannel, home: Path) -> None:
    """Without a terminal, bare ``portcullis approvals`` behaves like ``list``."""
    req, _ = ask(channel)
    result = cli(home)
    assert result.returncode == 0
    assert req.id in result.stdout
    assert req.code not in result.stdout
    as_json = json.loads(cli(home, "--json").stdout)
    assert [e["id"] for e in as_json["pending"]] == [req.id]
    assert "code" not in as_json["pending"][0]


def test_approve_without_code_off_a_terminal_exits_2(channel: ConsoleChannel, home: Path) -> None:
    """No ``--code`` and no terminal to ask on: exit 2, saying where the code is shown."""
    req, outcomes = ask(channel)
    result = cli(home, "approve", req.id)
    assert result.returncode == 2
    assert "the code is shown with the request by `portcullis approvals`" in result.stderr
    assert outcomes.empty()


def test_unknown_id_exits_1(home: Path) -> None:
    """An id nobody holds: exit 1, for approve and deny alike."""
    for decision in ("approve", "deny"):
        result = cli(home, decision, "nope", "--code", "ABC-DEF")
        assert result.returncode == 1
        assert "no pending request with this id" in result.stderr


def test_wrong_code_exits_1_with_the_gateways_message(channel: ConsoleChannel, home: Path) -> None:
    """A wrong code is exit 1, and the message says how many tries remain."""
    req, outcomes = ask(channel)
    result = cli(home, "deny", req.id, "--code", "ZZZ-ZZZ")
    assert result.returncode == 1
    assert "wrong code (4 more wrong codes deny the request)" in result.stderr
    assert outcomes.empty()


def test_json_answer(channel: ConsoleChannel, home: Path) -> None:
    """``approve --json`` prints the gateway's response; errors keep their exit codes."""
    req, outcomes = ask(channel, session_ok=True)
    result = cli(home, "approve", req.id, "--code", req.code, "--session", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"ok": True, "outcome": "approved"}
    outcome = outcomes.get(timeout=WAIT_S)
    assert outcome.for_session
    again = cli(home, "approve", req.id, "--code", req.code, "--json")
    assert again.returncode == 1
    assert json.loads(again.stdout)["status"] == "unknown"


def test_session_refused_for_a_once_only_call(channel: ConsoleChannel, home: Path) -> None:
    """``--session`` on a call the policy allows only once: exit 2, call still pending."""
    req, outcomes = ask(channel)
    result = cli(home, "approve", req.id, "--code", req.code, "--session")
    assert result.returncode == 2
    assert "this call can only be approved once" in result.stderr
    assert outcomes.empty()
    assert cli(home, "approve", req.id, "--code", req.code).returncode == 0
    assert outcomes.get(timeout=WAIT_S).approved


def test_bad_usage_exits_2(home: Path) -> None:
    """An unknown subcommand or a missing id is a usage error."""
    assert cli(home, "approve").returncode == 2
    assert cli(home, "frobnicate").returncode == 2
    assert cli(home, "deny", "x", "--session", "--code", "A").returncode == 2


class Pty(Terminal):
    """A terminal for the CLI: stdin, stdout and stderr all on one pseudo-terminal."""

    def spawn(self, home: Path, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "portcullis", "approvals", *args],
            env={**os.environ, "PORTCULLIS_HOME": str(home)},
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            start_new_session=True,
        )


@pytest.fixture
def term() -> Iterator[Pty]:
    pytest.importorskip("pty")
    t = Pty()
    yield t
    t.close()


def test_list_on_a_terminal_shows_codes(channel: ConsoleChannel, home: Path, term: Pty) -> None:
    """On a terminal, ``list`` shows each request's code with it."""
    req, _ = ask(channel)
    proc = term.spawn(home, "list")
    assert proc.wait(timeout=WAIT_S) == 0
    assert f"code: {req.code}" in term.read_until(f"code: {req.code}")


def test_interactive_loop_approves_and_ctrl_c_ends(
    channel: ConsoleChannel, home: Path, term: Pty
) -> None:
    """Bare ``portcullis approvals`` on a terminal asks about new requests; Ctrl-C exits 0."""
    req, outcomes = ask(channel, session_ok=True)
    proc = term.spawn(home)
    try:
        shown = term.read_until("[a]pprove / [s]ession / [d]eny / [Enter] skip: ")
        assert f"code: {req.code}" in shown
        os.write(term.master, b"a\n")
        outcome = outcomes.get(timeout=WAIT_S)
        assert outcome.approved
        assert not outcome.for_session
        term.read_until(f"approved {req.id}")
        later, later_outcomes = ask(channel)
        term.read_until("[a]pprove / [d]eny / [Enter] skip: ")
        os.write(term.master, b"d\n")
        assert later_outcomes.get(timeout=WAIT_S).outcome == "denied"
        term.read_until(f"denied {later.id}")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=WAIT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT_S)
