"""The PostgreSQL backend of ``portcullis sql`` (psycopg 3): the database enforces read-only.

Every statement the model sends runs alone in its own transaction, opened with one round trip::

    BEGIN READ ONLY;
    SET LOCAL statement_timeout = …; SET LOCAL lock_timeout = …;
    SET LOCAL idle_in_transaction_session_timeout = …;
    SET LOCAL search_path = pg_catalog, <schema>, pg_temp

and is always rolled back. ``pg_catalog`` comes first so that no table or function in a user
schema can shadow a built-in the guard allowed (``lower``, ``count``, an operator), and
``pg_temp`` comes last so a temporary object never shadows anything (left out, it would be
searched first). The model's statement is sent with the extended query protocol, always, even
without parameters: that protocol carries exactly one statement, so ``COMMIT; DROP …`` cannot
end the read-only transaction and run a write after it, even with the guard removed. Rows come
through a server-side cursor and are fetched in chunks up to the caps. The session also has
``default_transaction_read_only = on``. The connection runs in autocommit mode only so that
psycopg sends no ``BEGIN`` of its own: the transaction is the explicit one above.

Messages never hold the connection URL or its password (:meth:`PostgresBackend._scrub`).
"""

from __future__ import annotations

import contextlib
import re
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from portcullis._exceptions import ConfigError
from portcullis.servers.sql.backends import ColumnInfo, DatabaseError, QueryTimeout, TableRef
from portcullis.servers.sql.config import Settings, Target
from portcullis.servers.sql.results import Column, Fetched, fetch_capped

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresBackend"]

_KINDS = {"r": "table", "p": "table", "v": "view", "m": "materialized view", "f": "foreign table"}
_TABLES = """
SELECT n.nspname, c.relname, c.relkind
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')
  AND (pg_catalog.has_table_privilege(c.oid, 'SELECT')
       OR pg_catalog.has_any_column_privilege(c.oid, 'SELECT'))
ORDER BY 1, 2
"""
_COLUMNS = """
SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
       EXISTS (SELECT 1 FROM pg_catalog.pg_index i
               WHERE i.indrelid = c.oid AND i.indisprimary AND a.attnum = ANY (i.indkey))
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
  AND pg_catalog.has_column_privilege(c.oid, a.attnum, 'SELECT')
ORDER BY a.attnum
"""
_ROLE = """
SELECT current_user, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls,
       pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE')
FROM pg_catalog.pg_roles r WHERE r.rolname = current_user
"""
_WRITABLE = """
SELECT n.nspname || '.' || c.relname
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  AND (pg_catalog.has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
       OR pg_catalog.has_any_column_privilege(c.oid, 'INSERT, UPDATE'))
ORDER BY 1 LIMIT 6
"""
_OWNED = """
SELECT n.nspname || '.' || c.relname
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  AND pg_catalog.pg_has_role(c.relowner, 'USAGE')
ORDER BY 1 LIMIT 6
"""
_CREATE_SCHEMAS = """
SELECT n.nspname FROM pg_catalog.pg_namespace n
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  AND pg_catalog.has_schema_privilege(n.oid, 'CREATE')
ORDER BY 1 LIMIT 6
"""
# Views and materialized views that read a blocked table, through any chain of views, and the
# partitions and inheritance children of a blocked table: each holds the blocked rows under
# another name (`SELECT * FROM users_credentials_2025` reads a partition directly).
_VIEWS_OVER = """
WITH RECURSIVE blocked(oid) AS (
  SELECT c.oid FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE lower(c.relname) = ANY ($1) AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  UNION
  SELECT x.oid FROM blocked b, LATERAL (
    SELECT r.ev_class FROM pg_catalog.pg_rewrite r
    JOIN pg_catalog.pg_depend d
      ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid
    WHERE d.refobjid = b.oid AND r.ev_class <> b.oid
    UNION ALL
    SELECT i.inhrelid FROM pg_catalog.pg_inherits i WHERE i.inhparent = b.oid
  ) AS x(oid)
)
SELECT n.nspname, c.relname FROM blocked b
JOIN pg_catalog.pg_class c ON c.oid = b.oid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('v', 'm', 'r', 'p', 'f') AND NOT lower(c.relname) = ANY ($1)
ORDER BY 1, 2
"""
_BAD_TOKEN = re.compile(r'invalid percent-encoded token: "[^"]*"?')
_decode_json = msgspec.json.decode


