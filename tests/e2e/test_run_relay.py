"""Listing and calling tools through ``portcullis run``, and tools the policy refuses."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from tests.e2e.conftest import (
    Gateway,
    direct_response_line,
    everything,
    filesystem,
    fixture_server,
    text_of,
    time_server,
)

pytestmark = pytest.mark.e2e

READ_ONLY_FILES = """\
version: 1
defaults:
  tools:
    default: deny
    allow: [read_text_file, list_directory]
"""

# Also writes the guard keys this version accepts only when they are off.
NO_CRASH = """\
version: 1
defaults:
  pin: false
  redact: []
  injection: "off"
  tools:
    default: allow
    deny: [crash, "nois*"]
"""


@pytest.mark.anyio
async def test_everything_echo_listed_and_called(gw: Gateway) -> None:
    """A legacy client lists server-everything's tools and calls echo through the gateway."""
    async with gw.client(everything()) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"echo", "get-sum", "trigger-long-running-operation"} <= names
        result = await client.call_tool("echo", {"message": "through the gate"})
    assert not result.is_error
    assert text_of(result) == "Echo: through the gate"


@pytest.mark.anyio
async def test_filesystem_reads_a_file(gw: Gateway, tmp_path: Path) -> None:
    """server-filesystem reads a file of its tmp root through the gateway."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "hello.txt").write_text("hello from disk\n")
    async with gw.client(filesystem(root)) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "read_text_file" in names
        result = await client.call_tool("read_text_file", {"path": str(root / "hello.txt")})
    assert not result.is_error, text_of(result)
    assert text_of(result) == "hello from disk\n"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto", "2026-07-28"])
async def test_time_server_in_both_eras(gw: Gateway, mode: str) -> None:
    """mcp-server-time answers get_current_time through the gateway in every client mode."""
    async with gw.client(time_server(), mode=mode) as client:
        expected = "2025-11-25" if mode == "legacy" else "2026-07-28"
        assert client.protocol_version == expected
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names == {"get_current_time", "convert_time"}
        result = await client.call_tool("get_current_time", {"timezone": "UTC"})
    assert not result.is_error, text_of(result)
    assert json.loads(text_of(result))["timezone"] == "UTC"


@pytest.mark.anyio
async def test_refused_tool_hidden_and_refused_legacy(gw: Gateway, tmp_path: Path) -> None:
    """A tool outside the allow list is missing from tools/list, and calling it anyway is refused."""
    root = tmp_path / "root"
    root.mkdir()
    target = root / "created.txt"
    async with gw.client(filesystem(root), READ_ONLY_FILES) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names == {"read_text_file", "list_directory"}
        result = await client.call_tool("write_file", {"path": str(target), "content": "x"})
        assert result.is_error
        text = text_of(result)
        assert text.startswith("Portcullis refused this call:")
        assert "rule tools.default" in text
        assert '"write_file"' in text
        # The session carries on after a refusal.
        listing = await client.call_tool("list_directory", {"path": str(root)})
        assert not listing.is_error, text_of(listing)
    assert not target.exists(), "the refused write reached the server"


@pytest.mark.anyio
async def test_refused_tool_hidden_and_refused_2026(gw: Gateway) -> None:
    """In the 2026-07-28 era a denied tool is hidden and refused with the deny rule named."""
    async with gw.client(fixture_server(), NO_CRASH, mode="2026-07-28") as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "echo" in names
        assert not names & {"crash", "noisy"}
        result = await client.call_tool("crash", {"status": 3})
        assert result.is_error
        text = text_of(result)
        assert text.startswith("Portcullis refused this call:")
        assert "rule tools.deny" in text
        assert 'deny pattern "crash"' in text
        # Had the call been forwarded, the server would have exited; it still answers.
        echoed = await client.call_tool("echo", {"text": "still here"})
    assert text_of(echoed) == "still here"


def test_unknown_method_passes_through_unchanged(gw: Gateway) -> None:
    """An unknown method reaches the server and its -32601 error comes back byte for byte."""
    request = {"id": 7, "method": "x-vendor/frobnicate", "params": {"knob": 1}}
    raw = gw.raw(everything())
    raw.initialize()
    raw.send(request)
    through_gateway = raw.response_line(7)
    assert json.loads(through_gateway)["error"]["code"] == -32601
    assert through_gateway == direct_response_line(everything(), request, gw.tmp)
    # The session is still usable.
    assert raw.call("echo", {"message": "after"})["result"]["content"][0]["text"] == "Echo: after"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_concurrent_calls_get_their_own_results(gw: Gateway, mode: str) -> None:
    """Many concurrent calls through one gateway each get their own result."""
    results: dict[int, str] = {}
    async with gw.client(fixture_server(), mode=mode) as client:

        async def one(n: int) -> None:
            results[n] = text_of(await client.call_tool("echo", {"text": f"call {n}"}))

        async with anyio.create_task_group() as tg:
            for n in range(40):
                tg.start_soon(one, n)
    assert results == {n: f"call {n}" for n in range(40)}


RESOURCE_AND_PROMPT_RULES = """\
version: 1
defaults:
  tools: {default: allow}
  resources:
    default: allow
    deny: ["demo://resource/static/document/arch*"]
  prompts:
    default: deny
    allow: [simple-prompt]
"""


@pytest.mark.anyio
async def test_resources_and_prompts_filtered_and_refused(gw: Gateway) -> None:
    """Denied resources and prompts are hidden from lists and refused with -31900 naming the rule."""
    denied_uri = "demo://resource/static/document/architecture.md"
    async with gw.client(everything(), RESOURCE_AND_PROMPT_RULES) as client:
        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        assert denied_uri not in uris
        assert "demo://resource/static/document/features.md" in uris
        with pytest.raises(MCPError) as resource:
            await client.read_resource(denied_uri)
        features = await client.read_resource("demo://resource/static/document/features.md")
        assert features.contents

        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert prompts == {"simple-prompt"}
        with pytest.raises(MCPError) as prompt:
            await client.get_prompt("args-prompt", {"city": "Paris"})
        simple = await client.get_prompt("simple-prompt")
        assert simple.messages
    assert resource.value.code == -31900
    assert resource.value.error.data == {"rule": "resources.deny"}
    assert prompt.value.code == -31900
    assert prompt.value.error.data == {"rule": "prompts.default"}
    assert "args-prompt" in str(prompt.value)
