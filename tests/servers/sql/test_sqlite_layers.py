"""The SQLite layers hold on their own: with the guard removed by the test, writes still fail.

The guard is replaced by one that allows everything (a test-only removal: the server has no
switch for it), so each statement reaches SQLite, where ``mode=ro``, ``query_only`` and the
authorizer must refuse it.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from portcullis.detect.verdicts import Allow
from portcullis.servers.sql.config import Settings
from portcullis.servers.sql.tools import SqlTools

from .conftest import MakeTools


@pytest.fixture
def unguarded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove the SQL guard for this test: every statement is allowed through to the database."""

    def allow_all(self: object, sql: str, *, argument: str) -> Allow:
        return Allow("sql.allowed")

    monkeypatch.setattr("portcullis.detect.sql.SqlGuard.check", allow_all)


def text_of(result: dict[str, Any]) -> str:
    """The text of a tool result's first content block."""
    return str(result["content"][0]["text"])


def digest(path: str) -> str:
    """A hash of the database file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


WRITES = [
    "DELETE FROM orders",
    "UPDATE orders SET quantity = 0",
    "INSERT INTO orders (id, customer_id, product_id, quantity, ordered_at, status) "
    "VALUES (999, 1, 1, 1, 'x', 'x')",
    "REPLACE INTO products VALUES (1, 'x', 'x', 0)",
    "DROP TABLE orders",
    "DROP VIEW customer_totals",
    "CREATE TABLE t (x)",
    "CREATE TEMP TABLE t (x)",
    "CREATE INDEX i ON orders (status)",
    "ALTER TABLE orders ADD COLUMN y",
    "ATTACH DATABASE ':memory:' AS other",
    "DETACH DATABASE main",
    "PRAGMA query_only = 0",
    "PRAGMA journal_mode = delete",
    "BEGIN",
    "COMMIT",
    "SAVEPOINT s",
    "VACUUM",
    "ANALYZE",
    "REINDEX",
    "SELECT load_extension('/tmp/evil.so')",
    "SELECT 1; DROP TABLE orders",
    "COMMIT; DROP TABLE orders",
    "WITH x AS (SELECT 1) DELETE FROM orders",
    "SELECT * FROM sqlite_master",
]


@pytest.mark.usefixtures("unguarded")
@pytest.mark.parametrize("sql", WRITES)
def test_database_refuses_writes_without_the_guard(
    make_tools: MakeTools, demo_path: str, sql: str
) -> None:
    """Each write, DDL, ATTACH, PRAGMA, transaction or extension load fails in SQLite itself."""
    before = digest(demo_path)
    tools = make_tools()
    result = tools.call("query", {"sql": sql})
    assert result["isError"] is True, sql
    assert text_of(result).startswith("database error: "), text_of(result)
    assert digest(demo_path) == before
    # The connection is still read-only and usable afterwards.
    after = tools.call("query", {"sql": "SELECT count(*) FROM orders"})
    assert after["structuredContent"]["rows"] == [[300]]


@pytest.mark.usefixtures("unguarded")
def test_blocked_table_refused_by_the_authorizer(make_tools: MakeTools, secrets_db: str) -> None:
    """Without the guard, SQLite itself refuses a blocked table, directly and through a view."""
    tools = make_tools(Settings(deny_tables=("vault",)), path=secrets_db)
    for sql in ("SELECT * FROM vault", "SELECT * FROM vault_view", "SELECT * FROM main.vault"):
        result = tools.call("query", {"sql": sql})
        assert result["isError"] is True, sql
        assert "crown jewels" not in text_of(result)
    listed = tools.call("list_tables", {})["structuredContent"]["tables"]
    assert not {"vault", "vault_view"} & {t["name"] for t in listed}


@pytest.mark.usefixtures("unguarded")
def test_masked_column_reads_as_null_without_the_guard(
    make_tools: MakeTools, secrets_db: str
) -> None:
    """The authorizer turns every read of a masked column into NULL."""
    tools = make_tools(Settings(), path=secrets_db)
    result = tools.call("query", {"sql": "SELECT upper(password) || ssn AS x FROM accounts"})
    assert result["structuredContent"]["rows"] == [[None], [None]]


def test_file_is_opened_read_only(demo_path: str) -> None:
    """Even a raw write on the server's connection fails: the file is opened with mode=ro."""
    from portcullis.servers.sql.backends import SqliteBackend

    backend = SqliteBackend(demo_path, Settings())
    try:
        conn = backend._conn
        conn.set_authorizer(None)  # peel the authorizer off too
        with pytest.raises(sqlite3.OperationalError):
            conn.execute("DELETE FROM orders")
        conn.execute("PRAGMA query_only = 0")
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM orders")
    finally:
        backend.close()


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A path that does not exist is refused at start (exit 2), and nothing is created."""
    from portcullis._exceptions import ConfigError
    from portcullis.servers.sql.backends import SqliteBackend

    missing = tmp_path / "nope.db"
    with pytest.raises(ConfigError, match="no such file"):
        SqliteBackend(str(missing), Settings())
    assert not missing.exists()


def test_guard_is_in_front_by_default(tools: SqlTools) -> None:
    """Without the test's removal, the same statements are denied by the guard first."""
    assert text_of(tools.call("query", {"sql": "DELETE FROM orders"})).startswith("denied (")


