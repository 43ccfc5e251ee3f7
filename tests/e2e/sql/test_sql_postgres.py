"""``portcullis sql`` against PostgreSQL, end to end through the SDK client.

The cluster is scripts/pg-test-server.sh's (see conftest.py): the server connects as
``portcullis_ro``, which may only SELECT from customers, products, orders and
v_customer_summary, in read-only transactions by default.
"""

from __future__ import annotations

import re

import psycopg
import pytest

from tests.e2e.sql.cases import (
    ANALYTICS,
    CROSS_JOIN_FOREVER,
    MASK_BY_NAME,
    MASK_IN_EXPRESSIONS,
    PG_WRITES,
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


@pytest.mark.parametrize("name", sorted(ANALYTICS))
async def test_analytics_query_matches_the_driver(sql: SqlServer, pg: Database, name: str) -> None:
    """Joins, CTEs, window functions and recursion give the rows psycopg gives directly."""
    text = ANALYTICS[name]
    async with sql.session(pg) as s:
        got = await s.query(text)
    assert got.rows == direct_rows(pg, text)
    assert got.structured is not None
    assert got.structured["row_count"] == len(got.rows)
    assert got.structured["truncated"] is False


async def test_parameters_are_bound(sql: SqlServer, pg: Database) -> None:
    """``params`` binds $1, $2 as values, never as SQL text."""
    text = "SELECT id, quantity FROM orders WHERE customer_id = $1 AND status = $2 ORDER BY id"
    async with sql.session(pg) as s:
        got = await s.rows(text, [4, "paid"])
        injected = await s.rows("SELECT count(*) FROM orders WHERE status = $1", ["x' OR '1'='1"])
    want = direct_rows(
        pg, "SELECT id, quantity FROM orders WHERE customer_id = 4 AND status = 'paid' ORDER BY id"
    )
    assert got == want
    assert len(got) > 1
    assert injected == [[0]]


async def test_result_shape_and_table(sql: SqlServer, pg: Database) -> None:
    """A result has typed columns, rows, row_count and truncated, and a text table."""
    async with sql.session(pg) as s:
        got = await s.query("SELECT id, name FROM products WHERE id <= 2 ORDER BY id")
    assert got.columns == ["id", "name"]
    assert got.rows == [[1, "Keyboard"], [2, "Mouse"]]
    assert got.structured is not None
    assert all(isinstance(c.get("type"), str) for c in got.structured["columns"])
    assert "Keyboard" in got.text and "Mouse" in got.text


async def test_list_describe_explain(sql: SqlServer, pg: Database) -> None:
    """list_tables, describe_table and explain answer for the allowed tables."""
    async with sql.session(pg) as s:
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
    assert "Scan" in plan.text


async def test_every_write_path_is_refused_by_the_guard(sql: SqlServer, pg: Database) -> None:
    """Every write, side effect and bypass is denied by the guard, and nothing changed."""
    async with sql.session(pg) as s:
        before = await s.rows("SELECT count(*), sum(quantity) FROM orders")
        not_denied = []
        for text in PG_WRITES:
            got = await s.query(text)
            if not (got.is_error and got.text.startswith("denied (")):
                not_denied.append((text, got.text[:200]))
        for text in ("DELETE FROM orders", "SELECT 1; DROP TABLE orders", "SELECT pg_sleep(1)"):
            assert_denied(await s.call("explain", sql=text))
        after = await s.rows("SELECT count(*), sum(quantity) FROM orders")
        names = await s.rows("SELECT name FROM customers WHERE id = 1")
    assert not_denied == []
    assert after == before
    assert names == [["Ada Lovelace"]]
    assert direct_rows(pg, "SELECT count(*) FROM orders", owner=True) == [[60]]


async def test_stacked_and_commit_bypasses_name_the_rule(sql: SqlServer, pg: Database) -> None:
    """``COMMIT; DROP`` and stacked statements are denied as multiple statements."""
    async with sql.session(pg) as s:
        for text in ("COMMIT; DROP TABLE orders", "SELECT 1; DELETE FROM orders"):
            assert_refused(await s.query(text), rule="sql.multiple-statements")
        assert_refused(await s.query("SELECT pg_sleep(1)"), rule="sql.function")
        assert_refused(await s.query("DELETE FROM orders"), rule="sql.not-read-only")


async def test_blocked_tables_are_invisible(sql: SqlServer, pg: Database) -> None:
    """Blocked tables appear in no tool: list, describe, query (however written), explain."""
    async with sql.session(pg) as s:
        listed = await s.call("list_tables")
        assert not listed.is_error, listed.text
        # A blocked table is answered for exactly as a table that does not exist.
        absent = await s.call("describe_table", name="no_such_table")
        for table in BLOCKED:
            hidden = await s.call("describe_table", name=table)
            assert hidden.text.replace(table, "T") == absent.text.replace("no_such_table", "T")
        for table in BLOCKED:
            assert_refused(await s.call("describe_table", name=table))
            assert_refused(await s.call("describe_table", name=f"app.{table}"))
            assert_denied(await s.query(f"SELECT * FROM {table}"))
            assert_denied(await s.query(f'SELECT * FROM app."{table}"'))
            assert_denied(await s.call("explain", sql=f"SELECT * FROM {table}"))
        assert_denied(
            await s.query(
                "SELECT c.name, (SELECT api_token FROM users_credentials u "
                "WHERE u.customer_id = c.id) FROM customers c"
            )
        )
        assert_denied(
            await s.query(
                "WITH k AS (SELECT * FROM api_keys) SELECT * FROM customers JOIN k USING (id)"
            )
        )
        # A view over a blocked table: refused (the server follows views, and the role has no SELECT on it).
        assert_refused(await s.query("SELECT * FROM v_active_sessions"))
        seen = s.seen
    assert listed.structured is not None
    names = {t["name"].lower() for t in listed.structured["tables"]}
    assert {"customers", "orders", "products"} <= names
    assert names.isdisjoint(BLOCKED)
    assert not re.search(r"\b(users_credentials|api_keys|sessions)\b", listed.text)
    assert_never_shown([*seen, sql.stderr()], SECRET_MARK, "password_hash", "api_token")


async def test_masked_columns_never_appear(sql: SqlServer, pg: Database) -> None:
    """Masked columns come out masked however they are selected, or the query is refused."""
    async with sql.session(pg) as s:
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


@pytest.mark.parametrize("text", MASK_IN_EXPRESSIONS["postgres"])
async def test_masked_column_inside_an_expression_never_appears(
    sql: SqlServer, pg: Database, text: str
) -> None:
    """A masked column inside an expression, subquery, UNION or whole row stays hidden."""
    async with sql.session(pg) as s:
        await s.query(text)
        seen = s.seen
    assert_never_shown([*seen, sql.stderr()], *MASKED_VALUES)


async def test_results_are_redacted_and_masked_by_name(sql: SqlServer, pg: Database) -> None:
    """The redactor runs on every result; built-in mask names apply to computed columns too."""
    async with sql.session(pg) as s:
        got = await s.query("SELECT 'key AKIAZ7Q3XK2M4N5P6R7T' AS note, 'hunter2' AS db_password")
        seen = s.seen
    assert not got.is_error, got.text
    assert "[REDACTED:aws-access-key-id]" in got.text
    assert_never_shown(seen, "AKIAZ7Q3XK2M4N5P6R7T", "hunter2")


async def test_timeout_stops_a_heavy_query(sql: SqlServer, pg: Database) -> None:
    """A query over ``timeout_s`` is stopped with a clear error; the next one works."""
    async with sql.session(pg, timeout_s=1) as s:
        slow = await s.query(CROSS_JOIN_FOREVER)
        after = await s.rows("SELECT count(*) FROM orders")
    assert slow.is_error
    assert re.search(r"time(d)?[ -]?out|statement timeout|cancel", slow.text, re.IGNORECASE), (
        slow.text
    )
    assert after == [[60]]


async def test_row_and_byte_caps_truncate(sql: SqlServer, pg: Database) -> None:
    """``max_rows`` and ``max_bytes`` cut the result and say so."""
    async with sql.session(pg, max_rows=5) as s:
        rows = await s.query("SELECT id FROM orders ORDER BY id")
    async with sql.session(pg, max_bytes=400) as s:
        sized = await s.query("SELECT * FROM orders ORDER BY id")
    assert rows.rows == [[1], [2], [3], [4], [5]]
    assert rows.structured is not None and rows.structured["truncated"] is True
    assert "truncated" in rows.text.lower()
    assert 0 < len(sized.rows) < 60
    assert sized.structured is not None and sized.structured["truncated"] is True
    assert "truncated" in sized.text.lower()


async def test_errors_are_clear_and_leak_no_url(sql: SqlServer, pg: Database) -> None:
    """Syntax errors give the position; database errors never show the URL or password."""
    async with sql.session(pg) as s:
        syntax = await s.query("SELECT id FROM orders WHERE WHERE status = 'paid'")
        missing = await s.query("SELECT no_such_column FROM orders")
        failed = await s.query("SELECT 1 / (id - id) FROM orders")
        seen = s.seen
    assert syntax.is_error
    assert re.search(r"(position|index|character|line|column) \d", syntax.text), syntax.text
    assert missing.is_error and "no_such_column" in missing.text
    assert failed.is_error and failed.text.startswith("database error: ")
    assert "division by zero" in failed.text
    assert_never_shown([*seen, sql.stderr()], *pg.secrets)


async def test_unreachable_database_leaks_no_url(sql: SqlServer, pg: Database) -> None:
    """A wrong password or a closed port is reported without the URL or the password."""
    wrong = re.sub(r":[^:@/]+@", ":pcro-wrong-password-6f1d@", pg.url)
    closed = re.sub(r"@127\.0\.0\.1:\d+/", "@127.0.0.1:1/", pg.url)
    for url in (wrong, closed):
        db = Database(
            dialect="postgres", args=pg.args, env={"PORTCULLIS_TEST_DB_URL": url}, url=url
        )
        seen: list[str] = []
        try:
            async with sql.session(db) as s:
                got = await s.query("SELECT 1")
                assert got.is_error
                seen = s.seen
        except Exception as exc:  # a server that refuses to start is fine; its words are checked
            seen = [str(exc)]
        said = [*seen, sql.stderr()]
        assert_never_shown(said, url, "pcro-wrong-password-6f1d", _pw(pg.url))
        assert re.search(r"cannot connect|connection|database error", "\n".join(said)), said


def _pw(url: str) -> str:
    return url.split("://", 1)[1].rsplit("@", 1)[0].split(":", 1)[1]


async def test_startup_warns_about_a_role_that_can_write(sql: SqlServer, pg: Database) -> None:
    """Connected as a role that owns tables, the server warns at start; as portcullis_ro not."""
    async with sql.session(pg) as s:
        assert await s.rows("SELECT 1") == [[1]]
    ro_err = sql.stderr()
    owner = Database(
        dialect="postgres",
        args=pg.args,
        env={"PORTCULLIS_TEST_DB_URL": pg.owner_url},
        url=pg.owner_url,
    )
    async with sql.session(owner) as s:
        assert await s.rows("SELECT count(*) FROM orders") == [[60]]
    owner_err = sql.stderr()[len(ro_err) :]
    assert re.search(r"warn", owner_err, re.IGNORECASE), owner_err
    assert re.search(r"\bown|writ|insert|update|delete", owner_err, re.IGNORECASE), owner_err
    assert not re.search(r"\bown|can writ|superuser", ro_err, re.IGNORECASE), ro_err
    assert_never_shown([ro_err, owner_err], *pg.secrets)


# Writes the database layer must refuse on its own (the guard is not there to see them).
DB_LAYER_WRITES = [
    "INSERT INTO orders VALUES (999, 1, 1, 1, '2026-01-01', 'paid')",
    "UPDATE customers SET name = 'x'",
    "DELETE FROM orders",
    "TRUNCATE orders",
    "DROP TABLE orders",
    "ALTER TABLE orders ADD COLUMN note text",
    "CREATE TABLE scratch (x int)",
    "GRANT SELECT ON sessions TO portcullis_ro",
    "SELECT * INTO scratch FROM orders",
    "WITH gone AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM gone",
    "SELECT nextval('order_numbers')",
    "COMMIT; DROP TABLE orders",
    "ROLLBACK; DELETE FROM orders",
    "SELECT 1; DELETE FROM orders",
    "COPY orders TO '/tmp/pc-pg-orders.csv'",
    "SELECT * FROM orders FOR UPDATE",
]


@pytest.mark.parametrize("role", ["owner", "ro"])
def test_database_refuses_writes_without_the_guard(pg: Database, role: str) -> None:
    """With no guard in front, the server's backend cannot write, even as the owning role."""
    with backend_without_guard(pg, owner=role == "owner") as (_backend, run):
        refusals = {text: run(text) for text in DB_LAYER_WRITES}
        # Settings a statement may change do not open a read-write transaction either.
        for change in (
            "SELECT set_config('default_transaction_read_only', 'off', false)",
            "SELECT set_config('transaction_read_only', 'off', false)",
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
            "SET default_transaction_read_only = off",
        ):
            run(change)
            assert run("DELETE FROM orders") is not None, change
    assert [text for text, refusal in refusals.items() if refusal is None] == []
    # The owner may write: what stops it is the read-only transaction.
    assert "read-only transaction" in str(refusals["DELETE FROM orders"])
    assert_never_shown([str(r) for r in refusals.values()], *pg.secrets)
    assert direct_rows(pg, "SELECT count(*) FROM orders", owner=True) == [[60]]
    assert direct_rows(pg, "SELECT name FROM customers WHERE id = 1", owner=True) == [
        ["Ada Lovelace"]
    ]
    assert direct_rows(pg, "SELECT to_regclass('app.scratch') IS NULL", owner=True) == [[True]]


def test_every_query_runs_in_a_pinned_read_only_transaction(pg: Database) -> None:
    """The backend's transaction is READ ONLY, with the timeouts and the pinned search_path."""
    with backend_without_guard(pg, owner=True) as (backend, _run):
        fetched = backend.query(
            "SELECT current_setting('transaction_read_only'), "
            "current_setting('statement_timeout'), "
            "current_setting('idle_in_transaction_session_timeout'), "
            "current_setting('search_path')",
            (),
            max_rows=10,
            max_bytes=10_000,
        )
    read_only, statement_timeout, idle_timeout, search_path = fetched.rows[0]
    assert read_only == "on"
    assert statement_timeout == "10s"
    assert idle_timeout not in ("0", "")
    assert [p.strip() for p in search_path.split(",")][:2] == ["pg_catalog", "app"]


@pytest.mark.parametrize(
    "text",
    [
        "INSERT INTO orders VALUES (999, 1, 1, 1, '2026-01-01', 'paid')",
        "DELETE FROM orders",
        "CREATE TABLE app.scratch (x int)",
        "SELECT * FROM sessions",
        "SELECT * FROM v_active_sessions",
    ],
)
def test_read_only_role_lacks_privileges(pg: Database, text: str) -> None:
    """Even in a read-write transaction, portcullis_ro may not write nor read blocked tables."""
    with psycopg.connect(pg.url) as conn:
        conn.execute("SET TRANSACTION READ WRITE")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(text)
