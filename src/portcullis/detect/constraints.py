r"""Generic argument constraints: pattern, enum, min/max, max_length and forbid.

A :class:`Constraint` is compiled once from the policy (``constraints:`` in DESIGN §4) and
:func:`check_constraint` checks one argument value against it. Every key given must hold; the
checks run in the order enum, range, length, pattern, forbid and the first failure is the verdict.

* ``enum``: the value must equal one of the listed JSON values, with JSON equality (``true`` is
  not ``1``; ``1`` equals ``1.0``).
* ``min`` / ``max``: the value must be a finite JSON number (not a boolean, not a numeric string)
  within the bounds, inclusive.
* ``max_length``: strings count code points, arrays count items; any other type is denied.
* ``pattern``: a Python regular expression the *whole* string must match (``re.fullmatch``); for
  an array, every item must be a matching string. Values longer than :data:`MAX_PATTERN_INPUT`
  characters are denied without matching, and patterns with a quantified group that itself ends
  in a quantifier (``(a+)+``, ``(\w*)*``: the classic catastrophic-backtracking shape) are
  refused when the constraint is built. That check is a heuristic, not a proof of linear time.
* ``forbid``: substrings that must not occur, case-insensitively, in any string inside the value
  (array items, object keys and values, at any depth). An entry written ``re:<regex>`` is a
  regular expression searched for instead (case-sensitive unless it says ``(?i)``).

Reasons never echo the value: they say what was expected (the allowed values, the bounds, the
pattern, which ``forbid`` entry matched — those come from the policy, not the request).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from typing import Any, Final

from portcullis.detect.verdicts import Allow, Deny

__all__ = ["MAX_PATTERN_INPUT", "Constraint", "check_constraint"]

MAX_PATTERN_INPUT: Final = 10_000
_MAX_DEPTH: Final = 64
_NESTED_QUANTIFIER: Final = re.compile(r"[+*}]\)[+*{]")


class Constraint:
    """The checks of one argument's value; ``None`` (or empty ``forbid``) means not checked."""

    __slots__ = (
        "_forbid_literals",
        "_forbid_regexes",
        "_pattern",
        "enum",
        "forbid",
        "max",
        "max_length",
        "min",
        "pattern",
    )

    def __init__(
        self,
        *,
        pattern: str | None = None,
        enum: Sequence[Any] | None = None,
        min: float | None = None,
        max: float | None = None,
        max_length: int | None = None,
        forbid: Sequence[str] = (),
    ) -> None:
        self.pattern = pattern
        self.enum = list(enum) if enum is not None else None
        self.min = min
        self.max = max
        self.max_length = max_length
        self.forbid = list(forbid)
        self._pattern = _compile(pattern, "pattern") if pattern is not None else None
        for name, bound in (("min", min), ("max", max)):
            if bound is not None and (
                isinstance(bound, bool)
                or not isinstance(bound, int | float)
                or not math.isfinite(bound)
            ):
                raise ValueError(f"{name} must be a finite number")
        if min is not None and max is not None and min > max:
            raise ValueError("min is greater than max")
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 0
        ):
            raise ValueError("max_length must be a non-negative integer")
        self._forbid_literals: list[tuple[str, str]] = []
        self._forbid_regexes: list[tuple[str, re.Pattern[str]]] = []
        for entry in self.forbid:
            if not isinstance(entry, str) or not entry:
                raise ValueError("forbid entries must be non-empty strings")
            if entry.startswith("re:"):
                self._forbid_regexes.append((entry, _compile(entry[3:], "forbid")))
            else:
                self._forbid_literals.append((entry, entry.casefold()))

    def __repr__(self) -> str:
        given = {
            k: getattr(self, k)
            for k in ("pattern", "enum", "min", "max", "max_length", "forbid")
            if getattr(self, k) not in (None, [])
        }
        return f"Constraint({', '.join(f'{k}={v!r}' for k, v in given.items())})"


