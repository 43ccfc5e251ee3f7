"""``portcullis serve`` end to end: real serve processes, real upstream servers, real SDK clients.

One serve process (module scope) serves most tests: API keys and OAuth (a real local issuer),
identities for alice/bob/carol/…, three stdio servers (mcp-server-time and two fixture
servers). Tests that change the policy or stop the process start their own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from cryptography.hazmat.primitives import serialization
from mcp.shared.exceptions import MCPError

from tests.e2e.conftest import is_alive
from tests.serve.conftest import (
    REPO,
    TIMEOUT,
    Served,
    fixture_server,
    http,
    sdk_client,
    text_of,
    time_server,
)
from tests.serve.issuer import LocalIssuer, local_issuer

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

MODERN = "2026-07-28"
ACCEPT = {"Accept": "application/json, text/event-stream"}
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"},
    },
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _servers_yaml() -> str:
    fixture = fixture_server()
    return f"""\
servers:
  time:
    command: {json.dumps(time_server()[0])}
  echo:
    command: {json.dumps(fixture[0])}
    args: [{json.dumps(fixture[1])}]
  fs:
    command: {json.dumps(fixture[0])}
    args: [{json.dumps(fixture[1])}]
"""


def main_policy(issuer: LocalIssuer, audience: str) -> str:
    """The module's policy: keys + OAuth, identities, origins, limits."""
    return f"""\
version: 1
defaults:
  tools: {{default: allow}}
{_servers_yaml()}
serve:
  auth:
    api_keys: true
    oauth:
      issuer: {issuer.url}
      audience: {audience}
      jwks_url: {issuer.jwks_url}
      required_scopes: [mcp]
  allowed_origins: ["https://app.example"]
  limits: {{requests_per_minute: 100000, max_body_bytes: 100000}}
  identities:
    alice: {{servers: [time]}}
    bob:
      servers: ["*"]
      tools: {{default: allow, deny: ["*get_current_time"]}}
    carol: {{servers: ["*"]}}
    scoped: {{servers: ["*"]}}
    dave: {{servers: ["*"]}}
    slow:
      servers: [time]
      limits: {{requests_per_minute: 3, max_body_bytes: 100000}}
    oauthuser: {{servers: [time, echo]}}
    "group:admins": {{servers: ["*"]}}
"""


class Env:
    """The module's serve process, its issuer and its keys."""

    def __init__(self, served: Served, issuer: LocalIssuer, audience: str) -> None:
        self.served = served
        self.issuer = issuer
        self.audience = audience
        self.keys: dict[str, str] = {}

    def key(self, name: str, servers: tuple[str, ...] = ()) -> str:
        """The API key of ``name`` (created once)."""
        if name not in self.keys:
            self.keys[name] = self.served.key(name, servers)
        return self.keys[name]

    def token(self, sub: str = "oauthuser", **kwargs: Any) -> str:
        """An access token for this gateway (scope mcp unless told)."""
        kwargs.setdefault("aud", self.audience)
        kwargs.setdefault("scope", "mcp")
        return self.issuer.token(sub, **kwargs)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with local_issuer() as issuer:
        port = _free_port()
        audience = f"http://127.0.0.1:{port}/mcp"
        served = Served(main_policy(issuer, audience), args=("--port", str(port)))
        try:
            served.start()
            yield Env(served, issuer, audience)
            if served.proc is not None and served.proc.poll() is not None:
                pytest.fail(f"serve died during the module:\n{served.stderr_text()}")
        finally:
            served.close()


async def _post(url: str, body: Any, token: str | None = None, **headers: str) -> httpx2.Response:
    async with http(token) as client:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await client.post(
            url,
            content=content,
            headers={"Content-Type": "application/json", **ACCEPT, **headers},
        )


