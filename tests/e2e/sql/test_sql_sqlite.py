"""``portcullis sql`` against SQLite, end to end through the SDK client.

The database is the fixture file of conftest.py (tests/fixtures/sql/schema.sql), the same
tables and rows as the PostgreSQL tests use.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.e2e.sql.cases import (
    ANALYTICS,
    CROSS_JOIN_FOREVER,
    MASK_BY_NAME,
    MASK_IN_EXPRESSIONS,
    SQLITE_WRITES,
    backend_without_guard,
    direct_rows,
)
from tests.e2e.sql.conftest import (
    BLOCKED,
    MASKED_VALUES,
    SECRET_MARK,
    Database,
    SqlServer,
    assert_denied,
    assert_never_shown,
    assert_refused,
)

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

# Writes the database layer must refuse on its own (the guard is not there to see them).
DB_LAYER_WRITES = [
    "INSERT INTO orders VALUES (999, 1, 1, 1, '2026-01-01', 'paid')",
    "UPDATE customers SET name = 'x' WHERE id = 1",
    "DELETE FROM orders",
    "DROP TABLE orders",
    "ALTER TABLE orders ADD COLUMN note TEXT",
    "CREATE TABLE scratch (x)",
    "CREATE TEMP TABLE scratch (x)",
    "ATTACH DATABASE ':memory:' AS evil",
    "VACUUM INTO '/tmp/pc-sqlite-copy.db'",
    "PRAGMA query_only = 0",
    "BEGIN IMMEDIATE",
    "COMMIT; DROP TABLE orders",
    "SELECT load_extension('/tmp/pc-nothing.so')",
]


def _copy(db: Database, tmp_path: Path) -> Database:
    """A private, writable copy of the fixture file (so a failed refusal harms no other test)."""
    assert db.path is not None
    path = tmp_path / "copy.db"
    shutil.copyfile(db.path, path)
    return Database(dialect="sqlite", args=("--db-file", str(path)), path=path)


@pytest.mark.parametrize("name", sorted(ANALYTICS))
async def test_analytics_query_matches_the_driver(
    sql: SqlServer, sqlite_db: Database, name: str
) -> None:
    """Joins, CTEs, window functions and recursion give the rows sqlite3 gives directly."""
    text = ANALYTICS[name]
    async with sql.session(sqlite_db) as s:
        got = await s.query(text)
    assert got.rows == direct_rows(sqlite_db, text)
    assert got.structured is not None
    assert got.structured["row_count"] == len(got.rows)
    assert got.structured["truncated"] is False


async def test_parameters_are_bound(sql: SqlServer, sqlite_db: Database) -> None:
    """``params`` binds ? placeholders as values, never as SQL text."""
    text = "SELECT id, quantity FROM orders WHERE customer_id = ? AND status = ? ORDER BY id"
    async with sql.session(sqlite_db) as s:
        got = await s.rows(text, [4, "paid"])
        injected = await s.rows("SELECT count(*) FROM orders WHERE status = ?", ["x' OR '1'='1"])
    want = direct_rows(
        sqlite_db,
        "SELECT id, quantity FROM orders WHERE customer_id = 4 AND status = 'paid' ORDER BY id",
    )
    assert got == want
    assert len(got) > 1
    assert injected == [[0]]


async def test_url_forms_and_result_shape(sql: SqlServer, sqlite_db: Database) -> None:
    """``--db sqlite:///path`` works like ``--db-file``; results carry columns, rows and a table."""
    by_url = Database(dialect="sqlite", args=("--db", f"sqlite://{sqlite_db.path}"))
    async with sql.session(by_url) as s:
        got = await s.query("SELECT id, name FROM products WHERE id <= 2 ORDER BY id")
    assert got.columns == ["id", "name"]
    assert got.rows == [[1, "Keyboard"], [2, "Mouse"]]
    assert got.structured is not None
    assert all(isinstance(c.get("type"), str) for c in got.structured["columns"])
    assert "Keyboard" in got.text and "Mouse" in got.text


async def test_modern_era_client(sql: SqlServer, sqlite_db: Database) -> None:
    """A client of the 2026-07-28 era (server/discover) lists the tools and queries."""
    async with sql.session(sqlite_db, mode="auto") as s:
        tools = await s.client.list_tools()
        got = await s.rows("SELECT count(*) FROM orders")
    assert {t.name for t in tools.tools} == {"query", "list_tables", "describe_table", "explain"}
    assert all(t.output_schema for t in tools.tools)
    assert got == [[60]]


