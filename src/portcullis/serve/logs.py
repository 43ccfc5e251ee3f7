"""The serve process's log: one line per event on stderr, text for people or JSON for collectors.

``portcullis serve --log-format json`` writes each event as one JSON object (``ts``, ``level``,
``logger``, ``msg`` and the event's fields, such as ``server`` for a server's own stderr), for
log shippers; the default is plain text. Decisions are not logged here: they are in the audit
trail.
"""

from __future__ import annotations

import contextlib
import sys
from datetime import UTC, datetime
from typing import Any

import msgspec

__all__ = ["configure", "log", "server_stderr"]

_json = False


def configure(fmt: str) -> None:
    """Choose ``text`` or ``json`` for every later line."""
    global _json
    _json = fmt == "json"


def _write(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def log(msg: str, *, level: str = "info", **fields: Any) -> None:
    """One event of the gateway itself."""
    if _json:
        ts = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        event = {"ts": ts, "level": level, "logger": "portcullis.serve", "msg": msg, **fields}
        _write(msgspec.json.encode(event).decode())
        return
    where = f"[{fields['server']}] " if "server" in fields else ""
    _write(f"portcullis serve: {where}{msg}")


def server_stderr(server: str, text: str) -> None:
    """One line a server wrote on its stderr (already made visible)."""
    if _json:
        log(text, server=server, stream="stderr")
    else:
        _write(f"[server {server}] {text}")
