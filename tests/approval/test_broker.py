"""The broker: one question to one channel, with a deadline."""

from __future__ import annotations

import threading

from portcullis.approval.broker import Broker
from portcullis.approval.request import ApprovalRequest, Done, Outcome, new_request

WAIT = 30.0


class Desk:
    """A channel whose answers the test gives by hand (no person can run inside a test)."""

    name = "desk"

    def __init__(self, why: str | None = None) -> None:
        self.why = why
        self.done: Done | None = None
        self.withdrawn = threading.Event()

    def unavailable(self) -> str | None:
        return self.why

    def ask(self, request: ApprovalRequest, done: Done) -> Desk:
        self.done = done
        return self

    def withdraw(self) -> None:
        self.withdrawn.set()


class Inbox:
    def __init__(self) -> None:
        self.got: list[Outcome] = []
        self.event = threading.Event()

    def __call__(self, outcome: Outcome) -> None:
        self.got.append(outcome)
        self.event.set()


def request() -> ApprovalRequest:
    return new_request("s", "tools/call", "t", {"a": 1}, timeout_s=1)


def test_an_answer_arrives_once_and_stops_the_clock() -> None:
    """The channel's answer is passed on; the deadline then never fires."""
    desk, inbox = Desk(), Inbox()
    Broker({"desk": desk}, 0.2).ask("desk", request(), inbox)
    assert desk.done is not None
    desk.done(Outcome("approved", "desk", "alice"))
    desk.done(Outcome("denied", "desk", "alice"))  # a second answer is ignored
    assert not desk.withdrawn.wait(0.5)
    assert [o.outcome for o in inbox.got] == ["approved"]


def test_silence_times_out_and_withdraws() -> None:
    """No answer within the timeout: a timeout outcome, and the question is withdrawn."""
    desk, inbox = Desk(), Inbox()
    Broker({"desk": desk}, 0.1).ask("desk", request(), inbox)
    assert inbox.event.wait(WAIT)
    assert inbox.got[0].outcome == "timeout"
    assert "within 0.1 s" in inbox.got[0].reason
    assert desk.withdrawn.is_set()
    assert desk.done is not None
    desk.done(Outcome("approved", "desk", "alice"))  # too late
    assert len(inbox.got) == 1


def test_withdrawn_questions_report_nothing() -> None:
    """After withdraw, neither the answer nor the deadline reaches the session."""
    desk, inbox = Desk(), Inbox()
    ticket = Broker({"desk": desk}, 0.1).ask("desk", request(), inbox)
    ticket.withdraw()
    assert desk.withdrawn.is_set()
    assert desk.done is not None
    desk.done(Outcome("approved", "desk", "alice"))
    assert not inbox.event.wait(0.3)


def test_unavailable_channels_say_why() -> None:
    """An unknown, unavailable or crashing channel is unavailable, never an approval."""

    class Broken(Desk):
        def unavailable(self) -> str | None:
            raise OSError("boom")

    broker = Broker({"desk": Desk("no terminal"), "broken": Broken()}, 1)
    assert broker.unavailable("desk") == "no terminal"
    assert broker.unavailable("nope") == "not set up in this gateway"
    assert broker.unavailable("broken") == "failed (OSError: boom)"
