"""The console's gate over real HTTP: login, cookie, headers, Host/Origin/CSRF, body cap."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from portcullis.console.security import CSP, MAX_BODY, Session, Sessions, allowed_hosts
from tests.console.conftest import Console, csrf_of, start_console, stop_console

POSTS = ["/approvals/abc", "/definitions/approve", "/definitions/keep"]
PAGES = ["/", "/approvals", "/definitions", "/audit", "/audit/record/0", "/events/approvals"]


def test_token_works_once_and_sets_a_strict_cookie(console: Console) -> None:
    """The token is exchanged for an HttpOnly SameSite=Strict cookie, by a 303 to /; once."""
    c = console.client()
    r = c.get(f"/?token={console.config.sessions.token}")
    assert r.status_code == 303
    assert r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("portcullis_console=")
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert flag in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback
    assert c.get("/").status_code == 200
    again = console.client().get(f"/?token={console.config.sessions.token}")
    assert again.status_code == 401
    assert "portcullis console" in again.text


def test_logged_in_browser_with_spent_token_is_redirected(console: Console) -> None:
    """A logged-in browser that reloads the old URL is sent to / (token out of the bar)."""
    c = console.login()
    r = c.get(f"/?token={console.config.sessions.token}")
    assert r.status_code == 303 and r.headers["location"] == "/"


@pytest.mark.parametrize("token", ["", "wrong", "x" * 43])
def test_wrong_token_is_401(console: Console, token: str) -> None:
    """A wrong token gets 401 and no cookie, and does not use up the right one."""
    r = console.client().get(f"/?token={token}")
    assert r.status_code == 401
    assert "set-cookie" not in r.headers
    console.login()


@pytest.mark.parametrize("path", PAGES)
def test_pages_need_the_cookie(console: Console, path: str) -> None:
    """Without the cookie every page and stream is a 401 page without data."""
    r = console.client().get(path)
    assert r.status_code == 401
    assert "Open the URL that `portcullis console` printed" in r.text
    assert "<nav" not in r.text


def test_forged_cookie_is_401(console: Console) -> None:
    """A cookie value the server did not issue is refused."""
    c = console.client(cookies={"portcullis_console": "forged"})
    assert c.get("/").status_code == 401


@pytest.mark.parametrize("path", ["/", "/audit", "/static/console.css", "/nope"])
def test_every_response_carries_the_security_headers(console: Console, path: str) -> None:
    """CSP, no-referrer, nosniff, DENY framing and no-store are on pages, files and errors."""
    for c in (console.login(), console.client()):
        r = c.get(path)
        assert r.headers["content-security-policy"] == CSP
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["cache-control"] == "no-store"


def test_pages_have_no_inline_script_or_style(console: Console) -> None:
    """No inline script, style attribute or event handler: the CSP would break them."""
    c = console.login()
    for path in ["/", "/approvals", "/definitions", "/audit"]:
        html = c.get(path).text
        assert "<script>" not in html and "<style" not in html
        assert " style=" not in html and " onclick=" not in html
        assert '"allowEval":false' in html


@pytest.mark.parametrize("host", ["evil.example:80", "127.0.0.1:1", "localhost", ""])
def test_foreign_host_is_refused(console: Console, host: str) -> None:
    """A Host that is not the console's (DNS rebinding) is refused with 421, even logged in."""
    c = console.login()
    r = c.get("/", headers={"Host": host})
    assert r.status_code == 421
    assert "<nav" not in r.text


def test_localhost_host_is_accepted(console: Console) -> None:
    """localhost:PORT is one of the console's own names."""
    c = console.login()
    assert c.get("/", headers={"Host": f"localhost:{console.config.port}"}).status_code == 200


