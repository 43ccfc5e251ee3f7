"""Approvals in the console: digest binding with a real queue, the views, the page over HTTP."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portcullis.approval.console import ConsoleChannel, answer, pending
from portcullis.approval.request import ApprovalRequest, new_request
from portcullis.console.data import answer_request, approval_views
from tests.approval.conftest import Done
from tests.console.conftest import XSS, Console, csrf_of

SECRET = "sk-proj-Ab3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7dE9f"

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "SO_PEERCRED"), reason="peer credentials are read with SO_PEERCRED here"
)


@pytest.fixture
def channel(home: Path) -> Iterator[ConsoleChannel]:
    ch = ConsoleChannel(home / "approvals", log=lambda _: None)
    ch.start()
    assert ch.unavailable() is None
    yield ch
    ch.close()


def request(args: Any = None, **kw: Any) -> ApprovalRequest:
    return new_request(
        "files",
        "tools/call",
        "write_file",
        {"path": "/srv/a.txt"} if args is None else args,
        timeout_s=60,
        reason="write_file needs a person's approval",
        rule="tools.confirm",
        **kw,
    )


def test_answer_with_the_shown_digest_approves(channel: ConsoleChannel, home: Path) -> None:
    """An answer carrying the digest that was shown approves the call."""
    req, done = request(), Done()
    channel.ask(req, done)
    result = answer(home / "approvals", req.id, req.code, "approve", digest=req.digest)
    assert result == {"ok": True, "outcome": "approved"}
    assert done.wait().outcome == "approved"


def test_answer_with_another_digest_is_refused(channel: ConsoleChannel, home: Path) -> None:
    """A different digest is refused with a clear message and the request still waits."""
    req, done = request(), Done()
    channel.ask(req, done)
    other = request({"path": "/etc/passwd"}).digest
    result = answer(home / "approvals", req.id, req.code, "approve", digest=other)
    assert result["status"] == "refused"
    assert "the call changed since it was shown" in result["error"]
    done.assert_silent()
    assert [e["id"] for e in pending(home / "approvals")] == [req.id]


def test_gateway_checks_the_digest_itself(channel: ConsoleChannel, home: Path) -> None:
    """The gateway refuses a mismatched digest even when the client skips its own check."""
    from portcullis.approval.console import _request

    req, done = request(), Done()
    channel.ask(req, done)
    message = {
        "op": "answer",
        "id": req.id,
        "code": req.code,
        "decision": "approve",
        "digest": "0" * 64,
    }
    response = _request(channel.socket_path, message)
    assert response["status"] == "refused"
    assert "changed" in response["error"]
    done.assert_silent()


def test_listing_carries_why_the_policy_asked(channel: ConsoleChannel, home: Path) -> None:
    """Listed entries carry the policy's reason and rule."""
    channel.ask(request(), Done())
    (entry,) = pending(home / "approvals")
    assert entry["reason"] == "write_file needs a person's approval"
    assert entry["rule"] == "tools.confirm"


def test_views_make_hostile_text_visible() -> None:
    """Names and arguments: hidden characters become ⟨U+XXXX⟩ and secrets stay redacted."""
    req = new_request(
        "fi\u202eles",
        "tools/call",
        "wri\u200bte",
        {"token": SECRET, "note": "x\u200by"},
        timeout_s=30,
    )
    entry = {**{f: getattr(req, f) for f in req.__struct_fields__}, "code": req.code}
    (view,) = approval_views([entry], now=req.created)
    assert view.server == "fi⟨U+202E⟩les"
    assert view.subject == "wri⟨U+200B⟩te"
    assert "⟨U+200B⟩" in view.shown and "\u200b" not in view.shown
    assert SECRET not in view.shown and "[REDACTED:" in view.shown
    assert view.seconds_left == 30 and view.answerable


