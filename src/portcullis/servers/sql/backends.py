"""Database backends of ``portcullis sql``: what the database itself enforces.

Each backend is a layer that refuses writes on its own, without the SQL guard in front of it:

* **SQLite** (:class:`SqliteBackend`): the file is opened with ``mode=ro``; ``PRAGMA query_only``
  and ``trusted_schema = OFF`` are set; extension loading is off; and an authorizer, consulted
  by SQLite for every table, column, function and statement kind while it compiles a statement,
  allows only reads. It also enforces two policy rules at the source: a blocked table cannot be
  read even through a view, and a masked column reads as NULL wherever it appears (so an alias
  or ``substr(password, 1, 1)`` gives nothing away). A progress handler stops a query past
  its time limit.
* **PostgreSQL**: :mod:`portcullis.servers.sql.postgres`.

Metadata (``list_tables``, ``describe_table``) is read on a second connection whose authorizer
also allows the schema table; the connection that runs the model's SQL cannot read it, so
blocked table names stay hidden there too.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from portcullis._exceptions import ConfigError
from portcullis.servers.sql.config import Settings, Target
from portcullis.servers.sql.results import Column, Fetched, Masker, fetch_capped

__all__ = [
    "Backend",
    "ColumnInfo",
    "DatabaseError",
    "QueryTimeout",
    "SqliteBackend",
    "TableRef",
    "open_backend",
]


class DatabaseError(Exception):
    """The database refused or failed a statement; the message is safe to show the model."""


class QueryTimeout(DatabaseError):
    """The statement ran past ``timeout_s`` and was stopped."""


class TableRef(NamedTuple):
    """A table or view the server may show."""

    schema: str | None
    name: str
    kind: str  # "table" | "view" | "materialized view" | "foreign table"


class ColumnInfo(NamedTuple):
    """One column of :meth:`Backend.columns`."""

    name: str
    type: str
    nullable: bool
    primary_key: bool


class Backend(Protocol):
    """What the tools need from a database; every call is read-only and bounded in time."""

    dialect: str  # "sqlite" | "postgres": the guard's dialect
    label: str  # safe to print

    def query(self, sql: str, params: Sequence[Any], *, max_rows: int, max_bytes: int) -> Fetched:
        """Run one guarded statement in a read-only transaction and fetch capped rows."""
        ...

    def explain(self, sql: str) -> list[str]:
        """The plan of one guarded statement, one line per entry (never executed)."""
        ...

    def tables(self) -> list[TableRef]:
        """Every table and view the connection can see (the caller hides blocked ones)."""
        ...

    def columns(self, table: TableRef) -> list[ColumnInfo]:
        """The columns of a table returned by :meth:`tables`."""
        ...

    def views_over(self, denied: Sequence[str]) -> list[str]:
        """Views (and materialized views) that read a denied table, directly or not."""
        ...

    def warnings(self) -> list[str]:
        """Start-up warnings about privileges that are wider than read-only."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


# ---- SQLite ----------------------------------------------------------------------------------

# The schema table would show blocked names; dbstat, sqlite_dbpage and sqlite_stmt show names,
# raw pages and statement text; sqlite_stat1..4 (ANALYZE) and sqlite_sequence (AUTOINCREMENT)
# name every table, and sqlite_stat4 holds sample index keys, masked columns' values included.
_SCHEMA_TABLES = frozenset(
    [
        "sqlite_master",
        "sqlite_schema",
        "sqlite_temp_master",
        "sqlite_temp_schema",
        "dbstat",
        "sqlite_dbpage",
        "sqlite_stmt",
        "sqlite_stat1",
        "sqlite_stat2",
        "sqlite_stat3",
        "sqlite_stat4",
        "sqlite_sequence",
    ]
)
# The largest string or BLOB the model's statements may build or read: printf('%.*c',
# 900000000, 'x') would otherwise allocate the whole of it in this process before any cap
# applies. Large enough for stored values a result could ever show (max_bytes is far less).
_MIN_VALUE_LIMIT = 64 * 1024 * 1024
# The shadow tables that FTS3/4/5 and R*Tree keep beside a virtual table: a blocked virtual
# table's rows are readable through them, so they are blocked with it.
_SHADOW_SUFFIXES = (
    "content",
    "data",
    "idx",
    "docsize",
    "config",
    "segments",
    "segdir",
    "stat",
    "node",
    "parent",
    "rowid",
)
# Functions that reach outside the database, whatever the guard's allowlist says.
_FORBIDDEN_FUNCTIONS = frozenset(
    ["load_extension", "readfile", "writefile", "edit", "fts3_tokenizer", "zipfile"]
)
_META_PRAGMAS = frozenset(["table_info", "table_xinfo", "index_list", "index_info", "table_list"])
_CHECK_EVERY = 2000  # virtual-machine steps between two looks at the clock
_SQLITE_TYPES = {int: "integer", float: "real", str: "text", bytes: "blob"}
_NEAR = re.compile(r'near "((?:[^"]|"")*)"')


