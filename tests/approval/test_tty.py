"""The terminal channel, driven through a real pseudo-terminal."""

from __future__ import annotations

import getpass
import time
from collections.abc import Iterator

import pytest

from portcullis.approval.request import ApprovalRequest, new_request
from portcullis.approval.tty import TtyChannel
from tests.approval.conftest import Done, Terminal

pty = pytest.importorskip("pty")


@pytest.fixture
def term() -> Iterator[Terminal]:
    t = Terminal()
    yield t
    t.close()


@pytest.fixture
def channel(term: Terminal) -> Iterator[TtyChannel]:
    ch = TtyChannel(term.path)
    assert ch.unavailable() is None
    yield ch
    ch.close()


def request(subject: str = "write_file", **kw: object) -> ApprovalRequest:
    return new_request("files", "tools/call", subject, {"path": "/srv/a"}, timeout_s=60, **kw)  # type: ignore[arg-type]


def test_yes_approves(channel: TtyChannel, term: Terminal) -> None:
    """The summary and the question appear on the terminal; "y" approves as this user."""
    done = Done()
    channel.ask(request(), done)
    shown = term.read_until("Approve? [y]es / [n]o ")
    assert 'MCP server "files" wants to run tool "write_file"' in shown
    assert "[s]ession" not in shown
    term.type("y\n")
    outcome = done.wait()
    assert outcome.outcome == "approved"
    assert outcome.channel == "tty"
    assert outcome.approver == getpass.getuser()
    assert not outcome.for_session


@pytest.mark.parametrize("answer", ["n\n", "\n", "maybe\n", "s\n"])
def test_anything_but_yes_denies(channel: TtyChannel, term: Terminal, answer: str) -> None:
    """No, an empty line, other words and "s" (session not allowed) all deny."""
    done = Done()
    channel.ask(request(), done)
    term.read_until("Approve?")
    term.type(answer)
    assert done.wait().outcome == "denied"


def test_session_answer_when_allowed(channel: TtyChannel, term: Terminal) -> None:
    """With session_ok the prompt offers [s]ession, and "s" approves for the session."""
    done = Done()
    channel.ask(request(session_ok=True), done)
    term.read_until("[y]es / [n]o / [s]ession")
    term.type("session\n")
    outcome = done.wait()
    assert outcome.approved
    assert outcome.for_session


def test_typeahead_is_discarded(channel: TtyChannel, term: Terminal) -> None:
    """A "y" typed before the question appeared does not answer it."""
    term.type("y\n")
    time.sleep(0.1)
    done = Done()
    channel.ask(request(), done)
    term.read_until("Approve?")
    term.type("n\n")
    assert done.wait().outcome == "denied"


def test_withdraw_interrupts_the_prompt(channel: TtyChannel, term: Terminal) -> None:
    """withdraw() ends the prompt with "(withdrawn)"; the next question is asked normally."""
    first, done_first = request("first_tool"), Done()
    ticket = channel.ask(first, done_first)
    term.read_until("Approve?")
    ticket.withdraw()
    term.read_until("(withdrawn)")
    done_first.assert_silent()
    done = Done()
    channel.ask(request("second_tool"), done)
    assert "second_tool" in term.read_until("Approve?")
    term.type("y\n")
    assert done.wait().approved
    done_first.assert_silent(0.05)


def test_questions_are_asked_one_at_a_time(channel: TtyChannel, term: Terminal) -> None:
    """A second question waits until the first is answered, then is asked."""
    done1, done2 = Done(), Done()
    channel.ask(request("first_tool"), done1)
    channel.ask(request("second_tool"), done2)
    shown = term.read_until("Approve?")
    assert "first_tool" in shown
    assert "second_tool" not in shown
    term.type("y\n")
    assert done1.wait().approved
    assert "second_tool" in term.read_until("Approve?")
    term.type("n\n")
    assert done2.wait().outcome == "denied"


def test_withdrawn_while_queued_is_never_asked(channel: TtyChannel, term: Terminal) -> None:
    """A question withdrawn before its turn never reaches the screen."""
    done1, done2, done3 = Done(), Done(), Done()
    channel.ask(request("first_tool"), done1)
    ticket = channel.ask(request("second_tool"), done2)
    channel.ask(request("third_tool"), done3)
    term.read_until("Approve?")
    ticket.withdraw()
    term.type("y\n")
    assert done1.wait().approved
    assert "third_tool" in term.read_until("Approve?")
    term.type("y\n")
    assert done3.wait().approved
    done2.assert_silent(0.05)
    assert "second_tool" not in term.everything


def test_unopenable_terminal_is_unavailable() -> None:
    """A path that cannot be opened gives the reason; asking anyway reports unavailable."""
    ch = TtyChannel("/nonexistent/tty")
    reason = ch.unavailable()
    assert reason is not None
    assert reason.startswith("no controlling terminal (/nonexistent/tty:")
    done = Done()
    ch.ask(request(), done)
    try:
        outcome = done.wait()
    finally:
        ch.close()
    assert outcome.outcome == "unavailable"


def test_close_reports_pending_questions_unavailable(term: Terminal) -> None:
    """Closing the channel ends the prompt on screen and never approves what was queued."""
    ch = TtyChannel(term.path)
    done1, done2, done3 = Done(), Done(), Done()
    ch.ask(request("first_tool"), done1)
    ch.ask(request("second_tool"), done2)
    term.read_until("Approve?")
    ch.close()
    assert done1.wait().outcome == "unavailable"
    assert done2.wait().outcome == "unavailable"
    ch.ask(request("third_tool"), done3)
    assert done3.wait().outcome == "unavailable"
