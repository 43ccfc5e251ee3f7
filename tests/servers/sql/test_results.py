"""Result shaping: JSON conversion, masking, redaction, caps and the text table."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

from portcullis.servers.sql.results import (
    MASKED,
    Column,
    Fetched,
    Masker,
    fetch_capped,
    json_safe,
    render_table,
    shape,
)

MASKS = Masker(["*password*", "ssn"])


def test_json_safe_converts_driver_types() -> None:
    """Decimal, dates, bytes, UUIDs and non-finite floats become JSON values."""
    u = uuid.UUID(int=1)
    assert json_safe(decimal.Decimal("12")) == 12
    assert json_safe(decimal.Decimal("1.5")) == 1.5
    assert json_safe(decimal.Decimal("0.1000000000000000000001")) == "0.1000000000000000000001"
    assert json_safe(dt.date(2026, 7, 28)) == "2026-07-28"
    assert json_safe(dt.datetime(2026, 7, 28, 1, 2, 3)) == "2026-07-28T01:02:03"
    assert json_safe(b"\x01\x02") == "base64:AQI="
    assert json_safe(u) == str(u)
    assert json_safe(float("nan")) == "nan"
    assert json_safe([decimal.Decimal("2"), {"a": dt.time(1, 2)}]) == [2, {"a": "01:02:00"}]


def test_masker_globs_are_case_insensitive() -> None:
    """Mask globs match whole column names, ignoring case."""
    assert MASKS("PASSWORD_hash") and MASKS("ssn")
    assert not MASKS("ssn_last4") and not MASKS("name") and not MASKS(None)


def test_fetch_capped_stops_at_rows_and_bytes() -> None:
    """Fetching stops one row past the cap, or once the byte budget is spent."""
    data = [(i, "x" * 100) for i in range(1000)]
    pos = 0

    def fetchmany(n: int) -> list[tuple[int, str]]:
        nonlocal pos
        chunk = data[pos : pos + n]
        pos += n
        return chunk

    rows, more, cut = fetch_capped(fetchmany, 10, 10**9)
    assert len(rows) == 10 and more and not cut and pos == 11
    pos = 0
    rows, more, cut = fetch_capped(fetchmany, 1000, 1000)
    assert cut and len(rows) < 20


def test_fetch_capped_asks_for_what_the_budget_holds() -> None:
    """After large rows, the next request is sized to the byte budget, not a fixed 256 rows."""
    asked: list[int] = []

    def fetchmany(n: int) -> list[tuple[str]]:
        asked.append(n)
        return [("y" * 50_000,)] * n

    _rows, more, cut = fetch_capped(fetchmany, 1000, 1_000_000)
    assert cut and not more
    assert asked[0] <= 16 and all(n <= 10 for n in asked[1:]), asked
    assert sum(asked) < 40


def test_fetch_capped_counts_arrays_and_json() -> None:
    """An array or JSON value counts at its size, so the byte budget stops the fetch."""
    pos = 0

    def fetchmany(n: int) -> list[tuple[object, ...]]:
        nonlocal pos
        pos += n
        return [(["y" * 10_000] * 10, {"k": "z" * 10_000})] * n

    rows, _more, cut = fetch_capped(fetchmany, 1000, 100_000)
    assert cut and len(rows) < 5 and pos < 40


def test_shape_masks_redacts_and_counts() -> None:
    """Masked columns become [MASKED]; secrets elsewhere are redacted and counted."""
    key = "AKIA" + "QWERTYUIOPASDFGH"
    fetched = Fetched(
        [Column("id", "integer"), Column("password", "text"), Column("note", "text")],
        [(1, "hunter2", f"key {key}"), (2, None, "plain")],
        more=False,
        cut=False,
    )
    shaped = shape(fetched, max_rows=100, max_bytes=10**6, masker=MASKS)
    rows = shaped.structured["rows"]
    assert rows[0][1] == MASKED and rows[1][1] == MASKED
    assert key not in str(rows) and "[REDACTED:" in rows[0][2]
    assert rows[1] == [2, MASKED, "plain"]
    assert shaped.redactions and "redacted" in shaped.text
    assert shaped.structured["truncated"] is False and "note" not in shaped.structured


def test_shape_masks_by_source_column() -> None:
    """A column renamed by an alias is masked when its source column is."""
    fetched = Fetched([Column("p", "text")], [("hunter2",)], False, False, ["password"])
    shaped = shape(fetched, max_rows=10, max_bytes=10**6, masker=MASKS)
    assert shaped.structured["rows"] == [[MASKED]]


def test_shape_byte_cap() -> None:
    """Rows beyond max_bytes of JSON are dropped and the result says so."""
    fetched = Fetched([Column("t", "text")], [("y" * 100,)] * 50, False, False)
    shaped = shape(fetched, max_rows=1000, max_bytes=1000, masker=MASKS)
    assert shaped.structured["truncated"] is True
    assert 0 < shaped.structured["row_count"] < 10
    assert "max_bytes" in shaped.structured["note"] and "truncated" in shaped.text


def test_shape_byte_cap_holds_for_the_first_row() -> None:
    """A single row over max_bytes is not returned either: the cap holds for one huge value."""
    fetched = Fetched([Column("t", "text")], [("y" * 50_000,), ("z",)], False, True)
    shaped = shape(fetched, max_rows=1000, max_bytes=1000, masker=MASKS)
    assert shaped.structured["rows"] == [] and shaped.structured["truncated"] is True
    assert "first row" in shaped.structured["note"]
    assert len(shaped.text) < 1000


def test_shape_row_cap_note() -> None:
    """When the database had more rows, the result is marked truncated with the reason."""
    fetched = Fetched([Column("n", "integer")], [(1,), (2,)], True, False)
    shaped = shape(fetched, max_rows=2, max_bytes=10**6, masker=MASKS)
    assert shaped.structured["truncated"] is True and "max_rows" in shaped.structured["note"]


def test_render_table_is_compact_and_escaped() -> None:
    """Cells are aligned, NULL is shown, newlines and pipes are escaped, long cells cut."""
    text = render_table(["a", "b"], [[None, "x|y\nz"], [1, "w" * 100]])
    lines = text.splitlines()
    assert lines[0] == "a    | b"
    assert "NULL" in lines[2] and "x\\|y\\nz" in lines[2]
    assert lines[-1] == "(2 rows)" and "…" in lines[3]
