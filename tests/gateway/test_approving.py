"""The session's approval flow: channel order, outcomes, withdrawal, and what is forwarded."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from portcullis.approval.broker import Broker
from portcullis.approval.request import ApprovalRequest, Done, Outcome
from portcullis.gateway.session import Out, Session
from portcullis.policy.compiled import Rules
from tests.gateway.conftest import Recorder, decode, make_session, msg

WAIT = 30.0


class Desk:
    """An out-of-band channel the test answers by hand.

    A person cannot run inside a unit test; the console and tty channels are tested with real
    processes and terminals in tests/e2e.
    """

    def __init__(self, name: str, why: str | None = None) -> None:
        self.name = name
        self.why = why
        self.asked: list[ApprovalRequest] = []
        self.done: Done | None = None
        self.withdrawn = 0

    def unavailable(self) -> str | None:
        return self.why

    def ask(self, request: ApprovalRequest, done: Done) -> Desk:
        self.asked.append(request)
        self.done = done
        return self

    def withdraw(self) -> None:
        self.withdrawn += 1


class Relay:
    """What the transport does with ``wake``: run the outcome, keep what it sends."""

    def __init__(self, session: Session) -> None:
        self.sent: list[Out] = []
        self.event = threading.Event()
        self.lock = threading.Lock()
        session.wake = self.wake

    def wake(self, fn: Callable[[], list[Out]]) -> None:
        with self.lock:
            self.sent += fn()
        self.event.set()

    def wait(self) -> list[Out]:
        assert self.event.wait(WAIT), "no outcome arrived"
        self.event.clear()
        return self.sent


def setup(
    *desks: Desk, timeout_s: float = 60, recorder: Recorder | None = None, **policy: Any
) -> tuple[Session, Relay]:
    order = tuple(d.name for d in desks)
    broker = Broker({d.name: d for d in desks}, timeout_s, order=order)
    session = make_session(recorder, broker=broker, **policy)
    return session, Relay(session)


CALL = msg(id=5, method="tools/call", params={"name": "write_file", "arguments": {"p": "/a"}})


def test_approved_call_forwards_the_exact_bytes(recorder: Recorder) -> None:
    """An approval forwards the call as the client sent it, after the decision is audited."""
    desk = Desk("console")
    session, relay = setup(desk, recorder=recorder)
    assert session.from_client(CALL) == []  # kept while the person is asked
    assert desk.asked[0].subject == "write_file"
    assert desk.done is not None
    desk.done(Outcome("approved", "console", "alice"))
    assert relay.wait() == [("server", CALL)]
    last = recorder.records[-1]
    assert last["decision"] == "confirm"
    assert last["approval"] == {"channel": "console", "outcome": "approved", "approver": "alice"}


def test_denied_call_is_an_error_result_naming_the_approver(recorder: Recorder) -> None:
    """A person's no is an isError result the model can read; nothing reaches the server."""
    desk = Desk("console")
    session, relay = setup(desk, recorder=recorder)
    session.from_client(CALL)
    assert desk.done is not None
    desk.done(Outcome("denied", "console", "alice"))
    [(dest, data)] = relay.wait()
    assert dest == "client"
    result = decode(data)["result"]
    assert result["isError"] is True
    assert "denied by alice on the console" in result["content"][0]["text"]
    assert recorder.records[-1]["decision"] == "deny"


def test_unavailable_channel_passes_to_the_next() -> None:
    """An unavailable channel is skipped; the next one is asked."""
    tty, console = Desk("tty", "no controlling terminal"), Desk("console")
    session, _ = setup(tty, console)
    session.from_client(CALL)
    assert tty.asked == [] and len(console.asked) == 1


def test_timeout_passes_to_the_next_and_ends_in_a_timeout() -> None:
    """Silence on every channel ends in a refusal that says nobody answered."""
    first, second = Desk("console"), Desk("tty")
    session, relay = setup(first, second, timeout_s=0.05)
    session.from_client(CALL)
    sent = relay.wait()
    while not sent:
        sent = relay.wait()
    assert len(first.asked) == len(second.asked) == 1
    assert first.withdrawn == 1 and second.withdrawn == 1
    text = decode(sent[-1][1])["result"]["content"][0]["text"]
    assert "nobody answered in time" in text
    assert "console: no answer on the console within 0.05 s" in text


