"""Server→client requests through the gateway: elicitation, sampling and roots, both eras.

Legacy servers push ``elicitation/create``, ``sampling/createMessage`` and ``roots/list`` to the
client; in 2026-07-28 the server returns an ``input_required`` result instead and the client
retries. ``server_requests`` in the policy decides what the gateway lets through.
"""

from __future__ import annotations

from typing import Any

import mcp.types as types
import pytest
from mcp.client.session import ClientRequestContext
from mcp.shared.exceptions import MCPError

from tests.e2e.conftest import Gateway, everything, fixture_server, text_of

pytestmark = pytest.mark.e2e

ALLOW_REQUESTS = """\
version: 1
defaults:
  tools: {default: allow}
  server_requests: {sampling: allow, elicitation: allow, roots: policy}
"""

DENY_REQUESTS = """\
version: 1
defaults:
  tools: {default: allow}
  server_requests: {sampling: deny, elicitation: deny, roots: policy}
"""


class Callbacks:
    """The client's side of server→client requests; records every call it gets."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def elicit(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        self.calls.append("elicitation")
        return types.ElicitResult(action="accept", content={"name": "Ada", "answer": "42"})

    async def sample(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        self.calls.append("sampling")
        return types.CreateMessageResult(
            role="assistant",
            model="e2e-model",
            content=types.TextContent(type="text", text="hello from the client's model"),
        )

    async def roots(self, context: ClientRequestContext) -> types.ListRootsResult:
        self.calls.append("roots")
        return types.ListRootsResult(roots=[types.Root(uri="file:///client/secret/project")])

    def kwargs(self) -> dict[str, Any]:
        return {
            "elicitation_callback": self.elicit,
            "sampling_callback": self.sample,
            "list_roots_callback": self.roots,
        }


@pytest.mark.anyio
async def test_allowed_requests_reach_client_legacy_everything(gw: Gateway) -> None:
    """server-everything's elicitation and sampling requests reach the client when allowed."""
    cb = Callbacks()
    async with gw.client(everything(), ALLOW_REQUESTS, **cb.kwargs()) as client:
        elicited = await client.call_tool("trigger-elicitation-request", {})
        sampled = await client.call_tool("trigger-sampling-request", {"prompt": "hi"})
    assert not elicited.is_error, text_of(elicited)
    assert "Name: Ada" in text_of(elicited)
    assert not sampled.is_error, text_of(sampled)
    assert "hello from the client's model" in text_of(sampled)
    assert cb.calls.count("elicitation") == 1
    assert cb.calls.count("sampling") == 1


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_allowed_requests_reach_client_fixture(gw: Gateway, mode: str) -> None:
    """Elicitation and sampling reach the client when allowed (legacy push and 2026 MRTR)."""
    cb = Callbacks()
    async with gw.client(fixture_server(), ALLOW_REQUESTS, mode=mode, **cb.kwargs()) as client:
        assert client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
        elicited = await client.call_tool("ask_elicit", {})
        sampled = await client.call_tool("ask_sample", {})
    assert text_of(elicited) == "answer=42"
    assert text_of(sampled) == "model said: hello from the client's model"
    assert cb.calls == ["elicitation", "sampling"]


@pytest.mark.anyio
async def test_denied_requests_never_reach_client_legacy_everything(gw: Gateway) -> None:
    """Denied elicitation and sampling never reach the client; server-everything sees -31900."""
    cb = Callbacks()
    async with gw.client(everything(), DENY_REQUESTS, **cb.kwargs()) as client:
        elicited = await client.call_tool("trigger-elicitation-request", {})
        sampled = await client.call_tool("trigger-sampling-request", {"prompt": "hi"})
        echoed = await client.call_tool("echo", {"message": "still usable"})
    assert cb.calls == []
    for result, method in ((elicited, "elicitation/create"), (sampled, "sampling/createMessage")):
        # The server's own error report quotes the gateway's JSON-RPC error.
        text = text_of(result)
        assert result.is_error, text
        assert "-31900" in text
        assert f"{method} from server" in text
        assert "denied by the policy" in text
    assert text_of(echoed) == "Echo: still usable"


@pytest.mark.anyio
async def test_denied_requests_never_reach_client_fixture_legacy(gw: Gateway) -> None:
    """Denied legacy requests fail inside the SDK server, which reports the gateway's -31900."""
    cb = Callbacks()
    async with gw.client(fixture_server(), DENY_REQUESTS, **cb.kwargs()) as client:
        # The SDK server turns the failed server→client request into the call's error.
        with pytest.raises(MCPError) as elicited:
            await client.call_tool("ask_elicit", {})
        with pytest.raises(MCPError) as sampled:
            await client.call_tool("ask_sample", {})
        echoed = await client.call_tool("echo", {"text": "next"})
    assert cb.calls == []
    for error, method in (
        (elicited.value, "elicitation/create"),
        (sampled.value, "sampling/createMessage"),
    ):
        assert error.code == -31900
        assert f"{method} from server" in str(error)
        assert "denied by the policy" in str(error)
    assert text_of(echoed) == "next"