def _rpc_of(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC message of a JSON or single-event SSE response."""
    text = response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
        messages = [json.loads(d) for d in data]
        return next(m for m in messages if "id" in m and "method" not in m)
    msg: dict[str, Any] = json.loads(text)
    return msg


def _call(rid: int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": rid,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }


async def _shell_pid(served: Served, key: str, mode: str = "legacy") -> int:
    """A new client on /servers/echo/mcp; the pid of the server process that answers it."""
    async with sdk_client(served, key, "/servers/echo/mcp", mode=mode) as client:
        result = await client.call_tool("shell", {"argv": ["sh", "-c", "echo $PPID"]})
        return int(text_of(result).split()[-1])


# -- 1. both eras ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["legacy", MODERN])
async def test_sdk_client_lists_and_calls_in_both_eras(env: Env, mode: str) -> None:
    """The SDK client (either era) with an API key lists and calls the tools of one server."""
    async with sdk_client(env.served, env.key("carol"), "/servers/time/mcp", mode=mode) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"get_current_time", "convert_time"} <= tools
        result = await client.call_tool("get_current_time", {"timezone": "UTC"})
        assert not result.is_error
        assert json.loads(text_of(result))["timezone"] == "UTC"


# -- 2. API keys ----------------------------------------------------------------------------


async def test_no_token_gets_a_challenge_with_resource_metadata(env: Env) -> None:
    """No token: 401 pointing at RFC 9728 metadata, which names the resource and its issuer."""
    response = await _post(env.served.url + "/mcp", INIT)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'resource_metadata="' in challenge
    meta_url = challenge.split('resource_metadata="', 1)[1].split('"', 1)[0]
    assert "/.well-known/oauth-protected-resource" in meta_url
    async with http() as client:
        meta = await client.get(meta_url)
    assert meta.status_code == 200
    doc = meta.json()
    assert doc["resource"] == env.audience
    assert doc["authorization_servers"] == [env.issuer.url]


async def test_revoked_key_is_refused(env: Env) -> None:
    """A key works until revoked, then gets 401."""
    key = env.key("dave")
    assert (await _post(env.served.url + "/servers/time/mcp", INIT, key)).status_code == 200
    env.served.revoke("dave", key)
    response = await _post(env.served.url + "/servers/time/mcp", INIT, key)
    assert response.status_code == 401
    assert "invalid_token" in response.headers["www-authenticate"]


async def test_key_scoped_to_a_server_is_forbidden_elsewhere(env: Env) -> None:
    """A key made with --server time reaches time but gets 403 on another server."""
    key = env.key("scoped", ("time",))
    assert (await _post(env.served.url + "/servers/time/mcp", INIT, key)).status_code == 200
    assert (await _post(env.served.url + "/servers/echo/mcp", INIT, key)).status_code == 403


# -- 3. OAuth -------------------------------------------------------------------------------


async def test_oauth_token_lets_the_sdk_client_in(env: Env) -> None:
    """A valid access token from the issuer is accepted by the SDK client (2026 era)."""
    async with sdk_client(env.served, env.token(), "/servers/time/mcp", mode=MODERN) as client:
        result = await client.call_tool("get_current_time", {"timezone": "UTC"})
        assert not result.is_error


def _hs256_with_public_key(issuer: LocalIssuer, claims: dict[str, Any]) -> str:
    key = issuer.keys[issuer.default_kid]
    pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def _bad_tokens(env: Env) -> dict[str, str]:
    good = env.token()
    head, body, sig = good.split(".")
    flipped = ("A" if sig[5] != "A" else "B").join((sig[:5], sig[6:]))
    now = int(time.time())
    claims = {"iss": env.issuer.url, "sub": "oauthuser", "aud": env.audience, "scope": "mcp"}
    return {
        "wrong audience": env.token(aud="http://127.0.0.1:1/other"),
        "expired": env.token(exp_in=-3600, iat_in=-7200),
        "bad signature": f"{head}.{body}.{flipped}",
        "alg switched": _hs256_with_public_key(
            env.issuer, {**claims, "exp": now + 300, "iat": now}
        ),
        "foreign jku": env.token(extra_headers={"jku": "http://127.0.0.1:1/evil-jwks"}),
    }


@pytest.mark.parametrize(
    "case", ["wrong audience", "expired", "bad signature", "alg switched", "foreign jku"]
)
async def test_bad_oauth_tokens_get_401(env: Env, case: str) -> None:
    """Wrong audience, expired, bad signature, HS256 with the public key, a jku: all 401."""
    token = _bad_tokens(env)[case]
    if case == "foreign jku":
        # Signed by a key the issuer never publishes, pointing at a JWKS of its own.
        kid = env.issuer.add_key("RS256", publish=False)
        token = env.token(kid=kid, extra_headers={"jku": "http://127.0.0.1:1/evil-jwks"})
    response = await _post(env.served.url + "/servers/time/mcp", INIT, token)
    assert response.status_code == 401, (case, response.text)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_token_without_required_scope_gets_403(env: Env) -> None:
    """A token lacking the required scope gets 403 insufficient_scope."""
    response = await _post(env.served.url + "/servers/time/mcp", INIT, env.token(scope="other"))
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


# -- 4. identities --------------------------------------------------------------------------


async def test_alice_sees_only_her_servers(env: Env) -> None:
    """Alice's /mcp lists only time__* tools, and /servers/fs/mcp is forbidden to her."""
    async with sdk_client(env.served, env.key("alice")) as client:
        names = [t.name for t in (await client.list_tools()).tools]
    assert names and all(n.startswith("time__") for n in names), names
    response = await _post(env.served.url + "/servers/fs/mcp", INIT, env.key("alice"))
    assert response.status_code == 403


async def test_identity_tool_rule_denies_and_audits_principal(env: Env) -> None:
    """Bob's denied tool returns an isError result naming the rule; the audit names bob."""
    async with sdk_client(env.served, env.key("bob"), "/servers/time/mcp") as client:
        result = await client.call_tool("get_current_time", {"timezone": "UTC"})
    assert result.is_error
    text = text_of(result)
    assert '"*get_current_time"' in text and '"bob"' in text and "tools.deny" in text, text
    records = [
        r
        for r in env.served.audit_records()
        if r.get("principal") == "bob" and r.get("tool") == "get_current_time"
    ]
    assert records and records[-1]["decision"] == "deny"
    assert records[-1]["server"] == "time"


async def test_group_identity_via_oauth_groups_claim(env: Env) -> None:
    """A token with groups [admins] reaches echo via group:admins; without it, 403."""
    admin = env.token("zed", groups=["admins"])
    async with sdk_client(env.served, admin, "/servers/echo/mcp") as client:
        result = await client.call_tool("echo", {"text": "hi"})
        assert text_of(result) == "hi"
    nobody = env.token("zed", groups=["users"])
    assert (await _post(env.served.url + "/servers/echo/mcp", INIT, nobody)).status_code == 403


# -- 5. aggregation -------------------------------------------------------------------------


async def test_aggregate_namespaces_and_routes(env: Env) -> None:
    """/mcp lists server__tool from several servers and routes a call to the right one."""
    async with sdk_client(env.served, env.key("carol")) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"time__get_current_time", "echo__echo", "fs__echo"} <= names
        result = await client.call_tool("echo__echo", {"text": "routed"})
        assert text_of(result) == "routed"
        result = await client.call_tool("time__get_current_time", {"timezone": "UTC"})
        assert json.loads(text_of(result))["timezone"] == "UTC"
        with pytest.raises(MCPError, match="nosuch__x"):
            await client.call_tool("nosuch__x", {})


