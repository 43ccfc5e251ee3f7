"""Helpers shared by the audit tests: a key, a log path, and line-level editing of a log."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from portcullis.audit import AuditLog


@pytest.fixture
def key() -> bytes:
    return bytes(range(32))


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.jsonl"


def sample(i: int) -> dict[str, Any]:
    """A typical record's content fields, varied by ``i``."""
    return {
        "session": "s-1",
        "principal": "alice",
        "server": "files" if i % 2 else "db",
        "era": "legacy",
        "direction": "c2s",
        "method": "tools/call",
        "id": i,
        "tool": "read_text_file" if i % 3 else "write_file",
        "args": "hmac-sha256:" + "0" * 64,
        "decision": "deny" if i % 5 == 0 else "allow",
        "enforced": True,
        "rule": "tools.allow",
        "latency_ms": 0.25,
    }


def write_log(path: Path, key: bytes, n: int, **options: Any) -> list[dict[str, Any]]:
    """Append ``n`` sample records to ``path`` and return them as written."""
    with AuditLog(path, key, **options) as log:
        return [log.append(sample(i)) for i in range(n)]


def lines(path: Path) -> list[bytes]:
    """The file's lines, each with its newline."""
    return path.read_bytes().splitlines(keepends=True)


def set_lines(path: Path, new: list[bytes]) -> None:
    """Replace the file's content in place (same inode, as an editor with `sed -i` would not)."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, b"".join(new))
    finally:
        os.close(fd)
