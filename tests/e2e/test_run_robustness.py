"""Bad input from either side: malformed client frames, ambiguous JSON, crashes, stray output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPError

from tests.e2e.conftest import Gateway, filesystem, fixture_server, raw_server, text_of
from tests.fixtures.mcp_server import NOISE
from tests.fixtures.raw_server import SURROGATE_RESULT

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param(b'{"jsonrpc": "2.0", "id": 1, "method": ', -32700, id="invalid-json"),
        pytest.param(b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]', -32600, id="array"),
        pytest.param(b'"tools/list"', -32600, id="string"),
        pytest.param(b"42", -32600, id="number"),
        pytest.param(b'{"jsonrpc": "2.0", "id": 9}', -32600, id="missing-method"),
        pytest.param(b'{"id": 9, "method": "ping"}', -32600, id="missing-jsonrpc"),
    ],
)
def test_malformed_client_input_gets_standard_error(gw: Gateway, frame: bytes, code: int) -> None:
    """Malformed client input gets -32700/-32600, and the next valid request still works."""
    raw = gw.raw(raw_server())
    raw.initialize()
    raw.send_bytes(frame)
    answer = json.loads(raw.recv_line())
    assert answer["jsonrpc"] == "2.0"
    assert answer["error"]["code"] == code
    assert answer["id"] in (None, 9)
    echoed = raw.call("echo", {"text": "still fine"})
    assert echoed["result"]["content"][0]["text"] == "still fine"


def test_duplicate_keys_in_tools_call_refused(gw: Gateway, tmp_path: Path) -> None:
    """A tools/call with duplicate JSON keys is refused as ambiguous and never forwarded."""
    root = tmp_path / "root"
    root.mkdir()
    raw = gw.raw(filesystem(root))  # every tool allowed: only the ambiguity is refused
    raw.initialize()
    # Parsers disagree on which "name" wins; Node's JSON.parse would pick write_file (the last).
    first = root / "first.txt"
    raw.send_bytes(
        b'{"jsonrpc": "2.0", "id": 31, "method": "tools/call", "params": {"name": '
        b'"list_directory", "arguments": {"path": ' + json.dumps(str(first)).encode() + b", "
        b'"content": "x"}, "name": "write_file"}}'
    )
    result = raw.response(31)["result"]
    assert result["isError"] is True
    text = result["content"][0]["text"]
    assert text.startswith("Portcullis refused this call:")
    assert 'duplicate key "name"' in text
    assert "rule protocol.strict-json" in text
    # Duplicates one level down (inside the arguments) are caught too.
    second = root / "second.txt"
    raw.send_bytes(
        b'{"jsonrpc": "2.0", "id": 32, "method": "tools/call", "params": {"name": "write_file", '
        b'"arguments": {"path": ' + json.dumps(str(second)).encode() + b', "content": "a", '
        b'"content": "b"}}}'
    )
    assert 'duplicate key "content"' in raw.response(32)["result"]["content"][0]["text"]
    listing = raw.call("list_directory", {"path": str(root)})
    assert "isError" not in listing["result"] or listing["result"]["isError"] is False
    assert not first.exists(), "the ambiguous call reached the server"
    assert not second.exists(), "the ambiguous call reached the server"


def test_lone_surrogate_result_relayed_unchanged(gw: Gateway) -> None:
    """A result holding a lone surrogate escape (valid JSON, refused by msgspec) is relayed as is."""
    raw = gw.raw(raw_server())
    raw.initialize()
    raw.send({"id": 41, "method": "tools/call", "params": {"name": "surrogate", "arguments": {}}})
    line = raw.response_line(41)
    assert line == b'{"jsonrpc":"2.0","id":41,"result":' + SURROGATE_RESULT + b"}"
    assert raw.call("echo", {"text": "after"})["result"]["content"][0]["text"] == "after"


def test_child_crash_answers_pending_call_and_exits_with_its_status(gw: Gateway) -> None:
    """A server dying mid-call: the call gets -31902, and the gateway exits with its status."""
    raw = gw.raw(fixture_server())
    raw.initialize()
    answer = raw.call("crash", {"status": 7})
    assert answer["error"]["code"] == -31902
    assert "exited with status 7" in answer["error"]["message"]
    assert "tools/call" in answer["error"]["message"]
    assert raw.wait() == 7


@pytest.mark.anyio
async def test_child_crash_reported_to_sdk_client_2026(gw: Gateway) -> None:
    """In the 2026 era the SDK client's pending call fails with the gateway's -31902."""
    async with gw.client(fixture_server(), mode="2026-07-28") as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("crash", {"status": 5})
    assert caught.value.code == -31902
    assert "exited with status 5" in str(caught.value)


@pytest.mark.anyio
async def test_non_json_server_output_logged_and_skipped(gw: Gateway) -> None:
    """A non-JSON line on the server's stdout goes to stderr; the client never sees it."""
    seen: list[object] = []

    async def handler(message: object) -> None:
        seen.append(message)

    async with gw.client(fixture_server(), message_handler=handler) as client:
        noisy = await client.call_tool("noisy", {"text": "answered anyway"})
        echoed = await client.call_tool("echo", {"text": "next"})
    assert text_of(noisy) == "answered anyway"
    assert text_of(echoed) == "next"
    assert not [m for m in seen if isinstance(m, Exception)], seen
    stderr = gw.stderr()
    assert "not a JSON-RPC message" in stderr
    assert NOISE.decode()[:60] in stderr


def test_request_id_in_flight_refused(gw: Gateway) -> None:
    """Reusing the id of a call still in flight gets -32600; the original call still completes."""
    raw = gw.raw(fixture_server())
    raw.request(
        "initialize",
        {
            "protocolVersion": "2025-06-18",
            "capabilities": {"elicitation": {}},
            "clientInfo": {"name": "portcullis-e2e-raw", "version": "1"},
        },
    )
    raw.send({"method": "notifications/initialized"})
    # ask_elicit holds its call open until the client answers the server's question.
    raw.send({"id": 50, "method": "tools/call", "params": {"name": "ask_elicit", "arguments": {}}})
    question = json.loads(raw.recv_line())
    while question.get("method") != "elicitation/create":  # skip anything else the server says
        question = json.loads(raw.recv_line())
    # The server's request id is replaced by one from the gateway's own namespace.
    assert str(question["id"]).startswith("portcullis-")

    raw.send(
        {"id": 50, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "dup"}}}
    )
    duplicate = raw.response(50)
    assert duplicate["error"]["code"] == -32600
    assert "already in flight" in duplicate["error"]["message"]

    raw.send({"id": question["id"], "result": {"action": "accept", "content": {"answer": "7"}}})
    original = raw.response(50)
    assert original["result"]["content"][0]["text"] == "answer=7"


def test_reserved_request_id_prefix_refused(gw: Gateway) -> None:
    """A client request id in the gateway's own namespace is refused with -32600."""
    raw = gw.raw(raw_server())
    raw.initialize()
    raw.send(
        {
            "id": "portcullis-s-1",
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "x"}},
        }
    )
    answer = raw.response("portcullis-s-1")
    assert answer["error"]["code"] == -32600
    assert "reserved" in answer["error"]["message"]
    assert raw.call("echo", {"text": "ok"})["result"]["content"][0]["text"] == "ok"
