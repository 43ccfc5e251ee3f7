"""sqlglot and SQLite halves of the SQL guard.

Dialects other than PostgreSQL are parsed with sqlglot. sqlglot falls back to an opaque
``exp.Command`` node for syntax it does not model (``VACUUM INTO``, ``REPLACE`` in SQLite,
``SET ROLE`` ...); the guard cannot see inside one, so a ``Command`` is always refused.

SQLite statements are also run past SQLite itself, because sqlglot's tokenizer is not SQLite's:
statement splitting uses ``sqlite3.complete_statement`` (SQLite's own end-of-statement state
machine), and the first statement is prepared on a private, empty in-memory database with an
authorizer that refuses every action but reading, and a progress handler that interrupts the
program before its first step, so nothing is ever executed. Without the real schema SQLite stops
at "no such table" for most statements, so this only proves that SQLite can parse the text and
catches schema-free actions (ATTACH, PRAGMA, functions); the structure is judged on sqlglot's tree.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from portcullis.detect._sql_common import Problem, fragment

__all__ = ["SqliteProbe", "check_sqlglot"]

# sqlglot logs a warning for every Command fallback; the guard reports those itself.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

_ALLOWED_ROOTS: tuple[type[exp.Expr], ...] = (exp.Query, exp.Values)

_WRITE_NODES: tuple[tuple[type[exp.Expr], str], ...] = (
    (exp.Insert, "writes (INSERT)"),
    (exp.Update, "writes (UPDATE)"),
    (exp.Delete, "writes (DELETE)"),
    (exp.Merge, "writes (MERGE)"),
    (exp.TruncateTable, "writes (TRUNCATE)"),
    (exp.Copy, "copies data (COPY)"),
    (exp.LoadData, "loads data (LOAD DATA)"),
    (exp.Create, "changes the schema (CREATE)"),
    (exp.Drop, "changes the schema (DROP)"),
    (exp.Alter, "changes the schema (ALTER)"),
    (exp.Transaction, "controls the transaction (BEGIN)"),
    (exp.Commit, "controls the transaction (COMMIT)"),
    (exp.Rollback, "controls the transaction (ROLLBACK)"),
    (exp.Set, "changes a setting (SET)"),
    (exp.Pragma, "is a PRAGMA"),
    (exp.Attach, "attaches a database (ATTACH)"),
    (exp.Detach, "detaches a database (DETACH)"),
    (exp.Use, "switches database (USE)"),
    (exp.Grant, "changes privileges (GRANT)"),
    (exp.Revoke, "changes privileges (REVOKE)"),
    (exp.Analyze, "runs maintenance (ANALYZE)"),
    (exp.Cache, "caches a table (CACHE)"),
    (exp.Uncache, "uncaches a table (UNCACHE)"),
    (exp.Kill, "kills a session (KILL)"),
    (exp.Describe, "is a nested EXPLAIN/DESCRIBE"),
    (exp.Into, "writes its result (SELECT INTO)"),
    (exp.Lock, "locks rows (FOR UPDATE/SHARE)"),
    (exp.Command, "is not a query"),
)
_WRITE_TYPES = tuple(t for t, _ in _WRITE_NODES)

# sqlglot models operators and syntax (AND, EXISTS, CASE, CAST, COLLATE, ->, REGEXP ...) as Func
# subclasses; those are not function calls. Every other Func, typed or anonymous, is checked.
_SYNTAX_FUNCS: tuple[type[exp.Expr], ...] = (
    exp.Connector,
    exp.Binary,
    exp.Unary,
    exp.Predicate,
    exp.Case,
    exp.If,
    exp.Cast,
    exp.Extract,
)

# Statement splitting re-reads the prefix at every ';' (quadratic); bound it.
_MAX_SEMICOLONS = 512

_PARSE_ERRORS = ("syntax error", "incomplete input", "unrecognized token")


def _command_word(node: exp.Command) -> str:
    return fragment(str(node.this).split()[0].upper() if str(node.this).strip() else "?")


def _function_names(node: exp.Func) -> list[str]:
    """Names a function node answers to: what was written, or sqlglot's canonical names."""
    if isinstance(node, exp.Anonymous):
        return [node.name.lower()]
    names = [node.key.lower()]
    names.extend(n.lower() for n in node.sql_names())
    return names


