"""Turn rows from a driver into a tool result: caps, masking, redaction, text and structure.

Pure functions: nothing here touches a database. The order matters and is fixed here:

1. fetching stops at ``max_rows + 1`` rows or about ``max_bytes`` of data (:func:`fetch_capped`),
   so a ``SELECT *`` of a large table never reaches memory whole;
2. each value becomes JSON (:func:`json_safe`: Decimal, dates, bytes, UUIDs …);
3. values of columns whose name (or, in PostgreSQL, whose source column) matches a mask glob are
   replaced by ``[MASKED]``;
4. the redactor runs over every remaining value, with the column name as its key, so
   ``{"api_token": "…"}`` gets the same context a configuration file would give it;
5. rows are cut at the row cap and at the byte cap (their JSON size), and the result says so.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import fnmatch
import math
import uuid
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import msgspec

from portcullis.detect.redact import redact_value

__all__ = [
    "MASKED",
    "Column",
    "Fetched",
    "Masker",
    "Shaped",
    "fetch_capped",
    "json_safe",
    "render_table",
    "shape",
]

MASKED = "[MASKED]"
_CELL_WIDTH = 60  # text table only; structuredContent keeps whole values
_FETCH_CHUNK = 256
_encode = msgspec.json.encode


class Column(NamedTuple):
    """A result column: its name and the database's name for its type."""

    name: str
    type: str


class Fetched(NamedTuple):
    """Rows as the driver returned them, at most ``max_rows + 1`` of them."""

    columns: list[Column]
    rows: list[Sequence[Any]]
    more: bool  # the database had rows beyond the row cap
    cut: bool  # fetching stopped at the byte budget
    sources: list[str | None] | None = None  # source column of each result column (PostgreSQL)


class Shaped(NamedTuple):
    """A finished result: ``structured`` is the tool's ``structuredContent``."""

    structured: dict[str, Any]
    text: str
    redactions: dict[str, int]


class Masker:
    """Tell whether a column name matches one of the mask globs (case-insensitive)."""

    __slots__ = ("_cache", "_patterns")

    def __init__(self, patterns: Sequence[str]) -> None:
        self._patterns = tuple(p.lower() for p in patterns)
        self._cache: dict[str, bool] = {}

    def __call__(self, name: str | None) -> bool:
        """True when ``name`` is masked."""
        if not name:
            return False
        hit = self._cache.get(name)
        if hit is None:
            low = name.lower()
            hit = any(fnmatch.fnmatchcase(low, p) for p in self._patterns)
            if len(self._cache) < 4096:
                self._cache[name] = hit
        return hit


def _approx_size(row: Sequence[Any]) -> int:
    size = 2
    for v in row:
        if isinstance(v, str | bytes | bytearray | memoryview):
            size += len(v) + 3
        elif isinstance(v, list | tuple | dict):
            # Arrays and JSON (array_agg, jsonb_agg) can be as large as any string.
            size += _approx_size(list(v.values()) if isinstance(v, dict) else v)
            size += sum(len(str(k)) + 4 for k in v) if isinstance(v, dict) else 0
        else:
            size += 12
    return size


def fetch_capped(
    fetchmany: Callable[[int], Sequence[Sequence[Any]]],
    max_rows: int,
    max_bytes: int,
    *,
    first: int = 16,
) -> tuple[list[Sequence[Any]], bool, bool]:
    """Fetch up to ``max_rows`` rows, stopping early past about ``max_bytes``.

    Returns ``(rows, more, cut)``: ``more`` when a row beyond the cap exists, ``cut`` when the
    byte budget stopped the fetch (the exact cut is made later, on the JSON size). The first
    request asks for ``first`` rows; later ones for no more rows than the remaining budget holds
    at the largest row seen, so a result of 4 MB rows is not fetched 256 rows (1 GB) at a time.
    """
    rows: list[Sequence[Any]] = []
    want = max_rows + 1
    total = 0
    largest = 0
    asked = max(1, min(first, want))
    while len(rows) < want:
        chunk = fetchmany(asked)
        for row in chunk:
            rows.append(row)
            size = _approx_size(row)
            total += size
            largest = max(largest, size)
            if total > max_bytes:
                return rows[:max_rows], len(rows) > max_rows, True
        if len(chunk) < asked:
            break  # the cursor is exhausted: no round trip to hear it say so
        room = (max_bytes - total) // max(largest, 1) + 1
        asked = max(1, min(_FETCH_CHUNK, want - len(rows), room))
    more = len(rows) > max_rows
    return rows[:max_rows], more, False