@pytest.mark.anyio
async def test_denied_input_requests_refused_2026(gw: Gateway) -> None:
    """A 2026 input_required result asking for denied input becomes a refusal naming the rule."""
    cb = Callbacks()
    async with gw.client(
        fixture_server(), DENY_REQUESTS, mode="2026-07-28", **cb.kwargs()
    ) as client:
        elicited = await client.call_tool("ask_elicit", {})
        sampled = await client.call_tool("ask_sample", {})
        echoed = await client.call_tool("echo", {"text": "next"})
    assert cb.calls == []
    for result, kind in ((elicited, "elicitation"), (sampled, "sampling")):
        text = text_of(result)
        assert result.is_error, text
        assert text.startswith("Portcullis refused this call:")
        assert f"rule server_requests.{kind}" in text
    assert text_of(echoed) == "next"


@pytest.mark.anyio
async def test_roots_answered_from_policy_legacy(gw: Gateway) -> None:
    """A legacy roots/list is answered by the gateway (no paths: an empty list), not the client."""
    cb = Callbacks()
    async with gw.client(fixture_server(), ALLOW_REQUESTS, **cb.kwargs()) as client:
        roots = await client.call_tool("ask_roots", {})
    assert not roots.is_error, text_of(roots)
    assert text_of(roots) == "[]"
    assert "roots" not in cb.calls


@pytest.mark.anyio
async def test_roots_answered_from_policy_everything(gw: Gateway) -> None:
    """server-everything sees no roots: the gateway answers roots/list, the client is not asked."""
    cb = Callbacks()
    async with gw.client(everything(), ALLOW_REQUESTS, **cb.kwargs()) as client:
        result = await client.call_tool("get-roots-list", {})
    assert "roots" not in cb.calls
    assert "no roots are currently configured" in text_of(result)
    assert "/client/secret/project" not in text_of(result)


@pytest.mark.anyio
async def test_roots_answered_from_policy_2026(gw: Gateway) -> None:
    """In 2026 the server gets the policy's roots (none) on the retry, whatever the client said."""
    cb = Callbacks()
    async with gw.client(
        fixture_server(), ALLOW_REQUESTS, mode="2026-07-28", **cb.kwargs()
    ) as client:
        roots = await client.call_tool("ask_roots", {})
    assert not roots.is_error, text_of(roots)
    assert text_of(roots) == "[]"
    # In 2026 the gateway substitutes the answer on the retry; the client is still asked (its
    # callback runs) because the input_required result is relayed to it unchanged.


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_roots_answered_with_the_policy_roots(gw: Gateway, mode: str) -> None:
    """With paths.roots set, the server is told exactly those roots, in both eras."""
    root = gw.tmp / "project"
    root.mkdir()
    policy = ALLOW_REQUESTS + f"  paths: {{roots: [{root}]}}\n"
    cb = Callbacks()
    async with gw.client(fixture_server(), policy, mode=mode, **cb.kwargs()) as client:
        roots = await client.call_tool("ask_roots", {})
    assert not roots.is_error, text_of(roots)
    assert root.as_uri() in text_of(roots)
    assert "/client/secret/project" not in text_of(roots)


ROOTS_ALLOW = ALLOW_REQUESTS.replace("roots: policy", "roots: allow")
ROOTS_DENY = ALLOW_REQUESTS.replace("roots: policy", "roots: deny")


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_roots_allow_passes_the_clients_roots(gw: Gateway, mode: str) -> None:
    """With roots: allow the server gets the client's own roots."""
    cb = Callbacks()
    async with gw.client(fixture_server(), ROOTS_ALLOW, mode=mode, **cb.kwargs()) as client:
        roots = await client.call_tool("ask_roots", {})
    assert text_of(roots) == '["file:///client/secret/project"]'
    assert cb.calls == ["roots"]


@pytest.mark.anyio
async def test_roots_deny_legacy(gw: Gateway) -> None:
    """With roots: deny a legacy roots/list fails in the server with -31900; the client is not asked."""
    cb = Callbacks()
    async with gw.client(fixture_server(), ROOTS_DENY, **cb.kwargs()) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("ask_roots", {})
    assert caught.value.code == -31900
    assert "roots/list from server" in str(caught.value)
    assert cb.calls == []


@pytest.mark.anyio
async def test_roots_deny_2026(gw: Gateway) -> None:
    """With roots: deny a 2026 input_required roots request becomes a refusal naming the rule."""
    cb = Callbacks()
    async with gw.client(fixture_server(), ROOTS_DENY, mode="2026-07-28", **cb.kwargs()) as client:
        roots = await client.call_tool("ask_roots", {})
    assert roots.is_error
    assert "rule server_requests.roots" in text_of(roots)
    assert cb.calls == []