def _qualifier(node: exp.Expr) -> str | None:
    parent = node.parent
    if isinstance(parent, exp.Dot) and parent.expression is node:
        left = parent.this
        if isinstance(left, exp.Identifier | exp.Column | exp.Dot):
            return (
                ".".join(p.name.lower() for p in left.parts)
                if not isinstance(left, exp.Identifier)
                else left.name.lower()
            )
        return str(left.sql()).lower()
    return None


def check_sqlglot(
    sql: str,
    *,
    dialect: str,
    dialect_label: str,
    read_only: bool,
    function_allowed: Callable[[list[str]], bool],
    table_denied: Callable[[str | None, str | None, str], bool],
    tables: list[str] | None = None,
) -> Problem | None:
    """Return the first problem with ``sql`` in a sqlglot dialect, or None when acceptable.

    ``tables``, when given, receives the tables the statement reads (see :func:`_tables`), from
    the same parse, whatever the verdict.
    """
    if dialect != "sqlite" and ("/*!" in sql or "/*M!" in sql):
        # MySQL/MariaDB run the text of /*! ... */ comments; sqlglot skips it as a comment.
        return Problem(
            "sql.ambiguous",
            "the statement holds a /*! ... */ comment, which MySQL executes as code",
        )
    try:
        trees = [
            t
            for t in sqlglot.parse(sql, read=dialect)
            if t is not None and not isinstance(t, exp.Semicolon)
        ]
    except SqlglotError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Problem(
            "sql.unparseable",
            f"the statement does not parse as {dialect_label} ({fragment(first)})",
        )
    if len(trees) != 1:
        if not trees:
            return Problem("sql.unparseable", "the value holds no SQL statement")
        return Problem(
            "sql.multiple-statements",
            f"the value holds {len(trees)} statements, and the policy allows exactly one per call",
        )
    root = trees[0]
    # SQLite's EXPLAIN [QUERY PLAN] is a Command in sqlglot: it never executes, judge its body.
    if (
        dialect == "sqlite"
        and isinstance(root, exp.Command)
        and str(root.this).upper() == "EXPLAIN"
        and isinstance(root.expression, exp.Literal)
    ):
        body = str(root.expression.this)
        if body[:10].upper() == "QUERY PLAN":
            body = body[10:]
        return check_sqlglot(
            body,
            dialect=dialect,
            dialect_label=dialect_label,
            read_only=read_only,
            function_allowed=function_allowed,
            table_denied=table_denied,
            tables=tables,
        )
    if tables is not None:
        _tables(root, frozenset(), tables)
    if isinstance(root, exp.Describe):
        if str(root.args.get("style") or "").upper() == "ANALYZE" and read_only:
            return Problem(
                "sql.not-read-only",
                "the statement is EXPLAIN ANALYZE, which executes the query, "
                "and the policy allows read-only SQL",
            )
        inner = root.this
        if not isinstance(inner, exp.Expr):
            return Problem("sql.unparseable", "the EXPLAIN has no statement to explain")
        root = inner
    if read_only and not isinstance(root, _ALLOWED_ROOTS):
        if isinstance(root, exp.Command):
            why = f"is not a query ({_command_word(root)})"
        else:
            why = next(
                (w for t, w in _WRITE_NODES if isinstance(root, t)),
                f"is not a query ({fragment(root.key.upper())})",
            )
        return Problem(
            "sql.not-read-only", f"the statement {why}, and the policy allows read-only SQL"
        )
    for node in root.walk():
        if isinstance(node, exp.Func) and not isinstance(node, _SYNTAX_FUNCS):
            names = _function_names(node)
            qual = _qualifier(node)
            if qual is not None:
                names = [f"{qual}.{names[0]}"]
            if not function_allowed(names):
                return Problem(
                    "sql.function",
                    f"the function {fragment(names[0])} is not in the policy's "
                    "allow_functions list",
                )
        elif isinstance(node, exp.Table | exp.In):
            if isinstance(node, exp.Table):
                catalog, schema, name = node.catalog or None, node.db or None, node.name
            elif isinstance(node.args.get("field"), exp.Column):
                # SQLite's `x IN table` (and `IN schema.table`) reads a table that sqlglot
                # parses as a column: judge it as the table it is.
                column = node.args["field"]
                catalog, schema, name = None, column.table or None, column.name
            else:
                continue
            if name and table_denied(catalog, schema, name):
                return Problem(
                    "sql.denied-table",
                    f"the statement uses table {fragment(name)}, which the policy denies",
                )
        elif (
            read_only
            and isinstance(node, exp.PropertyEQ)
            and isinstance(node.this, exp.Parameter | exp.SessionParameter)
        ):
            return Problem(
                "sql.not-read-only",
                "the statement assigns a session variable (@x := ...), "
                "and the policy allows read-only SQL",
            )
        elif isinstance(node, exp.Command):
            return Problem(
                "sql.not-read-only",
                f"the statement is not a query ({_command_word(node)}), "
                "and the policy allows read-only SQL",
            )
        elif read_only and node is not root and isinstance(node, _WRITE_TYPES):
            why = next(w for t, w in _WRITE_NODES if isinstance(node, t))
            return Problem(
                "sql.not-read-only",
                f"the statement {why}, and the policy allows read-only SQL",
            )
    return None


