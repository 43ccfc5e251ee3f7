"""The four tools over the demo SQLite database: results, denials, invisibility, limits."""

from __future__ import annotations

from typing import Any

import pytest

from portcullis.servers.sql.config import Settings
from portcullis.servers.sql.tools import SqlTools, UnknownTool

from .conftest import DEMO_SETTINGS, MakeTools


def text_of(result: dict[str, Any]) -> str:
    """The text of a tool result's first content block."""
    return str(result["content"][0]["text"])


def ok(result: dict[str, Any]) -> dict[str, Any]:
    """Assert the call succeeded and return its structuredContent."""
    assert result["isError"] is False, text_of(result)
    structured: dict[str, Any] = result["structuredContent"]
    return structured


def test_list_tables_hides_blocked_tables(tools: SqlTools) -> None:
    """users_credentials is blocked in the demo, so list_tables does not show it."""
    result = tools.call("list_tables", {})
    names = [t["name"] for t in ok(result)["tables"]]
    assert names == ["customer_totals", "customers", "orders", "products"]
    assert "users_credentials" not in text_of(result)


def test_describe_table_shows_columns(tools: SqlTools) -> None:
    """describe_table gives name, type, nullability and primary key of every column."""
    out = ok(tools.call("describe_table", {"name": "orders"}))
    assert out["name"] == "orders" and out["type"] == "table"
    cols = {c["name"]: c for c in out["columns"]}
    assert cols["id"]["primary_key"] is True and cols["id"]["nullable"] is False
    assert cols["status"]["type"] == "TEXT"


def test_describe_blocked_table_is_like_a_missing_one(tools: SqlTools) -> None:
    """A blocked table and a table that does not exist get the same answer."""
    blocked = tools.call("describe_table", {"name": "users_credentials"})
    missing = tools.call("describe_table", {"name": "no_such_table"})
    assert blocked["isError"] and missing["isError"]
    assert text_of(blocked).replace("users_credentials", "X") == text_of(missing).replace(
        "no_such_table", "X"
    )


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT c.city, count(*) AS n FROM customers c JOIN orders o ON o.customer_id = c.id "
        "GROUP BY c.city ORDER BY n DESC",
        "WITH big AS (SELECT customer_id, sum(quantity) AS q FROM orders GROUP BY 1) "
        "SELECT customer_id, q, rank() OVER (ORDER BY q DESC) AS r FROM big",
        "SELECT * FROM customer_totals ORDER BY spent DESC LIMIT 3",
        "VALUES (1, 'a'), (2, 'b')",
    ],
)
def test_analytics_queries_work(tools: SqlTools, sql: str) -> None:
    """Joins, CTEs, window functions, views and VALUES run."""
    out = ok(tools.call("query", {"sql": sql}))
    assert out["row_count"] > 0 and out["truncated"] is False


def test_query_binds_params(tools: SqlTools) -> None:
    """Parameters are bound by the driver to ? placeholders."""
    out = ok(
        tools.call(
            "query",
            {"sql": "SELECT id, name FROM customers WHERE id = ? OR name = ?", "params": [3, "x"]},
        )
    )
    assert out["rows"][0][0] == 3
    assert out["columns"] == [{"name": "id", "type": "integer"}, {"name": "name", "type": "text"}]


@pytest.mark.parametrize(
    ("sql", "rule"),
    [
        ("DELETE FROM orders", "sql.not-read-only"),
        ("UPDATE orders SET quantity = 0", "sql.not-read-only"),
        ("INSERT INTO orders (id) VALUES (999)", "sql.not-read-only"),
        ("DROP TABLE orders", "sql.not-read-only"),
        ("CREATE TABLE t (x)", "sql.not-read-only"),
        ("ATTACH DATABASE '/tmp/x.db' AS x", "sql.not-read-only"),
        ("PRAGMA query_only = 0", "sql.not-read-only"),
        ("SELECT 1; DROP TABLE orders", "sql.multiple-statements"),
        ("COMMIT; DROP TABLE orders", "sql.multiple-statements"),
        ("SELECT * FROM users_credentials", "sql.denied-table"),
        ("SELECT load_extension('/tmp/evil.so')", "sql.function"),
        ("SELEC 1", "sql.unparseable"),
    ],
)
def test_guard_denials_name_the_rule(tools: SqlTools, sql: str, rule: str) -> None:
    """Every write path is refused by the guard, and the denial names its rule."""
    result = tools.call("query", {"sql": sql})
    assert result["isError"] is True
    assert text_of(result).startswith(f"denied ({rule}): ")
    assert "structuredContent" not in result


