r"""The read-only SQL guard (policy key ``sql:``).

``SqlGuard(dialect, read_only=..., deny_tables=..., allow_functions=...)`` is compiled once from
the policy; ``check(sql, argument=...)`` returns :class:`Allow` or :class:`Deny`.

Each statement is parsed with the database's own grammar, because a guard that lexes differently
from the server can be bypassed (``E'\''`` strings, dollar quotes, nested comments,
``standard_conforming_strings``):

* ``postgres`` (also ``postgresql``): libpg_query, the PostgreSQL server's parser, via pglast.
* ``sqlite``: SQLite itself (statement splitting with ``sqlite3.complete_statement``, and a
  prepare on an empty private database with an authorizer) plus sqlglot's SQLite dialect for the
  structure, since without the schema SQLite stops at the first unknown table.
* any other sqlglot dialect (``mysql``, ``duckdb``, ``snowflake`` ...): sqlglot; its fallback
  ``Command`` nodes are refused.

What is allowed (with ``read_only: true``): exactly one statement, which is SELECT, WITH ...
SELECT, VALUES or TABLE, or EXPLAIN of one of those without ANALYZE (``ANALYSE``,
``(ANALYZE true)`` and ``(ANALYZE)`` count as ANALYZE; ``(ANALYZE false)`` does not); no
data-modifying CTE, no SELECT INTO, no locking clause, nowhere in the tree. Every function must be
on the allowlist (``allow_functions``, :data:`DEFAULT_FUNCTIONS` for ``"default"``); a
schema-qualified function is allowed only when the qualified name is listed (PostgreSQL's
``pg_catalog.`` qualifier counts as unqualified). Tables named in ``deny_tables`` are refused
anywhere in the statement, compared case-insensitively after removing quotes; an unqualified name
on either side matches any schema.

``allow_tables`` (names or fnmatch globs, matched the same way) is an allowlist: when it is not
empty, a statement that reads any other table is refused (``sql.table-not-allowed``). A name a
WITH in scope defines is the CTE, not a table. :meth:`SqlGuard.inspect` returns the verdict and
the tables the statement reads (lower-case, qualified as written), from the same parse.

Rules: ``sql.not-read-only``, ``sql.multiple-statements``, ``sql.function``,
``sql.denied-table``, ``sql.table-not-allowed``, ``sql.unparseable``, ``sql.ambiguous`` (text
the server could read two ways: a ``'...'`` string with a backslash in PostgreSQL, a MySQL
``/*! ... */`` executable comment) and ``sql.too-long`` (over :data:`MAX_SQL_CHARS`). A denial
is one sentence naming the guard, the argument and the reason; quoted fragments are capped at 80
characters and the statement itself is never echoed.

For sqlglot dialects a function matches ``allow_functions`` by the name written (unknown
functions) or by sqlglot's own names for the functions it models (``strftime`` is
``TimeToStr``: ``timetostr`` or ``time_to_str``); operators and syntax that sqlglot represents as
functions (AND, EXISTS, CASE, CAST, COLLATE, ``->``, REGEXP) are not function calls.

Limits: this guard reads the statement, not the database. It is sound only together with a
database-level read-only transaction (``default_transaction_read_only``, a read-only replica or
``mode=ro``) and a role whose privileges match the policy: a view over a blocked table, a catalog
table (``pg_catalog``, ``information_schema``, ``sqlite_master``), a user-defined cast or
operator, a trigger, or a user function that shadows an allowed name through ``search_path`` can
reach data or side effects that the text does not show. ``deny_tables`` matches names, not
objects: a view or synonym of a blocked table is not blocked. PostgreSQL is parsed as with
``standard_conforming_strings = on`` (the default since 9.1; backslashes in ``'...'`` are
refused as ambiguous). MySQL is parsed with backslash escapes on; a server running
``NO_BACKSLASH_ESCAPES`` reads ``'\'`` strings differently. For SQLite the structure comes from
sqlglot, whose lexer is not SQLite's; SQLite itself settles statement splitting and syntax, and
its authorizer catches what it sees before the first unknown table. Allowed functions such as
``repeat`` or regular expressions, and recursive CTEs, can still be slow: pair the guard with
``statement_timeout``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Final, Literal

from portcullis.detect._sql_common import Problem, fragment
from portcullis.detect.verdicts import Allow, Deny

__all__ = ["DEFAULT_FUNCTIONS", "MAX_SQL_CHARS", "SqlGuard", "exact_table_entry"]

#: Longer values are denied (``sql.too-long``): parse time grows with length, and no
#: hand-written query needs more.
MAX_SQL_CHARS: Final = 200_000

_COMMON: Final = frozenset(
    [
        "count",
        "sum",
        "avg",
        "min",
        "max",
        "coalesce",
        "nullif",
        "greatest",
        "least",
        "lower",
        "upper",
        "length",
        "char_length",
        "character_length",
        "octet_length",
        "substring",
        "substr",
        "trim",
        "ltrim",
        "rtrim",
        "replace",
        "concat",
        "concat_ws",
        "round",
        "abs",
        "ceil",
        "ceiling",
        "floor",
        "sign",
        "mod",
        "power",
        "sqrt",
        "exp",
        "ln",
        "log",
        "trunc",
        "row_number",
        "rank",
        "dense_rank",
        "percent_rank",
        "cume_dist",
        "ntile",
        "lag",
        "lead",
        "first_value",
        "last_value",
        "nth_value",
        "cast",
        "try_cast",
        "case",
        "if",
        "iif",
        "extract",
        "current_date",
        "current_time",
        "current_timestamp",
        "localtime",
        "localtimestamp",
        "now",
    ]
)

# sqlglot's canonical names for common functions it rewrites (strftime -> TimeToStr ...).
_SQLGLOT_CANONICAL: Final = frozenset(
    [
        "timetostr",
        "strtotime",
        "tsordstotimestamp",
        "tsordstodate",
        "strposition",
        "date",
        "time",
        "datediff",
        "dateadd",
        "datesub",
        "currentdate",
        "currenttime",
        "currenttimestamp",
        "groupconcat",
        "arrayagg",
        "jsonextract",
        "jsonobject",
        "jsonarray",
        "rownumber",
        "denserank",
        "percentrank",
        "cumedist",
        "firstvalue",
        "lastvalue",
        "nthvalue",
        "stddev",
        "variance",
        "typeof",
        "length",
        "upper",
        "lower",
        "ceil",
        "floor",
        "pow",
        "datetrunc",
        "timestamptrunc",
        "countif",
        "anyvalue",
    ]
)

#: The conservative built-in allowlists used for ``allow_functions: default``, per dialect.
#: Pure scalar, aggregate and window functions only: nothing that reads files, opens
#: connections, sleeps, changes settings, writes, or is defined by the database's users.
DEFAULT_FUNCTIONS: Final[dict[str, frozenset[str]]] = {
    "postgres": _COMMON
    | frozenset(
        [
            "btrim",
            "lpad",
            "rpad",
            "left",
            "right",
            "reverse",
            "repeat",
            "split_part",
            "strpos",
            "position",
            "initcap",
            "starts_with",
            "overlay",
            "md5",
            "format",
            "to_hex",
            "ascii",
            "chr",
            "translate",
            "quote_ident",
            "quote_literal",
            "regexp_replace",
            "regexp_match",
            "regexp_like",
            "date_trunc",
            "date_part",
            "age",
            "make_date",
            "make_time",
            "make_interval",
            "to_char",
            "to_date",
            "to_timestamp",
            "to_number",
            "timezone",
            "justify_days",
            "justify_hours",
            "isfinite",
            "date_bin",
            "string_agg",
            "array_agg",
            "bool_and",
            "bool_or",
            "every",
            "bit_and",
            "bit_or",
            "stddev",
            "stddev_pop",
            "stddev_samp",
            "variance",
            "var_pop",
            "var_samp",
            "corr",
            "covar_pop",
            "covar_samp",
            "percentile_cont",
            "percentile_disc",
            "mode",
            "json_build_object",
            "jsonb_build_object",
            "json_build_array",
            "jsonb_build_array",
            "to_json",
            "to_jsonb",
            "json_agg",
            "jsonb_agg",
            "json_object_agg",
            "jsonb_object_agg",
            "row_to_json",
            "json_extract_path",
            "jsonb_extract_path",
            "json_extract_path_text",
            "jsonb_extract_path_text",
            "json_array_length",
            "jsonb_array_length",
            "json_typeof",
            "jsonb_typeof",
            "jsonb_object_keys",
            "json_object_keys",
            "jsonb_array_elements",
            "json_array_elements",
            "jsonb_array_elements_text",
            "json_array_elements_text",
            "jsonb_each",
            "json_each",
            "jsonb_pretty",
            "array_length",
            "array_position",
            "array_to_string",
            "string_to_array",
            "cardinality",
            "unnest",
            "array_upper",
            "array_lower",
            "similar_to_escape",
            "like_escape",
            "overlaps",
            "normalize",
        ]
    ),
    "sqlite": _COMMON
    | _SQLGLOT_CANONICAL
    | frozenset(
        [
            "total",
            "group_concat",
            "string_agg",
            "ifnull",
            "instr",
            "printf",
            "format",
            "typeof",
            "date",
            "time",
            "datetime",
            "julianday",
            "unixepoch",
            "strftime",
            "hex",
            "quote",
            "char",
            "unicode",
            "json",
            "json_extract",
            "json_object",
            "json_array",
            "json_array_length",
            "json_type",
            "json_valid",
            "json_group_array",
            "json_group_object",
        ]
    ),
    "_sqlglot": _COMMON
    | frozenset(
        [
            "ifnull",
            "group_concat",
            "string_agg",
            "array_agg",
            "date_format",
            "date_add",
            "date_sub",
            "datediff",
            "year",
            "month",
            "day",
            "hour",
            "minute",
            "second",
            "dayofweek",
            "dayofmonth",
            "dayofyear",
            "week",
            "quarter",
            "curdate",
            "curtime",
            "str_to_date",
            "date_trunc",
            "to_char",
            "lpad",
            "rpad",
            "left",
            "right",
            "reverse",
            "repeat",
            "locate",
            "instr",
            "position",
            "json_object",
            "json_array",
            "json_extract",
        ]
    )
    | _SQLGLOT_CANONICAL,
}

_DIALECT_ALIASES: Final = {"postgresql": "postgres", "pg": "postgres", "sqlite3": "sqlite"}
_LABELS: Final = {"postgres": "PostgreSQL", "sqlite": "SQLite", "mysql": "MySQL"}


def _norm(name: str) -> str:
    return name.strip().strip('"`[]').lower()


def _split_name(name: str) -> tuple[str, ...]:
    """``"Public"."API_Keys"`` -> ("public", "api_keys"); dots inside quotes are kept."""
    parts: list[str] = []
    cur: list[str] = []
    quote = ""
    for ch in name.strip():
        if quote:
            if ch == quote:
                quote = ""
            else:
                cur.append(ch)
        elif ch in '"`[':
            quote = "]" if ch == "[" else ch
        elif ch == ".":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return tuple(p.strip().lower() for p in parts)


def exact_table_entry(table: str) -> str | None:
    """An ``allow_tables`` entry matching exactly ``table``, or None when none can.

    ``table`` is named as :meth:`SqlGuard.inspect` names it. A part holding glob characters
    is quoted and its ``*``, ``?``, ``[`` escaped: a table read as ``"*"`` must not become the
    pattern that allows every table.
    """
    out: list[str] = []
    for part in _split_name(table):
        if not any(c in part for c in '*?[]."`'):
            out.append(part)
            continue
        quote = '"' if '"' not in part else "`" if "`" not in part else ""
        if not quote:
            return None  # holds both quote characters: no entry can name it
        escaped = "".join(f"[{c}]" if c in "*?[" else c for c in part)
        out.append(f"{quote}{escaped}{quote}")
    return ".".join(out) if out else None


def _table_matches(entry: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    """Whether an ``allow_tables`` entry covers a table: the name by glob, then qualifiers.

    As with ``deny_tables``, an unqualified name on either side matches any schema.
    """
    if not fnmatch.fnmatchcase(parts[-1], entry[-1]):
        return False
    qual, given = entry[:-1], parts[:-1]
    if not qual or not given:
        return True
    n = min(len(qual), len(given))
    return all(fnmatch.fnmatchcase(g, q) for g, q in zip(given[-n:], qual[-n:], strict=True))


class SqlGuard:
    """Allow only single read-only statements that use allowed functions and tables."""

    __slots__ = (
        "_allowed_tables",
        "_any_allowed",
        "_denied",
        "_dialect",
        "_functions",
        "_label",
        "_probe",
        "_qualified_functions",
        "_read_only",
    )

    def __init__(
        self,
        dialect: str = "postgres",
        *,
        read_only: bool = True,
        deny_tables: Sequence[str] = (),
        allow_functions: Sequence[str] | Literal["default"] = "default",
        allow_tables: Sequence[str] = (),
    ) -> None:
        d = dialect.strip().lower()
        d = _DIALECT_ALIASES.get(d, d)
        if d not in ("postgres", "sqlite"):
            import sqlglot.dialects

            try:
                sqlglot.dialects.Dialect.get_or_raise(d)
            except ValueError as exc:
                raise ValueError(f"SQL guard: unknown SQL dialect {dialect!r}") from exc
        self._dialect = d
        self._label = _LABELS.get(d, d)
        self._read_only = read_only
        if allow_functions == "default":
            funcs = DEFAULT_FUNCTIONS.get(d, DEFAULT_FUNCTIONS["_sqlglot"])
        elif isinstance(allow_functions, str):
            raise ValueError("SQL guard: allow_functions is 'default' or a list of names")
        else:
            funcs = frozenset(".".join(_split_name(f)) for f in allow_functions)
        self._functions = frozenset(f for f in funcs if "." not in f)
        self._qualified_functions = frozenset(f for f in funcs if "." in f)
        self._any_allowed = "*" in funcs
        denied: dict[str, list[tuple[str, ...]]] = {}
        for entry in deny_tables:
            parts = _split_name(entry)
            denied.setdefault(parts[-1], []).append(parts[:-1])
        self._denied = denied
        self._allowed_tables = tuple(_split_name(entry) for entry in allow_tables)
        self._probe = None
        if d == "sqlite":
            from portcullis.detect._sql_glot import SqliteProbe

            self._probe = SqliteProbe(self._function_allowed, read_only)

    @property
    def dialect(self) -> str:
        """The normalised dialect name."""
        return self._dialect

    def _function_allowed(self, names: list[str]) -> bool:
        if self._any_allowed or not names:
            return True
        first = names[0]
        if "." in first:
            # Qualified (sqlglot form "schema.fn"): only an exact listing allows it.
            return first in self._qualified_functions
        if len(names) > 1 and self._dialect == "postgres":
            # pglast gives [schema, ..., name]; pg_catalog.fn is the built-in fn.
            if names[:-1] == ["pg_catalog"]:
                return names[-1] in self._functions
            return ".".join(names) in self._qualified_functions
        return any(n in self._functions for n in names)

    def _table_denied(self, catalog: str | None, schema: str | None, name: str) -> bool:
        quals = self._denied.get(name.lower())
        if quals is None:
            return False
        given = tuple(p.lower() for p in (catalog, schema) if p)
        for qual in quals:
            if not qual or not given:
                return True
            n = min(len(qual), len(given))
            if qual[-n:] == given[-n:]:
                return True
        return False

    def check(self, sql: str, *, argument: str) -> Allow | Deny:
        """Allow ``sql`` or deny it with a rule and a one-sentence reason."""
        if self._allowed_tables:
            return self.inspect(sql, argument=argument, tables=False)[0]
        problem = self._problem(sql)
        if problem is None:
            return Allow("sql.allowed")
        return Deny(problem.rule, f'SQL guard: argument "{argument}": {problem.why}.')

    def inspect(
        self, sql: str, *, argument: str, tables: bool = True
    ) -> tuple[Allow | Deny, tuple[str, ...]]:
        """The verdict on ``sql`` and the tables it reads (``tables=False``: none collected).

        The tables come from the same parse as the verdict, lower-case and qualified as
        written (``schema.table`` or ``table``), without duplicates; a statement that does not
        parse reads none.
        """
        found: list[str] | None = [] if tables or self._allowed_tables else None
        problem = self._problem(sql, found)
        read = tuple(dict.fromkeys(found)) if found else ()
        if problem is None and self._allowed_tables:
            problem = self._not_allowed(read)
        if problem is None:
            return Allow("sql.allowed"), read if tables else ()
        verdict = Deny(problem.rule, f'SQL guard: argument "{argument}": {problem.why}.')
        return verdict, read if tables else ()

    def _not_allowed(self, tables: tuple[str, ...]) -> Problem | None:
        for table in tables:
            parts = _split_name(table)
            if not any(_table_matches(entry, parts) for entry in self._allowed_tables):
                allowed = ", ".join(".".join(e) for e in self._allowed_tables)
                return Problem(
                    "sql.table-not-allowed",
                    f"the statement uses table {fragment(table)}, which is not in the policy's "
                    f"allow_tables ({fragment(allowed)})",
                )
        return None

    def _problem(self, sql: object, tables: list[str] | None = None) -> Problem | None:
        if not isinstance(sql, str):
            return Problem("sql.unparseable", "the value is not a string of SQL")
        if "\x00" in sql:
            return Problem("sql.unparseable", "the value contains a NUL character")
        if len(sql) > MAX_SQL_CHARS:
            return Problem(
                "sql.too-long",
                f"the statement is {len(sql):,} characters, over the guard's limit of "
                f"{MAX_SQL_CHARS:,}",
            )
        try:
            if self._dialect == "postgres":
                from portcullis.detect._sql_pg import check_postgres

                return check_postgres(
                    sql,
                    read_only=self._read_only,
                    function_allowed=self._function_allowed,
                    table_denied=self._table_denied,
                    tables=tables,
                )
            from portcullis.detect._sql_glot import check_sqlglot

            if self._probe is not None:
                found = self._probe.check(sql)
                if found is not None:
                    return found
            return check_sqlglot(
                sql,
                dialect=self._dialect,
                dialect_label=self._label,
                read_only=self._read_only,
                function_allowed=self._function_allowed,
                table_denied=self._table_denied,
                tables=tables,
            )
        except RecursionError:
            return Problem("sql.unparseable", "the statement is nested too deeply to check")
        except Exception as exc:  # a parser bug must deny, with a message, not crash the call
            return Problem(
                "sql.unparseable",
                f"the guard could not analyse the statement ({type(exc).__name__})",
            )
