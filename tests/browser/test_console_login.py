"""Logging in to the console with its one-time URL, and the headers every response carries."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import Console, Workspace, login

pytestmark = pytest.mark.browser

POLICY = """\
version: 1
defaults:
  tools: {default: allow}
"""
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@pytest.fixture
def console() -> Iterator[Console]:
    ws = Workspace()
    running = Console(ws, ws.policy(POLICY))
    try:
        yield running
    finally:
        running.stop()
        ws.close()


def test_login_swaps_the_token_for_a_strict_cookie(browser: Browser, console: Console) -> None:
    """The printed URL lands on / without the token; the cookie is HttpOnly and SameSite=Strict."""
    context = browser.new_context()
    page = context.new_page()
    response = page.goto(console.url)
    assert response is not None and response.status == 200
    assert page.url == f"{console.origin}/"
    assert console.token not in page.url
    assert "token" not in page.url
    [cookie] = [c for c in context.cookies() if c["name"] == "portcullis_console"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/"
    assert cookie["value"] != console.token
    assert page.evaluate("() => document.cookie") == ""  # HttpOnly: invisible to scripts
    expect(page.get_by_role("navigation").get_by_role("link", name="Approvals")).to_be_visible()
    # The same URL a second time, in a fresh browser: the token is spent.
    other = browser.new_context()
    again = other.new_page().goto(console.url)
    assert again is not None and again.status == 401
    assert other.cookies() == []
    other.close()
    context.close()


def test_login_redirects_with_303_and_sets_the_cookie_once(console: Console) -> None:
    """GET /?token=T answers 303 to / with the cookie; the same token then gets 401."""
    with httpx2.Client(follow_redirects=False, timeout=30) as http:
        first = http.get(console.url)
        assert first.status_code == 303
        assert first.headers["location"] in ("/", f"{console.origin}/")
        set_cookie = first.headers["set-cookie"]
        assert set_cookie.startswith("portcullis_console=")
        lowered = set_cookie.lower()
        for attribute in ("httponly", "samesite=strict", "path=/"):
            assert attribute in lowered, set_cookie
        assert "secure" not in lowered.replace("samesite", "")  # plain http on loopback
    with httpx2.Client(follow_redirects=False, timeout=30) as stranger:  # no cookie
        reused = stranger.get(console.url)
        assert reused.status_code == 401
        assert "set-cookie" not in reused.headers


def test_every_response_carries_the_security_headers(browser: Browser, console: Console) -> None:
    """Pages, assets and refusals carry the CSP, no-referrer, nosniff and frame denial."""
    context = login(browser, console)
    page = context.new_page()
    responses = []
    page.on("response", lambda r: responses.append(r))
    for path in ("/", "/approvals", "/definitions", "/audit"):
        page.goto(f"{console.origin}{path}")
    refused = context.request.get(f"{console.origin}/no-such-page")
    assert refused.status == 404
    assert any("/static/" in r.url for r in responses), [r.url for r in responses]
    for response in [*responses, refused]:
        headers = response.headers
        assert headers.get("content-security-policy") == CSP, response.url
        assert headers.get("referrer-policy") == "no-referrer", response.url
        assert headers.get("x-content-type-options") == "nosniff", response.url
        assert headers.get("x-frame-options") == "DENY", response.url
    for response in responses:
        if "/static/" not in response.url:
            assert response.headers.get("cache-control") == "no-store", response.url
    context.close()
