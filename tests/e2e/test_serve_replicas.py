"""``portcullis serve`` end to end: replicas sharing Redis, approvals, 2026 seals, cancellation.

Every test starts real ``portcullis serve`` processes (:class:`tests.serve.conftest.Served`) in
front of the SDK fixture server (tests/fixtures/mcp_server.py) and talks to them with raw
``httpx2`` JSON-RPC requests, because the interesting moves (sending a session's next request
to another replica, hanging up mid-stream, replaying a sealed state) are ones the SDK client
would never make. Replicas share a real ``redis-server`` whose URL reaches them through the
environment (``${env:PORTCULLIS_REDIS}``), so no password is ever written to a file; each test
uses one of the test server's spare databases, flushed before and after it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.serve.conftest import TIMEOUT, Served, fixture_server, http
from tests.serve.redis_fixture import redis_url  # noqa: F401 - a fixture, used by name

pytestmark = pytest.mark.anyio

ACCEPT = "application/json, text/event-stream"
LEGACY = "2025-11-25"
MODERN = "2026-07-28"
MODERN_KEY = "io.modelcontextprotocol/protocolVersion"
CAPS_KEY = "io.modelcontextprotocol/clientCapabilities"
INFO_KEY = "io.modelcontextprotocol/clientInfo"
GATEWAY_KEY = "portcullis.approval"


# -- policies ----------------------------------------------------------------------------------


def policy(
    *,
    confirm: bool = False,
    channel: str = "console",
    timeout_s: float = 30,
    redis: bool = True,
    deny: tuple[str, ...] = (),
) -> str:
    """A policy serving the fixture server as ``fx`` to alice (and boss, who approves her)."""
    command = fixture_server()
    tools = ["default: allow"]
    if confirm:
        tools.append("confirm: [echo]")
    if deny:
        tools.append(f"deny: [{', '.join(deny)}]")
    text = f"""\
version: 1
defaults:
  tools: {{{", ".join(tools)}}}
servers:
  fx:
    command: {json.dumps(command[0])}
    args: {json.dumps(command[1:])}
approvals: {{channels: [{channel}], timeout_s: {timeout_s}}}
serve:
  identities:
    alice: {{servers: ["*"]}}
    boss: {{servers: ["*"], approve: [alice]}}
"""
    if redis:
        text += '  redis: "${env:PORTCULLIS_REDIS}"\n'
    return text


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def redis_db(redis_url: str) -> Iterator[str]:  # noqa: F811 - the imported fixture
    """The test Redis server's URL on a database (1-3 of its 4) flushed before and after."""
    import redis

    parts = urlsplit(redis_url)
    url = urlunsplit(parts._replace(path=f"/{secrets.randbelow(3) + 1}"))
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    client.flushdb()
    yield url
    try:
        client.flushdb()
    finally:
        client.close()


class Pair:
    """Two replicas (own homes) sharing one Redis and one API keys file."""

    def __init__(self, text: str, redis: str) -> None:
        env = {"PORTCULLIS_REDIS": redis}
        self.a = Served(text, env=env)
        self.b = Served(text, env=env)
        self.keys = {name: self.a.key(name) for name in ("alice", "boss")}
        shutil.copy(self.a.home / "keys.json", self.b.home / "keys.json")
        self.a.start()
        self.b.start()

    def close(self) -> None:
        """Stop both replicas."""
        try:
            self.a.close()
        finally:
            self.b.close()


@pytest.fixture
def pair_factory(redis_db: str) -> Iterator[Any]:
    """Make :class:`Pair` replicas that are stopped at the end of the test."""
    made: list[Pair] = []

    def make(text: str) -> Pair:
        pair = Pair(text, redis_db)
        made.append(pair)
        return pair

    yield make
    for pair in made:
        pair.close()


# -- raw MCP over HTTP -------------------------------------------------------------------------


