"""The tools of ``portcullis sql``: ``query``, ``list_tables``, ``describe_table``, ``explain``.

:class:`SqlTools` turns a ``tools/call`` (name and arguments) into a ``CallToolResult`` dict. It
does no protocol work and holds no I/O of its own beyond the backend, so tests can drive it
directly. Every path fails closed: a guard denial, a bad argument, a database error or an
unexpected exception is a result with ``isError: true`` whose text says why:

* ``denied (<rule-id>): <reason>`` — the SQL guard (or the blocked-table check) refused it;
* ``database error: <message>`` — the database refused or failed it (never the URL);
* ``invalid arguments: <reason>`` — the arguments do not match the input schema.

Blocked tables (``deny_tables``) are invisible: ``list_tables`` leaves them out and
``describe_table`` answers as for a table that does not exist. Whether a name is blocked is
decided by the guard itself (a ``SELECT`` of it is checked), so the names match exactly as
they do in queries.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, Final

from portcullis.detect.redact import redact_value
from portcullis.detect.sql import SqlGuard
from portcullis.servers.sql.backends import Backend, DatabaseError, TableRef, syntax_position
from portcullis.servers.sql.config import Settings
from portcullis.servers.sql.results import Masker, render_table, shape

__all__ = ["TOOLS", "SqlTools"]

_READ_ONLY: Final = {
    "readOnlyHint": True,
    "destructiveHint": False,
    "idempotentHint": True,
    "openWorldHint": False,
}
_COLUMNS_SCHEMA: Final = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "type": {"type": "string"}},
        "required": ["name", "type"],
    },
}
_SCALAR: Final = {"type": ["string", "number", "integer", "boolean", "null"]}

#: The tool definitions of ``tools/list``; ``{dialect}`` is filled in per database.
TOOLS: Final[list[dict[str, Any]]] = [
    {
        "name": "query",
        "title": "Run a read-only SQL query",
        "description": (
            "Run one read-only SQL statement ({dialect}): SELECT, WITH … SELECT, VALUES or "
            "TABLE. Pass values as params and refer to them as {placeholder} in the SQL. Results "
            "are capped at {max_rows} rows; sensitive columns are masked."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {
                "sql": {"type": "string", "description": "one read-only statement"},
                "params": {
                    "type": "array",
                    "items": _SCALAR,
                    "description": "values for the placeholders, in order",
                },
            },
            "required": ["sql"],
            "additionalProperties": False,
        },
        "outputSchema": {
            "type": "object",
            "properties": {
                "columns": _COLUMNS_SCHEMA,
                "rows": {"type": "array", "items": {"type": "array"}},
                "row_count": {"type": "integer"},
                "truncated": {"type": "boolean"},
                "note": {"type": "string"},
            },
            "required": ["columns", "rows", "row_count", "truncated"],
        },
        "annotations": _READ_ONLY,
    },
    {
        "name": "list_tables",
        "title": "List tables",
        "description": "List the tables and views this server lets you query.",
        "inputSchema": {"type": "object", "properties": {}, "additionalProperties": False},
        "outputSchema": {
            "type": "object",
            "properties": {
                "tables": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "schema": {"type": ["string", "null"]},
                            "name": {"type": "string"},
                            "type": {"type": "string"},
                        },
                        "required": ["schema", "name", "type"],
                    },
                }
            },
            "required": ["tables"],
        },
        "annotations": _READ_ONLY,
    },
    {
        "name": "describe_table",
        "title": "Describe a table",
        "description": "The columns of a table or view: name, type, nullability, primary key.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "table or schema.table"},
            },
            "required": ["name"],
            "additionalProperties": False,
        },
        "outputSchema": {
            "type": "object",
            "properties": {
                "schema": {"type": ["string", "null"]},
                "name": {"type": "string"},
                "type": {"type": "string"},
                "columns": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "type": {"type": "string"},
                            "nullable": {"type": "boolean"},
                            "primary_key": {"type": "boolean"},
                            "masked": {"type": "boolean"},
                        },
                        "required": ["name", "type", "nullable", "primary_key", "masked"],
                    },
                },
            },
            "required": ["schema", "name", "type", "columns"],
        },
        "annotations": _READ_ONLY,
    },
    {
        "name": "explain",
        "title": "Explain a query",
        "description": (
            "Show the {dialect} query plan of one read-only statement without running it "
            "(EXPLAIN, never ANALYZE)."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {"sql": {"type": "string", "description": "one read-only statement"}},
            "required": ["sql"],
            "additionalProperties": False,
        },
        "outputSchema": {
            "type": "object",
            "properties": {"plan": {"type": "string"}},
            "required": ["plan"],
        },
        "annotations": _READ_ONLY,
    },
]

# Catalog views that hold column *values* (most common values, histogram bounds) of every
# column the role may read, masked ones included: `SELECT histogram_bounds FROM pg_stats`
# would list the emails that masking hides. pg_stat_activity and pg_stat_statements hold the
# text of other sessions' statements (of the same role), literals included. Blocked like a
# table in deny_tables.
_VALUE_CATALOGS: Final = {
    "postgres": (
        "pg_stats",
        "pg_stats_ext",
        "pg_stats_ext_exprs",
        "pg_statistic",
        "pg_statistic_ext_data",
        "pg_stat_activity",
        "pg_stat_statements",
    ),
}
_LABEL = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
_PLACEHOLDER = {"sqlite": "?", "postgres": "$1, $2, …"}


class UnknownTool(KeyError):
    """``tools/call`` named a tool this server does not have (a JSON-RPC error, -32602)."""


def _error(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": True}


def _ok(text: str, structured: dict[str, Any]) -> dict[str, Any]:
    return {
        "content": [{"type": "text", "text": text}],
        "structuredContent": structured,
        "isError": False,
    }


class SqlTools:
    """The tools over one backend, one guard and one set of limits."""

    def __init__(self, backend: Backend, settings: Settings) -> None:
        self._backend = backend
        self._settings = settings
        self._masker = Masker(settings.mask_columns)
        # A view over a blocked table is blocked too (found once, at start): the guard matches
        # names, and such a view is another name for the blocked rows.
        try:
            views = backend.views_over(settings.deny_tables)
        except DatabaseError as exc:
            views = []
            print(
                f"portcullis sql: warning: could not list the views over blocked tables ({exc}); "
                "only their names are blocked, and the database's privileges must do the rest",
                file=sys.stderr,
            )
        denied = (*settings.deny_tables, *views, *_VALUE_CATALOGS.get(backend.dialect, ()))
        self._guard = SqlGuard(
            backend.dialect,
            read_only=True,  # whatever the policy says: this server never writes
            deny_tables=denied,
            allow_tables=settings.allow_tables,
            allow_functions=settings.allow_functions,
        )
        self._denied_names = frozenset(
            t.rsplit(".", 1)[-1].strip().strip('"`[]').lower() for t in denied
        )
        self.definitions = self._definitions()
        self._handlers = {
            "query": self._query,
            "list_tables": self._list_tables,
            "describe_table": self._describe_table,
            "explain": self._explain,
        }

    def _definitions(self) -> list[dict[str, Any]]:
        dialect = self._backend.dialect
        fill = {
            "dialect": _LABEL.get(dialect, dialect),
            "placeholder": _PLACEHOLDER.get(dialect, "?"),
            "max_rows": f"{self._settings.max_rows:,}",
        }
        out = []
        for tool in TOOLS:
            entry = dict(tool)
            entry["description"] = str(tool["description"]).format(**fill)
            out.append(entry)
        return out

    def call(self, name: str, arguments: Any) -> dict[str, Any]:
        """Run tool ``name``; raise :class:`UnknownTool` for a name not in ``definitions``."""
        handler = self._handlers.get(name)
        if handler is None:
            raise UnknownTool(name)
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            return _error("invalid arguments: arguments must be an object")
        try:
            return handler(arguments)
        except DatabaseError as exc:
            # A database message can quote a value (`invalid input syntax for type integer:
            # "<value>"`): the redactor sees it too.
            message, _ = redact_value(str(exc), pii=self._settings.pii)
            return _error(f"database error: {message}")
        except Exception as exc:  # fail closed, and say no more than the kind of failure
            print(
                f"portcullis sql: internal error in {name}: {type(exc).__name__}", file=sys.stderr
            )
            return _error(f"internal error ({type(exc).__name__}); no result")

    # ---- checks ---------------------------------------------------------------------------

    def _check(self, sql: Any) -> dict[str, Any] | None:
        """None when the guard allows ``sql``, else the denial result."""
        if not isinstance(sql, str):
            return _error('invalid arguments: "sql" must be a string')
        try:
            verdict = self._guard.check(sql, argument="sql")
        except Exception as exc:  # the guard must never be the way through
            return _error(f"denied (internal-error): the SQL guard failed ({type(exc).__name__})")
        rule = getattr(verdict, "rule", "internal-error")
        if getattr(verdict, "decision", "deny") == "allow":
            return None
        reason = str(getattr(verdict, "reason", ""))
        if rule == "sql.unparseable" and self._backend.dialect == "sqlite":
            reason = reason.rstrip(".") + syntax_position(reason, sql) + "."
        return _error(f"denied ({rule}): {reason}")

    def _check_masked(self, sql: str) -> dict[str, Any] | None:
        """None unless PostgreSQL would compute from a masked column (rule sql.masked-column)."""
        if self._backend.dialect != "postgres":
            return None  # SQLite masks at the source (its authorizer)
        from portcullis.servers.sql.masking import masked_use

        why = masked_use(sql, self._masker)
        if why is None:
            return None
        return _error(f'denied (sql.masked-column): argument "sql": {why}.')

    def _blocked(self, table: TableRef) -> bool:
        # The guard decides (its name matching is the one queries get); the plain name check
        # keeps blocked tables hidden even if the guard were out of the way.
        if table.name.lower() in self._denied_names:
            return True
        parts = [p for p in (table.schema, table.name) if p]
        ref = ".".join('"' + p.replace('"', '""') + '"' for p in parts)
        if self._backend.dialect == "sqlite":
            ref = '"' + table.name.replace('"', '""') + '"'
        # Only ever shown to the guard, never run; the name is quoted as an identifier.
        verdict = self._guard.check(f"SELECT * FROM {ref}", argument="sql")  # noqa: S608
        return getattr(verdict, "decision", "deny") != "allow"

    def _visible(self) -> list[TableRef]:
        return [t for t in self._backend.tables() if not self._blocked(t)]

    # ---- tools ----------------------------------------------------------------------------

    def _query(self, args: dict[str, Any]) -> dict[str, Any]:
        extra = set(args) - {"sql", "params"}
        if extra:
            return _error(f"invalid arguments: unknown argument {sorted(extra)[0]!r}")
        denial = self._check(args.get("sql"))
        if denial is not None:
            return denial
        denial = self._check_masked(args["sql"])
        if denial is not None:
            return denial
        params = args.get("params")
        if params is None:
            params = []
        if not isinstance(params, list) or not all(
            p is None or isinstance(p, str | int | float | bool) for p in params
        ):
            return _error('invalid arguments: "params" must be an array of scalar values')
        s = self._settings
        fetched = self._backend.query(
            args["sql"], params, max_rows=s.max_rows, max_bytes=s.max_bytes
        )
        shaped = shape(
            fetched, max_rows=s.max_rows, max_bytes=s.max_bytes, masker=self._masker, pii=s.pii
        )
        return _ok(shaped.text, shaped.structured)

    def _list_tables(self, args: dict[str, Any]) -> dict[str, Any]:
        if args:
            return _error(f"invalid arguments: unknown argument {sorted(args)[0]!r}")
        tables = self._visible()
        structured = {
            "tables": [{"schema": t.schema, "name": t.name, "type": t.kind} for t in tables]
        }
        text = render_table(["schema", "name", "type"], [list(t) for t in tables])
        return _ok(text, structured)

    def _find(self, name: str) -> TableRef | None:
        wanted = [p.strip().strip('"') for p in name.split(".")]
        if len(wanted) > 2 or not all(wanted):
            return None
        tables = self._visible()
        for exact in (True, False):
            for t in tables:
                got = [t.name] if len(wanted) == 1 else [t.schema or "", t.name]
                if (
                    (got == wanted)
                    if exact
                    else [g.lower() for g in got] == [w.lower() for w in wanted]
                ):
                    return t
        return None

    def _describe_table(self, args: dict[str, Any]) -> dict[str, Any]:
        name = args.get("name")
        extra = set(args) - {"name"}
        if extra or not isinstance(name, str) or not name.strip():
            return _error('invalid arguments: "name" must be a table name')
        table = self._find(name.strip())
        if table is None:
            # The same answer for a blocked table as for a missing one: blocked means invisible.
            return _error(f"no table or view named {name.strip()[:80]!r}; see list_tables")
        cols = self._backend.columns(table)
        columns = [
            {
                "name": c.name,
                "type": c.type,
                "nullable": c.nullable,
                "primary_key": c.primary_key,
                "masked": self._masker(c.name),
            }
            for c in cols
        ]
        structured = {
            "schema": table.schema,
            "name": table.name,
            "type": table.kind,
            "columns": columns,
        }
        rows: Sequence[Sequence[Any]] = [
            [
                c["name"],
                c["type"],
                "yes" if c["nullable"] else "no",
                "yes" if c["primary_key"] else "",
                "masked" if c["masked"] else "",
            ]
            for c in columns
        ]
        title = f"{table.kind} {'.'.join(p for p in (table.schema, table.name) if p)}"
        body = render_table(["column", "type", "nullable", "key", "note"], rows)
        return _ok(f"{title}\n{body}", structured)

    def _explain(self, args: dict[str, Any]) -> dict[str, Any]:
        extra = set(args) - {"sql"}
        if extra:
            return _error(f"invalid arguments: unknown argument {sorted(extra)[0]!r}")
        sql = args.get("sql")
        denial = self._check(sql)
        if denial is not None:
            return denial
        assert isinstance(sql, str)
        # Checked again as the statement that will run, so the prefix cannot combine with the
        # text into something the guard did not see (EXPLAIN ANALYZE, a second statement).
        prefix = "EXPLAIN QUERY PLAN " if self._backend.dialect == "sqlite" else "EXPLAIN "
        denial = self._check(prefix + sql) or self._check_masked(sql)
        if denial is not None:
            return denial
        lines = self._backend.explain(sql)
        plan = "\n".join(lines)
        return _ok(plan or "(no plan)", {"plan": plan})
