"""The Approvals page against a real gateway holding real calls, answered by clicks.

One console, one gateway (``portcullis run --server fx`` in front of the SDK fixture server) and
one SDK client serve the whole module; each test makes its own call with an argument no other
test uses, and finds its request on the page by that text.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from portcullis.approval.console import pending
from tests.browser.conftest import (
    FIXTURES,
    UI_TIMEOUT_MS,
    Console,
    SdkClient,
    Shoot,
    Workspace,
    posting,
    watch_errors,
)

pytestmark = pytest.mark.browser

POLICY = f"""\
version: 1
approvals: {{channels: [console], timeout_s: 60}}
servers:
  fx:
    command: {sys.executable}
    args: ["{FIXTURES / "mcp_server.py"}"]
    tools: {{default: allow, confirm: [echo, complain], remember: [complain]}}
"""
# Built at run time so that no credential-shaped literal sits in the repository.
FAKE_AWS_KEY = "AKIA" + "Q3EGRTV7LZ5MX2PB"


@pytest.fixture(scope="module")
def ws() -> Iterator[Workspace]:
    workspace = Workspace()
    try:
        yield workspace
    finally:
        workspace.close()


@pytest.fixture(scope="module")
def console(ws: Workspace) -> Iterator[Console]:
    running = Console(ws, ws.policy(POLICY))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(ws: Workspace) -> Iterator[SdkClient]:
    argv = ws.gw.argv(None, ws.policy(POLICY, "gateway.yaml"), options=["--server", "fx"])
    sdk = SdkClient(ws, argv)
    yield sdk
    sdk.close()


def request_for(page: Page, text: str) -> Locator:
    """The approval request on the page whose arguments hold ``text``."""
    return page.get_by_role("article", name=re.compile(r"^Approval request ")).filter(has_text=text)


def queued(ws: Workspace, text: str) -> dict[str, Any]:
    """The gateway's queue entry whose arguments hold ``text`` (what the person must see)."""
    entries = [e for e in pending(ws.home / "approvals") if text in e.get("shown", "")]
    assert len(entries) == 1, entries
    return entries[0]


def approval_records(ws: Workspace, tool: str) -> list[dict[str, Any]]:
    """The gateway's audit records of approval decisions about ``tool``."""
    return [
        r
        for r in ws.gw.audit_records()
        if r.get("tool") == tool and r.get("direction") == "c2s" and "approval" in r
    ]


def test_held_call_appears_live_and_approve_releases_it(
    page: Page, console: Console, client: SdkClient, ws: Workspace, screenshot: Shoot
) -> None:
    """A call held by the gateway appears without reload; Approve releases its real result."""
    errors = watch_errors(page)
    page.goto(f"{console.origin}/approvals")
    expect(page.get_by_text("No calls are waiting for approval.")).to_be_visible()
    tag = client.call("echo", {"text": "ship the release"})
    article = request_for(page, "ship the release")
    expect(article).to_be_visible(timeout=UI_TIMEOUT_MS)
    entry = queued(ws, "ship the release")
    expect(article).to_have_attribute("aria-label", f"Approval request {entry['id']}")
    expect(article).to_contain_text("fx")
    expect(article).to_contain_text("echo")
    expect(article.locator("pre")).to_contain_text('"text": "ship the release"')
    expect(article.locator("input[name=digest]")).to_have_value(entry["digest"])
    expect(page.get_by_text("No calls are waiting for approval.")).to_have_count(0)
    # echo is not in the policy's remember list: it can only be approved once.
    expect(article.get_by_role("button", name="Approve for this session")).to_have_count(0)
    screenshot(page, "approvals", phone=True)

    posting(page, article.get_by_role("button", name="Approve", exact=True).click)
    result = client.result(tag)
    assert result["is_error"] is False, result
    assert result["text"] == "ship the release"
    expect(article).to_have_count(0)
    final = approval_records(ws, "echo")[-1]
    assert final["decision"] == "confirm"
    assert final["approval"]["channel"] == "console"
    assert final["approval"]["outcome"] == "approved"
    assert pending(ws.home / "approvals") == []
    assert errors == []


