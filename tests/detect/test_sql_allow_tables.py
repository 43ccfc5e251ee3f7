"""`sql.allow_tables`: only the listed tables, and the tables a statement reads."""

from __future__ import annotations

import pytest

from portcullis.detect.sql import SqlGuard
from portcullis.detect.verdicts import Allow, Deny

DIALECTS = ["postgres", "sqlite", "mysql"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_listed_table_is_allowed(dialect: str) -> None:
    """A statement reading only listed tables is allowed."""
    guard = SqlGuard(dialect, allow_tables=["orders", "customers"])
    verdict = guard.check("SELECT * FROM orders JOIN customers ON 1 = 1", argument="sql")
    assert isinstance(verdict, Allow)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_unlisted_table_is_denied_by_name(dialect: str) -> None:
    """A table not in allow_tables is denied with sql.table-not-allowed, naming the table."""
    guard = SqlGuard(dialect, allow_tables=["orders"])
    verdict = guard.check("SELECT o.id FROM orders o, secrets s", argument="sql")
    assert isinstance(verdict, Deny)
    assert verdict.rule == "sql.table-not-allowed"
    assert "table secrets" in verdict.reason
    assert 'argument "sql"' in verdict.reason


@pytest.mark.parametrize("dialect", DIALECTS)
def test_subquery_tables_count(dialect: str) -> None:
    """A table read in a subquery must be listed too."""
    guard = SqlGuard(dialect, allow_tables=["orders"])
    sql = "SELECT * FROM orders WHERE id IN (SELECT order_id FROM refunds)"
    verdict = guard.check(sql, argument="sql")
    assert isinstance(verdict, Deny)
    assert "refunds" in verdict.reason


@pytest.mark.parametrize("dialect", DIALECTS)
def test_cte_name_is_not_a_table(dialect: str) -> None:
    """A WITH query's name is not a table: referring to it needs no allow_tables entry."""
    guard = SqlGuard(dialect, allow_tables=["orders"])
    sql = "WITH recent AS (SELECT * FROM orders) SELECT * FROM recent"
    verdict, tables = guard.inspect(sql, argument="sql")
    assert isinstance(verdict, Allow)
    assert tables == ("orders",)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_earlier_cte_cannot_borrow_a_later_name(dialect: str) -> None:
    """In a non-recursive WITH, a name defined later is the real table for earlier CTEs."""
    guard = SqlGuard(dialect, allow_tables=["orders"])
    sql = "WITH a AS (SELECT * FROM secrets), secrets AS (SELECT 1) SELECT * FROM a"
    verdict = guard.check(sql, argument="sql")
    assert isinstance(verdict, Deny)
    assert verdict.rule == "sql.table-not-allowed"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_cte_scope_does_not_leak_to_outer_query(dialect: str) -> None:
    """A CTE defined inside a subquery does not hide the outer query's table of that name."""
    guard = SqlGuard(dialect, allow_tables=["orders"])
    sql = "SELECT * FROM secrets, (WITH secrets AS (SELECT 1 AS x) SELECT x FROM secrets) s"
    verdict = guard.check(sql, argument="sql")
    assert isinstance(verdict, Deny)
    assert "secrets" in verdict.reason


def test_globs_and_schemas_match_case_insensitively() -> None:
    """Entries are globs; names are compared lower-case; a qualified entry needs that schema."""
    guard = SqlGuard("postgres", allow_tables=["public.report_*"])
    assert isinstance(guard.check("SELECT * FROM Public.Report_2024", argument="q"), Allow)
    assert isinstance(guard.check("SELECT * FROM report_x", argument="q"), Allow)
    denied = guard.check("SELECT * FROM private.report_x", argument="q")
    assert isinstance(denied, Deny)
    assert denied.rule == "sql.table-not-allowed"


def test_deny_tables_still_wins() -> None:
    """A table in both lists is denied by deny_tables."""
    guard = SqlGuard("postgres", allow_tables=["*"], deny_tables=["api_keys"])
    verdict = guard.check("SELECT * FROM api_keys", argument="sql")
    assert isinstance(verdict, Deny)
    assert verdict.rule == "sql.denied-table"


def test_empty_allow_tables_allows_any_table() -> None:
    """Without allow_tables any table deny_tables does not name is allowed."""
    guard = SqlGuard("postgres")
    assert isinstance(guard.check("SELECT * FROM anything", argument="sql"), Allow)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_inspect_reports_tables_from_one_parse(dialect: str) -> None:
    """inspect() returns the verdict and the tables read, lower-case, qualified, deduplicated."""
    guard = SqlGuard(dialect)
    sql = "SELECT * FROM Sales.Orders o JOIN customers c ON 1 = 1 JOIN customers d ON 1 = 1"
    verdict, tables = guard.inspect(sql, argument="sql")
    assert isinstance(verdict, Allow)
    assert tables == ("sales.orders", "customers")


def test_inspect_reports_tables_of_a_denied_statement() -> None:
    """A would-be denial still says which tables it read (observe mode records them)."""
    guard = SqlGuard("postgres", deny_tables=["secrets"])
    verdict, tables = guard.inspect("SELECT * FROM secrets", argument="sql")
    assert isinstance(verdict, Deny)
    assert tables == ("secrets",)


def test_inspect_without_tables_collects_none() -> None:
    """inspect(tables=False) is check() with an empty table list."""
    guard = SqlGuard("postgres")
    verdict, tables = guard.inspect("SELECT * FROM t", argument="sql", tables=False)
    assert isinstance(verdict, Allow)
    assert tables == ()


def test_unparseable_statement_reads_no_tables() -> None:
    """A statement that does not parse is denied and reports no tables."""
    guard = SqlGuard("postgres", allow_tables=["t"])
    verdict, tables = guard.inspect("SELEC * FRM t", argument="sql")
    assert isinstance(verdict, Deny)
    assert verdict.rule == "sql.unparseable"
    assert tables == ()