def _tables(node: exp.Expr, ctes: frozenset[str], out: list[str]) -> None:
    """Append the tables ``node`` reads, lower-case and qualified as written.

    An unqualified name that a WITH in scope defines is the CTE, not a table (a non-recursive
    WITH's CTE is visible only in the body and in the CTEs after it).
    """
    if isinstance(node, exp.Table):
        if node.name and isinstance(node.this, exp.Identifier):
            _table(node.catalog or None, node.db or None, node.name, ctes, out)
    elif isinstance(node, exp.In) and isinstance(node.args.get("field"), exp.Column):
        column = node.args["field"]  # SQLite's `x IN table`
        _table(None, column.table or None, column.name, ctes, out)
    with_clause = next((v for v in node.args.values() if isinstance(v, exp.With)), None)
    if with_clause is not None:
        entries = [c for c in with_clause.expressions if isinstance(c, exp.CTE)]
        names = [str(c.alias_or_name).lower() for c in entries]
        recursive = bool(with_clause.args.get("recursive"))
        for i, cte in enumerate(entries):
            seen = names if recursive else names[:i]
            if isinstance(cte.this, exp.Expr):
                _tables(cte.this, ctes | frozenset(seen), out)
        ctes = ctes | frozenset(names)
    for value in node.args.values():
        if value is with_clause:
            continue
        for child in value if isinstance(value, list) else (value,):
            if isinstance(child, exp.Expr):
                _tables(child, ctes, out)


def _table(
    catalog: str | None, schema: str | None, name: str, ctes: frozenset[str], out: list[str]
) -> None:
    qualifiers = [q.lower() for q in (catalog, schema) if q]
    if name and (qualifiers or name.lower() not in ctes):
        out.append(".".join([*qualifiers, name.lower()]))