@pytest.mark.parametrize("path", POSTS)
def test_foreign_origin_is_refused(console: Console, path: str) -> None:
    """A POST from another origin is refused with 403 before it does anything."""
    c = console.login()
    r = c.post(path, data={"csrf": _csrf(c)}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("site", ["cross-site", "same-site", "none", None])
def test_null_origin_needs_a_same_origin_fetch(
    console: Console, path: str, site: str | None
) -> None:
    """A null Origin (sent by no-referrer forms) passes only with Sec-Fetch-Site same-origin."""
    c = console.login()
    headers = {"Origin": "null"} | ({} if site is None else {"Sec-Fetch-Site": site})
    assert c.post(path, data={"csrf": _csrf(c)}, headers=headers).status_code == 403
    same = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    assert c.post(path, data={"csrf": _csrf(c)}, headers=same).status_code == 303


@pytest.mark.parametrize("path", POSTS)
def test_cross_site_fetch_is_refused(console: Console, path: str) -> None:
    """Sec-Fetch-Site: cross-site on a state-changing request is refused."""
    c = console.login()
    r = c.post(path, data={"csrf": _csrf(c)}, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("csrf", [None, "", "wrong"])
def test_post_without_the_csrf_token_is_refused(
    console: Console, path: str, csrf: str | None
) -> None:
    """A POST without the session's CSRF token (field or header) is refused with 403."""
    c = console.login()
    data = {"server": "files", "all": "1"} | ({} if csrf is None else {"csrf": csrf})
    r = c.post(path, data=data)
    assert r.status_code == 403
    assert "CSRF" in r.text


@pytest.mark.parametrize("path", POSTS)
def test_post_with_the_csrf_token_passes(console: Console, path: str) -> None:
    """The right token in the form or in X-CSRF-Token gets past the gate (303 back)."""
    c = console.login()
    token = _csrf(c)
    own = {"Origin": console.base}
    assert c.post(path, data={"csrf": token}, headers=own).status_code == 303
    assert c.post(path, headers={"X-CSRF-Token": token}).status_code == 303


def test_csrf_of_another_session_is_refused(console: Console) -> None:
    """A CSRF token is bound to its session."""
    c1 = console.login()
    token = _csrf(c1)
    console.config.sessions._used = False  # a second login, as from another browser
    c2 = console.login()
    assert _csrf(c2) != token
    r = c2.post("/definitions/keep", data={"csrf": token})
    assert r.status_code == 403


def test_big_body_is_refused(console: Console) -> None:
    """A body over the cap gets 413 without being read further."""
    c = console.login()
    r = c.post("/definitions/keep", content=b"a" * (MAX_BODY + 1), headers=_form(c))
    assert r.status_code == 413


def _form(c: object) -> dict[str, str]:
    return {"content-type": "application/x-www-form-urlencoded"}


def _csrf(c: httpx2.Client) -> str:
    return csrf_of(c.get("/").text)


def test_sessions_unit() -> None:
    """The token is 256-bit, compared exactly, single use; cookies name live sessions only."""
    s = Sessions()
    assert len(s.token) >= 43
    assert s.login(s.token[:-1] + ("A" if s.token[-1] != "A" else "B")) is None
    cookie = s.login(s.token)
    assert cookie is not None and s.get(cookie) is not None
    assert s.login(s.token) is None
    assert s.get("nope") is None and s.get(None) is None
    session = s.get(cookie)
    assert isinstance(session, Session)
    assert session.csrf_ok(session.csrf) and not session.csrf_ok(session.csrf + "x")
    assert not session.csrf_ok(None)


def test_allowed_hosts() -> None:
    """Loopback names with the port, plus the --host given."""
    assert allowed_hosts("127.0.0.1", 8) == {"127.0.0.1:8", "localhost:8"}
    assert "192.168.1.5:8" in allowed_hosts("192.168.1.5", 8)
    assert "[::1]:8" in allowed_hosts("::1", 8)


def test_exposed_console_says_where_and_sets_secure(home: Path) -> None:
    """Off loopback (TLS), the cookie is Secure and every page has a banner naming the address.

    The server under test speaks plain HTTP on 127.0.0.1; only the gate's view is changed.
    """
    c = start_console(home, home / "audit.jsonl", host="192.0.2.7", tls=True)
    try:
        client = c.client(headers={"Host": f"192.0.2.7:{c.config.port}"})
        r = client.get(f"/?token={c.config.sessions.token}")
        assert r.status_code == 303 and "; Secure" in r.headers["set-cookie"]
        # A Secure cookie is not sent back over plain HTTP: hand it over as a browser on
        # https would.
        cookie = r.headers["set-cookie"].split(";", 1)[0]
        client.headers["Cookie"] = cookie
        html = client.get("/").text
        assert f"reachable from other machines at https://192.0.2.7:{c.config.port}" in html
        origin = {"Origin": f"http://192.0.2.7:{c.config.port}"}  # not the https origin
        assert client.post("/definitions/keep", headers=origin).status_code == 403
    finally:
        stop_console(c)
