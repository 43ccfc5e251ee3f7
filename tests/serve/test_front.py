"""The HTTP front's routing (pure): aggregation, cursors, id renumbering, server requests.

The links are fakes that record what the front sends them; the tests play the servers by
calling ``front.deliver(link, raw)``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from portcullis.gateway import frames as fr
from portcullis.serve.front import Front, Waiter

pytestmark = pytest.mark.anyio


class FakeLink:
    """A link that records frames from the client and cancellations."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.gone = False
        self.frames: list[dict[str, Any]] = []
        self.cancelled: list[Any] = []
        self.closed = False

    def from_client(self, raw: bytes) -> None:
        self.frames.append(json.loads(raw))

    async def cancel(self, rid: Any) -> None:
        self.cancelled.append(rid)

    async def close(self) -> None:
        self.closed = True


def _front(*names: str, aggregate: bool = True, modern: bool = False) -> tuple[Front, list[Any]]:
    links = [FakeLink(n) for n in names]
    front = Front({link.name: link for link in links}, aggregate=aggregate, modern=modern)  # type: ignore[misc]
    return front, links


def _request(rid: Any, method: str, params: dict[str, Any] | None = None) -> fr.Frame:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        msg["params"] = params
    return fr.decode_frame(json.dumps(msg).encode())


def _result(rid: Any, result: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}).encode()


def _final(waiter: Waiter) -> dict[str, Any]:
    final, raw = waiter.queue.get_nowait()
    assert final
    msg: dict[str, Any] = json.loads(raw)
    return msg


def test_tools_lists_are_merged_with_server_prefixes() -> None:
    """tools/list on /mcp goes to every link; the answer merges them as server__tool."""
    front, (a, b) = _front("a", "b")
    waiter = front.request(_request(1, "tools/list"))
    assert [f["method"] for f in a.frames] == ["tools/list"]
    assert [f["method"] for f in b.frames] == ["tools/list"]
    front.deliver(a, _result(1, {"tools": [{"name": "x", "inputSchema": {}}]}))
    assert waiter.queue.empty()  # still waiting for b
    front.deliver(b, _result(1, {"tools": [{"name": "y", "inputSchema": {}}]}))
    msg = _final(waiter)
    assert msg["id"] == 1
    assert [t["name"] for t in msg["result"]["tools"]] == ["a__x", "b__y"]
    assert "nextCursor" not in msg["result"]


def test_cursor_is_sealed_and_continues_only_the_servers_with_more() -> None:
    """A server's nextCursor is sealed into one cursor; following it asks only that server."""
    front, (a, b) = _front("a", "b")
    waiter = front.request(_request(1, "tools/list"))
    front.deliver(a, _result(1, {"tools": [{"name": "x"}], "nextCursor": "page2"}))
    front.deliver(b, _result(1, {"tools": [{"name": "y"}]}))
    cursor = _final(waiter)["result"]["nextCursor"]
    assert cursor != "page2" and "page2" not in cursor
    a.frames.clear()
    b.frames.clear()
    waiter = front.request(_request(2, "tools/list", {"cursor": cursor}))
    assert [f["params"]["cursor"] for f in a.frames] == ["page2"]
    assert b.frames == []
    front.deliver(a, _result(2, {"tools": [{"name": "z"}]}))
    assert [t["name"] for t in _final(waiter)["result"]["tools"]] == ["a__z"]


def test_a_forged_cursor_is_invalid_params() -> None:
    """A cursor the front did not make is refused with -32602, sent to no server."""
    front, (a, b) = _front("a", "b")
    waiter = front.request(_request(1, "tools/list", {"cursor": "not-ours"}))
    assert _final(waiter)["error"]["code"] == -32602
    assert a.frames == [] and b.frames == []


