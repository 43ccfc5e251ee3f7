"""An MCP client in a process of its own: the official SDK driving a gateway, fed on stdin.

The browser tests start it with ``start_new_session=True``: a gateway refuses approvals from
its MCP client's processes and session (an agent's shell tool must not approve its own calls),
and the console under test is a child of pytest. With the client here, the console is neither
its descendant nor in its session, as a person's browser would be.

Run it as ``python tests/browser/sdk_client.py GATEWAY-ARGV…``. It writes ``{"ready": true}``
once the session is initialized, then reads one JSON object per line on stdin,
``{"tag": T, "tool": NAME, "arguments": {…}}``, calls the tool in a task of its own (so calls
held for approval do not block later ones) and writes ``{"tag": T, "is_error": …, "text": …}``
when the result arrives. Closing stdin ends the session and the gateway with it.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

TIMEOUT = 120.0


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _call(client: Client, command: dict[str, Any]) -> None:
    tag = command.get("tag")
    try:
        result = await client.call_tool(command["tool"], command.get("arguments") or {})
    except Exception as exc:  # reported to the test, which fails with it
        _emit({"tag": tag, "exception": f"{type(exc).__name__}: {exc}"})
        return
    text = "".join(getattr(block, "text", "") for block in result.content)
    _emit({"tag": tag, "is_error": bool(result.is_error), "text": text})


async def main(argv: list[str]) -> None:
    """Open the session, then serve the test's commands until stdin closes."""
    params = StdioServerParameters(
        command=argv[0], args=argv[1:], env=dict(os.environ), cwd=os.getcwd()
    )
    errlog = open(os.environ.get("SDK_CLIENT_ERRLOG", os.devnull), "a")  # noqa: SIM115
    try:
        transport = stdio_client(params, errlog=errlog)
        async with Client(
            transport, mode="legacy", cache=None, read_timeout_seconds=TIMEOUT
        ) as client:
            _emit({"ready": True})
            async with anyio.create_task_group() as tg:
                while True:
                    line = await anyio.to_thread.run_sync(sys.stdin.readline)
                    if not line:
                        # The test is done: calls still held are abandoned, not waited for.
                        tg.cancel_scope.cancel()
                        break
                    if line.strip():
                        tg.start_soon(_call, client, json.loads(line))
    finally:
        errlog.close()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1:])