def test_deny_returns_a_denial_to_the_client(
    page: Page, console: Console, client: SdkClient, ws: Workspace
) -> None:
    """Deny: the SDK client gets an isError result saying the call was denied."""
    page.goto(f"{console.origin}/approvals")
    tag = client.call("echo", {"text": "drop the tables"})
    article = request_for(page, "drop the tables")
    posting(page, article.get_by_role("button", name="Deny", exact=True).click)
    result = client.result(tag)
    assert result["is_error"] is True
    assert "denied" in result["text"]
    expect(article).to_have_count(0)
    final = approval_records(ws, "echo")[-1]
    assert final["decision"] == "deny"
    assert final["approval"]["outcome"] == "denied"
    assert final["approval"]["channel"] == "console"


def test_request_says_why_the_policy_asked(page: Page, console: Console, client: SdkClient) -> None:
    """The request shows the policy's rule and reason (what `portcullis check` says)."""
    page.goto(f"{console.origin}/approvals")
    tag = client.call("echo", {"text": "why was I asked"})
    article = request_for(page, "why was I asked")
    try:
        expect(article).to_be_visible(timeout=UI_TIMEOUT_MS)
        expect(article).to_contain_text("tools.confirm")
        expect(article).to_contain_text('matches the confirm pattern "echo"')
    finally:
        posting(page, article.get_by_role("button", name="Deny", exact=True).click)
        assert client.result(tag)["is_error"] is True


def test_approve_for_this_session_lets_the_same_call_through(
    page: Page, console: Console, client: SdkClient
) -> None:
    """A remembered tool approved for the session is not asked again in that session."""
    page.goto(f"{console.origin}/approvals")
    first = client.call("complain", {"text": "session scoped"})
    article = request_for(page, "session scoped")
    posting(page, article.get_by_role("button", name="Approve for this session").click)
    assert client.result(first) == {"tag": first, "is_error": False, "text": "done"}
    expect(article).to_have_count(0)
    # Nobody answers now: were it asked again, it would wait timeout_s and come back denied.
    second = client.call("complain", {"text": "session scoped"})
    assert client.result(second) == {"tag": second, "is_error": False, "text": "done"}


def test_hostile_arguments_are_shown_inert(
    page: Page, console: Console, client: SdkClient, screenshot: Shoot
) -> None:
    """Markup, bidi and zero-width characters, a secret and a long value are shown inert."""
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    errors = watch_errors(page)
    hostile = (
        'hostile <img src=x onerror="window.__pwned=1;alert(1)">'
        "<script>window.__pwned=2</script>"
        "\u202egpj.exe zero\u200bwidth "
        f"key={FAKE_AWS_KEY}"
    )
    page.goto(f"{console.origin}/approvals")
    long_value = "A" * 1000
    tag = client.call("echo", {"text": hostile, "padding": long_value})
    article = request_for(page, "hostile")
    expect(article).to_be_visible(timeout=UI_TIMEOUT_MS)
    shown = article.inner_text()
    assert article.locator("img, script").count() == 0
    assert page.evaluate("() => window.__pwned") is None
    assert "<img src=x" in shown  # the markup is shown as text
    assert re.search(r"[<⟨]U\+202E[>⟩]", shown), shown
    assert re.search(r"[<⟨]U\+200B[>⟩]", shown), shown
    assert "\u202e" not in shown
    assert "\u200b" not in shown
    assert FAKE_AWS_KEY not in shown
    assert FAKE_AWS_KEY not in page.content()
    assert "REDACTED" in shown
    folded = hashlib.sha256(long_value.encode()).hexdigest()[:16]
    assert f"(1000 characters, sha256:{folded})" in shown  # long values folded, with digest
    assert long_value not in shown
    screenshot(page, "approvals-hostile")
    posting(page, article.get_by_role("button", name="Deny", exact=True).click)
    assert client.result(tag)["is_error"] is True
    assert page.evaluate("() => window.__pwned") is None
    assert dialogs == []
    assert [e for e in errors if "pwned" in e or "alert" in e] == []


