"""Keep masked PostgreSQL columns masked: refuse the statements that would unmask them.

Results are masked by column name and, in PostgreSQL, by *source* column (the table column
libpq reports for a result column; PostgreSQL traces it through aliases, views, subqueries and
CTEs). That covers ``SELECT email``, ``SELECT email AS e`` and ``SELECT *``. It cannot cover a
value computed from a masked column, so :func:`masked_use` refuses (rule
``sql.masked-column``) every statement where a masked column, or a whole row that contains one,
could reach the result without being a plain output column:

* a masked column anywhere but as a plain item of the outermost select list: inside a
  function or an expression, in WHERE, ORDER BY, GROUP BY, a join condition, a subquery or a
  CTE (a WHERE clause is a side channel: ``WHERE password LIKE 'a%'``);
* a set operation (UNION, INTERSECT, EXCEPT) with ``*`` in a branch (its columns have no
  source), and a qualified or unqualified ``*`` used as a value (``row_to_json(c.*)``);
* a whole-row reference: a bare table name or alias used as a value (``SELECT c FROM
  customers c``, ``to_jsonb(customers)``);
* a column-renaming alias list on a table or a join (``customers AS c(a, b, x)``), or on a
  subquery or CTE that selects ``*``, which would give a masked column a name that is not
  masked;
* a masked field of a composite value (``(profile).password``);
* ORDER BY, GROUP BY or DISTINCT on a masked output column by position or alias (``ORDER BY
  2``, ``GROUP BY e``), or by a position that may fall on a ``*``: a sort or a grouping is an
  oracle even when each value comes out masked;
* a join that matches on a masked column (``USING (email)``) and every NATURAL join;
* the same inside EXPLAIN: a plan's row estimates come from the column's statistics.

A view that computes a value from a masked column under another name is not seen here: revoke
the column (docs/sql.md). SQLite needs none of this: its authorizer makes a masked column read
as NULL wherever it appears.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

__all__ = ["masked_use"]

_decode = msgspec.json.decode


def masked_use(sql: str, is_masked: Callable[[str], bool]) -> str | None:
    """Why ``sql`` could unmask a masked column (end of a denial sentence), or None."""
    from pglast.parser import parse_sql_json

    try:
        tree = _decode(parse_sql_json(sql))
    except Exception:  # the guard reports syntax; refuse rather than guess
        return "the statement could not be checked for masked columns"
    stmts = tree.get("stmts") or []
    if len(stmts) != 1:
        return None  # the guard refuses several statements
    stmt = stmts[0].get("stmt") or {}
    if "ExplainStmt" in stmt:
        # A plan holds no row values, but its row estimates come from the column's statistics:
        # `EXPLAIN … WHERE email = 'x'` says whether 'x' is a common value. Check the query.
        stmt = (stmt["ExplainStmt"] or {}).get("query") or {}
    relations: set[str] = set()
    _collect_relations(stmt, relations)
    plain: set[int] = set()
    top = stmt.get("SelectStmt")
    if isinstance(top, dict) and top.get("op", "SETOP_NONE") == "SETOP_NONE":
        for target in top.get("targetList") or []:
            val = (target.get("ResTarget") or {}).get("val") or {}
            if "ColumnRef" in val:
                plain.add(id(val["ColumnRef"]))
    return _walk(stmt, None, False, plain, relations, is_masked)


def _collect_relations(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "RangeVar" and isinstance(value, dict):
                out.add(str(value.get("relname", "")).lower())
            elif key == "alias" and isinstance(value, dict) and "aliasname" in value:
                out.add(str(value["aliasname"]).lower())
            elif key == "CommonTableExpr" and isinstance(value, dict):
                out.add(str(value.get("ctename", "")).lower())
            _collect_relations(value, out)
    elif isinstance(node, list):
        for item in node:
            _collect_relations(item, out)


def _walk(
    node: Any,
    parent: str | None,
    in_setop: bool,
    plain: set[int],
    relations: set[str],
    is_masked: Callable[[str], bool],
) -> str | None:
    if isinstance(node, list):
        for item in node:
            found = _walk(item, parent, in_setop, plain, relations, is_masked)
            if found:
                return found
        return None
    if not isinstance(node, dict):
        return None
    for key, value in node.items():
        if key == "ColumnRef" and isinstance(value, dict):
            found = _column_ref(value, parent, in_setop, plain, relations, is_masked)
            if found:
                return found
            continue
        if key in ("alias", "aliascolnames") and _renames(key, value):
            why = _renaming(node, parent)
            if why:
                return why
        child_setop = in_setop
        if key == "SelectStmt" and isinstance(value, dict):
            child_setop = in_setop or value.get("op", "SETOP_NONE") != "SETOP_NONE"
            why = _by_position_or_alias(value, is_masked)
            if why:
                return why
        if key == "A_Indirection" and isinstance(value, dict):
            found = _walk(value, key, in_setop, plain, relations, is_masked)
            if found:
                return found
            # (creds).password: a field of a composite column is a column by another route.
            for item in value.get("indirection") or []:
                name = str(((item or {}).get("String") or {}).get("sval", ""))
                if is_masked(name):
                    return f"it reads the masked field {name[:80]} of a composite value"
            continue
        if key == "JoinExpr" and isinstance(value, dict):
            why = _join_on_masked(value, is_masked)
            if why:
                return why
        found = _walk(value, key, child_setop, plain, relations, is_masked)
        if found:
            return found
    return None


def _join_on_masked(join: dict[str, Any], is_masked: Callable[[str], bool]) -> str | None:
    """Why a join's NATURAL or USING matches rows on a masked column, or None."""
    # Joining on a masked column is a WHERE clause in disguise: NATURAL JOIN (VALUES ('a@b'))
    # v(email) says which row has that email. NATURAL joins on columns this check cannot see.
    if join.get("isNatural"):
        return "it uses a NATURAL join, which could match rows on a masked column; use JOIN … ON"
    for item in join.get("usingClause") or []:
        name = str((item.get("String") or {}).get("sval", ""))
        if is_masked(name):
            return f"it joins on the masked column {name[:80]} (USING)"
    return None