def test_cancellation_withdraws_and_later_answers_are_ignored(recorder: Recorder) -> None:
    """The client's cancel withdraws the question; an answer after it forwards nothing."""
    desk = Desk("console")
    session, relay = setup(desk, recorder=recorder)
    session.from_client(CALL)
    cancel = msg(method="notifications/cancelled", params={"requestId": 5})
    assert session.from_client(cancel) == []
    assert desk.withdrawn == 1
    assert desk.done is not None
    desk.done(Outcome("approved", "console", "alice"))
    assert not relay.event.wait(0.3)
    assert relay.sent == []
    assert recorder.records[-1]["approval"]["outcome"] == "cancelled"


def test_an_id_being_asked_about_cannot_be_reused() -> None:
    """A second request with the id of a call waiting for a person is refused."""
    session, _ = setup(Desk("console"))
    session.from_client(CALL)
    [(_, data)] = session.from_client(CALL)
    assert "already in flight" in decode(data)["error"]["message"]


def test_server_exit_answers_calls_being_asked_about() -> None:
    """When the server exits, a call waiting for a person is answered, its question withdrawn."""
    desk = Desk("console")
    session, _ = setup(desk)
    session.from_client(CALL)
    [(_, data)] = session.upstream_gone(1)
    assert decode(data)["error"]["code"] == -31902
    assert desk.withdrawn == 1


def test_audit_failure_refuses_an_approved_call(recorder: Recorder) -> None:
    """An approval that cannot be recorded does not forward the call."""
    desk = Desk("console")
    session, relay = setup(desk, recorder=recorder)
    session.from_client(CALL)
    recorder.fail = True
    assert desk.done is not None
    desk.done(Outcome("approved", "console", "alice"))
    [(dest, data)] = relay.wait()
    assert dest == "client"
    assert "audit log cannot be written" in decode(data)["result"]["content"][0]["text"]


def test_no_channels_configured_is_a_denial() -> None:
    """Without any channel the call is denied at once, saying so."""
    session = make_session()
    [(_, data)] = session.from_client(CALL)
    assert "approvals.channels is empty" in decode(data)["result"]["content"][0]["text"]


def test_session_scope_needs_the_policy_and_the_person() -> None:
    """remember: offers the session scope; once taken, later calls of that tool are not asked."""
    desk = Desk("console")
    tools = Rules(default="deny", confirm=("write_*",), remember=("write_file",))
    session, relay = setup(desk, tools=tools)
    session.from_client(CALL)
    assert desk.asked[0].session_ok
    assert desk.done is not None
    desk.done(Outcome("approved", "console", "alice", for_session=True))
    relay.wait()
    other = msg(id=6, method="tools/call", params={"name": "write_file", "arguments": {"p": "/b"}})
    assert session.from_client(other) == [("server", other)]
    assert len(desk.asked) == 1
    third = msg(id=7, method="tools/call", params={"name": "write_other", "arguments": {}})
    assert session.from_client(third) == []  # another tool: asked
    assert not desk.asked[1].session_ok


def test_close_withdraws_every_question() -> None:
    """Ending the session withdraws what is still asked."""
    desk = Desk("console")
    session, _ = setup(desk)
    session.from_client(CALL)
    session.close()
    assert desk.withdrawn == 1


def test_a_late_approval_never_covers_a_new_call_with_the_same_id() -> None:
    """An approval still on its way when the call is cancelled cannot approve its successor."""
    desk = Desk("console")
    session, _ = setup(desk)
    queued: list[Callable[[], list[Out]]] = []
    session.wake = queued.append  # the relay is busy: the outcome waits for its lock
    session.from_client(CALL)
    assert desk.done is not None
    desk.done(Outcome("approved", "console", "alice"))  # approves call A ...
    session.from_client(msg(method="notifications/cancelled", params={"requestId": 5}))
    other = msg(id=5, method="tools/call", params={"name": "write_file", "arguments": {"p": "/x"}})
    assert session.from_client(other) == []  # ... call B reuses id 5 and is asked about
    [late] = queued
    assert late() == []  # A's approval arrives now: it is not B's
    assert len(desk.asked) == 2