async def test_aggregate_hides_policy_denied_tool(env: Env) -> None:
    """Bob's denied get_current_time is not in his /mcp tools list; other tools are."""
    async with sdk_client(env.served, env.key("bob")) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert "time__convert_time" in names
    assert "time__get_current_time" not in names


# -- 6. process isolation -------------------------------------------------------------------


async def test_principals_and_sessions_never_share_a_stdio_server(env: Env) -> None:
    """Two principals, and two legacy sessions of one principal, get distinct server processes."""
    carol_1 = await _shell_pid(env.served, env.key("carol"))
    carol_2 = await _shell_pid(env.served, env.key("carol"))
    bob = await _shell_pid(env.served, env.key("bob"))
    assert len({carol_1, carol_2, bob}) == 3
    # 2026-07-28 requests share a pooled server per principal, never across principals.
    carol_modern = await _shell_pid(env.served, env.key("carol"), MODERN)
    bob_modern = await _shell_pid(env.served, env.key("bob"), MODERN)
    assert carol_modern != bob_modern
    assert await _shell_pid(env.served, env.key("carol"), MODERN) == carol_modern


# -- 7. HTTP security -----------------------------------------------------------------------


async def test_foreign_host_is_refused_before_auth(env: Env) -> None:
    """A DNS-rebinding Host header is refused (421) even without credentials."""
    response = await _post(env.served.url + "/mcp", INIT, None, Host="evil.example")
    assert response.status_code in (403, 421)
    assert "www-authenticate" not in response.headers