def test_approve_is_reachable_and_usable_by_keyboard(
    page: Page, console: Console, client: SdkClient
) -> None:
    """Tab reaches the Approve button of a request and Enter approves the call."""
    page.goto(f"{console.origin}/approvals")
    tag = client.call("echo", {"text": "keyboard only"})
    article = request_for(page, "keyboard only")
    expect(article).to_be_visible(timeout=UI_TIMEOUT_MS)
    approve = article.get_by_role("button", name="Approve", exact=True)
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    for _ in range(60):
        page.keyboard.press("Tab")
        if approve.evaluate("el => el === document.activeElement"):
            break
    else:
        pytest.fail("60 presses of Tab never reached the Approve button")
    # The focus is visible: the focused button draws an outline (or a box shadow).
    style = approve.evaluate(
        "el => { const s = getComputedStyle(el); return [s.outlineStyle, s.outlineWidth,"
        " s.boxShadow]; }"
    )
    assert (style[0] != "none" and style[1] != "0px") or style[2] != "none", style
    posting(page, lambda: page.keyboard.press("Enter"))
    result = client.result(tag)
    assert result["is_error"] is False, result
    assert result["text"] == "keyboard only"


def _form_of(button: Locator) -> dict[str, Any]:
    """The action and fields (with the button's own name/value) that clicking would post."""
    form: dict[str, Any] = button.evaluate(
        "b => { const f = b.form; const d = new FormData(f, b);"
        " return {action: f.action, method: f.method,"
        " fields: Object.fromEntries(d.entries())}; }"
    )
    return form


def test_refused_requests_change_nothing(
    page: Page, console: Console, context: BrowserContext, client: SdkClient, ws: Workspace
) -> None:
    """No cookie, a foreign Origin or Host, or no CSRF token: refused, and the call still waits."""
    page.goto(f"{console.origin}/approvals")
    tag = client.call("echo", {"text": "refusal target"})
    article = request_for(page, "refusal target")
    expect(article).to_be_visible(timeout=UI_TIMEOUT_MS)
    entry = queued(ws, "refusal target")
    form = _form_of(article.get_by_role("button", name="Deny", exact=True))
    assert form["method"] == "post"
    action, fields = form["action"], form["fields"]
    assert fields.get("csrf"), fields
    cookie = {c["name"]: c["value"] for c in context.cookies()}["portcullis_console"]
    own = {"Cookie": f"portcullis_console={cookie}", "Origin": console.origin}
    with httpx2.Client(base_url=console.origin, follow_redirects=False, timeout=30) as http:
        for path in ("/", "/approvals", "/definitions", "/audit", "/events/approvals"):
            anonymous = http.get(path)
            assert anonymous.status_code == 401, (path, anonymous.status_code)
            assert "portcullis console" in anonymous.text
            assert "refusal target" not in anonymous.text
        assert http.post(action, data=fields).status_code == 401
        foreign = http.post(action, data=fields, headers={**own, "Origin": "http://evil.example"})
        assert foreign.status_code == 403
        # An opaque origin (a sandboxed frame, a data: URL) says "null": refused unless the
        # browser itself vouches that the request comes from the console's own page.
        for site in ({}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}):
            opaque = http.post(action, data=fields, headers={**own, "Origin": "null", **site})
            assert opaque.status_code == 403, site
        rebound = {**own, "Host": "evil.example"}
        assert http.get("/approvals", headers=rebound).status_code in (400, 421)
        assert http.post(action, data=fields, headers=rebound).status_code in (400, 421)
        no_csrf = {k: v for k, v in fields.items() if k != "csrf"}
        assert http.post(action, data=no_csrf, headers=own).status_code == 403
        wrong = {**fields, "csrf": "A" * len(fields["csrf"])}
        assert http.post(action, data=wrong, headers=own).status_code == 403
        # Nothing changed: the call is still held, in the queue and on the page.
        assert queued(ws, "refusal target")["id"] == entry["id"]
        assert not client.has_result(tag)
        page.reload()
        expect(request_for(page, "refusal target")).to_be_visible()
        # The same form with the cookie, the console's Origin and the token is accepted.
        accepted = http.post(action, data=fields, headers=own)
        assert accepted.status_code in (200, 303), accepted.status_code
    result = client.result(tag)
    assert result["is_error"] is True
    assert "denied" in result["text"]
