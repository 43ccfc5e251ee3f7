"""Argument guards: the values inside a request, checked before it is forwarded.

Finds the arguments that hold paths, SQL and URLs — by the names and JSON pointers the policy
lists, by the tool's input schema, and by names that look like paths (a path-like argument the
policy does not cover is checked anyway, at least against the protected paths) — and asks the
pure guards of ``portcullis.detect`` about each value. Used by the gateway and by
``portcullis check``, so both decide the same way.

Observe mode asks :meth:`ArgumentGuard.examine_request` instead: the same verdict, plus what the
guards examined (:class:`Examined`: the values by JSON pointer, the resolved paths, the tables,
the hosts), so the audit can record what a policy would have to allow. Enforce mode never
collects any of it.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from portcullis.detect.constraints import Constraint, check_constraint
from portcullis.detect.paths import PathGuard, is_file_uri, looks_like_path
from portcullis.gateway.pipeline import Allow, Deny
from portcullis.policy.compiled import ServerPolicy

__all__ = [
    "ENFORCED_IN_OBSERVE",
    "MAX_OBSERVED_CHARS",
    "MAX_OBSERVED_ITEMS",
    "ArgumentGuard",
    "Examined",
    "cap_observed",
]

_SQL_NAMES: Final = ("sql", "query", "statement")
# A URI scheme of two or more letters (one letter followed by ':' is a Windows drive).
_OTHER_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")
_C0_SPACE: Final = "".join(chr(c) for c in range(0x21))
_MAX_DEPTH: Final = 32
#: Longest observed value written to the audit; a longer one is cut and says how much was cut.
MAX_OBSERVED_CHARS: Final = 4096
#: Most entries of each ``observed`` list (inputs, paths, tables, hosts) a record carries; the
#: rest are counted in ``omitted``, so a call with 100 000 paths cannot make a huge record.
MAX_OBSERVED_ITEMS: Final = 256
_PROTECTED: Final = "paths.protected"
#: Denials observe mode enforces too: a protected path, and arguments the guards could not read
#: whole (too deeply nested; a URI a server may trim), which might hide a protected path.
ENFORCED_IN_OBSERVE: Final = frozenset(
    {_PROTECTED, "arguments.too-deep", "arguments.malformed-uri"}
)


class Examined:
    """What the argument guards looked at in one request (observe mode), unredacted."""

    __slots__ = ("hosts", "inputs", "paths", "tables")

    def __init__(self) -> None:
        self.inputs: dict[str, str] = {}  # JSON pointer (or "uri") -> the value examined
        self.paths: list[str] = []  # absolute, normalized, symlinks resolved
        self.tables: list[str] = []
        self.hosts: list[str] = []

    def record(self) -> dict[str, Any]:
        """The audit's ``observed`` object: values redacted (secrets and PII) and capped."""
        from portcullis.detect.redact import redact_value

        out: dict[str, Any] = {}
        omitted: dict[str, int] = {}
        lists: dict[str, list[Any]] = {
            "inputs": list(self.inputs.items()),
            "paths": list(dict.fromkeys(self.paths)),
            "tables": list(dict.fromkeys(self.tables)),
            "hosts": list(dict.fromkeys(self.hosts)),
        }
        for key, items in lists.items():
            if len(items) > MAX_OBSERVED_ITEMS:
                omitted[key] = len(items) - MAX_OBSERVED_ITEMS
                lists[key] = items[:MAX_OBSERVED_ITEMS]
        if lists["inputs"]:
            redacted = redact_value(dict(lists["inputs"]), pii=True)[0]
            # The pointer holds member names, which a client may fill with anything too.
            out["inputs"] = {
                cap_observed(str(redact_value(k, pii=True)[0])): cap_observed(str(v))
                for k, v in redacted.items()
            }
        if lists["paths"]:
            paths = redact_value(lists["paths"], pii=True)[0]
            out["paths"] = [cap_observed(str(p)) for p in paths]
        for key in ("tables", "hosts"):
            if lists[key]:
                out[key] = [cap_observed(str(v)) for v in lists[key]]
        if omitted:
            out["omitted"] = omitted
        return out


