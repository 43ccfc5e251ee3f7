"""Remote servers: plain http across the network, and endpoints without authentication."""

from __future__ import annotations

import pytest

from portcullis.scan.checks import remote

from ._helpers import assert_never_leaks, rules, srv


def test_plain_http_to_remote_host_is_high() -> None:
    """`http://` to a non-loopback host is high, on the url's line."""
    s = srv(
        "r", url="http://mcp.example.com/mcp", raw={"bearer_token_env_var": "TOKEN"}, client="codex"
    )
    out = list(remote.check(s))
    assert [(f.rule, f.severity) for f in out] == [("remote-plain-http", "high")]
    assert out[0].line == 50
    assert "https://mcp.example.com/mcp" in out[0].fix


def test_plain_http_with_credential_header_is_critical() -> None:
    """A credential header over http:// leaks in clear: critical, and the token is not quoted."""
    token = "abcd1234efgh5678ijkl9012mnop"
    s = srv("r", url="http://mcp.example.com/mcp", headers={"Authorization": f"Bearer {token}"})
    out = list(remote.check(s))
    assert [(f.rule, f.severity) for f in out] == [("remote-plain-http", "critical")]
    assert "Authorization" in out[0].message
    assert_never_leaks(out, token)


def test_plain_http_on_private_network_is_medium() -> None:
    """`http://` to a LAN address is medium (still unencrypted, but not the internet)."""
    s = srv("r", url="http://192.168.1.20:8000/mcp", raw={"oauth": {"enabled": True}})
    out = list(remote.check(s))
    assert [(f.rule, f.severity) for f in out] == [("remote-plain-http", "medium")]


def test_referenced_credential_over_lan_http_is_still_critical() -> None:
    """A header from ${KEY} is resolved at launch and then sent in clear: critical."""
    s = srv("r", url="http://192.168.1.20:8000/mcp", headers={"X-API-Key": "${KEY}"})
    assert [(f.rule, f.severity) for f in remote.check(s)] == [("remote-plain-http", "critical")]


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:3000/mcp",
        "http://127.0.0.1:8080/sse",
        "http://127.1.2.3/mcp",
        "http://[::1]:9000/mcp",
        "http://app.localhost/mcp",
    ],
)
def test_loopback_http_is_fine(url: str) -> None:
    """Loopback http:// never leaves the machine: no finding of either rule."""
    assert list(remote.check(srv("r", url=url, client="cline"))) == []


def test_remote_without_auth_is_medium() -> None:
    """An https endpoint with no credential configured is medium, with a header fix."""
    out = list(remote.check(srv("r", url="https://mcp.example.com/mcp", client="cline")))
    assert [(f.rule, f.severity) for f in out] == [("remote-no-auth", "medium")]
    assert '"Authorization": "Bearer ${API_TOKEN}"' in out[0].fix


def test_remote_without_auth_in_oauth_client_is_low() -> None:
    """Clients that run OAuth on their own make a header-less remote only low."""
    out = list(remote.check(srv("r", url="https://mcp.example.com/mcp", client="claude-code")))
    assert [(f.rule, f.severity) for f in out] == [("remote-no-auth", "low")]


@pytest.mark.parametrize(
    ("headers", "raw", "url"),
    [
        ({"Authorization": "Bearer ${input:token}"}, {}, "https://mcp.example.com/mcp"),
        ({"X-API-Key": "${env:KEY}"}, {}, "https://mcp.example.com/mcp"),
        ({}, {"bearer_token_env_var": "MCP_TOKEN"}, "https://mcp.example.com/mcp"),
        ({}, {"oauth": {"clientId": "x"}}, "https://mcp.example.com/mcp"),
        ({}, {}, "https://mcp.example.com/mcp?key=${KEY}"),
    ],
)
def test_authenticated_remotes_are_clean(
    headers: dict[str, str], raw: dict[str, object], url: str
) -> None:
    """Headers, Codex bearer_token_env_var, OAuth settings and query keys count as auth."""
    assert list(remote.check(srv("r", url=url, headers=headers, raw=raw, client="cline"))) == []


def test_mcp_remote_bridge_over_http() -> None:
    """`npx` mcp-remote http://… is judged like a url entry, on the URL argument's line."""
    s = srv(
        "b",
        "npx",
        [
            "-y",
            "mcp-remote@0.1.29",
            "http://mcp.example.com/sse",
            "--header",
            "Authorization: Bearer ${TOKEN}",
        ],
    )
    out = list(remote.check(s))
    assert [(f.rule, f.severity, f.line) for f in out] == [("remote-plain-http", "critical", 15)]


def test_stdio_server_with_url_argument_is_not_remote() -> None:
    """A URL argument to an ordinary server is not a remote endpoint."""
    s = srv("x", "npx", ["-y", "fetch-mcp@1.0.0", "http://example.com"])
    assert rules(remote.check(s)) == []


def test_any_header_from_a_reference_counts_as_auth() -> None:
    """A custom header filled from ${…} is authentication, whatever its name."""
    s = srv(
        "r",
        url="https://mcp.example.com/mcp",
        headers={"X-Tenant": "${TENANT_KEY}"},
        client="cline",
    )
    assert list(remote.check(s)) == []
