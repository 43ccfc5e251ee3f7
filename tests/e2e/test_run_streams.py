"""Progress, cancellation and message size through the gateway."""

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
    raw_server,
    text_of,
)
from tests.fixtures.mcp_server import payload

pytestmark = pytest.mark.e2e

SMALL_MESSAGES = """\
version: 1
defaults:
  tools: {default: allow}
  max_message_bytes: 65536
"""


class Progress:
    """A progress callback that records updates and signals the first one."""

    def __init__(self) -> None:
        self.updates: list[tuple[float, float | None, str | None]] = []
        self.first = anyio.Event()

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.updates.append((progress, total, message))
        self.first.set()


@pytest.mark.anyio
async def test_progress_reaches_client_legacy(gw: Gateway) -> None:
    """server-everything's progress notifications reach the client's progress callback."""
    progress = Progress()
    async with gw.client(everything()) as client:
        result = await client.call_tool(
            "trigger-long-running-operation",
            {"duration": 1, "steps": 3},
            progress_callback=progress,
        )
    assert not result.is_error, text_of(result)
    assert [p for p, _, _ in progress.updates] == [1, 2, 3]
    assert all(total == 3 for _, total, _ in progress.updates)


@pytest.mark.anyio
async def test_progress_reaches_client_2026(gw: Gateway) -> None:
    """In the 2026 era the fixture's progress notifications reach the client too."""
    progress = Progress()
    async with gw.client(fixture_server(), mode="2026-07-28") as client:
        result = await client.call_tool(
            "slow", {"seconds": 0.3, "steps": 3}, progress_callback=progress
        )
    assert text_of(result) == "done after 3 steps"
    assert progress.updates == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]


@pytest.mark.anyio
async def test_cancelled_call_leaves_gateway_usable_legacy(gw: Gateway) -> None:
    """Cancelling a long server-everything call leaves the gateway usable for the next call."""
    progress = Progress()
    async with gw.client(everything()) as client:
        async with anyio.create_task_group() as tg:

            async def long_call() -> None:
                await client.call_tool(
                    "trigger-long-running-operation",
                    {"duration": 600, "steps": 600},
                    progress_callback=progress,
                )
                pytest.fail("the long call finished instead of being cancelled")

            tg.start_soon(long_call)
            await progress.first.wait()  # the server is working on it
            tg.cancel_scope.cancel()
        result = await client.call_tool("echo", {"message": "after cancel"})
        assert text_of(result) == "Echo: after cancel"
        assert (
            text_of(await client.call_tool("get-sum", {"a": 2, "b": 3}))
            == "The sum of 2 and 3 is 5."
        )


@pytest.mark.anyio
async def test_cancelled_call_leaves_gateway_usable_2026(gw: Gateway) -> None:
    """Cancelling a long 2026-era call leaves the gateway usable for the next call."""
    progress = Progress()
    async with gw.client(fixture_server(), mode="2026-07-28") as client:
        async with anyio.create_task_group() as tg:

            async def long_call() -> None:
                await client.call_tool(
                    "slow", {"seconds": 600, "steps": 600}, progress_callback=progress
                )
                pytest.fail("the long call finished instead of being cancelled")

            tg.start_soon(long_call)
            await progress.first.wait()
            tg.cancel_scope.cancel()
        result = await client.call_tool("echo", {"text": "after cancel"})
    assert text_of(result) == "after cancel"


def test_fifty_megabyte_result_relayed_intact(gw: Gateway) -> None:
    """A 50 MB tool result (far past 64 KiB line limits) is relayed byte for byte."""
    # A raw client, to compare bytes (the SDK client's view is the next test).
    size = 50 * 1000 * 1000
    request = {
        "id": 5,
        "method": "tools/call",
        "params": {"name": "big", "arguments": {"nbytes": size}},
    }
    raw = gw.raw(fixture_server())
    raw.initialize()
    raw.send(request)
    line = raw.response_line(5)
    assert json.loads(line)["result"]["content"][0]["text"] == payload(size)
    assert line == direct_response_line(fixture_server(), request, gw.tmp)
    assert raw.call("echo", {"text": "small again"})["result"]["content"][0]["text"] == (
        "small again"
    )


@pytest.mark.anyio
async def test_fifty_megabyte_result_reaches_sdk_client_2026(gw: Gateway) -> None:
    """The SDK client (2026-07-28 era) receives a 50 MB result through the gateway intact."""
    size = 50 * 1000 * 1000
    async with gw.client(fixture_server(), mode="2026-07-28") as client:
        result = await client.call_tool("big", {"nbytes": size})
        after = await client.call_tool("echo", {"text": "small again"})
    assert not result.is_error
    assert text_of(result) == payload(size)
    assert text_of(after) == "small again"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_result_over_max_message_bytes_refused(gw: Gateway, mode: str) -> None:
    """A result over max_message_bytes is answered with -31901 and the session stays usable."""
    async with gw.client(fixture_server(), SMALL_MESSAGES, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("big", {"nbytes": 100_000})
        assert caught.value.code == -31901
        assert "max_message_bytes" in str(caught.value)
        fits = await client.call_tool("big", {"nbytes": 60_000})
        assert text_of(fits) == payload(60_000)
        assert text_of(await client.call_tool("echo", {"text": "next"})) == "next"
    assert "over max_message_bytes" in gw.stderr()


@pytest.mark.anyio
async def test_request_over_max_message_bytes_refused(gw: Gateway, tmp_path: Path) -> None:
    """A client request over max_message_bytes gets -31901 and never reaches the server."""
    root = tmp_path / "root"
    root.mkdir()
    target = root / "big.txt"
    async with gw.client(filesystem(root), SMALL_MESSAGES) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("write_file", {"path": str(target), "content": "y" * 100_000})
        assert caught.value.code == -31901
        listing = await client.call_tool("list_directory", {"path": str(root)})
        assert not listing.is_error, text_of(listing)
    assert not target.exists(), "the oversize request reached the server"


def test_ten_megabyte_request_relayed_intact(gw: Gateway) -> None:
    """A 10 MB client request reaches the server intact (its echo comes back whole)."""
    text = payload(10 * 1000 * 1000)
    raw = gw.raw(raw_server())
    raw.initialize()
    assert raw.call("echo", {"text": text})["result"]["content"][0]["text"] == text