def test_views_over_blocked_tables_are_blocked(make_tools: MakeTools, secrets_db: str) -> None:
    """A view that reads a blocked table is denied by name and hidden, like the table."""
    tools = make_tools(Settings(deny_tables=("vault",)), path=secrets_db)
    result = tools.call("query", {"sql": "SELECT * FROM vault_view"})
    assert text_of(result).startswith("denied (sql.denied-table)")
    assert "vault_view" in text_of(result)
    missing = tools.call("describe_table", {"name": "vault_view"})
    assert missing["isError"] is True and "no table or view" in text_of(missing)


def test_a_file_that_is_not_a_database_is_a_config_error(tmp_path: Path) -> None:
    """A file SQLite cannot read is refused at start with a clear message."""
    from portcullis._exceptions import ConfigError
    from portcullis.servers.sql.backends import SqliteBackend

    junk = tmp_path / "junk.db"
    junk.write_text("this is not a database, just text that is long enough " * 20)
    with pytest.raises(ConfigError, match="not a database"):
        SqliteBackend(str(junk), Settings())


@pytest.fixture
def stats_db(tmp_path: Path) -> str:
    """A database with ANALYZE statistics, an AUTOINCREMENT table and an FTS5 table."""
    path = str(tmp_path / "stats.db")
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE vault (id INTEGER PRIMARY KEY AUTOINCREMENT, payload TEXT);
        CREATE INDEX vault_payload ON vault (payload);
        INSERT INTO vault (payload) VALUES ('the crown jewels');
        CREATE VIRTUAL TABLE notes USING fts5(body);
        INSERT INTO notes VALUES ('the crown jewels, indexed');
        CREATE TABLE shelf (id INTEGER PRIMARY KEY, label TEXT);
        ANALYZE;
        """
    )
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("table", ["sqlite_stat1", "sqlite_sequence"])
def test_statistics_tables_do_not_name_blocked_tables(
    make_tools: MakeTools, stats_db: str, table: str
) -> None:
    """sqlite_stat1 and sqlite_sequence list every table by name: they are refused like the schema."""
    tools = make_tools(Settings(deny_tables=("vault",)), path=stats_db)
    out = tools.call("query", {"sql": f"SELECT * FROM {table}"})
    assert out["isError"] is True and "vault" not in text_of(out)


def test_shadow_tables_of_a_blocked_virtual_table_are_blocked(
    make_tools: MakeTools, stats_db: str
) -> None:
    """An FTS5 table's shadow tables hold its rows: blocking the table blocks them too."""
    tools = make_tools(Settings(deny_tables=("notes",)), path=stats_db)
    for table in ("notes_content", "notes_data", "notes_idx"):
        out = tools.call("query", {"sql": f"SELECT * FROM {table}"})
        assert out["isError"] is True and "crown" not in text_of(out), table
    listed = text_of(tools.call("list_tables", {}))
    assert "notes" not in listed and "shelf" in listed


@pytest.mark.usefixtures("unguarded")
def test_shadow_tables_refused_by_the_authorizer(make_tools: MakeTools, stats_db: str) -> None:
    """Without the guard, the authorizer still refuses a blocked FTS5 table's shadow tables."""
    tools = make_tools(Settings(deny_tables=("notes",)), path=stats_db)
    out = tools.call("query", {"sql": "SELECT * FROM notes_content"})
    assert out["isError"] is True and "crown" not in text_of(out)


def test_huge_value_is_refused_before_it_is_built(tools: SqlTools) -> None:
    """A statement cannot build a near-1 GB string in the server's memory (SQLITE_LIMIT_LENGTH)."""
    out = tools.call("query", {"sql": "SELECT length(printf('%.*c', 900000000, 'x')) AS n"})
    assert out["isError"] is True or out["structuredContent"]["rows"] == [[None]]
    sql = "SELECT length(replace(printf('%.*c', 40000000, 'x'), 'x', 'xx')) AS n"
    out = tools.call("query", {"sql": sql})
    assert out["isError"] is True and "MiB limit for one value" in text_of(out)


def test_an_index_on_a_masked_column_is_warned_about(tmp_path: Path) -> None:
    """An index scan returns rows in the masked values' order: the server says so at start."""
    from portcullis.servers.sql.backends import SqliteBackend

    path = str(tmp_path / "indexed.db")
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, email TEXT);"
        "CREATE INDEX people_email ON people (email);"
    )
    conn.close()
    backend = SqliteBackend(path, Settings(mask_columns=("email",)))
    try:
        assert any("people.email" in w and "index" in w for w in backend.warnings())
    finally:
        backend.close()


def test_shadow_tables_of_any_virtual_table_are_refused(
    make_tools: MakeTools, stats_db: str
) -> None:
    """Shadow columns are named c0, c1 …: a masked FTS column would be readable through them."""
    tools = make_tools(Settings(), path=stats_db)
    out = tools.call("query", {"sql": "SELECT c0 FROM notes_content"})
    assert out["isError"] is True and "crown" not in text_of(out)
    assert tools.call("query", {"sql": "SELECT count(*) FROM shelf"})["isError"] is False