class SqliteBackend:
    """A SQLite file opened read-only, with an authorizer that permits reads only."""

    dialect = "sqlite"

    def __init__(self, path: str, settings: Settings, *, label: str | None = None) -> None:
        self.label = label or path
        self._path = path
        self._timeout = settings.timeout_s
        self._deadline = 0.0
        self._denied = frozenset(_last_part(t) for t in settings.deny_tables)
        self._masker = Masker(settings.mask_columns)
        if not os.path.isfile(path):
            raise ConfigError(f"cannot open the SQLite database {self.label}: no such file")
        self._conn = self._open(self._authorize)
        self._meta = self._open(self._authorize_meta)
        self._conn.set_progress_handler(self._progress, _CHECK_EVERY)
        self._conn.setlimit(
            sqlite3.SQLITE_LIMIT_LENGTH, max(_MIN_VALUE_LIMIT, 4 * settings.max_bytes)
        )
        self._shadows = self._shadow_tables()
        self._denied = self._denied | {s.lower() for s in self._shadows}

    def _open(self, authorizer: Any) -> sqlite3.Connection:
        uri = Path(self._path).resolve().as_uri() + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the SQLite database {self.label}: {exc}") from None
        try:
            conn.execute("PRAGMA query_only = 1")
            conn.execute("PRAGMA trusted_schema = 0")
            conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()  # is it a database?
        except sqlite3.Error as exc:
            conn.close()
            raise ConfigError(f"cannot open the SQLite database {self.label}: {exc}") from None
        if hasattr(conn, "enable_load_extension"):
            conn.enable_load_extension(False)
        conn.set_authorizer(authorizer)
        return conn

    # The authorizers run inside sqlite3_prepare, for every action the statement would take.
    def _authorize(
        self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None
    ) -> int:
        if action == sqlite3.SQLITE_READ:
            table = (arg1 or "").lower()
            if table in self._denied or table in _SCHEMA_TABLES:
                return sqlite3.SQLITE_DENY
            # A masked column reads as NULL everywhere: in the select list, under an alias,
            # inside an expression or a WHERE clause.
            return sqlite3.SQLITE_IGNORE if self._masker(arg2) else sqlite3.SQLITE_OK
        if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_RECURSIVE):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION:
            name = (arg2 or "").lower()
            return sqlite3.SQLITE_DENY if name in _FORBIDDEN_FUNCTIONS else sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY  # writes, DDL, ATTACH, transactions, PRAGMA, ANALYZE …

    def _authorize_meta(
        self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None
    ) -> int:
        if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in _META_PRAGMAS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_UPDATE and arg1 == "sqlite_master":
            # Declaring pragma_table_info's eponymous virtual table reports this; nothing is
            # written (the connection is mode=ro and query_only as well).
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY

    def _progress(self) -> int:
        return 1 if self._deadline and time.monotonic() > self._deadline else 0

    def _run(self, sql: str, params: Sequence[Any]) -> sqlite3.Cursor:
        self._deadline = time.monotonic() + self._timeout
        try:
            return self._conn.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            self._deadline = 0.0
            raise self._error(exc, sql) from None

    def _error(self, exc: sqlite3.Error, sql: str) -> DatabaseError:
        msg = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and msg == "interrupted":
            return QueryTimeout(
                f"the query ran longer than {self._timeout:g} s (timeout_s) and was stopped"
            )
        if msg == "string or blob too big":
            limit = self._conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH) // (1024 * 1024)
            return DatabaseError(
                f"a value in this statement is over the server's {limit} MiB limit for one "
                "value; leave that column out, or use length() on it"
            )
        if msg == "not authorized":
            msg = "not authorized: the statement needs more than read access to allowed tables"
        return DatabaseError(msg + syntax_position(msg, sql))

    def query(self, sql: str, params: Sequence[Any], *, max_rows: int, max_bytes: int) -> Fetched:
        """Run ``sql`` and fetch at most ``max_rows`` rows."""
        cur = self._run(sql, params)
        try:
            # One row first: in-process, a small first request costs nothing, and a row of
            # 16 MiB values is not fetched 16 at a time.
            rows, more, cut = fetch_capped(cur.fetchmany, max_rows, max_bytes, first=1)
        except sqlite3.Error as exc:
            raise self._error(exc, sql) from None
        finally:
            self._deadline = 0.0
            cur.close()
        names = [d[0] for d in cur.description or ()]
        types = ["null"] * len(names)
        for i in range(len(names)):
            for row in rows:
                if row[i] is not None:
                    types[i] = _SQLITE_TYPES.get(type(row[i]), "text")
                    break
        return Fetched([Column(n, t) for n, t in zip(names, types, strict=True)], rows, more, cut)

    def explain(self, sql: str) -> list[str]:
        """``EXPLAIN QUERY PLAN`` as an indented tree."""
        cur = self._run("EXPLAIN QUERY PLAN " + sql, ())
        try:
            rows = cur.fetchmany(10_000)
        except sqlite3.Error as exc:
            raise self._error(exc, sql) from None
        finally:
            self._deadline = 0.0
            cur.close()
        depth: dict[int, int] = {0: -1}
        lines = []
        for node, parent, _unused, detail in rows:
            depth[node] = depth.get(parent, -1) + 1
            lines.append("  " * depth[node] + str(detail))
        return lines

    def _meta_rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._meta.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise DatabaseError(str(exc)) from None

    def tables(self) -> list[TableRef]:
        """Tables and views of the main database (not SQLite's own)."""
        rows = self._meta_rows(
            "SELECT name, type FROM sqlite_schema WHERE type IN ('table', 'view') "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
        )
        return [TableRef("main", name, kind) for name, kind in rows]

    def columns(self, table: TableRef) -> list[ColumnInfo]:
        """From ``pragma_table_info``."""
        rows = self._meta_rows(
            'SELECT name, type, "notnull", pk FROM pragma_table_info(?) ORDER BY cid',
            (table.name,),
        )
        return [ColumnInfo(n, t or "", not nn and not pk, bool(pk)) for n, t, nn, pk in rows]

    def _shadow_tables(self) -> list[str]:
        """The shadow tables of virtual tables (``notes_content`` of FTS5 ``notes``).

        All of them, not only a blocked table's: they hold its rows under column names such as
        ``c0``, which neither blocking nor masking would recognise, and the virtual tables
        themselves cannot be read on the query connection (their constructor is refused).
        """
        try:
            # SQLite 3.37+ knows its shadow tables; the suffixes below are the fallback.
            rows = self._meta_rows(
                "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'shadow'"
            )
            return [str(n) for (n,) in rows]
        except DatabaseError:
            pass
        rows = self._meta_rows(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL%'"
        )
        virtual = [str(n) for (n,) in rows]
        if not virtual:
            return []
        tables = self._meta_rows("SELECT name FROM sqlite_schema WHERE type = 'table'")
        names = {str(n).lower(): str(n) for (n,) in tables}
        return [
            names[f"{v.lower()}_{suffix}"]
            for v in virtual
            for suffix in _SHADOW_SUFFIXES
            if f"{v.lower()}_{suffix}" in names
        ]

    def views_over(self, denied: Sequence[str]) -> list[str]:
        """Views the authorizer will not let run: those that read a blocked table.

        The shadow tables of virtual tables come too: they hold the rows of FTS and R*Tree
        tables under names that neither blocking nor masking recognises.
        """
        out = ['"' + s.replace('"', '""') + '"' for s in self._shadows]
        if not denied:
            return out
        for table in self.tables():
            if table.kind != "view":
                continue
            quoted = '"' + table.name.replace('"', '""') + '"'
            try:
                # Prepared (that is when the authorizer runs) and stopped before any row.
                self._conn.execute(f"SELECT 1 FROM {quoted} LIMIT 0").close()  # noqa: S608
            except sqlite3.DatabaseError:
                out.append(quoted)
        return out

    def warnings(self) -> list[str]:
        """Warn when the file could be written, and when a masked column has an index."""
        out = []
        if os.access(self._path, os.W_OK):
            out.append(
                f"the SQLite file {self.label} is writable by this process: mode=ro, "
                "query_only and the authorizer refuse writes, and a read-only file or mount "
                "(chmod a-w, a read-only bind) would add one more layer"
            )
        # A masked column reads as NULL, but a scan of its index returns rows in the order of
        # its values: the order is an oracle the authorizer cannot hide.
        rows = self._meta_rows(
            "SELECT DISTINCT m.name, ii.name FROM sqlite_schema AS m, "
            "pragma_index_list(m.name) AS il, pragma_index_info(il.name) AS ii "
            "WHERE m.type = 'table' ORDER BY 1, 2"
        )
        indexed = [
            f"{t}.{c}"
            for t, c in rows
            if self._masker(str(c)) and str(t).lower() not in self._denied
        ]
        if indexed:
            out.append(
                f"masked column(s) {', '.join(indexed[:5])}{', …' if len(indexed) > 5 else ''} "
                "have an index: their values read as NULL, but rows scanned through the index "
                "come out in the order of the values; drop the index or serve a view"
            )
        return out

    def close(self) -> None:
        """Close both connections."""
        self._conn.close()
        self._meta.close()


