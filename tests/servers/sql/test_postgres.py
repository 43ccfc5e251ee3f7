"""The PostgreSQL backend against a real server (skipped unless one is configured).

Start one with ``eval "$(scripts/pg-test-server.sh start)"``: it exports
``PORTCULLIS_TEST_PG_URL`` (a read-only role) and ``PORTCULLIS_TEST_PG_OWNER_URL`` (the owner of
the tables, a role that may write). The end-to-end tests in tests/e2e drive the same database
through the SDK client; these check the backend's own layers directly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from portcullis.detect.verdicts import Allow
from portcullis.servers.sql.config import Settings, resolve_target
from portcullis.servers.sql.tools import SqlTools

OWNER = "PORTCULLIS_TEST_PG_OWNER_URL"
READER = "PORTCULLIS_TEST_PG_URL"
pytestmark = pytest.mark.skipif(
    not (os.environ.get(OWNER) and os.environ.get(READER)),
    reason="no PostgreSQL test server (scripts/pg-test-server.sh start)",
)
SETTINGS = Settings(
    deny_tables=("users_credentials", "api_keys", "sessions"),
    mask_columns=("*email*", "phone"),
    timeout_s=1.0,
)


def text_of(result: dict[str, Any]) -> str:
    """The text of a tool result's first content block."""
    return str(result["content"][0]["text"])


def open_tools(var: str, settings: Settings = SETTINGS) -> tuple[SqlTools, Any]:
    """Tools over the database in ``var``."""
    from portcullis.servers.sql.postgres import PostgresBackend

    backend = PostgresBackend(resolve_target(db_env=var), settings)
    return SqlTools(backend, settings), backend


@pytest.fixture
def owner_tools() -> Iterator[SqlTools]:
    """Tools connected as the tables' owner, a role that could write."""
    tools, backend = open_tools(OWNER)
    yield tools
    backend.close()


@pytest.fixture
def unguarded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove the SQL guard for this test (a test-only removal; the server has no switch)."""
    monkeypatch.setattr(
        "portcullis.detect.sql.SqlGuard.check", lambda self, sql, *, argument: Allow("x")
    )


@pytest.mark.usefixtures("unguarded")
@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM orders",
        "UPDATE orders SET quantity = 0",
        "DROP TABLE orders",
        "CREATE TEMP TABLE t (x int)",
        "TRUNCATE orders",
        "SELECT 1; COMMIT; DROP TABLE orders",
        "COMMIT; DROP TABLE orders",
        "WITH d AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM d",
        "DO $$BEGIN DELETE FROM orders; END$$",
        "SELECT set_config('transaction_read_only', 'off', true)",
        "EXPLAIN ANALYZE DELETE FROM orders",
        "SELECT * FROM orders FOR UPDATE",
    ],
)
def test_database_refuses_writes_without_the_guard(owner_tools: SqlTools, sql: str) -> None:
    """Even as the owner and with the guard removed, the read-only transaction refuses."""
    before = owner_tools.call("query", {"sql": "SELECT count(*) FROM orders"})
    result = owner_tools.call("query", {"sql": sql})
    assert result["isError"] is True, text_of(result)
    assert text_of(result).startswith("database error: ")
    after = owner_tools.call("query", {"sql": "SELECT count(*) FROM orders"})
    assert after["structuredContent"] == before["structuredContent"]


@pytest.mark.usefixtures("unguarded")
def test_timeout_without_the_guard(owner_tools: SqlTools) -> None:
    """statement_timeout stops a long query; the next call works."""
    result = owner_tools.call("query", {"sql": "SELECT pg_sleep(5)"})
    assert "timeout_s" in text_of(result)
    assert owner_tools.call("query", {"sql": "SELECT 1"})["structuredContent"]["rows"] == [[1]]


def test_owner_role_gets_warnings() -> None:
    """A role that owns tables and may write is warned about; the read-only role is not."""
    _, backend = open_tools(OWNER)
    try:
        warnings = " ".join(backend.warnings())
        assert "owns" in warnings and "can write" in warnings
    finally:
        backend.close()
    _, backend = open_tools(READER)
    try:
        assert not [w for w in backend.warnings() if "superuser" in w or "can write" in w]
    finally:
        backend.close()


def test_masked_and_blocked_never_appear(owner_tools: SqlTools) -> None:
    """Aliases are masked by source column; blocked tables are refused and hidden."""
    out = owner_tools.call("query", {"sql": "SELECT name, email AS e FROM customers LIMIT 2"})
    assert all(row[1] == "[MASKED]" for row in out["structuredContent"]["rows"])
    assert "@" not in text_of(out)
    listed = owner_tools.call("list_tables", {})["structuredContent"]["tables"]
    hidden = {"users_credentials", "api_keys", "sessions", "v_active_sessions"}
    assert not hidden & {t["name"] for t in listed}
    view = owner_tools.call("query", {"sql": "SELECT * FROM v_active_sessions"})
    assert text_of(view).startswith("denied (sql.denied-table)")
    denied = owner_tools.call("query", {"sql": "SELECT * FROM api_keys"})
    assert text_of(denied).startswith("denied (sql.denied-table)")
    expr = owner_tools.call("query", {"sql": "SELECT upper(email) FROM customers"})
    assert text_of(expr).startswith("denied (sql.masked-column)")


def test_analytics_and_params(owner_tools: SqlTools) -> None:
    """Joins, CTEs, window functions and $1 parameters work."""
    sql = (
        "WITH t AS (SELECT customer_id, sum(quantity) AS q FROM orders GROUP BY 1) "
        "SELECT c.name, t.q, rank() OVER (ORDER BY t.q DESC) AS r "
        "FROM t JOIN customers c ON c.id = t.customer_id WHERE c.country = $1"
    )
    out = owner_tools.call("query", {"sql": sql, "params": ["US"]})
    assert out["isError"] is False and out["structuredContent"]["row_count"] > 0


def test_errors_never_hold_the_password(owner_tools: SqlTools) -> None:
    """Database errors carry the server's message, never the URL or its password."""
    from psycopg.conninfo import conninfo_to_dict

    password = str(conninfo_to_dict(os.environ[OWNER])["password"])
    for sql in ("SELECT nosuch FROM orders", "SELECT * FRM orders", "SELECT 1/0"):
        text = text_of(owner_tools.call("query", {"sql": sql}))
        assert password not in text and os.environ[OWNER] not in text


