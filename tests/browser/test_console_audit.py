"""The Audit and Overview pages over a real HMAC-chained log holding two servers' calls.

The log is written with the library's own writer (``portcullis.audit.AuditLog``) and the
install key of the test's state directory, so the chain the console verifies is the real one.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from portcullis._state import install_key
from portcullis.audit import AuditLog, read_records, verify
from tests.browser.conftest import (
    FIXTURES,
    UI_TIMEOUT_MS,
    Console,
    Shoot,
    Workspace,
    close_tab,
    login,
    watch_errors,
)

pytestmark = pytest.mark.browser

POLICY = f"""\
version: 1
servers:
  alpha-files:
    command: {sys.executable}
    args: ["{FIXTURES / "mcp_server.py"}"]
    tools: {{default: deny, allow: [read_note], confirm: [fetch_page]}}
    paths: {{roots: [/srv/project]}}
  beta-web:
    command: {sys.executable}
    args: ["{FIXTURES / "mcp_server.py"}"]
    tools: {{default: allow, deny: [drop_table]}}
"""

# (server, tool, decision, rule): calls from two servers, three tools and four decisions.
CALLS = [
    ("alpha-files", "read_note", "allow", "tools.allow"),
    ("alpha-files", "drop_table", "deny", "tools.default"),
    ("beta-web", "fetch_page", "confirm", "tools.confirm"),
    ("beta-web", "fetch_page", "deny", "urls.deny_private"),
    ("alpha-files", "read_note", "allow", "tools.allow"),
    ("beta-web", "read_note", "redact", "redact.secrets"),
]


def write_log(ws: Workspace, calls: list[tuple[str, str, str, str]]) -> list[dict[str, Any]]:
    """Append ``calls`` to the state directory's audit log; return the records as written."""
    written = []
    with AuditLog(ws.home / "audit.jsonl", install_key(ws.home)) as log:
        for n, (server, tool, decision, rule) in enumerate(calls):
            record = {
                "policy": "sha256:" + "0" * 64,
                "session": f"s-{server}",
                "principal": "alice" if server == "alpha-files" else "bob",
                "server": server,
                "era": "legacy",
                "direction": "c2s",
                "method": "tools/call",
                "id": n + 1,
                "tool": tool,
                "args": log.digest_args({"n": n}),
                "decision": decision,
                "enforced": True,
                "rule": rule,
                "reason": f"{tool} on {server}: {rule}",
            }
            if decision == "confirm":
                record["approval"] = {"channel": "console", "outcome": "approved", "approver": "a"}
            written.append(log.append(record))
    return written


def records(ws: Workspace) -> list[dict[str, Any]]:
    """Every record of the log, oldest first."""
    return list(read_records(ws.home / "audit.jsonl"))


def shown_seqs(page: Page) -> list[int]:
    """The seqs of the table's rows, in the order shown (from their "Record SEQ" links)."""
    links = page.get_by_role("link", name=re.compile(r"^Record \d+$"))
    names: list[str] = links.evaluate_all(
        "els => els.map(e => e.getAttribute('aria-label') || e.textContent)"
    )
    seqs = []
    for name in names:
        match = re.search(r"(\d+)\s*$", name.strip())
        assert match, name
        seqs.append(int(match[1]))
    return seqs


def set_control(page: Page, label: str, value: str) -> None:
    """Fill the filter control labelled ``label`` (a select or a text input)."""
    control = page.get_by_label(label, exact=True)
    if control.evaluate("el => el.tagName") == "SELECT":
        control.select_option(value)
    else:
        control.fill(value)


@pytest.fixture(scope="module")
def ws() -> Iterator[Workspace]:
    workspace = Workspace()
    try:
        workspace.policy(POLICY)
        write_log(workspace, CALLS)
        yield workspace
    finally:
        workspace.close()


@pytest.fixture(scope="module")
def console(ws: Workspace) -> Iterator[Console]:
    running = Console(ws, ws.tmp / "policy.yaml")
    yield running
    running.stop()


Match = Callable[[dict[str, Any]], bool]


