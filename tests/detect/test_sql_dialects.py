"""Read-only SQL guard for SQLite (sqlite3 + sqlglot) and MySQL (sqlglot)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from portcullis.detect.sql import SqlGuard
from portcullis.gateway.pipeline import Allow, Deny

DENY = ["api_keys", "main.sessions"]


@pytest.fixture(scope="module")
def lite() -> SqlGuard:
    return SqlGuard("sqlite", deny_tables=DENY)


@pytest.fixture(scope="module")
def my() -> SqlGuard:
    return SqlGuard("mysql", deny_tables=DENY)


SQLITE_LEGIT = [
    "SELECT 1",
    "SELECT id, name FROM customers WHERE id = 42",
    "SELECT c.name, o.total FROM customers c JOIN orders o ON o.customer_id = c.id",
    "SELECT region, count(*), sum(total), avg(total), total(total) FROM orders GROUP BY region",
    "SELECT id, row_number() OVER (PARTITION BY region ORDER BY total DESC), "
    "lag(total) OVER (ORDER BY id) FROM orders",
    "WITH big AS (SELECT * FROM orders WHERE total > 100) SELECT count(*) FROM big",
    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 5) SELECT x FROM n",
    "SELECT id FROM orders UNION SELECT id FROM refunds",
    "VALUES (1, 'a'), (2, 'b')",
    "SELECT api_keys FROM audit_summary",
    "SELECT 'ATTACH DATABASE x; DROP TABLE api_keys' AS note",
    "SELECT 1 -- ; DROP TABLE orders",
    "SELECT /* ; PRAGMA writable_schema=1 */ 2",
    "SELECT 'a;b' FROM customers /* ; */",
    "SELECT coalesce(name, 'n/a'), ifnull(total, 0), lower(name), upper(name), length(name), "
    "substr(name, 1, 3), trim(name), round(total, 2), abs(total) FROM orders",
    "SELECT date('now'), strftime('%Y', created_at), typeof(total) FROM orders",
    "SELECT * FROM orders WHERE EXISTS (SELECT 1 FROM refunds r WHERE r.order_id = orders.id)",
    "SELECT CASE WHEN total > 9 THEN 'big' END, CAST(total AS TEXT) FROM orders",
    'SELECT "select" FROM "Weird Table"',
    "EXPLAIN QUERY PLAN SELECT * FROM orders",
    "SELECT 1;",
    "SELECT 1; -- done",
    "SELECT DISTINCT region FROM orders ORDER BY region LIMIT 5 OFFSET 1",
    "SELECT group_concat(name, ', '), min(total), max(total) FROM orders GROUP BY region",
    "SELECT o.id FROM orders o LEFT JOIN refunds r ON r.order_id = o.id WHERE r.id IS NULL",
    "SELECT instr(name, 'a'), replace(name, 'a', 'b'), printf('%d', id) FROM orders",
]

SQLITE_ATTACKS = [
    ("ATTACH DATABASE '/tmp/evil.db' AS evil", "sql.not-read-only"),
    ("DETACH DATABASE evil", "sql.not-read-only"),
    ("SELECT load_extension('/tmp/evil.so')", "sql.function"),
    ("SELECT readfile('/etc/passwd')", "sql.function"),
    ("SELECT writefile('/tmp/x', 'data')", "sql.function"),
    ("SELECT fts3_tokenizer('simple', x'4141')", "sql.function"),
    ("PRAGMA writable_schema = 1", "sql.not-read-only"),
    ("PRAGMA writable_schema=ON; UPDATE sqlite_master SET sql = 'x'", "sql.multiple-statements"),
    ("VACUUM INTO '/tmp/copy.db'", "sql.not-read-only"),
    ("SELECT 1; DROP TABLE orders", "sql.multiple-statements"),
    ("SELECT 'x'';'; DELETE FROM orders", "sql.multiple-statements"),
    ("BEGIN; DELETE FROM orders; COMMIT", "sql.multiple-statements"),
    ("COMMIT", "sql.not-read-only"),
    ("DELETE FROM orders", "sql.not-read-only"),
    ("REPLACE INTO orders VALUES (1)", "sql.not-read-only"),
    ("INSERT INTO orders VALUES (1)", "sql.not-read-only"),
    ("WITH x AS (SELECT 1) DELETE FROM orders", "sql.not-read-only"),
    ("CREATE TABLE t AS SELECT * FROM customers", "sql.not-read-only"),
    ("SELECT * FROM api_keys", "sql.denied-table"),
    ('SELECT * FROM "main"."API_KEYS"', "sql.denied-table"),
    ("SELECT * FROM orders WHERE id IN (SELECT id FROM sessions)", "sql.denied-table"),
    ("SELECT 1 FROM orders WHERE EXISTS (SELECT 1 FROM main.api_keys)", "sql.denied-table"),
    ("SELEC 1", "sql.unparseable"),
    ("SELECT * FROM orders WHERE", "sql.unparseable"),
]

MYSQL_LEGIT = [
    "SELECT 1",
    "SELECT id, name FROM customers WHERE id = 42",
    "SELECT c.name, o.total FROM customers c INNER JOIN orders o ON o.customer_id = c.id",
    "SELECT region, COUNT(*), SUM(total), AVG(total) FROM orders GROUP BY region HAVING COUNT(*) > 1",
    "SELECT id, ROW_NUMBER() OVER (PARTITION BY region ORDER BY total DESC), "
    "LAG(total) OVER (ORDER BY id) FROM orders",
    "WITH big AS (SELECT * FROM orders WHERE total > 100) SELECT COUNT(*) FROM big",
    "SELECT id FROM orders UNION ALL SELECT id FROM refunds",
    "SELECT `api_keys`, sessions FROM audit_summary",
    "SELECT 'DROP TABLE api_keys; --' AS note",
    "SELECT 1 -- ; DROP TABLE orders",
    "SELECT /* ; SET GLOBAL x = 1 */ 2",
    "SELECT IFNULL(name, 'n/a'), DATE_FORMAT(created_at, '%Y-%m'), LOWER(name), "
    "GROUP_CONCAT(name), ROUND(total, 2), NOW(), CONCAT(a, b) FROM orders GROUP BY name",
    "SELECT * FROM orders WHERE EXISTS (SELECT 1 FROM refunds r WHERE r.order_id = orders.id)",
    "SELECT * FROM `Weird Table` w WHERE w.`select` IN (1, 2)",
    "EXPLAIN SELECT * FROM orders",
    "SELECT 1;",
    "SELECT @@version, @x",
    "SELECT JSON_EXTRACT(doc, '$.a'), DATE_ADD(created_at, INTERVAL 1 DAY) FROM orders",
]

MYSQL_ATTACKS = [
    ("SELECT SLEEP(10)", "sql.function"),
    ("SELECT BENCHMARK(100000000, MD5('x'))", "sql.function"),
    ("SELECT LOAD_FILE('/etc/passwd')", "sql.function"),
    ("SELECT mydb.my_udf(1)", "sql.function"),
    ("SELECT * INTO OUTFILE '/tmp/x' FROM customers", "sql.unparseable"),
    ("SELECT * FROM orders FOR UPDATE", "sql.not-read-only"),
    ("SELECT * FROM orders LOCK IN SHARE MODE", "sql.not-read-only"),
    ("EXPLAIN ANALYZE SELECT * FROM orders", "sql.not-read-only"),
    ("SELECT 1; DROP TABLE orders", "sql.multiple-statements"),
    ("COMMIT; DROP TABLE orders", "sql.multiple-statements"),
    ("SET GLOBAL general_log = 1", "sql.not-read-only"),
    ("DELETE FROM orders", "sql.not-read-only"),
    ("LOAD DATA INFILE '/etc/passwd' INTO TABLE t", "sql.unparseable"),
    ("SELECT * FROM `API_Keys`", "sql.denied-table"),
    ("SELECT * FROM main.sessions", "sql.denied-table"),
    ("SELECT * FROM orders WHERE id IN (SELECT id FROM api_keys)", "sql.denied-table"),
    ("SELECT @admin := 1", "sql.not-read-only"),
]


@pytest.mark.parametrize("sql", SQLITE_LEGIT)
def test_legitimate_sqlite_is_allowed(lite: SqlGuard, sql: str) -> None:
    """Ordinary SQLite queries pass."""
    verdict = lite.check(sql, argument="sql")
    assert isinstance(verdict, Allow), verdict


@pytest.mark.parametrize(("sql", "rule"), SQLITE_ATTACKS)
def test_sqlite_attack_is_denied(lite: SqlGuard, sql: str, rule: str) -> None:
    """ATTACH, extension loading, PRAGMA writes and stacked statements are denied in SQLite."""
    verdict = lite.check(sql, argument="sql")
    assert isinstance(verdict, Deny), sql
    assert verdict.rule == rule, verdict.reason
    assert verdict.reason.startswith('SQL guard: argument "sql": ')


@pytest.mark.parametrize("sql", MYSQL_LEGIT)
def test_legitimate_mysql_is_allowed(my: SqlGuard, sql: str) -> None:
    """Ordinary MySQL queries pass."""
    verdict = my.check(sql, argument="sql")
    assert isinstance(verdict, Allow), verdict


@pytest.mark.parametrize(("sql", "rule"), MYSQL_ATTACKS)
def test_mysql_attack_is_denied(my: SqlGuard, sql: str, rule: str) -> None:
    """SLEEP/LOAD_FILE abuse, locking, EXPLAIN ANALYZE and writes are denied in MySQL."""
    verdict = my.check(sql, argument="sql")
    assert isinstance(verdict, Deny), sql
    assert verdict.rule == rule, verdict.reason


def test_each_dialect_has_more_legitimate_cases_than_attacks() -> None:
    """Legitimate cases are not outnumbered by attacks in any dialect."""
    from tests.detect.test_sql import ATTACKS, LEGIT

    assert len(LEGIT) >= len(ATTACKS)
    assert len(SQLITE_LEGIT) >= len(SQLITE_ATTACKS)
    assert len(MYSQL_LEGIT) >= len(MYSQL_ATTACKS)


def test_sqlite_probe_never_executes(tmp_path: Path) -> None:
    """Checking an attack leaves no trace: nothing is attached, written or created."""
    target = tmp_path / "evil.db"
    guard = SqlGuard("sqlite")
    for sql in (
        f"ATTACH DATABASE '{target}' AS evil",
        f"VACUUM INTO '{target}'",
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT x FROM n",
    ):
        guard.check(sql, argument="sql")
    assert not target.exists()


def test_allowed_sqlite_queries_run_on_a_real_database(lite: SqlGuard) -> None:
    """What the guard allows is real SQLite that runs against the schema it names."""
    conn = sqlite3.connect(":memory:")
    conn.executescript(
        "CREATE TABLE customers(id INTEGER, name TEXT);"
        "CREATE TABLE orders(id INTEGER, customer_id INTEGER, region TEXT, total REAL,"
        " created_at TEXT, name TEXT);"
        "CREATE TABLE refunds(id INTEGER, order_id INTEGER);"
        "CREATE TABLE audit_summary(api_keys INTEGER);"
        'CREATE TABLE "Weird Table"("select" INTEGER);'
    )
    for sql in SQLITE_LEGIT:
        assert lite.check(sql, argument="sql").decision == "allow"
        conn.execute(sql).fetchall()


def test_sqlglot_command_fallback_is_denied() -> None:
    """Syntax sqlglot cannot model falls back to Command, which is never allowed."""
    guard = SqlGuard("mysql")
    verdict = guard.check("HANDLER orders OPEN", argument="q")
    assert verdict.decision == "deny"
    verdict = SqlGuard("duckdb").check("INSTALL httpfs", argument="q")
    assert verdict.decision == "deny"


def test_mysql_executable_comment_is_denied(my: SqlGuard) -> None:
    """MySQL runs /*! ... */ comments, which sqlglot would skip, so they are refused."""
    verdict = my.check("SELECT 1 /*!50000 , (SELECT key FROM api_keys) */", argument="sql")
    assert verdict.rule == "sql.ambiguous"
    assert my.check("SELECT 1 /*+ MAX_EXECUTION_TIME(1000) */", argument="sql").decision == "allow"


def test_sqlite_read_only_false_allows_writes_without_running_them(tmp_path: Path) -> None:
    """With read_only off, writes pass the guard, and the probe still never executes them."""
    target = tmp_path / "attached.db"
    guard = SqlGuard("sqlite", read_only=False, deny_tables=["api_keys"])
    assert guard.check(f"ATTACH DATABASE '{target}' AS a", argument="sql").decision == "allow"
    assert guard.check("CREATE TABLE t(a)", argument="sql").decision == "allow"
    assert guard.check("CREATE TABLE t(a)", argument="sql").decision == "allow"
    assert guard.check("DELETE FROM api_keys", argument="sql").rule == "sql.denied-table"
    assert guard.check("SELECT readfile('x')", argument="sql").rule == "sql.function"
    assert not target.exists()


@pytest.mark.parametrize("dialect", ["postgres", "sqlite", "mysql"])
def test_oversized_and_semicolon_heavy_input_is_denied_quickly(dialect: str) -> None:
    """Huge values are refused by length; many quoted semicolons cannot make splitting slow."""
    import time

    guard = SqlGuard(dialect)
    assert guard.check("SELECT '" + "x" * 300_000 + "'", argument="sql").rule == "sql.too-long"
    start = time.perf_counter()
    verdict = guard.check("SELECT '" + ";" * 150_000 + "'", argument="sql")
    assert time.perf_counter() - start < 5
    assert verdict.decision in ("allow", "deny")