def _messages(resp: httpx2.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages of a response: one JSON body, or the data of SSE events."""
    ctype = resp.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        return [resp.json()]
    assert ctype.startswith("text/event-stream"), (resp.status_code, ctype, resp.text[:500])
    out = []
    for block in resp.text.replace("\r\n", "\n").split("\n\n"):
        data = [ln[5:].lstrip() for ln in block.split("\n") if ln.startswith("data:")]
        if data:
            out.append(json.loads("\n".join(data)))
    return out


def final(resp: httpx2.Response) -> dict[str, Any]:
    """The last message of a response (the answer, after any notifications)."""
    msgs = _messages(resp)
    assert msgs, resp.text
    return msgs[-1]


class Mcp:
    """Raw JSON-RPC on one endpoint, with a principal's key and, once begun, a session id."""

    def __init__(self, client: httpx2.AsyncClient, token: str) -> None:
        self.client = client
        self.token = token
        self.sid: str | None = None
        self._ids = iter(range(1, 10_000))

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        head = {
            "Authorization": f"Bearer {self.token}",
            "Accept": ACCEPT,
            "Content-Type": "application/json",
        }
        if self.sid is not None:
            head["Mcp-Session-Id"] = self.sid
            head["MCP-Protocol-Version"] = LEGACY
        head.update(extra or {})
        return head

    async def post(
        self, url: str, msg: dict[str, Any], extra: dict[str, str] | None = None
    ) -> httpx2.Response:
        return await self.client.post(
            url, content=json.dumps(msg).encode(), headers=self.headers(extra)
        )

    async def initialize(self, url: str) -> dict[str, Any]:
        """The legacy handshake on ``url``; keeps the session id."""
        resp = await self.post(
            url,
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": LEGACY,
                    "capabilities": {},
                    "clientInfo": {"name": "portcullis-e2e", "version": "1"},
                },
            },
        )
        assert resp.status_code == 200, resp.text
        self.sid = resp.headers["mcp-session-id"]
        done = await self.post(url, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert done.status_code == 202, done.text
        return final(resp)

    async def request(
        self, url: str, method: str, params: dict[str, Any] | None = None
    ) -> httpx2.Response:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": next(self._ids), "method": method}
        if params is not None:
            msg["params"] = params
        return await self.post(url, msg)

    async def call(self, url: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        resp = await self.request(url, "tools/call", {"name": tool, "arguments": arguments})
        assert resp.status_code == 200, resp.text
        return final(resp)


def modern_call(
    tool: str, arguments: dict[str, Any], rid: int, **params: Any
) -> tuple[dict[str, Any], dict[str, str]]:
    """A 2026-07-28 tools/call (body, mirrored headers) declaring form elicitation."""
    body = {
        "jsonrpc": "2.0",
        "id": rid,
        "method": "tools/call",
        "params": {
            "name": tool,
            "arguments": arguments,
            **params,
            "_meta": {
                MODERN_KEY: MODERN,
                CAPS_KEY: {"elicitation": {"form": {}}},
                INFO_KEY: {"name": "portcullis-e2e", "version": "1"},
            },
        },
    }
    head = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": tool}
    return body, head


def text(result: dict[str, Any]) -> str:
    """The text of a JSON-RPC tools/call response."""
    assert "result" in result, result
    return "".join(b.get("text", "") for b in result["result"].get("content", []))


async def until(pred: Any, what: str, timeout: float = TIMEOUT) -> Any:
    """Poll ``pred`` (async or not) until it returns something truthy; bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}", pytrace=False)


# -- 1. a session moves between replicas -------------------------------------------------------


async def test_session_continues_on_other_replica_and_delete_ends_it_everywhere(
    pair_factory: Any,
) -> None:
    """A legacy session begun on replica A works on B (rebuilt there); a DELETE on B ends it on A."""
    pair = pair_factory(policy())
    a, b = pair.a.url + "/servers/fx/mcp", pair.b.url + "/servers/fx/mcp"
    async with http() as client:
        mcp = Mcp(client, pair.keys["alice"])
        init = await mcp.initialize(a)
        assert init["result"]["serverInfo"]["name"] == "portcullis-fixture"
        listed = final(await mcp.request(b, "tools/list"))
        names = {t["name"] for t in listed["result"]["tools"]}
        assert {"echo", "slow"} <= names
        assert text(await mcp.call(b, "echo", {"text": "via B"})) == "via B"
        assert text(await mcp.call(a, "echo", {"text": "back on A"})) == "back on A"
        # Another principal cannot use alice's session id on either replica.
        other = Mcp(client, pair.keys["boss"])
        other.sid = mcp.sid
        stolen = await other.request(b, "tools/list")
        assert stolen.status_code == 404, stolen.text
        gone = await client.delete(b, headers=mcp.headers())
        assert gone.status_code == 204, gone.text
        after = await mcp.request(a, "tools/list")
        assert after.status_code == 404, after.text
        assert after.json()["error"]["code"] == -32600
        again = await mcp.request(b, "tools/list")
        assert again.status_code == 404, again.text
    # Both replicas audit the calls under the one session (B rebuilt it, it did not begin anew).
    on_a = {r["session"] for r in pair.a.audit_records() if r.get("tool") == "echo"}
    on_b = {r["session"] for r in pair.b.audit_records() if r.get("tool") == "echo"}
    assert len(on_a) == 1, pair.a.audit_records()
    assert on_a == on_b, (on_a, on_b)
    assert all(r["principal"] == "alice" for r in pair.b.audit_records() if "principal" in r)


class Alternating(httpx2.AsyncBaseTransport):
    """An HTTP transport sending each request to the next of several replicas, in turn."""

    def __init__(self, ports: list[int]) -> None:
        self.inner = httpx2.AsyncHTTPTransport()
        self.ports = ports
        self.sent: list[tuple[str, int]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        port = self.ports[len(self.sent) % len(self.ports)]
        self.sent.append((request.method, port))
        request.url = request.url.copy_with(port=port)
        request.headers["host"] = f"127.0.0.1:{port}"
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_sdk_client_works_with_requests_spread_over_two_replicas(pair_factory: Any) -> None:
    """The SDK client, its requests sent to replica A and B in turn, keeps one working session."""
    pair = pair_factory(policy())
    transport = Alternating([pair.a.port, pair.b.port])
    head = {"Authorization": f"Bearer {pair.keys['alice']}"}
    async with httpx2.AsyncClient(
        transport=transport, headers=head, timeout=httpx2.Timeout(TIMEOUT)
    ) as hc:
        url = pair.a.url + "/servers/fx/mcp"
        stream = streamable_http_client(url, http_client=hc)
        async with Client(stream, mode="legacy", cache=None, read_timeout_seconds=TIMEOUT) as c:
            for n in range(4):
                result = await c.call_tool("echo", {"text": f"call {n}"})
                assert "".join(getattr(b, "text", "") for b in result.content) == f"call {n}"
            names = {t.name for t in (await c.list_tools()).tools}
            assert "echo" in names
    posts = {port for method, port in transport.sent if method == "POST"}
    assert posts == {pair.a.port, pair.b.port}, transport.sent
    sessions = [
        {r["session"] for r in served.audit_records() if r.get("tool") == "echo"}
        for served in (pair.a, pair.b)
    ]
    assert len(sessions[0]) == 1, sessions
    assert sessions[0] == sessions[1], sessions


# -- 2. approvals across replicas --------------------------------------------------------------


async def _queued(mcp: Mcp, url: str, n: int = 1) -> list[dict[str, Any]]:
    """Wait until ``mcp``'s principal sees at least ``n`` questions in ``url``'s queue."""

    async def look() -> list[dict[str, Any]] | None:
        resp = await mcp.client.get(url + "/approvals", headers=mcp.headers())
        assert resp.status_code == 200, resp.text
        entries: list[dict[str, Any]] = resp.json()["approvals"]
        return entries if len(entries) >= n else None

    found: list[dict[str, Any]] = await until(look, "the question in GET /approvals")
    return found


async def _answer(
    mcp: Mcp, url: str, entry: dict[str, Any], decision: str, code: Any = None
) -> httpx2.Response:
    body = {"decision": decision, "code": entry["code"] if code is None else code}
    return await mcp.client.post(
        f"{url}/approvals/{entry['id']}", content=json.dumps(body).encode(), headers=mcp.headers()
    )


async def test_approval_on_one_replica_releases_the_call_held_by_the_other(
    pair_factory: Any,
) -> None:
    """An approval given by boss on B releases alice's call held on A; alice may not approve."""
    pair = pair_factory(policy(confirm=True))
    a = pair.a.url + "/servers/fx/mcp"
    async with http() as client:
        alice = Mcp(client, pair.keys["alice"])
        boss = Mcp(client, pair.keys["boss"])
        await alice.initialize(a)
        held = asyncio.ensure_future(alice.call(a, "echo", {"text": "approved text"}))
        try:
            (entry,) = await _queued(boss, pair.b.url)
            assert entry["principal"] == "alice"
            assert entry["subject"] == "echo"
            assert entry["server"] == "fx"
            assert not held.done()
            # alice sees nothing to answer, and may not answer her own question.
            mine = await client.get(pair.b.url + "/approvals", headers=alice.headers())
            assert mine.json()["approvals"] == []
            own = await _answer(alice, pair.b.url, entry, "approve")
            # 404 ("no such question"): who may not answer a question is not told it exists.
            assert own.status_code == 404, own.text
            wrong = await _answer(boss, pair.b.url, entry, "approve", code="not-the-code")
            assert wrong.status_code == 400, wrong.text
            ok = await _answer(boss, pair.b.url, entry, "approve")
            assert ok.status_code == 200, ok.text
            assert ok.json()["outcome"] == "approved"
            result = await asyncio.wait_for(held, TIMEOUT)
        finally:
            held.cancel()
        assert text(result) == "approved text"
        assert not result["result"].get("isError")
        twice = await _answer(boss, pair.a.url, entry, "deny")
        assert twice.status_code in (404, 409), twice.text
    records = [r for r in pair.a.audit_records() if r.get("approval")]
    assert records, pair.a.audit_records()
    approval = records[-1]["approval"]
    assert approval["channel"] == "console"
    assert approval["outcome"] == "approved"
    assert approval["approver"] == "boss"
    assert records[-1]["principal"] == "alice"


async def test_denial_through_other_replica_refuses_call_and_second_answer_conflicts(
    pair_factory: Any,
) -> None:
    """A deny given on B gives alice's call on A an isError result; a later approve is 409."""
    pair = pair_factory(policy(confirm=True))
    a = pair.a.url + "/servers/fx/mcp"
    async with http() as client:
        alice = Mcp(client, pair.keys["alice"])
        boss = Mcp(client, pair.keys["boss"])
        await alice.initialize(a)
        held = asyncio.ensure_future(alice.call(a, "echo", {"text": "never echoed"}))
        try:
            (entry,) = await _queued(boss, pair.b.url)
            no = await _answer(boss, pair.b.url, entry, "deny")
            assert no.status_code == 200, no.text
            late = await _answer(boss, pair.a.url, entry, "approve")
            assert late.status_code == 409, late.text
            result = await asyncio.wait_for(held, TIMEOUT)
        finally:
            held.cancel()
    assert result["result"]["isError"] is True, result
    assert "never echoed" not in text(result)
    approval = [r for r in pair.a.audit_records() if r.get("approval")][-1]["approval"]
    assert approval["outcome"] == "denied"
    assert approval["approver"] == "boss"


async def test_unanswered_question_is_denied_after_the_timeout(pair_factory: Any) -> None:
    """Nobody answers within approvals.timeout_s: the held call is refused, never forwarded."""
    pair = pair_factory(policy(confirm=True, timeout_s=2))
    a = pair.a.url + "/servers/fx/mcp"
    async with http() as client:
        alice = Mcp(client, pair.keys["alice"])
        await alice.initialize(a)
        result = await asyncio.wait_for(alice.call(a, "echo", {"text": "too late"}), TIMEOUT)
    assert result["result"]["isError"] is True, result
    assert "too late" not in text(result)
    approval = [r for r in pair.a.audit_records() if r.get("approval")][-1]["approval"]
    assert approval["outcome"] == "timeout", approval


# -- 3. 2026 confirm: a sealed requestState is good once, on any replica -----------------------


async def test_sealed_request_state_is_accepted_once_across_replicas(pair_factory: Any) -> None:
    """A 2026 confirm answered with input_required: the retry works on B, its replay on A fails."""
    pair = pair_factory(policy(confirm=True, channel="elicitation"))
    a, b = pair.a.url + "/servers/fx/mcp", pair.b.url + "/servers/fx/mcp"
    async with http() as client:
        alice = Mcp(client, pair.keys["alice"])
        body, head = modern_call("echo", {"text": "sealed"}, 1)
        first = final(await alice.post(a, body, head))
        result = first["result"]
        assert result["resultType"] == "input_required", first
        state = result["requestState"]
        assert GATEWAY_KEY in result["inputRequests"]
        yes = {GATEWAY_KEY: {"action": "accept", "content": {"approve": True}}}
        retry, head = modern_call(
            "echo", {"text": "sealed"}, 2, requestState=state, inputResponses=yes
        )
        done = final(await alice.post(b, retry, head))
        assert text(done) == "sealed"
        assert not done["result"].get("isError")
        replay, head = modern_call(
            "echo", {"text": "sealed"}, 3, requestState=state, inputResponses=yes
        )
        again = final(await alice.post(a, replay, head))
        assert again["result"].get("isError") is True, again
        assert "sealed" not in text(again).replace("requestState", "")
        # The state is bound to the call: other arguments are refused, even with a fresh state.
        fresh = final(await alice.post(a, *modern_call("echo", {"text": "sealed"}, 4)))
        other, head = modern_call(
            "echo",
            {"text": "something else"},
            5,
            requestState=fresh["result"]["requestState"],
            inputResponses=yes,
        )
        swapped = final(await alice.post(b, other, head))
        assert swapped["result"].get("isError") is True, swapped
    refused = [
        r
        for rec in (pair.a.audit_records(), pair.b.audit_records())
        for r in rec
        if r.get("rule") == "approval.state"
    ]
    reasons = sorted(str(r.get("reason", "")) for r in refused)
    assert len(reasons) == 2, refused
    assert "already used" in reasons[1] or "already used" in reasons[0], reasons
    assert any("arguments changed" in why for why in reasons), reasons


# -- 4. a client that hangs up mid-stream stops the upstream's work ----------------------------

# A real SDK server over stdio whose slow tool leaves a mark saying how each call ended
# ("<tag>.cancelled" or "<tag>.finished"): the upstream's own view of the cancellation.
PROBE_SERVER = """\
import os
import sys
from pathlib import Path

import anyio
from mcp.server.mcpserver import Context, MCPServer

marks = Path(sys.argv[1])
server = MCPServer("slow-probe")


@server.tool(structured_output=False)
async def slow(tag: str, seconds: float, steps: int, ctx: Context) -> str:
    \"\"\"Report progress steps times over seconds; record how the call ended.\"\"\"
    try:
        for i in range(steps):
            await ctx.report_progress(i + 1, steps, f"step {i + 1}")
            await anyio.sleep(seconds / steps)
    except BaseException:
        (marks / f"{tag}.cancelled").write_text(str(os.getpid()))
        raise
    (marks / f"{tag}.finished").write_text(str(os.getpid()))
    return "finished"


@server.tool(structured_output=False)
def pid() -> str:
    \"\"\"This server's process id.\"\"\"
    return str(os.getpid())


server.run("stdio")
"""


def probe_policy(script: Path, marks: Path) -> str:
    """One replica (no Redis) serving the probe server as ``probe`` to alice."""
    return f"""\
version: 1
defaults:
  tools: {{default: allow}}
servers:
  probe:
    command: {json.dumps(fixture_server()[0])}
    args: {json.dumps([str(script), str(marks)])}
serve:
  identities:
    alice: {{servers: ["*"]}}
"""


async def _hang_up_after_first_progress(
    client: httpx2.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    """POST ``body``, read the SSE stream up to its first progress notification, hang up."""
    async with client.stream(
        "POST", url, content=json.dumps(body).encode(), headers=headers
    ) as resp:
        assert resp.status_code == 200
        ctype = resp.headers["content-type"]
        if not ctype.startswith("text/event-stream"):
            pytest.fail(f"no stream but {ctype}: {(await resp.aread())[:500]!r}", pytrace=False)
        async for line in resp.aiter_lines():
            if line.startswith("data:"):
                msg: dict[str, Any] = json.loads(line[5:])
                assert msg.get("method") == "notifications/progress", msg
                return msg
    pytest.fail("the stream ended before any progress notification", pytrace=False)


async def test_client_hanging_up_cancels_the_upstream_call(tmp_path: Path) -> None:
    """Closing the SSE stream mid-call makes the gateway cancel the call upstream (both eras)."""
    script, marks = tmp_path / "probe_server.py", tmp_path / "marks"
    script.write_text(PROBE_SERVER)
    marks.mkdir()
    with Served(probe_policy(script, marks)) as served:
        token = served.key("alice")
        url = served.url + "/servers/probe/mcp"
        slow = {"seconds": 20, "steps": 20}
        async with http() as client:
            # Legacy: a session's call, then a hang-up.
            mcp = Mcp(client, token)
            await mcp.initialize(url)
            call = {
                "jsonrpc": "2.0",
                "id": 7,
                "method": "tools/call",
                "params": {
                    "name": "slow",
                    "arguments": {"tag": "legacy", **slow},
                    "_meta": {"progressToken": "p-legacy"},
                },
            }
            first = await _hang_up_after_first_progress(client, url, call, mcp.headers())
            assert first["params"]["progressToken"] == "p-legacy"
            await until(lambda: (marks / "legacy.cancelled").exists(), "the legacy cancellation")
            # The session goes on with the same upstream process, free for the next call.
            legacy_pid = text(await mcp.call(url, "pid", {}))
            assert (marks / "legacy.cancelled").read_text() == legacy_pid

            # 2026-07-28: a stateless request on the principal's pooled link, then a hang-up.
            body, head = modern_call("slow", {"tag": "modern", **slow}, 8)
            body["params"]["_meta"]["progressToken"] = "p-modern"
            plain = Mcp(client, token)
            first = await _hang_up_after_first_progress(client, url, body, plain.headers(head))
            assert first["params"]["progressToken"] == "p-modern"
            await until(lambda: (marks / "modern.cancelled").exists(), "the 2026 cancellation")
            ask, head = modern_call("pid", {}, 9)
            modern_pid = text(final(await plain.post(url, ask, head)))
            assert (marks / "modern.cancelled").read_text() == modern_pid
            assert modern_pid != legacy_pid  # a session's link and the pool are not shared
        assert not (marks / "legacy.finished").exists()
        assert not (marks / "modern.finished").exists()
        assert "Traceback" not in served.stderr_text()


# -- 6. metrics and the audit trail -------------------------------------------------------------


async def test_metrics_count_a_denial_by_rule_and_audit_names_the_principal() -> None:
    """A denied call shows in /metrics as portcullis_denials_total{rule=…}; audit has principal."""
    with Served(policy(redis=False, deny=("shell",))) as served:
        token = served.key("alice")
        url = served.url + "/servers/fx/mcp"
        async with http() as client:
            anonymous = await client.get(served.url + "/metrics")
            assert anonymous.status_code == 401, anonymous.text
            mcp = Mcp(client, token)
            await mcp.initialize(url)
            refused = await mcp.call(url, "shell", {"argv": ["true"]})
            assert refused["result"]["isError"] is True, refused
            assert text(await mcp.call(url, "echo", {"text": "ok"})) == "ok"
            metrics = await client.get(served.url + "/metrics", headers=mcp.headers())
        assert metrics.status_code == 200, metrics.text
        records = served.audit_records()  # before close() removes the home
    denials = [r for r in records if r.get("decision") == "deny"]
    assert len(denials) == 1, records
    (denial,) = denials
    assert denial["principal"] == "alice"
    assert denial["tool"] == "shell"
    rule = denial["rule"]
    lines = [
        ln
        for ln in metrics.text.splitlines()
        if ln.startswith("portcullis_denials_total{") and f'rule="{rule}"' in ln
    ]
    assert len(lines) == 1, metrics.text
    assert 'server="fx"' in lines[0]
    assert float(lines[0].rsplit(" ", 1)[1]) == 1.0
    calls = [r for r in records if r.get("method") == "tools/call"]
    assert calls
    assert all(r["principal"] == "alice" for r in calls)
