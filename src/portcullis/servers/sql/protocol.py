"""A small MCP server core over stdio, for both protocol eras, without the ``mcp`` SDK.

The SDK costs about a second to import and about a millisecond of dispatch per call; this
server's budget is two milliseconds per small query in all, so it speaks JSON-RPC itself with
msgspec. One request is handled at a time, in order; newline-delimited frames in, one line per
response out, nothing else ever on stdout.

Methods: ``initialize`` (legacy era, up to 2025-11-25) with ``notifications/initialized`` and
``ping``; ``server/discover`` (2026-07-28, stateless: each request carries
``_meta["io.modelcontextprotocol/protocolVersion"]`` and gets a result with ``resultType``);
``tools/list`` and ``tools/call`` in both. Anything else is -32601; notifications and responses
are ignored. A modern request with a version this server does not speak gets -32022 with the
versions it does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO, Final

import msgspec

from portcullis._version import __version__

__all__ = ["LEGACY_VERSIONS", "MODERN_VERSIONS", "McpServer", "serve_stdio"]

LEGACY_VERSIONS: Final = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
MODERN_VERSIONS: Final = ("2026-07-28",)
META_VERSION: Final = "io.modelcontextprotocol/protocolVersion"
META_SERVER_INFO: Final = "io.modelcontextprotocol/serverInfo"

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
UNSUPPORTED_VERSION: Final = -32022
MAX_LINE: Final = 16 * 1024 * 1024

ToolCall = Callable[[str, Any], dict[str, Any]]


class _Request(msgspec.Struct):
    jsonrpc: Any = None
    id: Any = msgspec.UNSET
    method: Any = msgspec.UNSET
    params: Any = None


_decode = msgspec.json.Decoder(_Request).decode
_encode = msgspec.json.Encoder().encode


class McpServer:
    """Answers MCP requests for a fixed list of tools; :meth:`handle` maps a frame to a reply."""

    def __init__(
        self,
        *,
        name: str,
        tools: list[dict[str, Any]],
        call: ToolCall,
        instructions: str | None = None,
        unknown_tool: type[Exception] = KeyError,
    ) -> None:
        self._info = {"name": name, "title": "Portcullis SQL", "version": __version__}
        self._tools = tools
        self._call = call
        self._instructions = instructions
        self._unknown_tool = unknown_tool
        self._legacy_list = {"tools": tools}
        # 2026-07-28 list and discover results must carry caching directives; 0 and private
        # mean "ask again", which costs nothing here.
        self._cache = {"ttlMs": 0, "cacheScope": "private"}
        self._modern_list = {"tools": tools, "resultType": "complete", **self._cache}
        self._capabilities = {"tools": {"listChanged": False}}

    def handle(self, line: bytes) -> bytes | None:
        """The response line for one frame (without the newline), or None for none."""
        try:
            msg = _decode(line)
        except msgspec.ValidationError:
            return self._error(None, INVALID_REQUEST, "not a JSON-RPC request object")
        except msgspec.DecodeError:
            return self._error(None, PARSE_ERROR, "parse error: not valid JSON")
        except RecursionError:  # nested deeper than msgspec goes; must not end the server
            return self._error(None, PARSE_ERROR, "parse error: JSON nested too deeply")
        rid = msg.id
        method = msg.method
        if method is msgspec.UNSET:
            return None  # a response to nothing we sent, or junk without a method: ignore
        if rid is msgspec.UNSET:
            return None  # notifications (initialized, cancelled …) need no answer
        if msg.jsonrpc != "2.0" or not isinstance(method, str):
            return self._error(_safe_id(rid), INVALID_REQUEST, "not a JSON-RPC 2.0 request")
        if isinstance(rid, bool) or not isinstance(rid, int | str):
            return self._error(None, INVALID_REQUEST, '"id" must be a string or an integer')
        params = msg.params if isinstance(msg.params, dict) else {}
        if msg.params is not None and not isinstance(msg.params, dict):
            return self._error(rid, INVALID_PARAMS, '"params" must be an object')
        meta = params.get("_meta")
        version = meta.get(META_VERSION) if isinstance(meta, dict) else None
        if version is not None and version not in MODERN_VERSIONS:
            return self._unsupported(rid, version)
        modern = version is not None
        try:
            return self._dispatch(rid, method, params, modern)
        except Exception as exc:  # never let one request end the server
            print(f"portcullis sql: internal error: {type(exc).__name__}", file=sys.stderr)
            return self._error(rid, INTERNAL_ERROR, f"internal error ({type(exc).__name__})")

    def _dispatch(self, rid: Any, method: str, params: dict[str, Any], modern: bool) -> bytes:
        if method == "tools/call":
            name = params.get("name")
            if not isinstance(name, str):
                return self._error(rid, INVALID_PARAMS, 'tools/call needs a "name"')
            try:
                result = self._call(name, params.get("arguments"))
            except self._unknown_tool:
                return self._error(rid, INVALID_PARAMS, f"unknown tool: {name[:100]}")
            if modern:
                result["resultType"] = "complete"
            return self._result(rid, result)
        if method == "tools/list":
            return self._result(rid, self._modern_list if modern else self._legacy_list)
        if method == "ping":
            return self._result(rid, {"resultType": "complete"} if modern else {})
        if method == "initialize":
            asked = params.get("protocolVersion")
            chosen = asked if asked in LEGACY_VERSIONS else LEGACY_VERSIONS[0]
            init: dict[str, Any] = {
                "protocolVersion": chosen,
                "capabilities": self._capabilities,
                "serverInfo": self._info,
            }
            if self._instructions:
                init["instructions"] = self._instructions
            return self._result(rid, init)
        if method == "server/discover":
            found: dict[str, Any] = {
                "supportedVersions": list(MODERN_VERSIONS),
                "capabilities": self._capabilities,
                "resultType": "complete",
                **self._cache,
                "_meta": {META_SERVER_INFO: self._info},
            }
            if self._instructions:
                found["instructions"] = self._instructions
            return self._result(rid, found)
        return self._error(rid, METHOD_NOT_FOUND, f"method not found: {method[:100]}")

    def _unsupported(self, rid: Any, version: Any) -> bytes:
        return _encode(
            {
                "jsonrpc": "2.0",
                "id": rid,
                "error": {
                    "code": UNSUPPORTED_VERSION,
                    "message": f"unsupported protocol version: {str(version)[:40]}",
                    "data": {"supported": list(MODERN_VERSIONS)},
                },
            }
        )

    @staticmethod
    def _result(rid: Any, result: dict[str, Any]) -> bytes:
        return _encode({"jsonrpc": "2.0", "id": rid, "result": result})

    @staticmethod
    def _error(rid: Any, code: int, message: str) -> bytes:
        return _encode({"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}})


def _safe_id(rid: Any) -> Any:
    return rid if isinstance(rid, int | str) and not isinstance(rid, bool) else None


def _lines(stream: BinaryIO) -> Iterable[bytes | None]:
    """Frames from ``stream``; None stands for a frame over :data:`MAX_LINE`, skipped whole."""
    while True:
        line = stream.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            # Drop the rest of an oversized frame rather than parse its tail as messages.
            while line and not line.endswith(b"\n"):
                line = stream.readline(MAX_LINE)
            yield None
            continue
        yield line


def serve_stdio(server: McpServer, stdin: BinaryIO | None = None, stdout_fd: int = 1) -> None:
    """Serve newline-delimited JSON-RPC on stdin/stdout until stdin closes."""
    source = stdin if stdin is not None else sys.stdin.buffer
    for line in _lines(source):
        if line is None:
            reply: bytes | None = McpServer._error(
                None, INVALID_REQUEST, f"message larger than {MAX_LINE} bytes"
            )
        elif not line.strip():
            continue
        else:
            reply = server.handle(line)
        if reply is not None:
            view = memoryview(reply + b"\n")
            while view:
                view = view[os.write(stdout_fd, view) :]