@pytest.mark.parametrize(
    ("label", "value", "param", "matches"),
    [
        ("Server", "beta-web", "server", lambda r: r.get("server") == "beta-web"),
        ("Decision", "deny", "decision", lambda r: r.get("decision") == "deny"),
        ("Tool", "read_note", "tool", lambda r: r.get("tool") == "read_note"),
        ("Principal", "alice", "principal", lambda r: r.get("principal") == "alice"),
        ("Rule", "tools.*", "rule", lambda r: str(r.get("rule")).startswith("tools.")),
    ],
    ids=["server", "decision", "tool", "principal", "rule-glob"],
)
def test_filter_shows_only_matching_rows(
    page: Page, console: Console, ws: Workspace, label: str, value: str, param: str, matches: Match
) -> None:
    """Filtering by server, decision, tool, principal or rule shows exactly the matching rows."""
    page.goto(f"{console.origin}/audit")
    every = sorted((r["seq"] for r in records(ws)), reverse=True)
    assert shown_seqs(page) == every
    set_control(page, label, value)
    page.get_by_role("button", name="Filter").click()
    encoded = re.escape(value).replace(r"\*", "(\\*|%2A)")
    expect(page).to_have_url(re.compile(rf"[?&]{param}={encoded}(&|$)"))
    expected = sorted((r["seq"] for r in records(ws) if matches(r)), reverse=True)
    assert 0 < len(expected) < len(every)
    assert shown_seqs(page) == expected


def test_audit_page_and_record_detail(
    page: Page, console: Console, ws: Workspace, screenshot: Shoot
) -> None:
    """The banner says the chain is verified; "Record N" opens the full record."""
    errors = watch_errors(page)
    page.goto(f"{console.origin}/audit")
    last = records(ws)[-1]["seq"]
    expect(page.get_by_role("status")).to_contain_text(f"Chain verified up to record {last}")
    assert page.locator("h1").count() == 1
    screenshot(page, "audit", phone=True)
    target = next(r for r in records(ws) if r.get("rule") == "urls.deny_private")
    page.get_by_role("link", name=f"Record {target['seq']}", exact=True).click()
    expect(page).to_have_url(f"{console.origin}/audit/record/{target['seq']}")
    body = page.locator("pre").first
    for field in ("ts", "prev", "mac", "principal", "session", "args", "reason"):
        expect(body).to_contain_text(f'"{field}"')
    expect(body).to_contain_text(target["mac"])
    expect(body).to_contain_text('"urls.deny_private"')
    expect(body).to_contain_text(f'"seq": {target["seq"]}')
    screenshot(page, "record", phone=True)
    assert errors == []


def test_new_records_appear_live(page: Page, console: Console, ws: Workspace) -> None:
    """A record appended while the page is open appears without a reload."""
    page.goto(f"{console.origin}/audit")
    expect(page.get_by_role("status")).to_contain_text("Chain verified")
    [new] = write_log(ws, [("beta-web", "live_tool", "allow", "tools.default")])
    expect(page.get_by_role("link", name=f"Record {new['seq']}", exact=True)).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )
    assert shown_seqs(page)[0] == new["seq"]


def test_overview_shows_each_server(page: Page, console: Console, screenshot: Shoot) -> None:
    """The overview has a section per server with its policy summary, and no saved scan yet."""
    errors = watch_errors(page)
    page.goto(f"{console.origin}/")
    expect(page.locator("h1")).to_have_count(1)
    for name in ("Overview", "Approvals", "Definitions", "Audit"):
        expect(page.get_by_role("navigation").get_by_role("link", name=name)).to_be_visible()
    alpha = page.get_by_role("region", name="Server alpha-files", exact=True)
    beta = page.get_by_role("region", name="Server beta-web", exact=True)
    expect(alpha).to_be_visible()
    expect(beta).to_be_visible()
    expect(alpha).to_contain_text("enforce")
    expect(alpha).to_contain_text("/srv/project")
    expect(page.get_by_text("No scan has been saved yet").first).to_be_visible()
    screenshot(page, "overview", phone=True)
    assert errors == []


def test_tampered_log_names_the_broken_record(browser: Browser, screenshot: Shoot) -> None:
    """After one field of one line is edited, the banner names that record as broken."""
    ws = Workspace()
    try:
        ws.policy(POLICY)
        write_log(ws, CALLS)
        log = ws.home / "audit.jsonl"
        lines = log.read_text().splitlines(keepends=True)
        assert '"decision":"deny"' in lines[3].replace(" ", "")
        lines[3] = re.sub(r'("decision"\s*:\s*)"deny"', r'\1"allow"', lines[3])
        log.write_text("".join(lines))
        report = verify(log, install_key(ws.home))
        assert not report.ok
        assert report.first_bad == 3
        console = Console(ws, ws.tmp / "policy.yaml")
        try:
            context = login(browser, console)
            page = context.new_page()
            page.goto(f"{console.origin}/audit")
            expect(page.get_by_role("status")).to_contain_text("Chain broken at record 3")
            screenshot(page, "audit-broken")
            close_tab(page)
            context.close()
        finally:
            console.stop()
    finally:
        ws.close()
