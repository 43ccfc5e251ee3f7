"""The statements the ``portcullis sql`` end-to-end tests send, and the direct-driver answers."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import psycopg

from tests.e2e.sql.conftest import BLOCKED, MASKED, Database

#: Analytics that must work, in SQL both PostgreSQL and SQLite accept; ints and text only, so
#: the server's rows can be compared with the driver's as they are.
ANALYTICS = {
    "join-group": (
        "SELECT c.country, sum(o.quantity * p.price_cents) AS revenue_cents, count(*) AS n "
        "FROM orders o JOIN customers c ON c.id = o.customer_id "
        "JOIN products p ON p.id = o.product_id "
        "WHERE o.status <> 'refunded' GROUP BY c.country ORDER BY revenue_cents DESC, c.country"
    ),
    "cte": (
        "WITH per_customer AS (SELECT customer_id, sum(quantity) AS items FROM orders "
        "WHERE status <> 'refunded' GROUP BY customer_id) "
        "SELECT c.name, pc.items FROM per_customer pc JOIN customers c ON c.id = pc.customer_id "
        "WHERE pc.items > (SELECT avg(items) FROM per_customer) ORDER BY pc.items DESC, c.name"
    ),
    "window-rank": (
        "SELECT customer_id, id, quantity, "
        "rank() OVER (PARTITION BY customer_id ORDER BY quantity DESC, id) AS rnk, "
        "sum(quantity) OVER (PARTITION BY customer_id) AS total "
        "FROM orders ORDER BY customer_id, rnk"
    ),
    "window-running": (
        "SELECT id, sum(quantity) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING "
        "AND CURRENT ROW) AS running, lag(quantity) OVER (ORDER BY id) AS previous "
        "FROM orders ORDER BY id"
    ),
    "recursive-cte": (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) "
        "SELECT sum(i), count(*) FROM n"
    ),
    "month-case-having": (
        "SELECT substr(CAST(o.ordered_at AS TEXT), 1, 7) AS month, "
        "sum(CASE WHEN o.status = 'refunded' THEN 1 ELSE 0 END) AS refunds, count(*) AS n "
        "FROM orders o JOIN products p ON p.id = o.product_id "
        "GROUP BY substr(CAST(o.ordered_at AS TEXT), 1, 7) HAVING count(*) > 5 ORDER BY month"
    ),
}

#: Runs far longer than any test's timeout: 60^6 rows, pure CPU, no memory.
CROSS_JOIN_FOREVER = (
    "SELECT count(*) FROM orders a, orders b, orders c, orders d, orders e, orders f"
)

#: Ways to select a masked column by name: plain, quoted, aliased, star, through a subquery in
#: FROM, a CTE, a view.
MASK_BY_NAME = [
    "SELECT email, phone FROM customers",
    'SELECT "email" FROM customers',
    "SELECT email AS contact, phone AS tel FROM customers",
    "SELECT c.email FROM customers c",
    "SELECT customers.* FROM customers",
    "SELECT * FROM customers JOIN orders ON orders.customer_id = customers.id",
    "SELECT x.contact FROM (SELECT email AS contact FROM customers) x",
    "WITH t(contact) AS (SELECT email FROM customers) SELECT contact FROM t",
    "SELECT * FROM v_customer_summary",
]

_MASK_EXPRESSIONS = [
    "SELECT (SELECT email FROM customers WHERE id = 1) AS one",
    "SELECT name FROM products UNION ALL SELECT email FROM customers",
    "SELECT lower(email), upper(phone) FROM customers",
    "SELECT email || '' FROM customers",
]

#: A masked column inside an expression, a scalar subquery, a later UNION branch, an
#: aggregate or a whole-row value: the column has no name of its own in the result.
MASK_IN_EXPRESSIONS = {
    "postgres": [
        *_MASK_EXPRESSIONS,
        "SELECT string_agg(email, ',') FROM customers",
        "SELECT c FROM customers c",
        "SELECT row_to_json(c) FROM customers c",
        "SELECT to_jsonb(c) FROM customers c",
    ],
    "sqlite": [
        *_MASK_EXPRESSIONS,
        "SELECT group_concat(email) FROM customers",
        "SELECT json_object('e', email) FROM customers",
    ],
}

#: Every way to write, to have a side effect, or to slip a second statement past the guard.
PG_WRITES = [
    "INSERT INTO orders VALUES (999, 1, 1, 1, '2026-01-01', 'paid')",
    "INSERT INTO orders SELECT * FROM orders ON CONFLICT DO NOTHING",
    "UPDATE customers SET name = 'x' WHERE id = 1",
    "DELETE FROM orders",
    "MERGE INTO orders o USING products p ON o.id = p.id WHEN MATCHED THEN DELETE",
    "TRUNCATE orders",
    "DROP TABLE orders",
    "ALTER TABLE orders ADD COLUMN note text",
    "CREATE TABLE scratch (x int)",
    "CREATE TEMP TABLE scratch (x int)",
    "CREATE INDEX ON orders (status)",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE EXTENSION dblink",
    "GRANT SELECT ON sessions TO portcullis_ro",
    "REVOKE SELECT ON orders FROM portcullis_ro",
    "COPY orders TO '/tmp/pc-orders.csv'",
    "COPY orders FROM PROGRAM 'id'",
    "COPY (SELECT * FROM orders) TO STDOUT",
    "SELECT * INTO scratch FROM orders",
    "CREATE TABLE scratch AS SELECT * FROM orders",
    "WITH gone AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM gone",
    "WITH z AS (UPDATE orders SET quantity = 0 RETURNING id) SELECT * FROM z",
    "WITH z AS (INSERT INTO products VALUES (99, 'x', 'y', 1) RETURNING id) SELECT 1",
    "SELECT pg_sleep(5)",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    "SELECT lo_import('/etc/passwd')",
    "SELECT lo_export(1, '/tmp/pc-lo')",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT pg_ls_dir('.')",
    "SELECT * FROM dblink('dbname=portcullis_test', 'DELETE FROM orders') AS t(x text)",
    "SELECT dblink_exec('dbname=portcullis_test', 'DROP TABLE orders')",
    "SELECT nextval('order_numbers')",
    "SELECT pg_terminate_backend(1)",
    "SELECT * FROM orders FOR UPDATE",
    "SELECT * FROM orders FOR SHARE SKIP LOCKED",
    "EXPLAIN ANALYZE DELETE FROM orders",
    "EXPLAIN (ANALYZE) WITH g AS (DELETE FROM orders RETURNING 1) SELECT * FROM g",
    "SET default_transaction_read_only = off",
    "SET ROLE portcullis_owner",
    "SET search_path = public",
    "RESET ALL",
    "BEGIN READ WRITE",
    "START TRANSACTION READ WRITE",
    "COMMIT",
    "COMMIT; DROP TABLE orders",
    "ROLLBACK; DELETE FROM orders",
    "END; DELETE FROM orders",
    "SELECT 1; DELETE FROM orders",
    "SELECT 1; SELECT 2",
    "SELECT 1;DROP TABLE orders;--",
    "DO $$ BEGIN DELETE FROM orders; END $$",
    "CALL some_procedure()",
    "PREPARE p AS DELETE FROM orders",
    "EXECUTE p",
    "DECLARE c CURSOR WITH HOLD FOR SELECT * FROM orders",
    "LOCK TABLE orders",
    "VACUUM orders",
    "ANALYZE orders",
    "CLUSTER orders",
    "REFRESH MATERIALIZED VIEW v_customer_summary",
    "NOTIFY ch, 'x'",
    "LISTEN ch",
    "DISCARD ALL",
    "CHECKPOINT",
    "/* SELECT */ DELETE FROM orders",
    "DELETE/**/FROM orders",
    "  \n\tdelete from ORDERS",
    "SELECT 1 /* ; */ ; DROP TABLE orders",
    "SELECT 1 -- comment\n; DROP TABLE orders",
    "SELECT 1 /* a /* nested */ comment */; DROP TABLE orders",
    "SELECT 'a\\'; DROP TABLE orders; --'",
    "SELECT E'\\''; DROP TABLE orders; --'",
    "SELECT $$ ; $$; DROP TABLE orders",
    "SELECT $q$ $$ $q$; DROP TABLE orders",
]

#: The same for SQLite.
SQLITE_WRITES = [
    "INSERT INTO orders VALUES (999, 1, 1, 1, '2026-01-01', 'paid')",
    "INSERT OR REPLACE INTO products VALUES (1, 'x', 'y', 1)",
    "REPLACE INTO products VALUES (1, 'x', 'y', 1)",
    "INSERT INTO products VALUES (99, 'x', 'y', 1) RETURNING id",
    "WITH x AS (SELECT 1) INSERT INTO products SELECT 99, 'x', 'y', 1 FROM x",
    "UPDATE customers SET name = 'x' WHERE id = 1",
    "UPDATE OR IGNORE customers SET name = 'x'",
    "DELETE FROM orders",
    "DROP TABLE orders",
    "DROP VIEW v_customer_summary",
    "ALTER TABLE orders RENAME TO orders_old",
    "ALTER TABLE orders ADD COLUMN note TEXT",
    "CREATE TABLE scratch (x)",
    "CREATE TEMP TABLE scratch (x)",
    "CREATE TABLE scratch AS SELECT * FROM orders",
    "CREATE INDEX i ON orders (status)",
    "CREATE VIEW v AS SELECT 1",
    "CREATE TRIGGER t AFTER INSERT ON orders BEGIN DELETE FROM orders; END",
    "CREATE VIRTUAL TABLE f USING fts5(x)",
    "ATTACH DATABASE '/tmp/pc-attach.db' AS evil",
    "ATTACH ':memory:' AS evil",
    "DETACH DATABASE main",
    "PRAGMA query_only = 0",
    "PRAGMA query_only = OFF",
    "PRAGMA writable_schema = ON",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA user_version = 7",
    "PRAGMA foreign_keys = OFF",
    "VACUUM",
    "VACUUM INTO '/tmp/pc-copy.db'",
    "REINDEX",
    "ANALYZE",
    "BEGIN IMMEDIATE",
    "BEGIN",
    "COMMIT",
    "SAVEPOINT a",
    "RELEASE a",
    "SELECT load_extension('/tmp/pc-nothing.so')",
    "SELECT writefile('/tmp/pc-x', 'y')",
    "SELECT readfile('/etc/passwd')",
    "SELECT edit('x')",
    "COMMIT; DROP TABLE orders",
    "SELECT 1; DELETE FROM orders",
    "SELECT 1; SELECT 2",
    "SELECT 1;DROP TABLE orders;--",
    "/* SELECT */ DELETE FROM orders",
    "DELETE/**/FROM orders",
    "  \n\tdelete from ORDERS",
    "SELECT 1 /* ; */ ; DROP TABLE orders",
    "SELECT 1 -- comment\n; DROP TABLE orders",
    'SELECT "x"; DROP TABLE orders',
    "SELECT 'a'';'; DROP TABLE orders",
    "SELECT * FROM orders; -- \n DELETE FROM orders",
]


def _plain(value: Any) -> Any:
    return value if isinstance(value, int | str | float | type(None)) else str(value)


def direct_rows(db: Database, sql: str, *, owner: bool = False) -> list[list[Any]]:
    """The rows ``sql`` gives through the driver itself (PostgreSQL: as the RO role)."""
    if db.dialect == "postgres":
        with psycopg.connect(db.owner_url if owner else db.url, autocommit=True) as conn:
            conn.execute("SET search_path = app")
            return [[_plain(v) for v in row] for row in conn.execute(sql).fetchall()]
    assert db.path is not None
    conn = sqlite3.connect(f"file:{db.path}?mode=ro", uri=True)
    try:
        return [[_plain(v) for v in row] for row in conn.execute(sql).fetchall()]
    finally:
        conn.close()


@contextlib.contextmanager
def backend_without_guard(
    db: Database, *, owner: bool = False
) -> Iterator[tuple[Any, Callable[[str], str | None]]]:
    """The server's own database backend, in this process, with no SQL guard in front of it.

    Yields ``(backend, run)``: ``run(sql)`` returns the database's refusal message, or None when
    the statement ran. PostgreSQL connects as ``portcullis_owner`` when ``owner`` (a role that
    may write, so a refusal comes from the read-only transaction alone).
    """
    from portcullis.servers.sql.backends import DatabaseError, open_backend
    from portcullis.servers.sql.config import Settings, Target

    settings = Settings(
        deny_tables=BLOCKED,
        mask_columns=MASKED,
        schema="app",
        timeout_s=10.0,
    )
    if db.dialect == "postgres":
        target = Target("postgres", db.owner_url if owner else db.url, "the test database")
    else:
        target = Target("sqlite", str(db.path), "the test database")
    backend = open_backend(target, settings)

    def run(sql: str) -> str | None:
        try:
            backend.query(sql, (), max_rows=100, max_bytes=100_000)
        except DatabaseError as exc:
            return str(exc) or type(exc).__name__
        return None

    try:
        yield backend, run
    finally:
        backend.close()
