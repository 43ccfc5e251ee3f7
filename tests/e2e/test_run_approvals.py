"""Approvals of ``confirm`` calls through the client: elicitation in both eras, and no channel.

The SDK client answers the gateway's question with its elicitation callback (legacy: the
gateway's own ``elicitation/create``; 2026-07-28: an ``input_required`` result with a sealed
``requestState``). Raw clients send what the SDK never would: tampered, replayed and altered
retries, cancellations, silence. Every case checks the audit record it leaves.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import mcp.types as types
import pytest
from mcp.client.session import ClientRequestContext

from tests.e2e.conftest import Gateway, fixture_server, text_of

pytestmark = pytest.mark.e2e

ELICIT = """\
version: 1
approvals: {channels: [elicitation], timeout_s: 60}
defaults:
  tools: {default: allow, confirm: [echo, ask_elicit], remember: [ask_elicit]}
  server_requests: {elicitation: allow}
"""

MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "portcullis-e2e-raw", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
}
GATEWAY_KEY = "portcullis.approval"


class Person:
    """The client's user: answers the gateway's question one way, the server's with 42."""

    def __init__(self, action: str = "accept", approve: bool = True, session: bool = False):
        self.action = action
        self.approve = approve
        self.session = session
        self.asked: list[str] = []  # the gateway's questions, as shown
        self.server_asked = 0

    async def __call__(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        assert isinstance(params, types.ElicitRequestFormParams)
        if "approve" not in params.requested_schema.get("properties", {}):
            self.server_asked += 1
            return types.ElicitResult(action="accept", content={"answer": "42"})
        self.asked.append(params.message)
        if self.action != "accept":
            return types.ElicitResult(action=self.action)  # type: ignore[arg-type]
        content: dict[str, Any] = {"approve": self.approve}
        if self.session:
            content["for_session"] = True
        return types.ElicitResult(action="accept", content=content)


def confirm_records(gw: Gateway, tool: str = "echo") -> list[dict[str, Any]]:
    """The audit records of approval decisions about ``tool``."""
    return [
        r
        for r in gw.audit_records()
        if r.get("tool") == tool and r["direction"] == "c2s" and "approval" in r
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_elicitation_accept_forwards_the_call(gw: Gateway, mode: str) -> None:
    """Accepted with approve=true: the call runs; the audit names elicitation and the client."""
    person = Person()
    async with gw.client(fixture_server(), ELICIT, mode=mode, elicitation_callback=person) as c:
        result = await c.call_tool("echo", {"text": "hello \u200b world"})
    assert not result.is_error, text_of(result)
    assert text_of(result).startswith("hello  world")  # (the result guard strips the ZWSP)
    assert len(person.asked) == 1
    shown = person.asked[0]
    assert 'MCP server "defaults" wants to run tool "echo"' in shown
    assert "<U+200B>" in shown  # the hidden character is made visible
    final = confirm_records(gw)[-1]
    assert final["decision"] == "confirm"
    assert final["approval"] == {
        "channel": "elicitation",
        "outcome": "approved",
        "approver": "client",
    }
    if mode == "2026-07-28":
        asked = confirm_records(gw)[0]
        assert asked["approval"] == {"channel": "elicitation", "outcome": "pending"}


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
@pytest.mark.parametrize(
    ("action", "approve", "outcome", "words"),
    [
        ("decline", True, "denied", "the user declined"),
        ("cancel", True, "cancelled", "dismissed"),
        ("accept", False, "denied", "the user answered no"),
    ],
)
async def test_elicitation_refusals_never_reach_the_server(
    gw: Gateway, mode: str, action: str, approve: bool, outcome: str, words: str
) -> None:
    """Decline, cancel and approve=false refuse the call with isError saying which."""
    person = Person(action, approve)
    async with gw.client(fixture_server(), ELICIT, mode=mode, elicitation_callback=person) as c:
        result = await c.call_tool("echo", {"text": "must not run"})
        after = await c.call_tool("big", {"nbytes": 3})
    assert result.is_error
    text = text_of(result)
    assert "must not run" not in text
    assert words in text
    assert "needs a person's approval" in text
    assert not after.is_error  # the session goes on
    final = confirm_records(gw)[-1]
    assert final["decision"] == "deny"
    assert final["approval"]["outcome"] == outcome
    assert final["approval"]["channel"] == "elicitation"
    # The server never saw it: no answer to the call came back from upstream.
    answered = [
        r for r in gw.audit_records() if r["direction"] == "s2c" and r.get("tool") == "echo"
    ]
    assert answered == []


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_server_rounds_work_under_an_approval(gw: Gateway, mode: str) -> None:
    """A confirmed tool that asks the user itself still works: both questions reach the person."""
    person = Person()
    async with gw.client(fixture_server(), ELICIT, mode=mode, elicitation_callback=person) as c:
        result = await c.call_tool("ask_elicit", {})
    assert text_of(result) == "answer=42"
    assert len(person.asked) == 1  # the server's own round did not ask for approval again
    assert person.server_asked == 1


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_session_approval_covers_later_calls_of_that_tool_only(
    gw: Gateway, mode: str
) -> None:
    """With remember: and the person's consent, later calls of the tool are not asked again."""
    person = Person(session=True)
    async with gw.client(fixture_server(), ELICIT, mode=mode, elicitation_callback=person) as c:
        first = await c.call_tool("ask_elicit", {})
        second = await c.call_tool("ask_elicit", {})
        echoed = await c.call_tool("echo", {"text": "x"})  # not rememberable: asked
    assert text_of(first) == text_of(second) == "answer=42"
    assert text_of(echoed) == "x"
    assert len(person.asked) == 2
    remembered = [r for r in confirm_records(gw, "ask_elicit") if r["approval"].get("scope")]
    assert remembered and all(r["approval"]["scope"] == "session" for r in remembered)


@pytest.mark.anyio
async def test_no_elicitation_capability_means_no_question(gw: Gateway) -> None:
    """A client without the capability is never asked; with no other channel: denied."""
    async with gw.client(fixture_server(), ELICIT) as c:
        result = await c.call_tool("echo", {"text": "x"})
    assert result.is_error
    assert "did not declare form elicitation" in text_of(result)
    final = confirm_records(gw)[-1]
    assert final["approval"] == {"channel": "none", "outcome": "unavailable"}


NO_CHANNEL = """\
version: 1
approvals: {channels: [tty, elicitation], timeout_s: 60}
defaults:
  tools: {default: allow, confirm: [echo]}
"""


def test_no_channel_at_all_denies(gw: Gateway) -> None:
    """No terminal and no elicitation: denied, naming why each channel could not be used."""
    raw = gw.raw(fixture_server(), NO_CHANNEL)  # its own session: no controlling terminal
    raw.initialize()
    response = raw.call("echo", {"text": "x"})
    result = response["result"]
    assert result["isError"] is True
    text = result["content"][0]["text"]
    assert "no approval channel could reach a person" in text
    assert "tty: no controlling terminal" in text
    assert "elicitation: the client did not declare" in text
    final = confirm_records(gw)[-1]
    assert final["decision"] == "deny"
    assert final["approval"]["outcome"] == "unavailable"


LEGACY_ELICIT_INIT = {
    "protocolVersion": "2025-06-18",
    "capabilities": {"elicitation": {}},
    "clientInfo": {"name": "portcullis-e2e-raw", "version": "1"},
}


def test_legacy_cancellation_withdraws_the_question(gw: Gateway) -> None:
    """notifications/cancelled for a call being asked about withdraws the gateway's question."""
    raw = gw.raw(fixture_server(), ELICIT)
    assert "result" in raw.request("initialize", LEGACY_ELICIT_INIT)
    raw.send({"method": "notifications/initialized"})
    raw.send(
        {"id": 7, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}}
    )
    question = json.loads(raw.recv_line())
    assert question["method"] == "elicitation/create"
    assert question["id"].startswith("portcullis-gw-")
    raw.send({"method": "notifications/cancelled", "params": {"requestId": 7}})
    withdrawn = json.loads(raw.recv_line())
    assert withdrawn == {
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": question["id"], "reason": "the approval question was withdrawn"},
    }
    # A late answer is dropped, and the session goes on.
    raw.send({"id": question["id"], "result": {"action": "accept", "content": {"approve": True}}})
    assert "result" in raw.request("tools/call", {"name": "big", "arguments": {"nbytes": 2}})
    final = confirm_records(gw)[-1]
    assert final["approval"] == {"channel": "elicitation", "outcome": "cancelled"}
    assert final["id"] == 7


def test_legacy_unanswered_question_times_out(gw: Gateway) -> None:
    """Nobody answers within timeout_s: the call is refused and the question withdrawn."""
    raw = gw.raw(fixture_server(), ELICIT.replace("timeout_s: 60", "timeout_s: 1"))
    assert "result" in raw.request("initialize", LEGACY_ELICIT_INIT)
    raw.send({"method": "notifications/initialized"})
    raw.send(
        {"id": 8, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}}
    )
    question = json.loads(raw.recv_line())
    assert question["method"] == "elicitation/create"
    withdrawn = json.loads(raw.recv_line())
    assert withdrawn["method"] == "notifications/cancelled"
    assert withdrawn["params"]["requestId"] == question["id"]
    answer = raw.response(8)["result"]
    assert answer["isError"] is True
    assert "nobody answered in time" in answer["content"][0]["text"]
    final = confirm_records(gw)[-1]
    assert final["approval"] == {"channel": "elicitation", "outcome": "timeout"}