def _is_query(sql: str) -> bool:
    """Whether ``sql`` is a query (SELECT, WITH … SELECT, VALUES, TABLE) by PostgreSQL's grammar.

    A query goes through a server-side cursor. A regular expression over the first word was
    fooled by nested comments (``/* /* */ */ SELECT …``), which sent a SELECT down the path
    that loads the whole result into memory. Text that does not parse counts as a query: the
    DECLARE then fails, which is safe.
    """
    from pglast.parser import parse_sql_json

    try:
        stmts = _decode_json(parse_sql_json(sql)).get("stmts") or []
    except Exception:
        return True
    return len(stmts) != 1 or "SelectStmt" in (stmts[0].get("stmt") or {})


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:5])
    return shown + (", …" if len(items) > 5 else "")


class PostgresBackend:
    """One connection, one read-only transaction per statement, always rolled back."""

    dialect = "postgres"

    def __init__(self, target: Target, settings: Settings) -> None:
        import psycopg
        from psycopg import sql as pgsql

        self.label = target.label
        self._url = target.url
        self._secrets = self._find_secrets(target.url)
        self._timeout = settings.timeout_s
        self._deny = settings.deny_tables
        self._psycopg = psycopg
        self._conn = self._connect()
        schemas = [settings.schema] if settings.schema else self._role_schemas()
        path = pgsql.SQL(", ").join(
            [pgsql.Identifier("pg_catalog"), *map(pgsql.Identifier, schemas), pgsql.SQL("pg_temp")]
        )
        ms = max(1, int(settings.timeout_s * 1000))
        prelude = pgsql.SQL(
            "BEGIN READ ONLY; SET LOCAL statement_timeout = {ms}; SET LOCAL lock_timeout = {ms}; "
            "SET LOCAL idle_in_transaction_session_timeout = {idle}; SET LOCAL search_path = {path}"
        ).format(ms=pgsql.Literal(ms), idle=pgsql.Literal(ms * 2 + 1000), path=path)
        self._prelude = prelude.as_bytes(self._conn)
        self._types: dict[int, str] = {}
        self._attnames: dict[tuple[int, int], str | None] = {}
        self._counter = 0

    @staticmethod
    def _find_secrets(url: str) -> list[str]:
        found = [url]
        try:
            from psycopg.conninfo import conninfo_to_dict

            password = conninfo_to_dict(url).get("password")
        except Exception:
            password = None
        if password:
            found.append(str(password))
        # The password as written in the URL, read without libpq: when the URL does not parse
        # (`invalid percent-encoded token: "<password>%zz"`), libpq quotes it raw.
        rest = url.split("://", 1)[-1]
        userinfo = rest.split("/", 1)[0].rpartition("@")[0]
        if ":" in userinfo:
            raw = userinfo.split(":", 1)[1]
            found += [raw, urllib.parse.unquote(raw)]
        query = rest.partition("?")[2]
        for key, value in urllib.parse.parse_qsl(query, keep_blank_values=False):
            if key.lower() in ("password", "sslpassword"):
                found.append(value)
        # Longest first, so a secret's prefix never leaves the rest of it behind.
        return sorted({s for s in found if s}, key=len, reverse=True)

    def _scrub(self, text: str) -> str:
        # A token that fails percent-decoding may come from anywhere in the URL.
        text = _BAD_TOKEN.sub("invalid percent-encoded token in the URL", text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        # Any other URL with credentials (a hint in a libpq message) loses them too.
        return re.sub(r"(\w+://)[^/@\s]*@", r"\1***@", text)

    def _connect(self) -> psycopg.Connection[Any]:
        pg = self._psycopg
        try:
            conn: psycopg.Connection[Any] = pg.connect(
                self._url,
                autocommit=True,
                connect_timeout=max(2, int(self._timeout)),
                application_name="portcullis-sql",
            )
            conn.execute("SET default_transaction_read_only = on")
        except pg.Error as exc:
            reason = self._scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            raise ConfigError(f"cannot connect to {self.label}: {reason}") from None
        return conn

    def _role_schemas(self) -> list[str]:
        row = self._conn.execute("SELECT pg_catalog.current_schemas(false)").fetchone()
        schemas = list(row[0]) if row and row[0] else []
        return schemas or ["public"]

    # ---- one transaction per statement ------------------------------------------------------

    def _begin(self) -> None:
        pq = self._psycopg.pq
        conn = self._conn
        if conn.closed or conn.broken or conn.pgconn.status != pq.ConnStatus.OK:
            self._reconnect()
        res = self._exec_prelude()
        if res is None or (
            res.status != pq.ExecStatus.COMMAND_OK and self._conn.pgconn.status != pq.ConnStatus.OK
        ):
            # The connection died while idle (a server restart, a proxy's idle timeout): no
            # statement of the model's has run yet, so open a new one and start again.
            self._reconnect()
            res = self._exec_prelude()
        if res is None or res.status != pq.ExecStatus.COMMAND_OK:
            raw = res.error_message if res is not None else b""
            message = (raw or b"").decode("utf-8", "replace").strip().splitlines()
            self._rollback()
            text = message[0] if message else "could not start a read-only transaction"
            raise DatabaseError(self._scrub(text))

    def _exec_prelude(self) -> Any:
        try:
            return self._conn.pgconn.exec_(self._prelude)
        except self._psycopg.Error:
            return None

    def _reconnect(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()
        try:
            self._conn = self._connect()
        except ConfigError as exc:
            raise DatabaseError(str(exc)) from None

    def _rollback(self) -> None:
        conn = self._conn
        if conn.closed or conn.broken:
            return
        if conn.pgconn.transaction_status != self._psycopg.pq.TransactionStatus.IDLE:
            conn.pgconn.exec_(b"ROLLBACK")

    def _error(self, exc: Exception, offset: int = 0) -> DatabaseError:
        errors = self._psycopg.errors
        if isinstance(exc, errors.QueryCanceled):
            return QueryTimeout(
                f"the query ran longer than {self._timeout:g} s (timeout_s) and was stopped"
            )
        if isinstance(exc, self._psycopg.ProgrammingError) and "produce records" in str(exc):
            # psycopg's complaint when a statement (COMMIT, SET …) gives no rows to fetch.
            return DatabaseError("the statement returns no rows; only queries are served")
        diag = getattr(exc, "diag", None)
        primary = getattr(diag, "message_primary", None) or str(exc).strip().split("\n")[0]
        where = getattr(diag, "statement_position", None)
        if where and offset and int(where) > offset:
            where = str(int(where) - offset)  # positions count from the model's own text
        text = primary + (f" (at character {where})" if where else "")
        hint = getattr(diag, "message_hint", None)
        if hint:
            text += f"; hint: {hint}"
        lost = self._conn.broken or self._conn.pgconn.status != self._psycopg.pq.ConnStatus.OK
        if isinstance(exc, self._psycopg.OperationalError) and lost:
            text = "the connection to the database was lost; it is re-opened on the next call"
        return DatabaseError(self._scrub(text))

    def query(self, sql: str, params: Sequence[Any], *, max_rows: int, max_bytes: int) -> Fetched:
        """Run one statement in a fresh read-only transaction; fetch capped rows; roll back."""
        psycopg = self._psycopg
        self._begin()
        offset = 0
        try:
            server = _is_query(sql)
            if server:
                self._counter += 1
                name = f"portcullis_{self._counter}"
                offset = len(f'DECLARE "{name}" CURSOR FOR ')  # psycopg's wrapping
                cur: Any = psycopg.RawServerCursor(self._conn, name)
            else:  # EXPLAIN cannot stand in a DECLARE
                cur = psycopg.RawCursor(self._conn)
            with cur:
                # A DECLARE always goes through the extended protocol. For a plain cursor,
                # binary=True is what makes psycopg use it when there are no parameters: with
                # the simple protocol `SELECT 1; COMMIT; DROP …` would run all three (tested).
                deadline = time.monotonic() + self._timeout
                cur.execute(sql, list(params), binary=None if server else True)
                fetch = self._bounded(cur.fetchmany, deadline) if server else cur.fetchmany
                rows, more, cut = fetch_capped(fetch, max_rows, max_bytes)
                columns, sources = self._describe(cur)
        except psycopg.Error as exc:
            raise self._error(exc, offset) from None
        finally:
            self._rollback()
        return Fetched(columns, rows, more, cut, sources)

    def _bounded(
        self, fetchmany: Callable[[int], Sequence[Any]], deadline: float
    ) -> Callable[[int], Sequence[Any]]:
        """``fetchmany`` whose FETCHes share one time limit instead of getting one each.

        statement_timeout applies per statement, and each FETCH of the server-side cursor is
        one: without this, a result fetched in N chunks could run N times timeout_s.
        """
        first = True

        def fetch(n: int) -> Sequence[Any]:
            nonlocal first
            if not first:
                left = int((deadline - time.monotonic()) * 1000)
                if left <= 0:
                    raise QueryTimeout(
                        f"the query ran longer than {self._timeout:g} s (timeout_s) and was stopped"
                    )
                self._conn.pgconn.exec_(b"SET LOCAL statement_timeout = %d" % left)
            first = False
            return fetchmany(n)

        return fetch

    def _describe(self, cur: Any) -> tuple[list[Column], list[str | None]]:
        columns: list[Column] = []
        sources: list[str | None] = []
        res = cur.pgresult
        for i, d in enumerate(cur.description or ()):
            columns.append(Column(d.name, self._type_name(d.type_code)))
            table = res.ftable(i) if res is not None else 0
            sources.append(self._attname(table, res.ftablecol(i)) if table else None)
        return columns, sources

    def _type_name(self, oid: int) -> str:
        name = self._types.get(oid)
        if name is None:
            info = self._conn.adapters.types.get(oid)
            if info is not None:
                name = info.name
            else:
                row = self._conn.execute(
                    "SELECT pg_catalog.format_type(%s, NULL)", (oid,)
                ).fetchone()
                name = str(row[0]) if row and row[0] else str(oid)
            self._types[oid] = name
        return name

    def _attname(self, table: int, col: int) -> str | None:
        key = (table, col)
        if key not in self._attnames:
            row = self._conn.execute(
                "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = %s AND attnum = %s",
                (table, col),
            ).fetchone()
            self._attnames[key] = str(row[0]) if row else None
        return self._attnames[key]

    def explain(self, sql: str) -> list[str]:
        """``EXPLAIN`` (never ANALYZE: nothing runs) in a read-only transaction."""
        psycopg = self._psycopg
        self._begin()
        try:
            with psycopg.RawCursor(self._conn) as cur:
                cur.execute("EXPLAIN " + sql, [], binary=True)  # one statement only
                return [str(r[0]) for r in cur.fetchmany(10_000)]
        except psycopg.Error as exc:
            raise self._error(exc) from None
        finally:
            self._rollback()

    def _meta(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        psycopg = self._psycopg
        self._begin()
        try:
            with psycopg.RawCursor(self._conn) as cur:
                cur.execute(sql, list(params))
                rows: list[tuple[Any, ...]] = cur.fetchall()
                return rows
        except psycopg.Error as exc:
            raise self._error(exc) from None
        finally:
            self._rollback()

    def tables(self) -> list[TableRef]:
        """Tables and views the role can read, outside the system schemas."""
        return [TableRef(s, n, _KINDS.get(k, "table")) for s, n, k in self._meta(_TABLES)]

    def columns(self, table: TableRef) -> list[ColumnInfo]:
        """The readable columns of ``table``."""
        rows = self._meta(_COLUMNS, [table.schema, table.name])
        return [ColumnInfo(str(n), str(t), bool(nl), bool(pk)) for n, t, nl, pk in rows]

    def views_over(self, denied: Sequence[str]) -> list[str]:
        """Views that read a denied table (through other views too), as quoted names.

        The denied tables' partitions and inheritance children come too: they hold its rows.
        """
        names = [t.rsplit(".", 1)[-1].strip().strip('"').lower() for t in denied]
        if not names:
            return []
        rows = self._meta(_VIEWS_OVER, [names])
        return [".".join('"' + str(p).replace('"', '""') + '"' for p in row) for row in rows]

    def warnings(self) -> list[str]:
        """Say what the role could do beyond reading: each is a reason to use the docs' role."""
        out: list[str] = []
        role = self._meta(_ROLE)
        if not role:
            return out
        user, superuser, createrole, createdb, bypassrls, create_db = role[0]
        if superuser:
            out.append(
                f"the role {user} is a superuser: it bypasses every privilege check; run "
                "portcullis sql as a least-privilege role (docs/sql.md)"
            )
        extra = [
            n
            for n, v in (
                ("CREATEROLE", createrole),
                ("CREATEDB", createdb),
                ("BYPASSRLS", bypassrls),
            )
            if v
        ]
        if extra:
            out.append(f"the role {user} has {', '.join(extra)}")
        writable = [str(r[0]) for r in self._meta(_WRITABLE)]
        if writable:
            out.append(f"the role {user} can write to {_names(writable)}")
        owned = [str(r[0]) for r in self._meta(_OWNED)]
        if owned:
            out.append(f"the role {user} owns {_names(owned)} (an owner can grant itself anything)")
        schemas = [str(r[0]) for r in self._meta(_CREATE_SCHEMAS)]
        if schemas:
            out.append(f"the role {user} may CREATE in schema {_names(schemas)}")
        if create_db:
            out.append(f"the role {user} may CREATE schemas in this database")
        readable = self._readable_blocked()
        if readable:
            out.append(
                f"the role {user} can SELECT the blocked table(s) {_names(readable)}: the "
                "guard refuses them by name, but a view or catalog function could still reach "
                "them; REVOKE SELECT so the database refuses them too"
            )
        if out:
            out.append(
                "the read-only transaction still refuses every write; see docs/sql.md for a "
                "least-privilege role"
            )
        return out

    def _readable_blocked(self) -> list[str]:
        names = [t.rsplit(".", 1)[-1].strip('"').lower() for t in self._deny]
        if not names:
            return []
        rows = self._meta(
            "SELECT n.nspname || '.' || c.relname FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE lower(c.relname) = ANY ($1) AND c.relnamespace <> 'pg_catalog'::regnamespace "
            "AND pg_catalog.has_table_privilege(c.oid, 'SELECT') ORDER BY 1",
            [names],
        )
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()
