"""The raw JSON-RPC MCP core, both eras: in process, and through `portcullis sql` on stdio."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from portcullis.servers.sql.protocol import MODERN_VERSIONS, McpServer
from portcullis.servers.sql.tools import SqlTools, UnknownTool

MODERN = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


@pytest.fixture
def server(tools: SqlTools) -> McpServer:
    """An MCP server over the demo database's tools."""
    return McpServer(
        name="portcullis-sql",
        tools=tools.definitions,
        call=tools.call,
        instructions="read-only",
        unknown_tool=UnknownTool,
    )


def ask(server: McpServer, rid: Any, method: str, params: Any = None) -> dict[str, Any]:
    """Send one request and decode the reply."""
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        msg["params"] = params
    reply = server.handle(json.dumps(msg).encode())
    assert reply is not None
    out: dict[str, Any] = json.loads(reply)
    return out


def test_legacy_handshake_and_call(server: McpServer) -> None:
    """An initialize echoes a known version; tools/list and tools/call answer without resultType."""
    init = ask(server, 1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {}})
    assert init["result"]["protocolVersion"] == "2025-06-18"
    assert init["result"]["capabilities"] == {"tools": {"listChanged": False}}
    assert init["result"]["serverInfo"]["name"] == "portcullis-sql"
    newer = ask(server, 2, "initialize", {"protocolVersion": "2099-01-01"})
    assert newer["result"]["protocolVersion"] == "2025-11-25"
    assert server.handle(b'{"jsonrpc":"2.0","method":"notifications/initialized"}') is None
    assert ask(server, 3, "ping")["result"] == {}
    listed = ask(server, "a", "tools/list")["result"]
    assert listed["tools"][0]["name"] == "query" and "resultType" not in listed
    call = ask(server, 4, "tools/call", {"name": "query", "arguments": {"sql": "SELECT 1 AS x"}})
    assert call["id"] == 4
    assert call["result"]["structuredContent"]["rows"] == [[1]]
    assert "resultType" not in call["result"]


def test_modern_discover_and_stateless_calls(server: McpServer) -> None:
    """server/discover, then requests carrying _meta protocolVersion get resultType."""
    found = ask(server, 1, "server/discover", {"_meta": MODERN})["result"]
    assert found["supportedVersions"] == list(MODERN_VERSIONS)
    assert found["resultType"] == "complete"
    assert found["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "portcullis-sql"
    listed = ask(server, 2, "tools/list", {"_meta": MODERN})["result"]
    assert listed["resultType"] == "complete" and len(listed["tools"]) == 4
    assert (listed["ttlMs"], listed["cacheScope"]) == (0, "private")
    call = ask(
        server,
        3,
        "tools/call",
        {"name": "query", "arguments": {"sql": "DELETE FROM orders"}, "_meta": MODERN},
    )["result"]
    assert call["resultType"] == "complete" and call["isError"] is True
    assert call["content"][0]["text"].startswith("denied (sql.not-read-only)")


def test_unsupported_modern_version(server: McpServer) -> None:
    """A _meta version this server does not speak gets -32022 with the supported list."""
    meta = {"io.modelcontextprotocol/protocolVersion": "2031-01-01"}
    err = ask(server, 1, "server/discover", {"_meta": meta})["error"]
    assert err["code"] == -32022 and err["data"]["supported"] == list(MODERN_VERSIONS)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"{not json", -32700),
        (b"[1, 2]", -32600),
        (b'{"jsonrpc":"2.0","id":1,"method":"resources/list"}', -32601),
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope"}}', -32602),
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[]}', -32602),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', -32600),
        (b'{"jsonrpc":"1.0","id":1,"method":"ping"}', -32600),
    ],
)
def test_protocol_errors(server: McpServer, frame: bytes, code: int) -> None:
    """Malformed frames, unknown methods and unknown tools get JSON-RPC errors."""
    reply = server.handle(frame)
    assert reply is not None
    assert msgspec.json.decode(reply)["error"]["code"] == code


