"""Validate a policy file's bytes into a :class:`~portcullis.policy.model.PolicyFile`.

Pydantic reports errors by location (``('servers', 'files', 'tools', 'default')``); this module
maps each location back to the line it came from, rewords the messages that would otherwise be
cryptic for a YAML author (unknown keys get a "did you mean", numbers where text was meant get
"quote it"), and raises one :class:`PolicyError` naming the first problem and listing the others.

Imported only on the slow path: it imports PyYAML and pydantic.
"""

from __future__ import annotations

import difflib
import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from portcullis._exceptions import PolicyError
from portcullis.policy.model import LAUNCH_KEYS, SUPPORTED_VERSION, GuardSettings, PolicyFile
from portcullis.policy.source import KeyPath, SourceMap, format_path, read_yaml

__all__ = ["parse_policy"]

_MAX_REPORTED = 10


def parse_policy(data: bytes, filename: str) -> tuple[PolicyFile, SourceMap]:
    """Parse and validate a policy file's bytes; raise :class:`PolicyError` when invalid."""
    raw, lines = read_yaml(data, filename)
    _check_version(raw, lines, filename)
    try:
        model = PolicyFile.model_validate(raw)
    except ValidationError as exc:
        raise _policy_error(exc, raw, lines, filename) from None
    return model, lines


def _check_version(raw: dict[str, Any], lines: SourceMap, filename: str) -> None:
    # Checked before anything else: a version 2 file would otherwise drown its one real problem
    # in a page of "unknown key" errors.
    if "version" not in raw:
        raise PolicyError(
            f"required key missing: start the file with `version: {SUPPORTED_VERSION}`",
            path=filename,
            line=1,
            key="version",
        )
    version = raw["version"]
    if version != SUPPORTED_VERSION or isinstance(version, bool) or not isinstance(version, int):
        shown = (
            version if isinstance(version, int) and not isinstance(version, bool) else repr(version)
        )
        raise PolicyError(
            f"unsupported policy version {shown}; this portcullis understands "
            f"version {SUPPORTED_VERSION}",
            path=filename,
            line=lines.line_of(("version",)),
            key="version",
        )


class _Problem:
    def __init__(self, line: int | None, key: str, message: str) -> None:
        self.line = line
        self.key = key
        self.message = message


def _policy_error(
    exc: ValidationError, raw: dict[str, Any], lines: SourceMap, filename: str
) -> PolicyError:
    problems: list[_Problem] = []
    seen: set[tuple[str, str]] = set()
    for err in exc.errors(include_url=False):
        path = _data_path(err["loc"], raw, err["type"])
        message = _message(err, path)
        key = format_path(path)
        if (key, message) in seen:
            continue
        seen.add((key, message))
        problems.append(_Problem(lines.line_of(path), key, message))
    problems.sort(key=lambda p: (p.line or 0, p.key))
    first, rest = problems[0], problems[1:]
    message = first.message
    if rest:
        more = [
            f"{filename}:{p.line}: {p.key}: {p.message}"
            if p.line
            else f"{filename}: {p.key}: {p.message}"
            for p in rest[:_MAX_REPORTED]
        ]
        if len(rest) > _MAX_REPORTED:
            more.append(f"… and {len(rest) - _MAX_REPORTED} more")
        message += (
            f"\n  and {len(rest)} more problem{'s' if len(rest) > 1 else ''}:\n    "
            + "\n    ".join(more)
        )
    return PolicyError(message, path=filename, line=first.line, key=first.key or None)


def _data_path(loc: tuple[int | str, ...], raw: Any, kind: str) -> KeyPath:
    """Keep the parts of a pydantic location that exist in the data.

    Pydantic adds ``'[key]'`` for errors in dict keys and the name of a union's arm (e.g.
    ``'list[str]'``); neither is in the file. A missing key is kept, so the path names it.
    """
    path: list[str | int] = []
    node = raw
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            path.append(part)
            node = node[part]
        elif last and kind == "missing" and isinstance(part, str):
            path.append(part)
    return tuple(path)


def _message(err: Any, path: KeyPath) -> str:
    kind: str = err["type"]
    msg: str = err["msg"]
    value = err.get("input")
    if kind == "extra_forbidden":
        return _unknown_key(path)
    if kind == "missing":
        if path and path[-1] == "default":
            return "required key missing: say allow, deny or confirm for names no list matches"
        return "required key missing"
    if kind.startswith("value_error"):
        msg = msg.removeprefix("Value error, ")
    if kind == "string_type" and isinstance(value, bool | int | float):
        what = "a boolean" if isinstance(value, bool) else "a number"
        return f"{msg}: YAML read {value!r} as {what}; quote it"
    if kind in ("model_type", "dict_type") and not isinstance(value, dict):
        return "should be a mapping (key: value lines), not " + _kind_of(value)
    if kind == "list_type" and not isinstance(value, list):
        return f"should be a list (e.g. [a, b]), not {_kind_of(value)}"
    return msg


def _kind_of(value: object) -> str:
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"the boolean {value}"
    return f"{type(value).__name__} {value!r}"


def _unknown_key(path: KeyPath) -> str:
    key = path[-1] if path else ""
    parent = _model_at(path[:-1])
    message = "unknown key"
    if parent is None or not isinstance(key, str):
        return message
    known = list(parent.model_fields)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"{message} (did you mean {close[0]!r}?)"
    if parent is PolicyFile and key in GuardSettings.model_fields:
        return f"{message}: {key!r} belongs under defaults: or under a server"
    if issubclass(parent, GuardSettings) and key in LAUNCH_KEYS:
        return f"{message}: {key!r} belongs in a server entry, not in defaults"
    return f"{message}; expected one of: {', '.join(known)}"


def _model_at(path: KeyPath) -> type[BaseModel] | None:
    """The model class whose fields the mapping at ``path`` holds (None for plain dicts)."""
    current: Any = PolicyFile
    for part in path:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        elif get_origin(current) is list:
            current = get_args(current)[0]
        else:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and pick the model arm of ``X | None``."""
    while get_origin(annotation) is not None and hasattr(annotation, "__metadata__"):
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        for arm in get_args(annotation):
            if isinstance(arm, type) and issubclass(arm, BaseModel):
                return arm
    return annotation
