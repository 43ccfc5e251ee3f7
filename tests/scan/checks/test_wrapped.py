"""not-wrapped: servers that bypass the Portcullis gateway, with the exact wrap command."""

from __future__ import annotations

import pytest

from portcullis.scan.checks import wrapped

from ._helpers import srv


def test_unwrapped_stdio_server_is_info_with_wrap_command() -> None:
    """An ordinary stdio server gets an info finding whose fix is the wrap command."""
    out = list(wrapped.check(srv("files", "npx", ["-y", "x@1.0.0"])))
    assert [(f.rule, f.severity, f.line) for f in out] == [("not-wrapped", "info", 11)]
    assert out[0].fix == "portcullis wrap /home/me/proj/.mcp.json --server files"


def test_wrap_command_quotes_odd_names() -> None:
    """Names and paths with spaces are shell-quoted in the fix."""
    out = list(wrapped.check(srv("my server", "python3", ["s.py"])))
    assert out[0].fix.endswith("--server 'my server'")


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("portcullis", ["run", "--", "npx", "-y", "x@1.0.0"]),
        ("/usr/local/bin/portcullis", ["run", "--policy", "p.yaml", "--", "python3", "s.py"]),
        ("portcullis.exe", ["run", "--server", "files"]),
        ("python3", ["-m", "portcullis", "run", "--", "node", "s.js"]),
        ("portcullis run -- npx -y x@1.0.0", []),
    ],
)
def test_wrapped_servers_are_clean(command: str, args: list[str]) -> None:
    """`portcullis` run (binary, .exe, python -m, one-string command) is wrapped."""
    assert list(wrapped.check(srv("w", command, args))) == []


def test_other_portcullis_commands_are_not_wrapping() -> None:
    """`portcullis` sql is a server itself, not the gateway wrapper."""
    assert [f.rule for f in wrapped.check(srv("db", "portcullis", ["sql"]))] == ["not-wrapped"]


def test_remote_server_is_reported_without_a_wrap_command() -> None:
    """A remote entry is not guarded either, but it has nothing to sandbox and no wrap fix."""
    (finding,) = wrapped.check(srv("r", url="https://mcp.example.com/mcp"))
    assert finding.rule == "not-wrapped"
    assert "sandboxing" not in finding.checklist
    assert "audit-logging" in finding.checklist
    assert "portcullis wrap" not in finding.fix


def test_an_entry_with_neither_command_nor_url_is_not_reported() -> None:
    """Nothing runs, so there is nothing to guard."""
    assert list(wrapped.check(srv("empty"))) == []
