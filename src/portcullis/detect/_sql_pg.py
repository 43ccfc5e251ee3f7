"""PostgreSQL half of the SQL guard: the server's own grammar (libpg_query through pglast).

The statement is parsed by ``pglast.parser.parse_sql_json`` (the JSON output path is the fastest
one pglast offers) and the JSON tree is walked with plain dicts and lists. Only the *keys* of the
tree are inspected for node types, never string values, so a literal that contains ``DROP`` or
a blocked table's name can never trigger a finding.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec
from pglast.parser import ParseError, parse_sql_json

from portcullis.detect._sql_common import Problem, fragment

__all__ = ["check_postgres"]

_decode = msgspec.json.Decoder().decode

# Statement node names and the words used for them in a denial.
_STMT_WORDS: dict[str, str] = {
    "InsertStmt": "writes (INSERT)",
    "UpdateStmt": "writes (UPDATE)",
    "DeleteStmt": "writes (DELETE)",
    "MergeStmt": "writes (MERGE)",
    "TruncateStmt": "writes (TRUNCATE)",
    "CopyStmt": "copies data (COPY)",
    "TransactionStmt": "controls the transaction (BEGIN/COMMIT/ROLLBACK/SAVEPOINT)",
    "CallStmt": "calls a procedure (CALL)",
    "DoStmt": "runs code (DO)",
    "VariableSetStmt": "changes a setting (SET/RESET)",
    "VariableShowStmt": "is SHOW, not a query",
    "PrepareStmt": "prepares a statement (PREPARE)",
    "ExecuteStmt": "executes a prepared statement (EXECUTE)",
    "DeallocateStmt": "deallocates a prepared statement (DEALLOCATE)",
    "ListenStmt": "listens for notifications (LISTEN)",
    "NotifyStmt": "sends a notification (NOTIFY)",
    "UnlistenStmt": "stops listening (UNLISTEN)",
    "LoadStmt": "loads a library (LOAD)",
    "VacuumStmt": "runs maintenance (VACUUM/ANALYZE)",
    "LockStmt": "locks a table (LOCK)",
    "CreateTableAsStmt": "creates a table (CREATE TABLE AS)",
    "DeclareCursorStmt": "declares a cursor (DECLARE)",
    "FetchStmt": "uses a cursor (FETCH/MOVE)",
    "ClosePortalStmt": "closes a cursor (CLOSE)",
    "CheckPointStmt": "forces a checkpoint (CHECKPOINT)",
    "DiscardStmt": "discards session state (DISCARD)",
    "GrantStmt": "changes privileges (GRANT/REVOKE)",
    "GrantRoleStmt": "changes role membership (GRANT/REVOKE)",
    "ExplainStmt": "is a nested EXPLAIN",
    "RefreshMatViewStmt": "refreshes a materialized view (REFRESH)",
    "ReindexStmt": "rebuilds an index (REINDEX)",
    "ClusterStmt": "reorders a table (CLUSTER)",
}

_FALSE_WORDS = frozenset({"false", "off", "0", "no"})
_SAMPLE_METHODS = frozenset({"system", "bernoulli"})


def _stmt_word(kind: str) -> str:
    word = _STMT_WORDS.get(kind)
    if word is not None:
        return word
    # CreateStmt, DropStmt, AlterTableStmt, ... -> "is a schema change (CREATE)" style wording.
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", kind.removesuffix("Stmt")).upper()
    return f"is not a query ({fragment(words)})"


def _is_false(arg: Any) -> bool:
    """True when an EXPLAIN option's argument turns it off (``ANALYZE false/off/0``)."""
    if not isinstance(arg, dict):
        return False
    if "String" in arg:
        return str(arg["String"].get("sval", "")).lower() in _FALSE_WORDS
    if "Integer" in arg:
        return int(arg["Integer"].get("ival", 0)) == 0
    if "Boolean" in arg:
        return not arg["Boolean"].get("boolval", False)
    return False


def _names(items: list[Any]) -> list[str]:
    return [str(i["String"]["sval"]).lower() for i in items if "String" in i]


def check_postgres(
    sql: str,
    *,
    read_only: bool,
    function_allowed: Callable[[list[str]], bool],
    table_denied: Callable[[str | None, str | None, str], bool],
    tables: list[str] | None = None,
) -> Problem | None:
    """Return the first problem with ``sql`` as PostgreSQL, or None when it is acceptable.

    ``tables``, when given, receives the tables the statement reads (see :func:`_tables`), from
    the same parse, whatever the verdict.
    """
    try:
        raw = parse_sql_json(sql)
    except ParseError as exc:
        return Problem(
            "sql.unparseable", f"the statement does not parse as PostgreSQL ({fragment(str(exc))})"
        )
    doc = _decode(raw)
    stmts = doc.get("stmts", [])
    if len(stmts) != 1:
        if not stmts:
            return Problem("sql.unparseable", "the value holds no SQL statement")
        return Problem(
            "sql.multiple-statements",
            f"the value holds {len(stmts)} statements, and the policy allows exactly one per call",
        )
    ((kind, body),) = stmts[0]["stmt"].items()
    if tables is not None:
        _tables({kind: body}, frozenset(), tables)
    if kind == "ExplainStmt":
        for opt in body.get("options") or ():
            de = opt.get("DefElem", {})
            if read_only and de.get("defname") == "analyze" and not _is_false(de.get("arg")):
                return Problem(
                    "sql.not-read-only",
                    "the statement is EXPLAIN ANALYZE, which executes the query, "
                    "and the policy allows read-only SQL",
                )
        ((kind, body),) = body["query"].items()
    if kind != "SelectStmt" and read_only:
        return Problem(
            "sql.not-read-only",
            f"the statement {_stmt_word(kind)}, and the policy allows read-only SQL",
        )
    src = sql.encode() if "\\" in sql else None
    return _walk({kind: body}, read_only, function_allowed, table_denied, src)