def cap_observed(text: str, limit: int = MAX_OBSERVED_CHARS) -> str:
    """``text`` cut to ``limit`` characters, suffixed with how many were cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[+{len(text) - limit} chars]"


class ArgumentGuard:
    """The argument guards of one server, compiled once from its policy."""

    def __init__(
        self, policy: ServerPolicy, *, protected: Sequence[str] = (), cwd: str | None = None
    ) -> None:
        self.policy = policy
        self._path_like: dict[str, bool] = {}
        self._paths = PathGuard(policy.roots, protected=protected, cwd=cwd)
        self._path_names = set(policy.paths.arguments)
        self._protected_args = (tuple(protected), cwd)
        self._shields: list[PathGuard] | None = None  # observe mode, built when first needed
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
                allow_tables=sql.allow_tables,
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

    def examine_request(
        self, method: str, subject: str, params: dict[str, Any], schema: Any = None
    ) -> tuple[Allow | Deny, Examined]:
        """:meth:`check_request`'s verdict and what the guards examined (observe mode).

        Every guarded value is examined, also after the first denial, so the record shows all
        of them; the verdict is the first denial, as :meth:`check_request` returns it.
        """
        seen = Examined()
        if method in ("tools/call", "prompts/get"):
            return self.check_call(subject, params.get("arguments"), schema, seen=seen), seen
        seen.inputs["uri"] = subject
        verdict = self.check_uri(subject)
        if verdict.rule not in ("arguments.not-a-file", "arguments.malformed-uri"):
            self._resolved(subject, seen)
        return verdict, seen

    def check_call(
        self, tool: str, args: Any, schema: Any = None, *, seen: Examined | None = None
    ) -> Allow | Deny:
        """Check the arguments of ``tools/call`` (or ``prompts/get``) of ``tool``.

        ``seen``, when given, receives what the guards examined (see :meth:`examine_request`).
        """
        if not isinstance(args, dict):
            return Allow("arguments.none")
        try:
            return self._check_call(tool, args, schema, seen)
        except _TooDeep as exc:
            return Deny(
                "arguments.too-deep",
                f"argument {_label(str(exc))!r} is nested deeper "
                f"than {_MAX_DEPTH} levels, which the argument guards do not follow",
            )

    def _check_call(
        self, tool: str, args: dict[str, Any], schema: Any, seen: Examined | None
    ) -> Allow | Deny:
        path_names = self._path_names | _schema_names(schema, looks_like_path)
        url_names = set(self._url_names)
        if self._urls is not None:
            from portcullis.detect.urls import looks_like_url

            url_names |= _schema_names(schema, looks_like_url)
        first: Deny | None = None  # observe mode: the verdict, while the rest is examined
        for pointer, name, value in _walk(args):
            label = _label(pointer)
            # Observe mode: each string's own pointer (_strings_at lists them in the same order).
            pointers = [p for p, _ in _strings_at(value, pointer)] if seen is not None else None
            for index, text in enumerate(_strings(value)):
                is_path = name in path_names or pointer in path_names or self._looks_like_path(name)
                # URL parsers trim leading and trailing controls and spaces: so must the test.
                trimmed = text.strip(_C0_SPACE)
                if is_path and _OTHER_SCHEME.match(trimmed) and not is_file_uri(trimmed):
                    is_path = False  # an https:// (or other) URI is not a file path
                if is_path:
                    if pointers is not None and seen is not None:
                        seen.inputs[pointers[index]] = text
                        self._resolved(trimmed, seen)
                    for reading in dict.fromkeys((text, trimmed)):
                        verdict = self._paths.check(reading, argument=label)
                        if isinstance(verdict, Deny):
                            if seen is None:
                                return verdict
                            # Observe mode forwards this denial: unless it may be protected.
                            first = _stronger(first, self._shielded(verdict, reading, label))
                if self._sql is not None and (
                    name in self._sql_names or pointer in self._sql_names
                ):
                    if seen is None:
                        verdict = self._sql.check(text, argument=label)
                        if isinstance(verdict, Deny):
                            return verdict
                    elif pointers is not None:
                        seen.inputs[pointers[index]] = text
                        verdict, tables = self._sql.inspect(text, argument=label)
                        seen.tables.extend(tables)
                        if isinstance(verdict, Deny):
                            first = _stronger(first, verdict)
                if self._urls is not None and (name in url_names or pointer in url_names):
                    if pointers is not None and seen is not None:
                        seen.inputs[pointers[index]] = text
                        host = _host(trimmed)
                        if host:
                            seen.hosts.append(host)
                    verdict = self._urls.check(text, argument=label)
                    if isinstance(verdict, Deny):
                        if seen is None:
                            return verdict
                        first = _stronger(first, verdict)
        for glob, constraints in self._constraints:
            if not fnmatch.fnmatchcase(tool, glob):
                continue
            for selector, constraint in constraints:
                for pointer, value in _select(args, selector):
                    if seen is not None and isinstance(value, str):
                        seen.inputs[pointer] = value
                    verdict = check_constraint(constraint, value, argument=_label(pointer))
                    if isinstance(verdict, Deny):
                        if seen is None:
                            return verdict
                        first = _stronger(first, verdict)
        return first or Allow("arguments.checked")

    def named_arguments(self, tool: str, schema: Any = None) -> set[str]:
        """Argument names (and pointers) the guards look for by name, beyond path-like names.

        What a replay needs to know: inputs recorded under another policy may lack them.
        """
        names = set(self._path_names)
        if self._sql is not None:
            names |= self._sql_names
        if self._urls is not None:
            from portcullis.detect.urls import looks_like_url

            names |= self._url_names | _schema_names(schema, looks_like_url)
        for glob, constraints in self._constraints:
            if fnmatch.fnmatchcase(tool, glob):
                names.update(selector for selector, _ in constraints)
        return names

    def _shielded(self, verdict: Deny, value: str, label: str) -> Deny:
        """Observe mode: ``verdict`` (a path denial), or a protected-path one when it may be.

        The path guard stops at its first objection (outside the roots, too long, a control
        character) before reaching the protected check. Observe mode forwards those, so the
        value is checked again against the protected paths alone, anchored at every base a
        relative path may be read from; one it cannot judge is refused as possibly protected.
        """
        if verdict.rule == _PROTECTED:
            return verdict
        if self._shields is None:
            protected, cwd = self._protected_args
            bases = dict.fromkeys((*self._paths.roots, cwd or self._paths.cwd))
            self._shields = [PathGuard((), protected=protected, cwd=b) for b in bases]
        for shield in self._shields:
            found = shield.check(value, argument=label)
            if isinstance(found, Deny):
                if found.rule == _PROTECTED:
                    return found
                return Deny(
                    _PROTECTED,
                    f"{found.reason}: it cannot be shown to stay off the protected paths, "
                    "which observe mode refuses too",
                )
        return verdict

    def _resolved(self, value: str, seen: Examined) -> None:
        """Add the absolute path the path guard compares with the roots (best effort)."""
        path = value
        if is_file_uri(path):
            rest = path[5:]
            path = "/" + rest[2:].partition("/")[2] if rest.startswith("//") else rest
            path = unquote(path.split("?", 1)[0].split("#", 1)[0])
        path = os.path.expanduser(path)
        if not path or "\x00" in path:
            return
        if not os.path.isabs(path):
            roots = self._paths.roots
            path = os.path.join(roots[0] if roots else self._paths.cwd, path)
        try:
            seen.paths.append(os.path.realpath(path))
        except (OSError, ValueError):
            seen.paths.append(os.path.normpath(path))

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


def _stronger(first: Deny | None, verdict: Deny) -> Deny:
    """The denial to report in observe mode: the first, unless a later one is a protected path.

    A protected path is refused even in observe mode, so it must not hide behind an earlier
    (unenforced) denial of another argument.
    """
    if first is None or (
        verdict.rule in ENFORCED_IN_OBSERVE and first.rule not in ENFORCED_IN_OBSERVE
    ):
        return verdict
    return first


def _strings_at(value: Any, pointer: str, depth: int = 0) -> list[tuple[str, str]]:
    """Every string in ``value`` with its own JSON pointer (observe mode)."""
    if isinstance(value, str):
        return [(pointer, value)]
    if depth > _MAX_DEPTH:
        raise _TooDeep(pointer)
    if isinstance(value, dict):
        pairs: Iterator[tuple[str, Any]] = ((_escape(str(k)), v) for k, v in value.items())
    elif isinstance(value, list):
        pairs = ((str(i), v) for i, v in enumerate(value))
    else:
        return []
    return [
        found for key, item in pairs for found in _strings_at(item, f"{pointer}/{key}", depth + 1)
    ]


def _host(url: str) -> str | None:
    """The lower-case host of a URL, or None when it has none or does not parse."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.lower() if host else None


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
