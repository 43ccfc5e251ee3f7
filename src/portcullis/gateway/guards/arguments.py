"""Argument guards: the values inside a request, checked before it is forwarded.

Finds the arguments that hold paths, SQL and URLs — by the names and JSON pointers the policy
lists, by the tool's input schema, and by names that look like paths (a path-like argument the
policy does not cover is checked anyway, at least against the protected paths) — and asks the
pure guards of ``portcullis.detect`` about each value. Used by the gateway and by
``portcullis check``, so both decide the same way.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Sequence
from typing import Any, Final

from portcullis.detect.constraints import Constraint, check_constraint
from portcullis.detect.paths import PathGuard, is_file_uri, looks_like_path
from portcullis.gateway.pipeline import Allow, Deny
from portcullis.policy.compiled import ServerPolicy

__all__ = ["ArgumentGuard"]

_SQL_NAMES: Final = ("sql", "query", "statement")
# A URI scheme of two or more letters (one letter followed by ':' is a Windows drive).
_OTHER_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")
_C0_SPACE: Final = "".join(chr(c) for c in range(0x21))
_MAX_DEPTH: Final = 32


class ArgumentGuard:
    """The argument guards of one server, compiled once from its policy."""

    def __init__(
        self, policy: ServerPolicy, *, protected: Sequence[str] = (), cwd: str | None = None
    ) -> None:
        self.policy = policy
        self._path_like: dict[str, bool] = {}
        self._paths = PathGuard(policy.roots, protected=protected, cwd=cwd)
        self._path_names = set(policy.paths.arguments)
        self._sql = None
        self._sql_names: set[str] = set()
        if policy.sql is not None:
            from portcullis.detect.sql import SqlGuard

            sql = policy.sql
            self._sql = SqlGuard(
                sql.dialect,
                read_only=sql.read_only,
                deny_tables=sql.deny_tables,
                allow_functions=sql.allow_functions,
            )
            self._sql_names = set(sql.arguments or _SQL_NAMES)
        self._urls = None
        self._url_names: set[str] = set()
        if policy.urls is not None:
            from portcullis.detect.urls import UrlGuard

            urls = policy.urls
            self._urls = UrlGuard(
                schemes=urls.schemes, allow_hosts=urls.allow_hosts, deny_private=urls.deny_private
            )
            self._url_names = set(urls.arguments)
        self._constraints = [
            (
                glob,
                [
                    (arg, Constraint(**{f: getattr(c, f) for f in c.__struct_fields__}))
                    for arg, c in args.items()
                ],
            )
            for glob, args in policy.constraints.items()
        ]

    def check_request(
        self, method: str, subject: str, params: dict[str, Any], schema: Any = None
    ) -> Allow | Deny:
        """Check a request: calls by their arguments (``schema``: the tool's), resources by URI."""
        if method in ("tools/call", "prompts/get"):
            return self.check_call(subject, params.get("arguments"), schema)
        return self.check_uri(subject)

    def check_call(self, tool: str, args: Any, schema: Any = None) -> Allow | Deny:
        """Check the arguments of ``tools/call`` (or ``prompts/get``) of ``tool``."""
        if not isinstance(args, dict):
            return Allow("arguments.none")
        try:
            return self._check_call(tool, args, schema)
        except _TooDeep as exc:
            return Deny(
                "arguments.too-deep",
                f"argument {_label(str(exc))!r} is nested deeper "
                f"than {_MAX_DEPTH} levels, which the argument guards do not follow",
            )

    def _check_call(self, tool: str, args: dict[str, Any], schema: Any) -> Allow | Deny:
        path_names = self._path_names | _schema_names(schema, looks_like_path)
        url_names = set(self._url_names)
        if self._urls is not None:
            from portcullis.detect.urls import looks_like_url

            url_names |= _schema_names(schema, looks_like_url)
        for pointer, name, value in _walk(args):
            label = _label(pointer)
            for text in _strings(value):
                is_path = name in path_names or pointer in path_names or self._looks_like_path(name)
                # URL parsers trim leading and trailing controls and spaces: so must the test.
                trimmed = text.strip(_C0_SPACE)
                if is_path and _OTHER_SCHEME.match(trimmed) and not is_file_uri(trimmed):
                    is_path = False  # an https:// (or other) URI is not a file path
                if is_path:
                    for reading in dict.fromkeys((text, trimmed)):
                        verdict = self._paths.check(reading, argument=label)
                        if isinstance(verdict, Deny):
                            return verdict
                if self._sql is not None and (
                    name in self._sql_names or pointer in self._sql_names
                ):
                    verdict = self._sql.check(text, argument=label)
                    if isinstance(verdict, Deny):
                        return verdict
                if self._urls is not None and (name in url_names or pointer in url_names):
                    verdict = self._urls.check(text, argument=label)
                    if isinstance(verdict, Deny):
                        return verdict
        for glob, constraints in self._constraints:
            if not fnmatch.fnmatchcase(tool, glob):
                continue
            for selector, constraint in constraints:
                for pointer, value in _select(args, selector):
                    verdict = check_constraint(constraint, value, argument=_label(pointer))
                    if isinstance(verdict, Deny):
                        return verdict
        return Allow("arguments.checked")

    def _looks_like_path(self, name: str) -> bool:
        known = self._path_like.get(name)
        if known is None:
            known = looks_like_path(name, None)
            if len(self._path_like) < 4096:
                self._path_like[name] = known
        return known

    def check_uri(self, uri: str) -> Allow | Deny:
        """Check a resource URI: a ``file:`` URI, or one with no scheme, is a path."""
        if uri != uri.strip(_C0_SPACE):
            # Parsers disagree on whether to trim these; the rules matched the untrimmed text.
            return Deny(
                "arguments.malformed-uri",
                'argument "uri": the URI starts or ends with a space or control character',
            )
        if _OTHER_SCHEME.match(uri) and not is_file_uri(uri):
            return Allow("arguments.not-a-file")
        return self._paths.check(uri, argument="uri")


def _walk(
    value: Any, pointer: str = "", name: str = "", depth: int = 0
) -> Iterator[tuple[str, str, Any]]:
    """Every (JSON pointer, member name, value) of the arguments, depth first."""
    if depth > _MAX_DEPTH:
        raise _TooDeep(pointer)
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{pointer}/{_escape(str(key))}"
            yield child, str(key), item
            yield from _walk(item, child, str(key), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            # Array items keep the array's name: `paths: [a, b]`, `paths: [[a]]` and
            # `edits[].path` are all found.
            if isinstance(item, list):
                yield f"{pointer}/{index}", name, item
            if isinstance(item, dict | list):
                yield from _walk(item, f"{pointer}/{index}", name, depth + 1)


class _TooDeep(Exception):
    """Arguments nested deeper than the guards look: refused rather than half-checked."""


def _label(pointer: str) -> str:
    """How a denial names an argument: a top-level one by its name, a nested one by pointer."""
    if pointer.count("/") == 1:
        return pointer[1:].replace("~1", "/").replace("~0", "~")
    return pointer


def _strings(value: Any, depth: int = 0) -> list[str]:
    """Every string in ``value``, however nested: `{"path": {"0": "/etc"}}` holds a path too."""
    if isinstance(value, str):
        return [value]
    if depth > _MAX_DEPTH:
        raise _TooDeep("")
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return [text for item in items for text in _strings(item, depth + 1)]


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _select(args: dict[str, Any], selector: str) -> list[tuple[str, Any]]:
    """The values a constraint selector names: a JSON pointer, or a member name at any depth."""
    if selector.startswith("/"):
        value: Any = args
        for part in selector[1:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return []
        return [(selector, value)]
    return [(pointer, value) for pointer, name, value in _walk(args) if name == selector]


def _schema_names(schema: Any, predicate: Any, depth: int = 0) -> set[str]:
    """Names of the schema's properties (nested too) that ``predicate(name, prop)`` accepts."""
    names: set[str] = set()
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return names
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for name, prop in properties.items():
            if isinstance(prop, dict) and predicate(str(name), prop):
                names.add(str(name))
            names |= _schema_names(prop, predicate, depth + 1)
    items = schema.get("items")
    if isinstance(items, dict):
        names |= _schema_names(items, predicate, depth + 1)
    return names