async def test_list_describe_explain(sql: SqlServer, sqlite_db: Database) -> None:
    """list_tables, describe_table and explain answer for the allowed tables."""
    async with sql.session(sqlite_db) as s:
        tables = await s.call("list_tables")
        described = await s.call("describe_table", name="orders")
        plan = await s.call("explain", sql="SELECT * FROM orders WHERE customer_id = 3")
    assert not tables.is_error, tables.text
    for name in ("customers", "orders", "products"):
        assert name in tables.text
    assert not described.is_error, described.text
    for column in ("customer_id", "product_id", "quantity", "ordered_at", "status"):
        assert column in described.text
    assert not plan.is_error, plan.text
    assert "orders" in plan.text


async def test_demo_database_without_db_option(sql: SqlServer) -> None:
    """Without --db the built-in demo database answers, and hides users_credentials."""
    demo = Database(dialect="sqlite", args=())
    async with sql.session(demo, policy=None) as s:
        tables = await s.call("list_tables")
        blocked = await s.query("SELECT * FROM users_credentials")
    assert not tables.is_error, tables.text
    assert "users_credentials" not in tables.text
    assert_refused(blocked)


async def test_every_write_path_is_refused_by_the_guard(
    sql: SqlServer, sqlite_db: Database, tmp_path: Path
) -> None:
    """Every write, side effect and bypass is denied by the guard, and nothing changed."""
    db = _copy(sqlite_db, tmp_path)
    async with sql.session(db) as s:
        before = await s.rows("SELECT count(*), sum(quantity) FROM orders")
        not_denied = []
        for text in SQLITE_WRITES:
            got = await s.query(text)
            if not (got.is_error and got.text.startswith("denied (")):
                not_denied.append((text, got.text[:200]))
        for text in ("DELETE FROM orders", "SELECT 1; DROP TABLE orders"):
            assert_denied(await s.call("explain", sql=text))
        after = await s.rows("SELECT count(*), sum(quantity) FROM orders")
    assert not_denied == []
    assert after == before
    assert direct_rows(db, "SELECT count(*) FROM orders") == [[60]]
    assert direct_rows(db, "SELECT name FROM customers WHERE id = 1") == [["Ada Lovelace"]]
    assert not Path("/tmp/pc-copy.db").exists()


async def test_stacked_and_commit_bypasses_name_the_rule(
    sql: SqlServer, sqlite_db: Database
) -> None:
    """``COMMIT; DROP`` and stacked statements are denied as multiple statements."""
    async with sql.session(sqlite_db) as s:
        for text in ("COMMIT; DROP TABLE orders", "SELECT 1; DELETE FROM orders"):
            assert_refused(await s.query(text), rule="sql.multiple-statements")
        assert_refused(await s.query("DELETE FROM orders"), rule="sql.not-read-only")


async def test_blocked_tables_are_invisible(sql: SqlServer, sqlite_db: Database) -> None:
    """Blocked tables appear in no tool: list, describe, query (however written), explain."""
    async with sql.session(sqlite_db) as s:
        listed = await s.call("list_tables")
        assert not listed.is_error, listed.text
        # A blocked table is answered for exactly as a table that does not exist.
        absent = await s.call("describe_table", name="no_such_table")
        for table in BLOCKED:
            hidden = await s.call("describe_table", name=table)
            assert hidden.text.replace(table, "T") == absent.text.replace("no_such_table", "T")
        for table in BLOCKED:
            assert_refused(await s.call("describe_table", name=table))
            assert_refused(await s.call("describe_table", name=table.upper()))
            assert_denied(await s.query(f"SELECT * FROM {table}"))
            assert_denied(await s.query(f'SELECT * FROM main."{table}"'))
            assert_denied(await s.call("explain", sql=f"SELECT * FROM {table}"))
        assert_denied(
            await s.query(
                "SELECT c.name, (SELECT api_token FROM users_credentials u "
                "WHERE u.customer_id = c.id) FROM customers c"
            )
        )
        # A view over a blocked table: refused (the authorizer sees the table under the view).
        assert_refused(await s.query("SELECT * FROM v_active_sessions"))
        assert_refused(await s.query("SELECT name, sql FROM sqlite_master"))
        seen = s.seen
    assert listed.structured is not None
    names = {t["name"].lower() for t in listed.structured["tables"]}
    assert {"customers", "orders", "products"} <= names
    assert names.isdisjoint(BLOCKED)
    assert not re.search(r"\b(users_credentials|api_keys|sessions)\b", listed.text)
    assert_never_shown([*seen, sql.stderr()], SECRET_MARK, "password_hash", "api_token")


