"""A wrapped Claude Desktop and Cursor configuration launches the real server through the gateway.

``portcullis wrap FILE --yes`` runs as a real process; the test then launches exactly the
command, arguments and env the wrapped entry holds (as the client would) with the official SDK
stdio client, lists tools, calls a read tool, and finds the call in the gateway's audit log.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TextIO, cast

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from portcullis.scan.discover import load_file
from portcullis.wrap import parse_wrapped
from tests.e2e.conftest import NODE_BIN, TIMEOUT, Gateway, everything, text_of

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
# Secret by its name (API_TOKEN), not by a detector's pattern.
SECRET = "Zq8vN3xL0pR7sT2u"
SERVER_JS = NODE_BIN.parent / "@modelcontextprotocol" / "server-filesystem" / "dist" / "index.js"


def claude_desktop(tmp: Path, root: Path) -> Path:
    """A Claude Desktop config with the filesystem server as its installed binary."""
    path = tmp / "Claude" / "claude_desktop_config.json"
    path.parent.mkdir()
    entry = {"command": str(NODE_BIN / "mcp-server-filesystem"), "args": [str(root)]}
    path.write_text(json.dumps({"mcpServers": {"files": entry}}, indent=2) + "\n")
    return path


def cursor(tmp: Path, root: Path) -> Path:
    """A Cursor project config (with a comment) running the server through node, with env."""
    path = tmp / "project" / ".cursor" / "mcp.json"
    path.parent.mkdir(parents=True)
    node = shutil.which("node") or "node"
    path.write_text(
        '{\n  // the project\'s files\n  "mcpServers": {\n    "files": {\n'
        f'      "command": {json.dumps(node)},\n'
        f'      "args": [{json.dumps(str(SERVER_JS))}, {json.dumps(str(root))}],\n'
        '      "env": {"E2E_LOG": "quiet"}\n    }\n  }\n}\n'
    )
    return path


@pytest.mark.anyio
@pytest.mark.parametrize("make", [claude_desktop, cursor], ids=["claude-desktop", "cursor"])
async def test_wrapped_config_runs_the_server_through_the_gateway(
    gw: Gateway, make: object
) -> None:
    """Wrap via the CLI, then the entry as written starts the gateway in front of the server."""
    root = gw.tmp / "root"
    root.mkdir()
    (root / "hello.txt").write_text("hello through the gateway")
    config = make(gw.tmp, root)  # type: ignore[operator]
    original = config.read_text()
    env = gw.env(XDG_CONFIG_HOME=str(gw.tmp / "config"))
    done = gw.cli("wrap", str(config), "--yes", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(config.parent.glob("*.portcullis-backup-*"))
    policy = gw.tmp / "config" / "portcullis" / "policy.yaml"
    valid = gw.cli("policy", "validate", str(policy), env=env)
    assert valid.returncode == 0, valid.stderr

    server = load_file(config).servers[0]
    assert server.command is not None and Path(server.command).is_absolute()
    wrapped = parse_wrapped([server.command, *server.args])
    assert wrapped is not None and wrapped.policy == str(policy)

    params = StdioServerParameters(
        command=server.command, args=server.args, env={**env, **server.env}, cwd=gw.tmp
    )
    transport = stdio_client(params, errlog=cast(TextIO, gw._errlog()))
    async with Client(transport, mode="legacy", cache=None, read_timeout_seconds=TIMEOUT) as client:
        tools = await client.list_tools()
        names = {t.name for t in tools.tools}
        assert {"read_text_file", "write_file"} <= names
        result = await client.call_tool("read_text_file", {"path": str(root / "hello.txt")})
    assert text_of(result) == "hello through the gateway"

    calls = [r for r in gw.audit_records() if r.get("tool") == "read_text_file"]
    assert calls, gw.stderr()
    assert calls[0]["server"] == "files"
    assert calls[0]["decision"] == "allow"

    undone = gw.cli("unwrap", str(config), "--yes", env=env)
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert config.read_text() == original


@pytest.mark.anyio
async def test_moved_secret_still_reaches_the_server(gw: Gateway) -> None:
    """A secret wrap moved to the keyring is resolved by the gateway and given to the server."""
    keyring_file = gw.tmp / "keyring.json"
    env = gw.env(
        XDG_CONFIG_HOME=str(gw.tmp / "config"),
        PYTHONPATH=str(REPO),
        PYTHON_KEYRING_BACKEND="tests.wrap.filekeyring.FileKeyring",
        PORTCULLIS_TEST_KEYRING=str(keyring_file),
    )
    config = gw.tmp / "project" / ".cursor" / "mcp.json"
    config.parent.mkdir(parents=True)
    entry = {
        "command": everything()[0],
        "args": everything()[1:],
        "env": {"API_TOKEN": SECRET, "LOG_LEVEL": "quiet"},
    }
    config.write_text(json.dumps({"mcpServers": {"probe": entry}}, indent=2) + "\n")
    done = gw.cli("wrap", str(config), "--yes", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    policy_file = gw.tmp / "config" / "portcullis" / "policy.yaml"
    policy = policy_file.read_text()
    assert SECRET not in config.read_text()
    assert SECRET not in policy
    assert SECRET in keyring_file.read_text()
    # The gateway would redact the value from get-env's answer; the test reads it back.
    policy_file.write_text(policy.replace("\n  probe:\n", "\n  probe:\n    redact: []\n"))

    server = load_file(config).servers[0]
    assert server.command is not None
    params = StdioServerParameters(
        command=server.command, args=server.args, env={**env, **server.env}, cwd=gw.tmp
    )
    transport = stdio_client(params, errlog=cast(TextIO, gw._errlog()))
    async with Client(transport, mode="legacy", cache=None, read_timeout_seconds=TIMEOUT) as client:
        result = await client.call_tool("get-env", {})
    seen = json.loads(text_of(result))
    assert seen["API_TOKEN"] == SECRET
    assert seen["LOG_LEVEL"] == "quiet"