def _last_part(name: str) -> str:
    return name.rsplit(".", 1)[-1].strip().strip('"`[]').lower()


def syntax_position(message: str, sql: str) -> str:
    """`` (line L, column C)`` for SQLite's ``near "X"`` messages, which carry no position.

    The token may occur more than once; the one meant is the first whose prefix of the
    statement, up to and including it, already fails with the same message (earlier
    occurrences leave an incomplete but valid statement). Checked on a private, empty, in-memory
    database that is stopped before it could run anything.
    """
    m = _NEAR.search(message)
    if not m:
        return ""
    token = m.group(1).replace('""', '"')
    if not token:
        return ""
    wanted = f'near "{m.group(1)}"'
    probe = sqlite3.connect(":memory:")
    probe.set_progress_handler(lambda: 1, 1)
    probe.set_authorizer(lambda *_: sqlite3.SQLITE_DENY)
    try:
        at = -1
        start = sql.find(token)
        for _ in range(64):
            if start < 0:
                break
            try:
                probe.execute(sql[: start + len(token)])
            except sqlite3.Error as exc:
                if wanted in str(exc):
                    at = start
                    break
            start = sql.find(token, start + 1)
    finally:
        probe.close()
    if at < 0:
        return ""
    line = sql.count("\n", 0, at) + 1
    col = at - (sql.rfind("\n", 0, at) + 1) + 1
    return f" (line {line}, column {col})"


def open_backend(target: Target, settings: Settings, *, demo_path: str | None = None) -> Backend:
    """Connect to ``target``; raise :class:`ConfigError` (exit 2) when that fails."""
    if target.kind == "postgres":
        from portcullis.servers.sql.postgres import PostgresBackend

        return PostgresBackend(target, settings)
    if target.kind == "demo":
        if demo_path is None:
            raise ConfigError("the demo database was not built")
        return SqliteBackend(demo_path, settings, label=target.label)
    return SqliteBackend(target.url, settings, label=target.label)
