r"""A linear-time regex compile for the injection and Unicode detectors.

google-re2 (a project dependency) runs the cue alternations in linear time, about 40 times
faster than ``re`` on large alternations; where it does not import or rejects a pattern,
Python's ``re`` stands in. Patterns are written in ``re`` syntax using only the subset both
engines share (no lookaround, no backreferences, repeat counts ≤ 1000); ``\uXXXX`` and
``\UXXXXXXXX`` escapes are rewritten to RE2's ``\x{...}``.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

__all__ = ["Matcher", "compile_linear"]

try:
    import re2  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - google-re2 is a dependency
    re2 = None


class _Match(Protocol):
    lastgroup: str | None

    def span(self) -> tuple[int, int]: ...
    def group(self) -> str: ...


class Matcher(Protocol):
    """What the detectors need from a compiled pattern."""

    def finditer(self, text: str) -> Any: ...
    def search(self, text: str) -> Any: ...
    def sub(self, repl: Any, text: str) -> str: ...


# RE2's default 8 MiB budget makes the cue DFA thrash on large alternations (2.5x slower).
_RE2_MAX_MEM = 64 << 20

_UESC = re.compile(r"\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})")


def _to_re2(pattern: str) -> str:
    return _UESC.sub(lambda m: f"\\x{{{int(m.group(1) or m.group(2), 16):X}}}", pattern)


class _Re2WithFallback:
    """An RE2 pattern that hands strings RE2 cannot take to an equivalent ``re`` pattern.

    RE2 works on UTF-8, and a string holding a lone surrogate (valid in JSON, sent by
    JavaScript servers) cannot be encoded; ``re`` takes it, so such text is scanned too.
    """

    __slots__ = ("_fallback", "_flags", "_pattern", "_re2")

    def __init__(self, compiled: Any, pattern: str, flags: int) -> None:
        self._re2 = compiled
        self._pattern = pattern
        self._flags = flags
        self._fallback: re.Pattern[str] | None = None

    def _slow(self) -> re.Pattern[str]:
        if self._fallback is None:
            self._fallback = re.compile(self._pattern, self._flags)
        return self._fallback

    def finditer(self, text: str) -> Any:
        try:
            return list(self._re2.finditer(text))
        except UnicodeEncodeError:
            return self._slow().finditer(text)

    def search(self, text: str) -> Any:
        try:
            return self._re2.search(text)
        except UnicodeEncodeError:
            return self._slow().search(text)

    def sub(self, repl: Any, text: str) -> str:
        try:
            result: str = self._re2.sub(repl, text)
        except UnicodeEncodeError:
            result = self._slow().sub(repl, text)
        return result


def compile_linear(pattern: str, *, ignorecase: bool = False) -> Matcher:
    """Compile ``pattern`` with RE2 when possible, else with ``re`` (same flags)."""
    flags = re.MULTILINE | re.DOTALL | (re.IGNORECASE if ignorecase else 0)
    if re2 is not None:
        prefix = "(?ims)" if ignorecase else "(?s)"
        options = re2.Options()
        options.max_mem = _RE2_MAX_MEM
        try:
            compiled = re2.compile(prefix + _to_re2(pattern), options)
        except Exception:  # noqa: S110 - fall back to re
            pass
        else:
            return _Re2WithFallback(compiled, pattern, flags)
    return re.compile(pattern, flags)
