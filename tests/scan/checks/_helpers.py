"""Builders for the check tests: servers with known line positions, and secret assertions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from portcullis.scan.model import ConfigFile, Finding, Server, Transport

FILE = Path("/home/me/proj/.mcp.json")
ENTRY_LINE = 10


def srv(
    name: str = "s",
    command: str | None = None,
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    url: str | None = None,
    headers: Mapping[str, str] | None = None,
    raw: Mapping[str, Any] | None = None,
    client: str = "claude-code",
    transport: Transport | None = None,
) -> Server:
    """A server whose values sit on predictable lines: args/i on 13+i, env on 31.., url 50."""
    positions = {"": ENTRY_LINE, "/command": 11, "/args": 12}
    positions.update({f"/args/{i}": 13 + i for i in range(len(args))})
    positions.update({f"/env/{k}": 31 + i for i, k in enumerate(env or {})})
    positions.update({f"/headers/{k}": 41 + i for i, k in enumerate(headers or {})})
    positions["/url"] = 50
    positions.update({f"/{k}": 60 + i for i, k in enumerate(raw or {})})
    return Server(
        name=name,
        client=client,
        scope="project",
        file=FILE,
        pointer=f"/mcpServers/{name}",
        line=ENTRY_LINE,
        transport=transport or ("http" if url and not command else "stdio"),
        command=command,
        args=list(args),
        env=dict(env or {}),
        url=url,
        headers=dict(headers or {}),
        raw=dict(raw or {}),
        positions=positions,
    )


def cfile(
    *servers: Server, settings: Iterable[Any] = (), client: str = "claude-code"
) -> ConfigFile:
    """A config file holding ``servers`` and ``settings``."""
    return ConfigFile(
        path=FILE,
        client=client,
        scope="project",
        format="json",
        servers=list(servers),
        settings=list(settings),
    )


def rules(findings: Iterable[Finding]) -> list[str]:
    """The rule ids of ``findings``, in order."""
    return [f.rule for f in findings]


def assert_never_leaks(findings: Iterable[Finding], *secrets: str) -> None:
    """No field of any finding contains any of ``secrets`` (or its 8-character core)."""
    for f in findings:
        for value in f.to_dict().values():
            text = str(value)
            for secret in secrets:
                assert secret not in text, (f.rule, text)
                if len(secret) >= 12:
                    core = secret[4:-4]
                    assert core not in text, (f.rule, text)