def test_syntax_error_points_at_the_position(tools: SqlTools) -> None:
    """A syntax error says where: SQLite's `near "X"` becomes a line and column."""
    result = tools.call("query", {"sql": "SELECT id\nFROM orders\nWHER id = 1"})
    assert "denied (sql.unparseable)" in text_of(result)
    assert "(line 3, column 6)" in text_of(result)


def test_explain_shows_the_plan_and_is_guarded(tools: SqlTools) -> None:
    """The explain tool returns the plan of a read-only statement and refuses a write."""
    out = ok(tools.call("explain", {"sql": "SELECT * FROM orders WHERE customer_id = 3"}))
    assert "orders" in out["plan"]
    denied = tools.call("explain", {"sql": "DELETE FROM orders"})
    assert text_of(denied).startswith("denied (sql.not-read-only)")
    blocked = tools.call("explain", {"sql": "SELECT * FROM users_credentials"})
    assert text_of(blocked).startswith("denied (sql.denied-table)")


def test_allow_tables_limits_the_server_to_the_listed_tables(make_tools: MakeTools) -> None:
    """sql.allow_tables reaches portcullis sql: a table outside the list is refused by name."""
    tools = make_tools(Settings(allow_tables=("orders",)))
    assert ok(tools.call("query", {"sql": "SELECT count(*) AS n FROM orders"}))["row_count"] == 1
    denied = tools.call("query", {"sql": "SELECT * FROM orders JOIN customers USING (id)"})
    assert text_of(denied).startswith("denied (sql.table-not-allowed)")
    assert "customers" in text_of(denied)


def test_row_cap_truncates_with_a_note(make_tools: MakeTools) -> None:
    """More rows than max_rows: the first max_rows come back, marked truncated."""
    tools = make_tools(Settings(deny_tables=("users_credentials",), max_rows=5))
    result = tools.call("query", {"sql": "SELECT * FROM orders"})
    out = ok(result)
    assert out["row_count"] == 5 and len(out["rows"]) == 5 and out["truncated"] is True
    assert "max_rows" in out["note"] and "truncated" in text_of(result)
    exact = ok(tools.call("query", {"sql": "SELECT * FROM orders LIMIT 5"}))
    assert exact["truncated"] is False


def test_byte_cap_truncates_with_a_note(make_tools: MakeTools) -> None:
    """Rows past max_bytes of JSON are cut, and the result says so."""
    tools = make_tools(Settings(deny_tables=("users_credentials",), max_bytes=2000))
    out = ok(tools.call("query", {"sql": "SELECT * FROM orders"}))
    assert out["truncated"] is True and "max_bytes" in out["note"]
    assert 0 < out["row_count"] < 300
    assert sum(len(str(r)) for r in out["rows"]) < 4000


def test_timeout_stops_a_runaway_query(make_tools: MakeTools) -> None:
    """A query past timeout_s is interrupted with a clear error."""
    tools = make_tools(Settings(deny_tables=("users_credentials",), timeout_s=0.2))
    sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    result = tools.call("query", {"sql": sql})
    assert result["isError"] is True
    assert "timeout_s" in text_of(result) and text_of(result).startswith("database error: ")
    assert ok(tools.call("query", {"sql": "SELECT 1"}))["rows"] == [[1]]


def test_secrets_in_values_are_redacted(tools: SqlTools) -> None:
    """The redactor runs on every value: a key pasted into a text column is replaced."""
    result = tools.call("query", {"sql": "SELECT notes FROM customers WHERE id = 7"})
    (value,) = ok(result)["rows"][0]
    assert "AKIA" not in value and "[REDACTED:" in value
    assert "AKIA" not in text_of(result)


def test_masked_columns_by_name(make_tools: MakeTools, secrets_db: str) -> None:
    """Columns matching the default masks show [MASKED]; others are untouched."""
    tools = make_tools(Settings(), path=secrets_db)
    out = ok(tools.call("query", {"sql": "SELECT id, login, password, ssn FROM accounts"}))
    assert out["rows"][0][:2] == [1, "ada"]
    assert out["rows"][0][2:] == ["[MASKED]", "[MASKED]"]
    assert "hunter2" not in str(out) and "078-05" not in str(out)
    described = ok(tools.call("describe_table", {"name": "accounts"}))
    assert {c["name"] for c in described["columns"] if c["masked"]} == {
        "password",
        "ssn",
        "api_token",
    }


