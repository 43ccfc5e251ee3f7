"""PostgreSQL statements that could unmask a masked column are refused (pure: pglast only)."""

from __future__ import annotations

import pytest

from portcullis.servers.sql.config import DEFAULT_MASKS
from portcullis.servers.sql.masking import masked_use
from portcullis.servers.sql.results import Masker

MASKS = Masker((*DEFAULT_MASKS, "*email*"))


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT email FROM customers",
        "SELECT email AS e, name FROM customers c WHERE id = $1",
        "SELECT * FROM customers",
        "SELECT c.* FROM customers c",
        "SELECT * FROM v_customer_summary",
        "SELECT count(*) FROM orders WHERE EXISTS (SELECT * FROM customers)",
        "SELECT c.name, count(o.id) FROM customers c JOIN orders o ON o.customer_id = c.id "
        "GROUP BY c.name",
        "WITH big AS (SELECT customer_id, sum(quantity) AS q FROM orders GROUP BY 1) "
        "SELECT customer_id, q, rank() OVER (ORDER BY q DESC) FROM big",
        "SELECT n FROM generate_series(1, 3) AS g(n)",
        "EXPLAIN SELECT id, email FROM customers WHERE id = 1",
        "SELECT name, email FROM customers ORDER BY 1",
        "SELECT DISTINCT country FROM customers ORDER BY 1",
        "SELECT id, email AS e FROM customers ORDER BY id DESC",
        "SELECT o.id FROM orders o JOIN products p USING (id) GROUP BY 1",
    ],
)
def test_plain_and_unrelated_statements_pass(sql: str) -> None:
    """Plain masked columns (masked in the result) and queries without them pass."""
    assert masked_use(sql, MASKS) is None


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT upper(email) FROM customers", "masked column email"),
        ("SELECT name FROM customers WHERE email LIKE 'a%'", "masked column email"),
        ("SELECT name FROM customers ORDER BY password_hash", "masked column password_hash"),
        ("SELECT e FROM (SELECT email AS e FROM customers) s", "masked column email"),
        ("WITH t AS (SELECT email FROM customers) SELECT * FROM t", "masked column email"),
        ("SELECT email FROM customers UNION SELECT name FROM customers", "masked column"),
        ("SELECT * FROM customers UNION ALL SELECT * FROM customers", "set operation"),
        ("SELECT c FROM customers c", "whole row"),
        ("SELECT (c).email FROM customers c", "whole row"),
        ("SELECT to_jsonb(customers) FROM customers", "whole row"),
        ("SELECT row_to_json(c.*) FROM customers c", "* as a value"),
        ("SELECT x FROM customers AS c(a, b, x)", "alias list"),
        ("WITH t(a, b, c) AS (SELECT * FROM customers) SELECT c FROM t", "alias list"),
        ("SELEC 1", "could not be checked"),
        # Sorting, grouping and DISTINCT on a masked output column are oracles too.
        ("SELECT name, email FROM customers ORDER BY 2", "position 2"),
        ("SELECT email AS e FROM customers ORDER BY e", "alias of a masked column"),
        ("SELECT email AS e, count(*) FROM customers GROUP BY e", "alias of a masked column"),
        ("SELECT email, count(*) FROM customers GROUP BY ROLLUP (1)", "position 1"),
        ("SELECT name, email FROM customers GROUP BY GROUPING SETS ((1, 2))", "position 2"),
        ("SELECT name, email FROM customers GROUP BY (1, 2)", "position 2"),
        ("SELECT * FROM customers ORDER BY 3", "position 3"),
        ("SELECT id FROM (SELECT * FROM customers ORDER BY 3 LIMIT 1) s", "position 3"),
        ("SELECT DISTINCT email FROM customers", "DISTINCT"),
        ("SELECT DISTINCT ON (1) email, id FROM customers", "position 1"),
        # Joining on a masked column is a WHERE clause in disguise.
        (
            "SELECT id FROM customers NATURAL JOIN (VALUES ('a@example.org')) AS v(email)",
            "NATURAL",
        ),
        (
            "SELECT id FROM customers JOIN (VALUES ('a@example.org')) AS v(email) USING (email)",
            "USING",
        ),
        ("SELECT upper((profile).password) FROM accounts", "masked field password"),
        # A plan's row estimates come from the masked column's statistics.
        ("EXPLAIN SELECT id FROM customers WHERE email = 'a@example.org'", "masked column"),
        ("EXPLAIN SELECT upper(email) FROM customers", "masked column"),
    ],
)
def test_statements_that_could_unmask_are_refused(sql: str, why: str) -> None:
    """Expressions, conditions, subqueries, set operations, whole rows and renames are refused."""
    found = masked_use(sql, MASKS)
    assert found is not None and why in found


def test_postgres_tools_deny_with_the_rule(demo_path: str) -> None:
    """Through the tools, the refusal is a denial naming sql.masked-column."""
    from portcullis.servers.sql.backends import SqliteBackend
    from portcullis.servers.sql.config import Settings
    from portcullis.servers.sql.tools import SqlTools

    backend = SqliteBackend(demo_path, Settings())
    try:
        backend.dialect = "postgres"  # type: ignore[misc]  # the check is chosen by dialect
        tools = SqlTools(backend, Settings(mask_columns=("*email*",)))
        result = tools.call("query", {"sql": "SELECT upper(email) FROM customers"})
        assert result["isError"] is True
        assert result["content"][0]["text"].startswith("denied (sql.masked-column): ")
    finally:
        backend.close()


def test_postgres_explain_tool_checks_masked_columns(demo_path: str) -> None:
    """The explain tool refuses a plan whose estimates come from a masked column's statistics."""
    from portcullis.servers.sql.backends import SqliteBackend
    from portcullis.servers.sql.config import Settings
    from portcullis.servers.sql.tools import SqlTools

    backend = SqliteBackend(demo_path, Settings())
    try:
        backend.dialect = "postgres"  # type: ignore[misc]  # the check is chosen by dialect
        tools = SqlTools(backend, Settings(mask_columns=("*email*",)))
        sql = "SELECT id FROM customers WHERE email = 'a@example.org'"
        result = tools.call("explain", {"sql": sql})
        assert result["isError"] is True
        assert result["content"][0]["text"].startswith("denied (sql.masked-column): ")
    finally:
        backend.close()
