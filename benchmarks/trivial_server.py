"""A minimal blocking stdio MCP server: the floor for the relay benchmark.

No SDK and no event loop: blocking ``os.read``/``os.write`` on fds 0 and 1 and msgspec. It
answers ``initialize``, ``ping``, ``tools/list`` and ``tools/call echo`` (argument ``message``),
replying ``Echo: <message>`` like server-everything's ``echo``; notifications are ignored and
other methods get "method not found".

``--first-byte FILE``: write ``time.time_ns()`` of the moment the first read returned to FILE.
The read happens before anything else is imported, so this costs only the interpreter start.
"""

import os
import sys
import time

_CHUNK = 1 << 16  # not 1 MiB: a read that large costs ~11 µs in mmap (see relay.py)

_first = b""
if len(sys.argv) == 3 and sys.argv[1] == "--first-byte":
    _first = os.read(0, _CHUNK)
    _t_first = time.time_ns()
    with open(sys.argv[2], "w") as fh:
        fh.write(str(_t_first))

import msgspec  # noqa: E402 - after the first read on purpose


class Params(msgspec.Struct):
    name: str | None = None
    arguments: dict | None = None


class Request(msgspec.Struct):
    id: int | str | None = None
    method: str | None = None
    params: Params | None = None


_decode = msgspec.json.Decoder(Request).decode
_encode = msgspec.json.encode

ECHO_TOOL = {
    "name": "echo",
    "description": "Echoes back the input",
    "inputSchema": {
        "type": "object",
        "properties": {"message": {"type": "string", "description": "Message to echo"}},
        "required": ["message"],
    },
}
INIT_RESULT = {
    "protocolVersion": "2025-06-18",
    "capabilities": {"tools": {}},
    "serverInfo": {"name": "portcullis-bench-trivial", "version": "1"},
}


def answer(req: Request) -> bytes | None:
    if req.id is None:
        return None  # a notification
    method = req.method
    if method == "tools/call":
        p = req.params
        if p is not None and p.name == "echo" and p.arguments is not None:
            text = "Echo: " + str(p.arguments.get("message", ""))
            result = {"content": [{"type": "text", "text": text}]}
        else:
            return _encode(
                {
                    "jsonrpc": "2.0",
                    "id": req.id,
                    "error": {"code": -32602, "message": "unknown tool"},
                }
            )
    elif method == "initialize":
        result = INIT_RESULT
    elif method == "tools/list":
        result = {"tools": [ECHO_TOOL]}
    elif method == "ping":
        result = {}
    else:
        return _encode(
            {
                "jsonrpc": "2.0",
                "id": req.id,
                "error": {"code": -32601, "message": f"method not found: {method}"},
            }
        )
    return _encode({"jsonrpc": "2.0", "id": req.id, "result": result})


def write_all(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]


def main() -> None:
    parts: list[bytes] = []
    chunk = _first or os.read(0, _CHUNK)
    while chunk:
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                if start < len(chunk):
                    parts.append(chunk[start:])
                break
            line = chunk[start:nl]
            if parts:
                parts.append(line)
                line = b"".join(parts)
                parts = []
            start = nl + 1
            if line.strip():
                out = answer(_decode(line))
                if out is not None:
                    write_all(out + b"\n")
        chunk = os.read(0, _CHUNK)


if __name__ == "__main__":
    main()