# -- 2026-07-28: the sealed requestState ------------------------------------------------------


def modern_call(arguments: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Params of a 2026-07-28 tools/call of echo."""
    return {"name": "echo", "arguments": arguments, "_meta": MODERN_META, **extra}


def approve(state: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The retry a client sends after its user approved."""
    answer = {GATEWAY_KEY: {"action": "accept", "content": {"approve": True}}}
    return modern_call(arguments, inputResponses=answer, requestState=state)


def first_round(raw: Any, arguments: dict[str, Any]) -> str:
    """Ask once; return the gateway's sealed requestState."""
    result = raw.request("tools/call", modern_call(arguments))["result"]
    assert result["resultType"] == "input_required"
    question = result["inputRequests"][GATEWAY_KEY]
    assert question["method"] == "elicitation/create"
    assert question["params"]["mode"] == "form"
    state: str = result["requestState"]
    assert state.startswith("pcl1.")
    return state


def tamper(state: str) -> str:
    """The same state with the server name changed inside, keeping the old MAC."""
    payload, mac = state.rsplit(".", 1)
    body = json.loads(base64.urlsafe_b64decode(payload[5:] + "=" * (-len(payload[5:]) % 4)))
    body["a"] = True  # claim it was approved already
    data = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return f"pcl1.{data}.{mac}"


def test_modern_retry_is_forwarded_once(gw: Gateway) -> None:
    """A verified retry is forwarded without the gateway's keys; replaying it is refused."""
    raw = gw.raw(fixture_server(), ELICIT)
    state = first_round(raw, {"text": "once"})
    done = raw.request("tools/call", approve(state, {"text": "once"}))["result"]
    assert done["content"][0]["text"] == "once"
    assert "isError" not in done or done["isError"] is False
    again = raw.request("tools/call", approve(state, {"text": "once"}))["result"]
    assert again["isError"] is True
    assert "already used (replayed)" in again["content"][0]["text"]
    final = confirm_records(gw)[-1]
    assert final["rule"] == "approval.state"
    assert final["approval"]["outcome"] == "denied"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("tampered", "was altered"),
        ("arguments", "arguments changed after the question was asked"),
        ("foreign", "not one the gateway issued"),
    ],
)
def test_modern_bad_retry_is_refused(gw: Gateway, change: str, words: str) -> None:
    """A tampered seal, changed arguments or a forged state never reach the server."""
    raw = gw.raw(fixture_server(), ELICIT)
    state = first_round(raw, {"text": "original"})
    arguments = {"text": "original"}
    if change == "tampered":
        state = tamper(state)
    elif change == "arguments":
        arguments = {"text": "rm -rf /"}
    else:
        state = "pcl1.forged-without-a-mac"
    result = raw.request("tools/call", approve(state, arguments))["result"]
    assert result["isError"] is True
    text = result["content"][0]["text"]
    assert words in text
    assert "rm -rf" not in text and "original" not in text
    final = confirm_records(gw)[-1]
    assert final["decision"] == "deny"
    assert final["rule"] == "approval.state"