async def test_origins(env: Env) -> None:
    """A foreign Origin gets 403; an allowed origin passes."""
    key = env.key("carol")
    url = env.served.url + "/servers/time/mcp"
    response = await _post(url, INIT, key, Origin="https://evil.example")
    assert response.status_code == 403
    response = await _post(url, INIT, key, Origin="https://app.example")
    assert response.status_code == 200


async def test_oversized_body_is_413_and_server_stays_healthy(env: Env) -> None:
    """A body over max_body_bytes gets 413; the gateway still answers afterwards."""
    key = env.key("carol")
    big = {**INIT, "params": {**INIT["params"], "pad": "x" * 200_000}}  # type: ignore[dict-item]
    response = await _post(env.served.url + "/servers/time/mcp", big, key)
    assert response.status_code == 413
    async with http() as client:
        assert (await client.get(env.served.url + "/healthz")).status_code == 200
    assert (await _post(env.served.url + "/servers/time/mcp", INIT, key)).status_code == 200


async def test_rate_limit_gives_429_with_retry_after(env: Env) -> None:
    """With requests_per_minute 3, the fourth request in a minute gets 429 and Retry-After."""
    key = env.key("slow")
    url = env.served.url + "/servers/nosuch/mcp"  # counted, then 404: no upstream started
    statuses = [(await _post(url, INIT, key)).status_code for _ in range(3)]
    assert statuses == [404, 404, 404]
    response = await _post(url, INIT, key)
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    "body",
    [b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', b'{"jsonrpc":"2.0","id":1,"method":'],
    ids=["batch", "malformed"],
)
async def test_batch_and_malformed_json_get_400(env: Env, body: bytes) -> None:
    """A JSON batch array or malformed JSON gets 400 with a JSON-RPC error."""
    response = await _post(env.served.url + "/servers/time/mcp", body, env.key("carol"))
    assert response.status_code == 400
    msg = response.json()
    assert msg["jsonrpc"] == "2.0" and isinstance(msg["error"]["code"], int)


async def test_modern_header_mismatch_gets_32020(env: Env) -> None:
    """A 2026 request whose Mcp-Method header differs from its body gets 400, code -32020."""
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/list",
        "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": MODERN}},
    }
    response = await _post(
        env.served.url + "/servers/time/mcp",
        body,
        env.key("carol"),
        **{"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32020


async def test_forged_or_foreign_session_id_gets_404(env: Env) -> None:
    """A forged, another principal's, or a deleted Mcp-Session-Id gets 404."""
    url = env.served.url + "/servers/echo/mcp"
    opened = await _post(url, INIT, env.key("carol"))
    assert opened.status_code == 200
    sid = opened.headers["mcp-session-id"]
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    own = await _post(url, listing, env.key("carol"), **{"Mcp-Session-Id": sid})
    assert own.status_code == 200 and "tools" in _rpc_of(own)["result"]
    other = await _post(url, listing, env.key("bob"), **{"Mcp-Session-Id": sid})
    assert other.status_code == 404
    forged = sid[:-6] + ("AAAAAA" if not sid.endswith("AAAAAA") else "BBBBBB")
    got = await _post(url, listing, env.key("carol"), **{"Mcp-Session-Id": forged})
    assert got.status_code == 404
    async with http(env.key("carol")) as client:
        deleted = await client.delete(url, headers={"Mcp-Session-Id": sid})
    assert deleted.status_code == 204
    after = await _post(url, listing, env.key("carol"), **{"Mcp-Session-Id": sid})
    assert after.status_code == 404


# -- 8. operations --------------------------------------------------------------------------


async def test_health_ready_and_metrics(env: Env) -> None:
    """/healthz and /readyz need no auth; /metrics needs it and counts calls."""
    async with http() as client:
        assert (await client.get(env.served.url + "/healthz")).status_code == 200
        assert (await client.get(env.served.url + "/readyz")).status_code == 200
        assert (await client.get(env.served.url + "/metrics")).status_code == 401
    async with sdk_client(env.served, env.key("carol"), "/servers/time/mcp") as client:
        await client.call_tool("get_current_time", {"timezone": "UTC"})
    async with http(env.key("carol")) as client:
        metrics = await client.get(env.served.url + "/metrics")
    assert metrics.status_code == 200
    assert "portcullis_calls_total" in metrics.text


# Last of the shared-process tests: the verifier refetches keys at most every 30 s, so the
# longer the process has run, the shorter this waits.
async def test_issuer_key_rotation_is_picked_up(env: Env) -> None:
    """After the issuer publishes a new key, tokens signed with it are accepted (bounded wait)."""
    assert (await _post(env.served.url + "/servers/time/mcp", INIT, env.token())).status_code == 200
    kid = env.issuer.add_key("ES256")
    token = env.token(kid=kid)
    # The verifier refetches the JWKS for an unknown kid at most every 30 s: retry, bounded.
    deadline = time.monotonic() + TIMEOUT
    while True:
        response = await _post(env.served.url + "/servers/time/mcp", INIT, token)
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        await anyio.sleep(1.0)
    assert response.status_code == 200, response.text


def _policy(extra: str = "", deny: str = "") -> str:
    rules = f"{{default: allow, deny: [{deny}]}}" if deny else "{default: allow}"
    fixture = fixture_server()
    return f"""\
version: 1
defaults:
  tools: {rules}
servers:
  echo:
    command: {json.dumps(fixture[0])}
    args: [{json.dumps(fixture[1])}]
serve:
  metrics_public: true
{extra}"""


@pytest.mark.parametrize(
    ("extra", "args", "needle"),
    [
        ("  auth: {api_keys: false}\n", (), "authentication"),
        ("", ("--host", "0.0.0.0"), "TLS"),
    ],
    ids=["no-auth", "public-without-tls"],
)
def test_refuses_to_start(extra: str, args: tuple[str, ...], needle: str) -> None:
    """No authentication at all, or a non-loopback address without TLS: exit 2, clear message."""
    served = Served(_policy(extra), args=args)
    try:
        done = served.run()
    finally:
        served.close()
    assert done.returncode == 2, done.stderr
    assert needle in done.stderr
    assert "listening" not in done.stderr


async def test_sighup_reload_and_sigterm() -> None:
    """SIGHUP applies a new policy, keeps the old on a broken file; SIGTERM exits 0, no children."""
    served = Served(_policy())
    try:
        key = served.key("carol")
        served.start()
        async with http() as client:  # metrics_public: no credentials needed
            assert (await client.get(served.url + "/metrics")).status_code == 200
        async with sdk_client(served, key, "/servers/echo/mcp") as client:
            assert text_of(await client.call_tool("echo", {"text": "a"})) == "a"
        served.write_policy(_policy(deny='"echo"'))
        served.hup()
        served.wait_stderr("policy reloaded")
        async with sdk_client(served, key, "/servers/echo/mcp") as client:
            assert (await client.call_tool("echo", {"text": "b"})).is_error
        served.write_policy("version: 1\nservers: [broken\n")
        served.hup()
        served.wait_stderr("NOT reloaded")
        # A session left open (raw: no GET stream, no DELETE): its server must go on SIGTERM.
        url = served.url + "/servers/echo/mcp"
        opened = await _post(url, INIT, key)
        sid = {"Mcp-Session-Id": opened.headers["mcp-session-id"]}
        await _post(url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, key, **sid)
        denied = await _post(url, _call(2, "echo", {"text": "c"}), key, **sid)
        assert _rpc_of(denied)["result"]["isError"]  # the old policy is kept
        shell = await _post(
            url, _call(3, "shell", {"argv": ["sh", "-c", "echo $PPID"]}), key, **sid
        )
        pid = int(_rpc_of(shell)["result"]["content"][0]["text"].split()[-1])
        assert is_alive(pid)
        assert served.stop() == 0
        deadline = time.monotonic() + TIMEOUT
        while is_alive(pid) and time.monotonic() < deadline:
            await anyio.sleep(0.1)
        assert not is_alive(pid)
    finally:
        served.close()


async def test_json_log_format() -> None:
    """--log-format json: every stderr line of serve and its servers is one JSON object."""
    served = Served(_policy(), args=("--log-format", "json"))
    try:
        key = served.key("dave")
        served.start()
        async with sdk_client(served, key, "/servers/echo/mcp") as client:
            assert text_of(await client.call_tool("complain", {"text": "to stderr"})) == "done"
        served.wait_stderr("to stderr")
    finally:
        served.stop()
    events = [json.loads(line) for line in served.stderr_text().splitlines() if line.strip()]
    assert any(e["msg"].startswith("listening on http://127.0.0.1:") for e in events)
    assert any(e.get("server") == "echo" and e["msg"] == "to stderr" for e in events)
    assert all(e["logger"] == "portcullis.serve" and "ts" in e for e in events)


async def test_server_that_cannot_start_is_a_clear_502() -> None:
    """A server whose command does not exist: 502 naming the problem; the gateway stays up."""
    served = Served(
        "version: 1\ndefaults:\n  tools: {default: allow}\nservers:\n"
        "  ghost:\n    command: /nonexistent/mcp-server\n"
    )
    try:
        key = served.key("erin")
        served.start()
        response = await _post(served.url + "/servers/ghost/mcp", INIT, key)
        assert response.status_code == 502
        assert "/nonexistent/mcp-server" in response.json()["error"]["message"]
        async with http() as client:
            assert (await client.get(served.url + "/healthz")).status_code == 200
    finally:
        served.stop()


async def test_audit_log_and_keys_file_outside_the_state_dir_are_protected(
    tmp_path: Path,
) -> None:
    """An audit log and keys file kept elsewhere are refused to guarded tools, like the state dir."""
    logs = tmp_path / "logs"
    logs.mkdir()
    keys_file = tmp_path / "keys.json"
    fs = REPO / "tests" / "servers" / "node_modules" / ".bin" / "mcp-server-filesystem"
    served = Served(
        f"""\
version: 1
servers:
  fs:
    command: {json.dumps(str(fs))}
    args: [{json.dumps(str(tmp_path))}]
    tools: {{default: allow}}
    paths: {{roots: [{json.dumps(str(tmp_path))}]}}
audit:
  path: {json.dumps(str(logs / "audit.jsonl"))}
""",
        args=("--keys", str(keys_file)),
    )
    try:
        done = served.cli("keys", "create", "gina", "--keys", str(keys_file))
        assert done.returncode == 0, done.stderr
        key = done.stdout.strip().splitlines()[-1].split()[-1]
        served.start()
        (tmp_path / "notes.txt").write_text("fine")
        async with sdk_client(served, key, "/servers/fs/mcp") as client:
            ok = await client.call_tool("read_text_file", {"path": str(tmp_path / "notes.txt")})
            assert text_of(ok) == "fine"
            for target in (logs / "audit.jsonl", keys_file):
                refused = await client.call_tool("read_text_file", {"path": str(target)})
                assert refused.is_error, target
                assert "protected" in text_of(refused), text_of(refused)
    finally:
        served.stop()