def test_answer_request_binds_to_digest(channel: ConsoleChannel, home: Path) -> None:
    """The console's answer uses the queue's code and refuses a stale digest."""
    req, done = request(), Done()
    channel.ask(req, done)
    stale = answer_request(home / "approvals", req.id, "approve", "f" * 64)
    assert not stale.ok and "changed" in stale.message
    ok = answer_request(home / "approvals", req.id, "session", req.digest)
    assert not ok.ok and "only be approved once" in ok.message  # session_ok is False
    denied = answer_request(home / "approvals", req.id, "deny", req.digest)
    assert denied.ok, denied.message
    assert done.wait().outcome == "denied"
    gone = answer_request(home / "approvals", req.id, "deny", req.digest)
    assert not gone.ok and "no longer waiting" in gone.message


def test_page_lists_and_approves(channel: ConsoleChannel, console: Console) -> None:
    """The page shows the request with its why, digest and buttons; Approve releases it."""
    req, done = request({"path": "/srv/a.txt"}, session_ok=True), Done()
    channel.ask(req, done)
    c = console.login()
    html = c.get("/approvals").text
    assert f'aria-label="Approval request {req.id}"' in html
    assert "write_file needs a person&#39;s approval" in html and "tools.confirm" in html
    assert req.digest in html
    for label in ("Approve", "Deny", "Approve for this session"):
        assert f">{label}</button>" in html
    assert req.code not in html  # the code stays in the console process
    r = c.post(
        f"/approvals/{req.id}",
        data={"csrf": csrf_of(html), "digest": req.digest, "decision": "session"},
    )
    assert r.status_code == 303
    outcome = done.wait()
    assert outcome.outcome == "approved" and outcome.for_session
    after = c.get("/approvals").text
    assert "approved for this session: write_file" in after
    assert "No calls are waiting for approval." in after


def test_page_deny_and_stale_digest(channel: ConsoleChannel, console: Console) -> None:
    """Deny denies; a form carrying another digest answers nothing and says why."""
    req, done = request(), Done()
    channel.ask(req, done)
    c = console.login()
    csrf = csrf_of(c.get("/approvals").text)
    c.post(f"/approvals/{req.id}", data={"csrf": csrf, "digest": "a" * 64, "decision": "deny"})
    assert "the call changed since it was shown" in c.get("/approvals").text
    done.assert_silent()
    c.post(f"/approvals/{req.id}", data={"csrf": csrf, "digest": req.digest, "decision": "deny"})
    assert done.wait().outcome == "denied"


def test_no_session_button_unless_allowed(channel: ConsoleChannel, console: Console) -> None:
    """The session button appears only when the request allows it."""
    channel.ask(request(), Done())
    html = console.login().get("/approvals").text
    assert ">Approve</button>" in html
    assert "Approve for this session" not in html


def test_hostile_arguments_are_inert(channel: ConsoleChannel, console: Console) -> None:
    """Script tags, attribute breakouts, bidi and zero-width characters are escaped/visible."""
    req = new_request(
        "files",
        "tools/call",
        XSS[0],
        {"a": XSS[0], "b": XSS[1], "c": XSS[2], "d": XSS[3]},
        timeout_s=60,
    )
    channel.ask(req, Done())
    html = console.login().get("/approvals").text
    assert "<script>alert" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in html or "\\&#34;&gt;&lt;img" in html
    assert "\u202e" not in html and "\u200b" not in html
    assert "⟨U+202E⟩" in html and "⟨U+200B⟩" in html


def test_sse_stream_sends_the_list_and_ends_with_the_server(
    channel: ConsoleChannel, console: Console
) -> None:
    """/events/approvals sends the rendered list as an "approvals" event, then new requests."""
    c = console.login()
    req = request()
    with c.stream("GET", "/events/approvals") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        seen: list[str] = []
        for line in lines:
            seen.append(line)
            if "No calls are waiting" in line:
                break
        assert "event: approvals" in seen
        channel.ask(req, Done())
        for line in lines:
            if req.id in line:
                break
        else:
            pytest.fail("the new request never arrived")