def _tables(node: Any, ctes: frozenset[str], out: list[str]) -> None:
    """Append the tables ``node`` reads, lower-case and qualified as written.

    An unqualified name that a WITH in scope defines is the CTE, not a table: a CTE is visible
    in its statement's body and, in a non-recursive WITH, only in the CTEs after it, so
    ``WITH a AS (SELECT * FROM secret), secret AS (…)`` still reads the table ``secret``.
    """
    if type(node) is list:
        for item in node:
            if type(item) is dict or type(item) is list:
                _tables(item, ctes, out)
        return
    if type(node) is not dict:
        return
    if "relname" in node:
        qualifiers = [str(node[k]).lower() for k in ("catalogname", "schemaname") if node.get(k)]
        name = str(node["relname"]).lower()
        if qualifiers or name not in ctes:
            out.append(".".join([*qualifiers, name]))
        return
    with_clause = node.get("withClause")
    if type(with_clause) is dict:
        entries = [c.get("CommonTableExpr", {}) for c in with_clause.get("ctes") or ()]
        names = [str(e.get("ctename", "")).lower() for e in entries]
        recursive = bool(with_clause.get("recursive"))
        for i, entry in enumerate(entries):
            seen = names if recursive else names[:i]
            _tables(entry.get("ctequery"), ctes | frozenset(seen), out)
        ctes = ctes | frozenset(names)
    for key, value in node.items():
        if key != "withClause" and (type(value) is dict or type(value) is list):
            _tables(value, ctes, out)


def _walk(
    root: dict[str, Any],
    read_only: bool,
    function_allowed: Callable[[list[str]], bool],
    table_denied: Callable[[str | None, str | None, str], bool],
    src: bytes | None,
) -> Problem | None:
    stack: list[Any] = [root]
    pop = stack.pop
    push = stack.append
    while stack:
        node = pop()
        if type(node) is list:
            stack.extend(i for i in node if type(i) is dict or type(i) is list)
            continue
        for key, val in node.items():
            if type(val) is dict:
                # SELECT INTO, wherever the SelectStmt sits (also UNION arms, unwrapped).
                if key == "intoClause" and read_only:
                    return Problem(
                        "sql.not-read-only",
                        "the statement creates a table (SELECT INTO), "
                        "and the policy allows read-only SQL",
                    )
                # A RangeVar, wrapped or as a typed field (DeleteStmt.relation).
                if "relname" in val and table_denied(
                    val.get("catalogname"), val.get("schemaname"), val["relname"]
                ):
                    return Problem(
                        "sql.denied-table",
                        f"the statement uses table {fragment(val['relname'])}, "
                        "which the policy denies",
                    )
                # A table's row type names the table too: NULL::blocked and
                # (NULL::blocked).* list its columns (and prove it exists). _blocked is its
                # array type.
                if key == "typeName" and "names" in val:
                    parts = [None, None, *_names(val["names"])][-3:]
                    last = parts[2] or ""
                    if any(
                        table_denied(parts[0], parts[1], n)
                        for n in (last, last[1:] if last.startswith("_") else last)
                    ):
                        return Problem(
                            "sql.denied-table",
                            f"the statement uses the row type of table {fragment(last)}, "
                            "which the policy denies",
                        )
                if key == "FuncCall":
                    names = _names(val.get("funcname", ()))
                    if not function_allowed(names):
                        return Problem(
                            "sql.function",
                            f"the function {fragment('.'.join(names))} is not in the policy's "
                            "allow_functions list",
                        )
                elif key.endswith("Stmt") and key != "SelectStmt":
                    if read_only:
                        return Problem(
                            "sql.not-read-only",
                            f"the statement {_stmt_word(key)} inside a query, "
                            "and the policy allows read-only SQL",
                        )
                elif key == "A_Expr":
                    names = _names(val.get("name", ()))
                    if len(names) > 1 and names[0] != "pg_catalog":
                        return Problem(
                            "sql.function",
                            f"the operator {fragment('.'.join(names))} is user-defined "
                            "and not allowed",
                        )
                elif key == "A_Const" and src is not None:
                    # libpg_query lexes with standard_conforming_strings on: in '...' a
                    # backslash is an ordinary character. A server running with it off reads
                    # the same text differently, so such literals are refused (use E'...').
                    sval = val.get("sval")
                    loc = val.get("location", -1)
                    if (
                        type(sval) is dict
                        and "\\" in str(sval.get("sval", ""))
                        and src[loc : loc + 1] == b"'"
                    ):
                        return Problem(
                            "sql.ambiguous",
                            "a '...' string holds a backslash, which PostgreSQL reads differently "
                            "when standard_conforming_strings is off; write it as E'...'",
                        )
                elif key == "RangeTableSample":
                    method = _names(val.get("method", ()))
                    if len(method) != 1 or method[0] not in _SAMPLE_METHODS:
                        return Problem(
                            "sql.function",
                            f"the TABLESAMPLE method {fragment('.'.join(method))} is not built in",
                        )
                push(val)
            elif type(val) is list:
                if key == "lockingClause" and read_only:
                    return Problem(
                        "sql.not-read-only",
                        "the statement locks rows (FOR UPDATE/SHARE), "
                        "and the policy allows read-only SQL",
                    )
                push(val)
    return None