def test_deeply_nested_json_is_a_parse_error(server: McpServer) -> None:
    """JSON nested past msgspec's depth gets -32700 instead of ending the server."""
    nested = b"[" * 5000 + b"]" * 5000
    frame = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":' + nested + b"}}"
    reply = server.handle(frame)
    assert reply is not None and msgspec.json.decode(reply)["error"]["code"] == -32700
    assert server.handle(b'{"jsonrpc":"2.0","id":2,"method":"ping"}') is not None


def test_responses_and_notifications_get_no_reply(server: McpServer) -> None:
    """A response or a notification is never answered."""
    assert server.handle(b'{"jsonrpc":"2.0","id":9,"result":{}}') is None
    assert server.handle(b'{"jsonrpc":"2.0","method":"notifications/cancelled"}') is None


# ---- the real command on stdio ---------------------------------------------------------------


class Stdio:
    """`python -m portcullis sql ARGS` with line-by-line JSON-RPC."""

    def __init__(self, args: list[str], tmp: Path) -> None:
        env = dict(os.environ, XDG_CONFIG_HOME=str(tmp), PORTCULLIS_HOME=str(tmp / "state"))
        env.pop("PORTCULLIS_POLICY", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "portcullis", "sql", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )

    def ask(self, rid: int, method: str, params: dict[str, Any] | None = None) -> Any:
        """One request, one reply line."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> tuple[int, str]:
        """Close stdin; the server exits 0."""
        assert self.proc.stdin is not None and self.proc.stderr is not None
        self.proc.stdin.close()
        rc = self.proc.wait(timeout=30)
        err = self.proc.stderr.read().decode()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc, err


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[Stdio]:
    """The demo database served by the real command."""
    s = Stdio([], tmp_path)
    yield s
    if s.proc.poll() is None:
        s.close()


def test_cli_demo_legacy_era(demo_server: Stdio) -> None:
    """The command speaks the legacy era and hides the demo's blocked table."""
    init = demo_server.ask(1, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}})
    assert "Read-only" in init["result"]["instructions"]
    tables = demo_server.ask(2, "tools/call", {"name": "list_tables", "arguments": {}})
    names = [t["name"] for t in tables["result"]["structuredContent"]["tables"]]
    assert "customers" in names and "users_credentials" not in names
    rc, err = demo_server.close()
    assert rc == 0 and err == ""


def test_cli_demo_modern_era(demo_server: Stdio) -> None:
    """The command speaks 2026-07-28: discover, then stateless calls."""
    found = demo_server.ask(1, "server/discover", {"_meta": MODERN})
    assert found["result"]["supportedVersions"] == ["2026-07-28"]
    call = demo_server.ask(
        2,
        "tools/call",
        {"name": "query", "arguments": {"sql": "SELECT count(*) FROM orders"}, "_meta": MODERN},
    )
    assert call["result"]["structuredContent"]["rows"] == [[300]]
    assert call["result"]["resultType"] == "complete"


def test_cli_bad_database_exits_2_without_the_url(tmp_path: Path) -> None:
    """An unreachable database: exit 2, a message naming host and user, no password."""
    s = Stdio(["--db", "postgresql://alice:Sup3rS3cretPw@127.0.0.1:1/shop"], tmp_path)
    rc, err = s.close()
    assert rc == 2
    assert "the database at 127.0.0.1:1 as alice" in err and "Sup3rS3cretPw" not in err


def test_serve_stdio_frames_and_oversized_lines(
    server: McpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One reply line per request; an oversized frame gets -32600 and is skipped whole."""
    import io

    from portcullis.servers.sql import protocol

    monkeypatch.setattr(protocol, "MAX_LINE", 200)
    big = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"' + b"y" * 500 + b'"}}\n'
    frames = b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n\n' + big
    frames += b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n'
    frames += b'{"jsonrpc":"2.0","id":2,"method":"ping"}\n'
    read_fd, write_fd = os.pipe()
    try:
        protocol.serve_stdio(server, io.BytesIO(frames), stdout_fd=write_fd)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as out:
            replies = [json.loads(line) for line in out.read().splitlines()]
    finally:
        with contextlib.suppress(OSError):
            os.close(write_fd)
    assert [r.get("id") for r in replies] == [1, None, 2]
    assert replies[1]["error"]["code"] == -32600