def _by_position_or_alias(select: dict[str, Any], is_masked: Callable[[str], bool]) -> str | None:
    """Why ORDER BY, GROUP BY or DISTINCT of ``select`` sorts or groups a masked column."""
    # ORDER BY 2 or ORDER BY <alias> names an output column without naming the table column:
    # sorting or grouping on a masked column is an oracle (its order, its duplicates), even
    # though each value comes out as [MASKED]. A position that may fall on a `*` is refused too.
    kinds: list[str | None] = []  # per output column: "masked", "star" or None
    aliases: set[str] = set()
    for target in select.get("targetList") or []:
        res = target.get("ResTarget") or {}
        ref = (res.get("val") or {}).get("ColumnRef")
        fields = ref.get("fields") or [] if isinstance(ref, dict) else []
        kind = None
        if fields and "A_Star" in fields[-1]:
            kind = "star"
        elif fields and is_masked(str((fields[-1].get("String") or {}).get("sval", ""))):
            kind = "masked"
            if res.get("name"):
                aliases.add(str(res["name"]).lower())
        kinds.append(kind)
    distinct = select.get("distinctClause")
    if distinct is not None and all(not d for d in distinct) and any(kinds):
        return "it uses DISTINCT over a masked column (or *), which counts its distinct values"
    items: list[Any] = [(s.get("SortBy") or {}).get("node") for s in select.get("sortClause") or []]
    items += _grouping_items(select.get("groupClause") or [])
    items += [d for d in distinct or [] if d]
    for item in items:
        if not isinstance(item, dict):
            continue
        const = item.get("A_Const")
        if isinstance(const, dict) and "ival" in const:
            pos = int((const.get("ival") or {}).get("ival", 0))
            at = kinds[pos - 1] if 1 <= pos <= len(kinds) else None
            if at == "masked" or "star" in kinds[: max(pos, 0)]:
                return (
                    f"it sorts or groups by position {pos}, which is a masked column or may "
                    "be one of *; name the column instead"
                )
        ref = item.get("ColumnRef")
        if isinstance(ref, dict) and len(ref.get("fields") or []) == 1:
            name = str((ref["fields"][0].get("String") or {}).get("sval", "")).lower()
            if name in aliases:
                return f"it sorts or groups by {name[:80]}, an alias of a masked column"
    return None


def _grouping_items(items: list[Any]) -> list[Any]:
    # Inside GROUP BY, the members of a grouping set and of a parenthesised list
    # (ROLLUP ((1, 2))) are grouping items in their own right: an integer is a position.
    out: list[Any] = []
    for item in items:
        if isinstance(item, dict) and "GroupingSet" in item:
            out += _grouping_items((item["GroupingSet"] or {}).get("content") or [])
        elif isinstance(item, dict) and "RowExpr" in item:
            out += _grouping_items((item["RowExpr"] or {}).get("args") or [])
        else:
            out.append(item)
    return out


def _renaming(node: dict[str, Any], parent: str | None) -> str | None:
    """Why an alias column list here could rename a masked column, or None when it cannot."""
    if parent == "RangeFunction":
        return None  # generate_series(1, 3) AS g(n): no table column is renamed
    body = node.get("ctequery") if parent == "CommonTableExpr" else node.get("subquery")
    if parent in ("CommonTableExpr", "RangeSubselect") and not _has_star(body):
        # Its columns are its own select list, where a masked column is refused anyway
        # (WITH RECURSIVE n(i) AS (…) stays possible).
        return None
    return "it renames columns with an alias list, which could unmask a masked column"


def _has_star(node: Any) -> bool:
    if isinstance(node, dict):
        ref = node.get("ColumnRef")
        if isinstance(ref, dict) and any("A_Star" in f for f in ref.get("fields") or []):
            return True
        return any(_has_star(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_star(v) for v in node)
    return False


def _renames(key: str, value: Any) -> bool:
    if key == "aliascolnames":
        return bool(value)
    return isinstance(value, dict) and bool(value.get("colnames"))


def _column_ref(
    ref: dict[str, Any],
    parent: str | None,
    in_setop: bool,
    plain: set[int],
    relations: set[str],
    is_masked: Callable[[str], bool],
) -> str | None:
    fields = ref.get("fields") or []
    if not fields:
        return None
    last = fields[-1]
    if "A_Star" in last:
        if in_setop:
            return "it selects * inside a set operation (UNION, INTERSECT, EXCEPT)"
        if parent != "val":
            return "it uses * as a value, which carries every column of a row"
        return None
    name = str((last.get("String") or {}).get("sval", ""))
    if len(fields) == 1 and name.lower() in relations:
        return f"it uses the whole row of {name[:80]} as a value, which may carry masked columns"
    if id(ref) in plain and not in_setop:
        return None
    if is_masked(name):
        return (
            f"it uses the masked column {name[:80]} in an expression, a condition, a "
            "subquery or a set operation; select it as a plain column, or leave it out"
        )
    return None
