"""SharedUpstream: one process, several links; each link gets only its own answers.

The upstream here is an in-process stand-in that records what was sent and answers on demand:
routing is the unit under test (the end-to-end tests run a real shared server).
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from portcullis.serve.shared import SharedUpstream


class _Recorder:
    """An Upstream that records frames and answers when told to."""

    def __init__(self) -> None:
        self.name = "echo"
        self.sent: list[dict[str, Any]] = []
        self.starts = 0
        self.closed = 0
        self.on_frame: Any = None
        self.on_gone: Any = None

    async def start(self) -> None:
        self.starts += 1

    async def send(self, raw: bytes) -> None:
        self.sent.append(msgspec.json.decode(raw))

    async def cancel(self, rid: Any) -> None:
        pass

    async def close(self) -> None:
        self.closed += 1

    def answer(self, rid: Any) -> None:
        self.on_frame(msgspec.json.encode({"jsonrpc": "2.0", "id": rid, "result": {"r": rid}}))


def _views(shared: SharedUpstream, n: int) -> tuple[list[Any], list[list[Any]]]:
    views, got = [], []
    for _ in range(n):
        view = shared.view()
        inbox: list[Any] = []
        view.on_frame = lambda item, inbox=inbox: inbox.append(msgspec.json.decode(item))
        views.append(view)
        got.append(inbox)
    return views, got


def _request(rid: Any) -> bytes:
    return msgspec.json.encode({"jsonrpc": "2.0", "id": rid, "method": "tools/list"})


@pytest.mark.anyio
async def test_each_view_gets_only_its_own_answers() -> None:
    """Answers go to the view whose request they answer; the process starts once."""
    up = _Recorder()
    shared = SharedUpstream(up)
    (a, b), (got_a, got_b) = _views(shared, 2)
    await a.start()
    await b.start()
    await a.send(_request(101))
    await b.send(_request(102))
    up.answer(102)
    up.answer(101)
    assert up.starts == 1
    assert [m["id"] for m in got_a] == [101]
    assert [m["id"] for m in got_b] == [102]


@pytest.mark.anyio
async def test_colliding_gateway_ids_are_kept_apart() -> None:
    """Two sessions' own string ids go out distinct and come back under the id each sent."""
    up = _Recorder()
    shared = SharedUpstream(up)
    (a, b), (got_a, got_b) = _views(shared, 2)
    await a.send(_request("portcullis-l-1"))
    await b.send(_request("portcullis-l-1"))
    wire = [m["id"] for m in up.sent]
    assert len(set(wire)) == 2
    up.answer(wire[1])
    up.answer(wire[0])
    assert [m["id"] for m in got_a] == ["portcullis-l-1"]
    assert [m["id"] for m in got_b] == ["portcullis-l-1"]
    assert got_a[0]["result"] == {"r": wire[0]}


@pytest.mark.anyio
async def test_process_stops_with_its_last_view() -> None:
    """Closing one view keeps the process; closing the last stops it once."""
    up = _Recorder()
    shared = SharedUpstream(up)
    (a, b), _ = _views(shared, 2)
    await a.close()
    assert up.closed == 0
    await b.close()
    await b.close()
    assert up.closed == 1
    assert shared.closed


@pytest.mark.anyio
async def test_unattributable_notifications_are_dropped() -> None:
    """A notification of a shared server reaches no principal."""
    up = _Recorder()
    shared = SharedUpstream(up)
    _, (got_a,) = _views(shared, 1)
    up.on_frame(b'{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"x"}}')
    assert got_a == []