def test_call_is_routed_by_prefix_and_unprefixed() -> None:
    """tools/call b__y reaches b as y; its answer goes back to the caller."""
    front, (a, b) = _front("a", "b")
    waiter = front.request(_request(3, "tools/call", {"name": "b__y", "arguments": {}}))
    assert a.frames == []
    assert b.frames[0]["params"]["name"] == "y"
    front.deliver(b, _result(3, {"content": []}))
    assert _final(waiter)["result"] == {"content": []}


def test_unknown_server_prefix_is_an_error() -> None:
    """A tool name naming no server on the endpoint gets -32602 and reaches no link."""
    front, (a, b) = _front("a", "b")
    waiter = front.request(_request(4, "tools/call", {"name": "nosuch__x"}))
    msg = _final(waiter)
    assert msg["error"]["code"] == -32602 and "nosuch__x" in msg["error"]["message"]
    assert a.frames == [] and b.frames == []


def test_modern_ids_are_renumbered_and_restored() -> None:
    """2026 requests travel under a process-unique id; the client gets its own id back."""
    front, (a,) = _front("a", aggregate=False, modern=True)
    waiter = front.request(_request("client-7", "tools/list"))
    sent = a.frames[0]["id"]
    assert sent != "client-7"
    front.deliver(a, _result(sent, {"tools": []}))
    assert _final(waiter)["id"] == "client-7"


def test_int_and_string_ids_are_kept_apart() -> None:
    """Requests 1 and "1" are separate; each answer goes to its own waiter."""
    front, (a,) = _front("a", aggregate=False)
    one = front.request(_request(1, "tools/list"))
    one_str = front.request(_request("1", "tools/list"))
    front.deliver(a, _result("1", {"tools": ["str"]}))
    assert one.queue.empty()
    assert _final(one_str)["result"] == {"tools": ["str"]}
    front.deliver(a, _result(1, {"tools": ["int"]}))
    assert _final(one)["result"] == {"tools": ["int"]}


def test_server_requests_are_renumbered_per_link_and_answers_routed_back() -> None:
    """Two servers asking with the same id get distinct client ids; answers go to the asker."""
    front, (a, b) = _front("a", "b")
    ask = {"jsonrpc": "2.0", "id": 5, "method": "roots/list"}
    front.deliver(a, json.dumps(ask).encode())
    front.deliver(b, json.dumps(ask).encode())
    seen = [json.loads(raw) for raw in front.backlog]
    ids = [m["id"] for m in seen]
    assert len(set(ids)) == 2 and 5 not in ids
    answer = {"jsonrpc": "2.0", "id": ids[1], "result": {"roots": []}}
    front.notify(fr.decode_frame(json.dumps(answer).encode()))
    assert a.frames == []
    assert b.frames == [{"jsonrpc": "2.0", "id": 5, "result": {"roots": []}}]
    # An answer to nothing asked (or asked already answered) is dropped.
    front.notify(fr.decode_frame(json.dumps(answer).encode()))
    assert len(b.frames) == 1


def test_unknown_method_on_aggregate_is_method_not_found() -> None:
    """A method the aggregated endpoint cannot route gets -32601."""
    front, (a, b) = _front("a", "b")
    waiter = front.request(_request(9, "something/else"))
    assert _final(waiter)["error"]["code"] == -32601
    assert a.frames == [] and b.frames == []


async def test_cancel_sends_cancelled_to_the_link() -> None:
    """A client that goes away makes the front send notifications/cancelled and cancel upstream."""
    front, (a, b) = _front("a", "b")
    waiter = front.request(_request(11, "tools/call", {"name": "a__slow"}))
    await front.cancel(waiter)
    note = a.frames[-1]
    assert note["method"] == "notifications/cancelled"
    assert note["params"]["requestId"] == 11
    assert a.cancelled == [11]
    assert b.frames == [] and b.cancelled == []
    # A late answer is dropped, not delivered to a closed response.
    front.deliver(a, _result(11, {"content": []}))
    assert waiter.queue.empty()