def test_a_connection_lost_while_idle_is_reopened(owner_tools: SqlTools) -> None:
    """After the server drops the idle connection, the next call reconnects and succeeds."""
    import psycopg

    assert owner_tools.call("query", {"sql": "SELECT 1"})["isError"] is False
    pid = owner_tools._backend._conn.info.backend_pid  # type: ignore[attr-defined]
    with psycopg.connect(os.environ[OWNER], autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    again = owner_tools.call("query", {"sql": "SELECT 2"})
    assert again["structuredContent"]["rows"] == [[2]]


def test_statistics_views_do_not_leak_masked_values() -> None:
    """pg_stats holds a masked column's values (histogram_bounds): it is refused like a table."""
    tools, backend = open_tools(READER)
    try:
        for sql in (
            "SELECT histogram_bounds::text FROM pg_stats WHERE attname = 'email'",
            "SELECT * FROM pg_catalog.pg_stats_ext",
            'SELECT most_common_vals::text FROM "pg_stats_ext_exprs"',
            "SELECT query FROM pg_stat_activity",
        ):
            out = tools.call("query", {"sql": sql})
            assert text_of(out).startswith("denied (sql.denied-table)"), sql
            assert "@example.org" not in text_of(out)
    finally:
        backend.close()


def test_timeout_holds_across_fetches(owner_tools: SqlTools) -> None:
    """Each FETCH of the server-side cursor shares timeout_s, not a full timeout_s of its own."""
    import time

    # About 1/500 s per row: each 256-row FETCH stays under the 1 s limit, the whole does not.
    sql = (
        "SELECT a.id, (WITH RECURSIVE r(n) AS (SELECT a.id UNION ALL SELECT n + 1 FROM r "
        "WHERE n < a.id + 9000) SELECT count(*) FROM r) FROM orders a, orders b"
    )
    started = time.monotonic()
    out = owner_tools.call("query", {"sql": sql})
    assert "timeout_s" in text_of(out) and out["isError"] is True
    assert time.monotonic() - started < 1.5
    assert owner_tools.call("query", {"sql": "SELECT 1"})["isError"] is False


def test_a_huge_value_is_not_returned(owner_tools: SqlTools) -> None:
    """A single value over max_bytes is cut like any other result, not sent whole."""
    out = owner_tools.call("query", {"sql": "SELECT repeat('x', 5000000) AS big"})
    assert out["structuredContent"]["rows"] == [] and out["structuredContent"]["truncated"]
    assert len(text_of(out)) < 10_000


@pytest.mark.parametrize(
    "sql", ["/* /* */ */ SELECT id FROM orders", "/* /* */ explain */ SELECT id FROM orders"]
)
def test_nested_comments_keep_the_server_side_cursor(
    owner_tools: SqlTools, monkeypatch: pytest.MonkeyPatch, sql: str
) -> None:
    """A SELECT behind nested comments is still fetched in chunks, never loaded whole."""
    import psycopg

    def no_client_cursor(*args: object, **kwargs: object) -> None:
        raise AssertionError("a client-side cursor would load the whole result")

    monkeypatch.setattr(psycopg, "RawCursor", no_client_cursor)
    out = owner_tools.call("query", {"sql": sql})
    assert out["isError"] is False, text_of(out)


def test_partitions_and_children_of_a_blocked_table_are_blocked() -> None:
    """A partition or an inheritance child holds the blocked rows under another name."""
    import psycopg

    with psycopg.connect(os.environ[OWNER], autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE app.pc_vault (id int, note text) PARTITION BY RANGE (id);"
            "CREATE TABLE app.pc_vault_1 PARTITION OF app.pc_vault FOR VALUES FROM (0) TO (9);"
            "INSERT INTO app.pc_vault VALUES (1, 'the crown jewels');"
            "CREATE TABLE app.pc_vault_kid () INHERITS (app.sessions)"
        )
        try:
            settings = Settings(deny_tables=("pc_vault", "sessions"), timeout_s=1.0)
            tools, backend = open_tools(OWNER, settings)
            try:
                for table in ("pc_vault_1", "pc_vault_kid"):
                    out = tools.call("query", {"sql": f"SELECT * FROM {table}"})
                    assert text_of(out).startswith("denied (sql.denied-table)"), table
                names = {
                    t["name"] for t in tools.call("list_tables", {})["structuredContent"]["tables"]
                }
                assert not {"pc_vault", "pc_vault_1", "pc_vault_kid"} & names
            finally:
                backend.close()
        finally:
            conn.execute("DROP TABLE app.pc_vault, app.pc_vault_kid")