def _skip_space_and_comments(text: str) -> str:
    """What is left after SQLite's whitespace, comments and empty statements."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\n\f\r;":
            i += 1
        elif text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        else:
            return text[i:]
    return ""


_ACTIONS = [
    "CREATE_INDEX",
    "CREATE_TABLE",
    "CREATE_TEMP_INDEX",
    "CREATE_TEMP_TABLE",
    "CREATE_TEMP_TRIGGER",
    "CREATE_TEMP_VIEW",
    "CREATE_TRIGGER",
    "CREATE_VIEW",
    "DELETE",
    "DROP_INDEX",
    "DROP_TABLE",
    "DROP_TEMP_INDEX",
    "DROP_TEMP_TABLE",
    "DROP_TEMP_TRIGGER",
    "DROP_TEMP_VIEW",
    "DROP_TRIGGER",
    "DROP_VIEW",
    "INSERT",
    "PRAGMA",
    "TRANSACTION",
    "UPDATE",
    "ATTACH",
    "DETACH",
    "ALTER_TABLE",
    "REINDEX",
    "ANALYZE",
    "CREATE_VTABLE",
    "DROP_VTABLE",
    "SAVEPOINT",
    "COPY",
]
_ACTION_NAMES: dict[int, str] = {
    getattr(sqlite3, f"SQLITE_{a}"): a.replace("_", " ")
    for a in _ACTIONS
    if hasattr(sqlite3, f"SQLITE_{a}")
}
_READ_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE})


class SqliteProbe:
    """SQLite's own verdict on a statement, without a schema and without executing anything."""

    def __init__(self, function_allowed: Callable[[list[str]], bool], read_only: bool) -> None:
        self._function_allowed = function_allowed
        self._read_only = read_only
        self._lock = threading.Lock()
        self._refused: Problem | None = None
        conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        conn.set_authorizer(self._authorize)
        conn.set_progress_handler(self._interrupt, 1)
        self._conn = conn

    @staticmethod
    def _interrupt() -> int:
        return 1

    def _authorize(
        self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _trig: str | None
    ) -> int:
        if action in _READ_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION:
            name = (arg2 or "").lower()
            if self._function_allowed([name]):
                return sqlite3.SQLITE_OK
            self._refused = self._refused or Problem(
                "sql.function",
                f"the function {fragment(name)} is not in the policy's allow_functions list",
            )
            return sqlite3.SQLITE_DENY
        # Anything else is refused to SQLite in every mode, so the probe never changes its
        # private database; it is reported only when the policy wants read-only SQL.
        if not self._read_only:
            return sqlite3.SQLITE_DENY
        word = _ACTION_NAMES.get(action, f"action {action}")
        self._refused = self._refused or Problem(
            "sql.not-read-only",
            f"the statement performs {fragment(word)} in SQLite, "
            "and the policy allows read-only SQL",
        )
        return sqlite3.SQLITE_DENY

    def check(self, sql: str) -> Problem | None:
        """Split with SQLite's rules, then prepare the first statement (never executing it)."""
        first, rest = sql, ""
        pos = sql.find(";")
        tries = 0
        while pos >= 0:
            tries += 1
            if tries > _MAX_SEMICOLONS:
                return Problem(
                    "sql.unparseable",
                    f"the value has more than {_MAX_SEMICOLONS} semicolons before its first "
                    "statement ends, too many to split safely",
                )
            if sqlite3.complete_statement(sql[: pos + 1]):
                first, rest = sql[: pos + 1], sql[pos + 1 :]
                break
            pos = sql.find(";", pos + 1)
        if _skip_space_and_comments(rest):
            return Problem(
                "sql.multiple-statements",
                "the value holds more than one statement, "
                "and the policy allows exactly one per call",
            )
        if not _skip_space_and_comments(first):
            return Problem("sql.unparseable", "the value holds no SQL statement")
        with self._lock:
            self._refused = None
            try:
                self._conn.execute(first).close()
            except sqlite3.ProgrammingError as exc:
                if "binding" in str(exc):
                    # Placeholders (``?``) without values: the prepare, where the authorizer
                    # ran, succeeded; only binding failed.
                    return self._refused
                return Problem(
                    "sql.multiple-statements",
                    "the value holds more than one statement, "
                    "and the policy allows exactly one per call",
                )
            except sqlite3.Error as exc:
                msg = str(exc)
                if self._refused is not None:
                    return self._refused
                if any(m in msg for m in _PARSE_ERRORS):
                    return Problem(
                        "sql.unparseable",
                        f"the statement does not parse as SQLite ({fragment(msg)})",
                    )
            return self._refused