def _compile(regex: str, key: str) -> re.Pattern[str]:
    if _NESTED_QUANTIFIER.search(regex):
        raise ValueError(
            f"{key} {regex!r} quantifies a group that ends in a quantifier, "
            "which can backtrack catastrophically"
        )
    try:
        return re.compile(regex)
    except re.error as exc:
        raise ValueError(f"{key} {regex!r} is not a valid regular expression: {exc}") from None


def _show(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _quote(name: str) -> str:
    clean = "".join(c if c.isprintable() else "?" for c in name[:80])
    return '"' + clean.replace('"', "'") + '"'


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if _is_number(a) or _is_number(b):
        return _is_number(a) and _is_number(b) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return False


def _strings(value: Any, depth: int = 0) -> Iterator[str]:
    if depth > _MAX_DEPTH:
        raise ValueError("nested too deeply")
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                yield key
            yield from _strings(item, depth + 1)


def check_constraint(c: Constraint, value: Any, *, argument: str) -> Allow | Deny:
    """Check one argument ``value`` against ``c``; reasons never contain the value."""
    arg = f"constraint guard: argument {_quote(argument)}"
    if c.enum is not None and not any(_json_equal(value, allowed) for allowed in c.enum):
        return Deny("constraints.enum", f"{arg} must be one of {_show(c.enum)}.")
    if c.min is not None or c.max is not None:
        bounds = (
            f"between {c.min} and {c.max}"
            if c.min is not None and c.max is not None
            else (f"at least {c.min}" if c.min is not None else f"at most {c.max}")
        )
        if not _is_number(value) or not math.isfinite(value):
            return Deny("constraints.range", f"{arg} must be a number {bounds}.")
        if (c.min is not None and value < c.min) or (c.max is not None and value > c.max):
            return Deny("constraints.range", f"{arg} must be a number {bounds}.")
    if c.max_length is not None:
        if not isinstance(value, str | list):
            return Deny(
                "constraints.length",
                f"{arg} must be a string or an array of at most {c.max_length} "
                "characters or items.",
            )
        if len(value) > c.max_length:
            unit = "characters" if isinstance(value, str) else "items"
            return Deny(
                "constraints.length",
                f"{arg} must be at most {c.max_length} {unit} long (it has {len(value)}).",
            )
    if c._pattern is not None:
        items = value if isinstance(value, list) else [value]
        expected = f"a string matching the pattern {_show(c.pattern, 200)}"
        for item in items:
            if not isinstance(item, str):
                return Deny("constraints.pattern", f"{arg} must be {expected}.")
            if len(item) > MAX_PATTERN_INPUT:
                return Deny(
                    "constraints.pattern",
                    f"{arg} is longer than {MAX_PATTERN_INPUT} characters, too long to check "
                    f"against its pattern; send {expected}.",
                )
            if c._pattern.fullmatch(item) is None:
                return Deny("constraints.pattern", f"{arg} must be {expected}.")
    if c._forbid_literals or c._forbid_regexes:
        try:
            texts = list(_strings(value))
        except ValueError:
            return Deny("constraints.forbid", f"{arg} is nested too deeply to check.")
        for text in texts:
            folded = text.casefold()
            for entry, needle in c._forbid_literals:
                if needle in folded:
                    return Deny(
                        "constraints.forbid",
                        f"{arg} must not contain {_show(entry, 80)}.",
                    )
            for entry, regex in c._forbid_regexes:
                if len(text) > MAX_PATTERN_INPUT:
                    return Deny(
                        "constraints.forbid",
                        f"{arg} holds a string longer than {MAX_PATTERN_INPUT} characters, "
                        "too long to check against its forbid patterns.",
                    )
                if regex.search(text) is not None:
                    return Deny(
                        "constraints.forbid",
                        f"{arg} must not match the forbidden pattern {_show(entry[3:], 80)}.",
                    )
    return Allow("constraints.ok")