async def test_masked_columns_never_appear(sql: SqlServer, sqlite_db: Database) -> None:
    """Masked columns come out masked however they are selected, or the query is refused."""
    async with sql.session(sqlite_db) as s:
        star = await s.query("SELECT * FROM customers ORDER BY id")
        for text in MASK_BY_NAME:
            await s.query(text)
        seen = list(s.seen)
        described = await s.call("describe_table", name="customers")
    assert "email" in star.columns and len(star.rows) == 12
    assert star.rows[0][star.columns.index("name")] == "Ada Lovelace"
    assert described.structured is not None
    flags = {c["name"]: c["masked"] for c in described.structured["columns"]}
    assert flags == {"id": False, "name": False, "email": True, "phone": True} | {
        "country": False,
        "created_at": False,
    }
    assert_never_shown([*seen, sql.stderr()], *MASKED_VALUES)


@pytest.mark.parametrize("text", MASK_IN_EXPRESSIONS["sqlite"])
async def test_masked_column_inside_an_expression_never_appears(
    sql: SqlServer, sqlite_db: Database, text: str
) -> None:
    """A masked column inside an expression, subquery, UNION or whole row stays hidden."""
    async with sql.session(sqlite_db) as s:
        await s.query(text)
        seen = s.seen
    assert_never_shown([*seen, sql.stderr()], *MASKED_VALUES)


async def test_results_are_redacted_and_masked_by_name(sql: SqlServer, sqlite_db: Database) -> None:
    """The redactor runs on every result; built-in mask names apply to computed columns too."""
    async with sql.session(sqlite_db) as s:
        got = await s.query("SELECT 'key AKIAZ7Q3XK2M4N5P6R7T' AS note, 'hunter2' AS db_password")
        seen = s.seen
    assert not got.is_error, got.text
    assert "[REDACTED:aws-access-key-id]" in got.text
    assert_never_shown(seen, "AKIAZ7Q3XK2M4N5P6R7T", "hunter2")


async def test_timeout_stops_a_heavy_query(sql: SqlServer, sqlite_db: Database) -> None:
    """A query over ``timeout_s`` is stopped with a clear error; the next one works."""
    async with sql.session(sqlite_db, timeout_s=1) as s:
        slow = await s.query(CROSS_JOIN_FOREVER)
        recursive = await s.query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
        )
        after = await s.rows("SELECT count(*) FROM orders")
    for got in (slow, recursive):
        assert got.is_error
        assert re.search(r"time(d)?[ -]?out|longer than", got.text, re.IGNORECASE), got.text
    assert after == [[60]]


async def test_row_and_byte_caps_truncate(sql: SqlServer, sqlite_db: Database) -> None:
    """``max_rows`` and ``max_bytes`` cut the result and say so."""
    async with sql.session(sqlite_db, max_rows=5) as s:
        rows = await s.query("SELECT id FROM orders ORDER BY id")
    async with sql.session(sqlite_db, max_bytes=400) as s:
        sized = await s.query("SELECT * FROM orders ORDER BY id")
    assert rows.rows == [[1], [2], [3], [4], [5]]
    assert rows.structured is not None and rows.structured["truncated"] is True
    assert "truncated" in rows.text.lower()
    assert 0 < len(sized.rows) < 60
    assert sized.structured is not None and sized.structured["truncated"] is True
    assert "truncated" in sized.text.lower()


async def test_errors_are_clear(sql: SqlServer, sqlite_db: Database) -> None:
    """Syntax errors give the position; a database error says what went wrong."""
    async with sql.session(sqlite_db) as s:
        syntax = await s.query("SELECT id FROM orders WHERE WHERE status = 'paid'")
        missing = await s.query("SELECT no_such_column FROM orders")
    assert syntax.is_error
    assert re.search(r"line \d|column \d|position \d|index \d|near \"WHERE\"", syntax.text), (
        syntax.text
    )
    assert missing.is_error and "no_such_column" in missing.text


def test_database_refuses_writes_without_the_guard(sqlite_db: Database, tmp_path: Path) -> None:
    """With no guard, the server's backend refuses writes: authorizer, query_only, mode=ro."""
    db = _copy(sqlite_db, tmp_path)
    with backend_without_guard(db) as (backend, run):
        ran = [text for text in DB_LAYER_WRITES if run(text) is None]
        assert ran == []
        assert run("SELECT * FROM v_active_sessions") is not None
        # Take the authorizer away too: query_only and mode=ro still refuse.
        conn = backend._conn
        conn.set_authorizer(None)
        assert run("DELETE FROM orders") is not None
        assert run("PRAGMA query_only = 0") is None
        refusal = run("DELETE FROM orders")
        assert refusal is not None and "readonly" in refusal.replace("-", "").replace(" ", "")
        assert run("CREATE TABLE scratch (x)") is not None
    assert direct_rows(db, "SELECT count(*) FROM orders") == [[60]]
    assert direct_rows(db, "SELECT name FROM customers WHERE id = 1") == [["Ada Lovelace"]]
    assert not Path("/tmp/pc-sqlite-copy.db").exists()