def json_safe(value: Any) -> Any:
    """A JSON value for a database value; types JSON lacks become strings."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return str(value)
        if value == value.to_integral_value():
            return int(value)
        as_float = float(value)
        # Keep the number a number when a float holds it exactly; else keep every digit.
        return as_float if decimal.Decimal(repr(as_float)) == value else str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "base64:" + base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    return str(value)


def shape(
    fetched: Fetched, *, max_rows: int, max_bytes: int, masker: Masker, pii: bool = False
) -> Shaped:
    """Mask, redact and cap ``fetched``; return the structured result and its text table."""
    names = [c.name for c in fetched.columns]
    sources = fetched.sources or [None] * len(names)
    masked = [masker(n) or masker(s) for n, s in zip(names, sources, strict=True)]
    any_masked = any(masked)
    rows: list[list[Any]] = []
    counts: dict[str, int] = {}
    size = 0
    byte_cut = False
    for raw in fetched.rows:
        row = [json_safe(v) for v in raw]
        if any_masked:
            row = [MASKED if m else v for v, m in zip(row, masked, strict=True)]
        # One redaction call per row; single-key objects keep duplicate column names apart.
        keyed, found = redact_value([{n: v} for n, v in zip(names, row, strict=True)], pii=pii)
        if found:
            for rule, n in found.items():
                counts[rule] = counts.get(rule, 0) + n
            row = [next(iter(cell.values())) for cell in keyed]
        size += len(_encode(row)) + 1
        # Even the first row obeys the cap: one huge value (repeat(), printf('%.*c', …))
        # would otherwise go out whole, whatever max_bytes says.
        if size > max_bytes:
            byte_cut = True
            break
        rows.append(row)
    truncated = fetched.more or fetched.cut or byte_cut or len(rows) > max_rows
    rows = rows[:max_rows]
    structured: dict[str, Any] = {
        "columns": [{"name": c.name, "type": c.type} for c in fetched.columns],
        "rows": rows,
        "row_count": len(rows),
        "truncated": truncated,
    }
    note = ""
    if truncated:
        if (byte_cut or fetched.cut) and not rows:
            why = f"its first row alone is over the {max_bytes:,}-byte limit (max_bytes)"
        elif byte_cut or fetched.cut:
            why = f"the result is over the {max_bytes:,}-byte limit (max_bytes)"
        else:
            why = f"the result has more than {max_rows:,} rows (max_rows)"
        note = (
            f"truncated: showing the first {len(rows):,} rows because {why}; "
            "narrow the query with WHERE, LIMIT or aggregates"
        )
        structured["note"] = note
    text = render_table(names, rows)
    if note:
        text += f"\n({note})"
    if counts:
        total = sum(counts.values())
        text += f"\n({total} value{'s' if total != 1 else ''} redacted)"
    return Shaped(structured, text, counts)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = repr(value)
    else:
        text = _encode(value).decode()
    if "\n" in text or "\r" in text or "\t" in text or "|" in text:
        text = text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
        text = text.replace("|", "\\|")
    if len(text) > _CELL_WIDTH:
        text = text[: _CELL_WIDTH - 1] + "…"
    return text


def render_table(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A compact, aligned text table with a row count, for people and models alike."""
    cells = [[_cell(v) for v in row] for row in rows]
    heads = [_cell(n) for n in names]
    widths = [len(h) for h in heads]
    for row in cells:
        for i, c in enumerate(row):
            if len(c) > widths[i]:
                widths[i] = len(c)
    lines = [" | ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip()]
    lines.append("-+-".join("-" * w for w in widths))
    for row in cells:
        lines.append(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    n = len(rows)
    lines.append(f"({n} row{'s' if n != 1 else ''})")
    return "\n".join(lines)