def test_masked_columns_stay_hidden_under_alias_and_expression(
    make_tools: MakeTools, secrets_db: str
) -> None:
    """An alias, an expression, a view or a WHERE clause on a masked column reveals nothing."""
    tools = make_tools(Settings(), path=secrets_db)
    for sql in (
        "SELECT password AS p FROM accounts",
        "SELECT substr(password, 1, 3) AS p FROM accounts",
        "SELECT pw FROM logins",
        "SELECT login AS p FROM accounts WHERE password LIKE 'hunter%'",
    ):
        out = ok(tools.call("query", {"sql": sql}))
        assert "hunter" not in str(out), sql
        assert all(row[0] in (None, "[MASKED]") for row in out["rows"]), sql


def test_extra_mask_patterns(make_tools: MakeTools) -> None:
    """mask_columns adds globs, matched case-insensitively."""
    tools = make_tools(Settings(deny_tables=("users_credentials",), mask_columns=("*EMAIL*",)))
    out = ok(tools.call("query", {"sql": "SELECT email, city FROM customers LIMIT 1"}))
    assert out["rows"][0][0] == "[MASKED]" and out["rows"][0][1] != "[MASKED]"


def test_bad_arguments_are_tool_errors(tools: SqlTools) -> None:
    """Wrong argument shapes are isError results, not crashes."""
    assert text_of(tools.call("query", {"sql": 42})).startswith("invalid arguments")
    assert text_of(tools.call("query", {"sql": "SELECT ?", "params": [{}]})).startswith(
        "invalid arguments"
    )
    assert text_of(tools.call("query", {"sql": "SELECT 1", "x": 1})).startswith("invalid arguments")
    assert tools.call("query", []).get("isError") is True
    with pytest.raises(UnknownTool):
        tools.call("drop_everything", {})


def test_database_errors_are_reported_safely(tools: SqlTools) -> None:
    """A statement the database rejects is `database error: …`."""
    result = tools.call("query", {"sql": "SELECT nosuch FROM orders"})
    assert text_of(result) == "database error: no such column: nosuch"


def test_guard_exception_is_a_denial(tools: SqlTools, monkeypatch: pytest.MonkeyPatch) -> None:
    """A guard that raises denies (fail closed) instead of letting the statement through."""

    def boom(self: object, sql: str, *, argument: str) -> object:
        raise RuntimeError("parser bug")

    monkeypatch.setattr("portcullis.detect.sql.SqlGuard.check", boom)
    result = tools.call("query", {"sql": "SELECT 1"})
    assert text_of(result).startswith("denied (internal-error)")


def test_tool_definitions_have_output_schemas(tools: SqlTools) -> None:
    """Each tool has an input and an output schema, and read-only annotations."""
    names = [t["name"] for t in tools.definitions]
    assert names == ["query", "list_tables", "describe_table", "explain"]
    for tool in tools.definitions:
        assert tool["inputSchema"]["type"] == "object"
        assert tool["outputSchema"]["type"] == "object"
        assert tool["annotations"]["readOnlyHint"] is True
    assert "?" in tools.definitions[0]["description"]


def test_demo_settings_block_credentials() -> None:
    """The demo's default settings block users_credentials."""
    assert "users_credentials" in DEMO_SETTINGS.deny_tables


def test_database_error_messages_are_redacted(
    tools: SqlTools, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database message that quotes a value goes through the redactor as well."""
    from portcullis.servers.sql.backends import DatabaseError

    key = "AKIA" + "QWERTYUIOPASDFGH"

    def fail(*args: object, **kwargs: object) -> None:
        raise DatabaseError(f'invalid input syntax for type integer: "{key}"')

    monkeypatch.setattr(tools._backend, "query", fail)
    text = text_of(tools.call("query", {"sql": "SELECT 1"}))
    assert text.startswith("database error: invalid input syntax") and key not in text


def test_sqlite_guard_accepts_placeholders() -> None:
    """The SQLite guard's probe prepares ? placeholders without values (a regression)."""
    from portcullis.detect.sql import SqlGuard

    guard = SqlGuard("sqlite")
    assert guard.check("SELECT ? + ?", argument="sql").decision == "allow"
    stacked = guard.check("SELECT ?; DROP TABLE t", argument="sql")
    assert stacked.decision == "deny" and stacked.rule == "sql.multiple-statements"
