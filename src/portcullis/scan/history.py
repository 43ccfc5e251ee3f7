"""The last scan report, kept in the state directory, and a short index of earlier runs.

``<state>/scan/last.json`` is the JSON report of the latest scan exactly as rendered (the web
console shows it); ``<state>/scan/runs.json`` lists the last :data:`MAX_RUNS` runs' times and
counts, newest last, for the "regular review" item and trends. Both are written atomically,
``0600``, in a ``0700`` directory checked like the state directory itself (the console trusts
what it reads there).

Reading is forgiving where a scan depends on it: a damaged index makes :func:`previous_run`
return None (the scan goes on; "regular review" is unknown), while :func:`load_last` raises
:class:`HistoryError` so the console can say the file is damaged rather than show nothing.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from portcullis._exceptions import ConfigError
from portcullis._state import check_private_dir, write_private
from portcullis.scan.model import SEVERITIES, ScanResult

__all__ = [
    "LAST_FILE",
    "MAX_RUNS",
    "RUNS_FILE",
    "HistoryError",
    "load_last",
    "previous_run",
    "runs",
    "save_last",
]

SUBDIR = "scan"
LAST_FILE = "last.json"
RUNS_FILE = "runs.json"
MAX_RUNS = 50


class HistoryError(ConfigError):
    """The kept report cannot be read or written."""


def save_last(result: ScanResult, rendered_json: str, state_dir: Path) -> Path:
    """Keep ``rendered_json`` as the last report and add this run to the index; the file path.

    Call :func:`previous_run` first when the report needs the time of the run before this one.
    """
    directory = _dir(state_dir, create=True)
    last = directory / LAST_FILE
    _atomic_write(last, rendered_json if rendered_json.endswith("\n") else rendered_json + "\n")
    entries = _read_runs(directory)
    entries.append(_entry(result))
    body = {"version": 1, "runs": entries[-MAX_RUNS:]}
    _atomic_write(directory / RUNS_FILE, json.dumps(body, indent=1, ensure_ascii=True) + "\n")
    return last


def load_last(state_dir: Path) -> dict[str, Any] | None:
    """The last report as a dict, None when no scan has been kept."""
    path = state_dir / SUBDIR / LAST_FILE
    if not path.exists():
        return None
    _dir(state_dir, create=False)
    try:
        data = json.loads(_read(path))
    except json.JSONDecodeError as exc:
        raise HistoryError(
            f"{path}:{exc.lineno}:{exc.colno}: the kept scan report is damaged: {exc.msg}"
        ) from None
    if not isinstance(data, dict):
        raise HistoryError(f"{path}: the kept scan report is not a JSON object")
    return data


def runs(state_dir: Path) -> list[dict[str, Any]]:
    """The index of earlier runs, oldest first (empty when none or damaged)."""
    directory = state_dir / SUBDIR
    if not directory.exists():
        return []
    return _read_runs(directory)


def previous_run(state_dir: Path) -> datetime | None:
    """When the latest kept scan ran (UTC), or None with no usable history."""
    for entry in reversed(runs(state_dir)):
        when = _parse_time(entry.get("started"))
        if when is not None:
            return when
    return None


def _entry(result: ScanResult) -> dict[str, Any]:
    started = _parse_time(result.started) or datetime.now(UTC)
    severity = {s: 0 for s in reversed(SEVERITIES)}
    for f in result.findings:
        severity[f.severity] += 1
    return {
        "started": started.isoformat().replace("+00:00", "Z"),
        "duration_s": round(result.duration_s, 3),
        "findings": len(result.findings),
        "severity": severity,
        "suppressed": len(result.suppressed),
        "errors": len(result.errors),
        "servers": len(result.servers),
        "files": len(result.files),
    }


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


def _dir(state_dir: Path, *, create: bool) -> Path:
    directory = state_dir / SUBDIR
    if create and not directory.exists():
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryError(f"cannot create {directory}: {exc.strerror}") from exc
    check_private_dir(directory, "scan history directory")
    return directory


def _read(path: Path) -> str:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
        with os.fdopen(fd, "r", encoding="utf-8") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise HistoryError(f"cannot read {path}: {reason}") from exc


def _read_runs(directory: Path) -> list[dict[str, Any]]:
    path = directory / RUNS_FILE
    try:
        data = json.loads(_read(path))
    except (HistoryError, json.JSONDecodeError):
        # A missing or damaged index only loses trend data; the scan itself must go on.
        return []
    items = data.get("runs") if isinstance(data, dict) else None
    return [e for e in items if isinstance(e, dict)] if isinstance(items, list) else []


def _atomic_write(path: Path, text: str) -> None:
    try:
        write_private(path, text.encode("utf-8"))
    except OSError as exc:
        raise HistoryError(f"cannot write {path}: {exc.strerror}") from exc
