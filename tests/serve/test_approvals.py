"""ServeChannel: questions go to the shared queue; an unreachable queue is a prompt refusal.

The queue here is the real in-memory state, or a stand-in whose calls fail (a Redis outage is a
boundary these unit tests cannot run; the replica tests use a real Redis).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from portcullis.approval.request import ApprovalRequest, Outcome
from portcullis.serve.approvals import ServeChannel
from portcullis.serve.state import MemoryState
from portcullis.serve.types import Principal


def _request() -> ApprovalRequest:
    now = time.time()
    return ApprovalRequest(
        id="r1",
        code="ABCD",
        server="files",
        method="tools/call",
        subject="write_file",
        shown="{}",
        digest="0" * 64,
        created=now,
        expires=now + 30,
    )


class _Down:
    async def approval_put(self, *args: Any) -> None:
        raise ConnectionError("redis is down")


@pytest.mark.anyio
async def test_answer_given_on_the_queue_reaches_the_call() -> None:
    """An answer written to the queue (by any replica) is delivered as the outcome."""
    state = MemoryState()
    got: list[Outcome] = []
    channel = ServeChannel(state, Principal("alice", "key"), "alice", asyncio.get_running_loop())
    channel.ask(_request(), got.append)
    for _ in range(100):
        if await state.approval_list():
            break
        await asyncio.sleep(0.01)
    (entry,) = await state.approval_list()
    assert entry["principal"] == "alice"
    assert await state.approval_answer("r1", {"outcome": "approved", "approver": "boss"})
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.01)
    assert got and got[0].approved and got[0].approver == "boss"


@pytest.mark.anyio
async def test_unreachable_queue_is_refused_at_once() -> None:
    """When the queue cannot be reached the question ends as unavailable, not by timeout."""
    got: list[Outcome] = []
    channel = ServeChannel(_Down(), Principal("alice", "key"), "alice", asyncio.get_running_loop())
    channel.ask(_request(), got.append)
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.01)
    assert got and got[0].outcome == "unavailable"
    assert "unreachable" in got[0].reason
