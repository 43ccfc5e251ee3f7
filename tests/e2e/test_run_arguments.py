"""Argument guards through ``portcullis run`` in front of the real filesystem server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import Gateway, filesystem, text_of

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

POLICY = """\
version: 1
defaults:
  pin: false
servers:
  files:
    tools: {{default: allow}}
    paths: {{roots: [{root}]}}
"""


@pytest.fixture
def tree(gw: Gateway) -> dict[str, Path]:
    """A project root inside a wider directory the server itself may reach, and a way out."""
    base = gw.tmp / "base"
    root = base / "project"
    outside = base / "outside"
    sibling = base / "project-evil"
    for d in (root, outside, sibling):
        d.mkdir(parents=True)
    (root / "notes.txt").write_text("inside the root\n")
    (outside / "secret.txt").write_text("outside the root\n")
    (sibling / "secret.txt").write_text("prefix sibling\n")
    (root / "link").symlink_to(outside, target_is_directory=True)
    return {"base": base, "root": root, "outside": outside, "sibling": sibling}


def policy(gw: Gateway, root: Path) -> Path:
    return gw.policy(POLICY.format(root=root))


async def test_ordinary_read_inside_the_root_works(gw: Gateway, tree: dict[str, Path]) -> None:
    """A read inside the policy root is forwarded and answered."""
    async with gw.client(
        filesystem(tree["base"]), policy(gw, tree["root"]), options=["--server", "files"]
    ) as client:
        result = await client.call_tool("read_text_file", {"path": str(tree["root"] / "notes.txt")})
    assert not result.is_error
    assert "inside the root" in text_of(result)


@pytest.mark.parametrize(
    "path",
    [
        "{root}/../outside/secret.txt",  # traversal
        "{root}/link/secret.txt",  # a symlink inside the root pointing out (CVE-2025-53109)
        "{base}/project-evil/secret.txt",  # prefix sibling (CVE-2025-53110)
        "{root}/%2e%2e/outside/secret.txt",  # percent-encoded traversal
    ],
)
async def test_escapes_are_refused(gw: Gateway, tree: dict[str, Path], path: str) -> None:
    """Traversal, symlink escapes and prefix siblings are refused before the server sees them."""
    value = path.format(root=tree["root"], base=tree["base"])
    async with gw.client(
        filesystem(tree["base"]), policy(gw, tree["root"]), options=["--server", "files"]
    ) as client:
        result = await client.call_tool("read_text_file", {"path": value})
    assert result.is_error
    text = text_of(result)
    assert "Portcullis refused this call" in text
    assert "outside the root" not in text
    assert "prefix sibling" not in text


async def test_write_to_a_client_config_is_refused(gw: Gateway, tree: dict[str, Path]) -> None:
    """Writing an MCP client configuration inside the root is refused (protected path)."""
    target = tree["root"] / ".mcp.json"
    async with gw.client(
        filesystem(tree["base"]), policy(gw, tree["root"]), options=["--server", "files"]
    ) as client:
        result = await client.call_tool(
            "write_file", {"path": str(target), "content": '{"mcpServers": {"evil": {}}}'}
        )
    assert result.is_error
    assert "paths.protected" in text_of(result)
    assert not target.exists()


async def test_an_audit_log_kept_inside_a_root_is_protected(
    gw: Gateway, tree: dict[str, Path]
) -> None:
    """With audit.path inside the root, the server cannot be told to overwrite the log."""
    log = tree["root"] / "audit.jsonl"
    text = POLICY.format(root=tree["root"]) + f"audit: {{path: {log}}}\n"
    async with gw.client(
        filesystem(tree["base"]), gw.policy(text), options=["--server", "files"]
    ) as client:
        result = await client.call_tool("write_file", {"path": str(log), "content": "{}"})
    assert result.is_error
    assert "paths.protected" in text_of(result)
    assert log.read_text().count("\n") >= 1  # the records are still there


async def test_resource_read_of_etc_passwd_is_refused(gw: Gateway, tree: dict[str, Path]) -> None:
    """resources/read of file:///etc/passwd is refused: a file URI is a path."""
    raw = gw.raw(filesystem(tree["base"]), policy(gw, tree["root"]), options=["--server", "files"])
    raw.initialize()
    answer = raw.request("resources/read", {"uri": "file:///etc/passwd"})
    assert answer["error"]["code"] == -31900
    assert "root:" not in str(answer)
