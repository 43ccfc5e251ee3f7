"""Version ordering and range matching for npm (semver) and PyPI (PEP 440), pure.

Small on purpose: enough to pick the version an unpinned ``npx``/``uvx`` would resolve and to
test advisory ranges. Anything unparseable returns ``None`` so callers can say so rather than
guess.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "npm_key",
    "npm_max_satisfying",
    "npm_satisfies",
    "pypi_key",
    "pypi_max_satisfying",
    "pypi_satisfies",
]

_SEMVER = re.compile(r"^\s*v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?\s*$")
_PARTIAL = re.compile(r"^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(?:-([0-9A-Za-z.-]+))?$")

NpmKey = tuple[int, int, int, tuple[tuple[int, Any], ...]]


def npm_key(version: str) -> NpmKey | None:
    """A sort key for a semver version; prereleases sort before their release."""
    m = _SEMVER.match(version)
    if not m:
        return None
    pre: tuple[tuple[int, Any], ...]
    if m.group(4):
        pre = tuple((0, int(p)) if p.isdigit() else (1, p) for p in m.group(4).split("."))
    else:
        pre = ((2, ""),)  # a release sorts after any of its prereleases
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)), pre)


def _expand(op: str, ver: str) -> list[tuple[str, NpmKey]] | None:
    """One comparator of an npm range as ``(op, key)`` bounds."""
    m = _PARTIAL.match(ver)
    if not m:
        return None
    parts = [m.group(1), m.group(2), m.group(3)]
    wild = [p is None or p in {"x", "X", "*"} for p in parts]
    nums = [0 if w else int(p or 0) for p, w in zip(parts, wild, strict=True)]
    pre = f"-{m.group(4)}" if m.group(4) else ""
    low = npm_key(f"{nums[0]}.{nums[1]}.{nums[2]}{pre}")
    assert low is not None
    if wild[0]:
        return [] if op in {"", "=", ">=", "<="} else [(">=", low)]

    def key(a: int, b: int, c: int) -> NpmKey:
        # the lowest prerelease of a.b.c, so "<2.0.0" also excludes 2.0.0-rc.1
        return (a, b, c, ((0, 0),))

    if op in {"", "="} and any(wild):
        upper = key(nums[0] + 1, 0, 0) if wild[1] else key(nums[0], nums[1] + 1, 0)
        return [(">=", low), ("<", upper)]
    if op == "^":
        if nums[0] > 0 or wild[1]:
            upper = key(nums[0] + 1, 0, 0)
        elif nums[1] > 0 or wild[2]:
            upper = key(0, nums[1] + 1, 0)
        else:
            upper = key(0, 0, nums[2] + 1)
        return [(">=", low), ("<", upper)]
    if op == "~":
        upper = key(nums[0] + 1, 0, 0) if wild[1] else key(nums[0], nums[1] + 1, 0)
        return [(">=", low), ("<", upper)]
    if op == "<=" and any(wild):
        upper = key(nums[0] + 1, 0, 0) if wild[1] else key(nums[0], nums[1] + 1, 0)
        return [("<", upper)]
    if op == ">" and any(wild):
        upper = key(nums[0] + 1, 0, 0) if wild[1] else key(nums[0], nums[1] + 1, 0)
        return [(">=", upper)]
    return [(op or "=", low)]


_COMPARATOR = re.compile(r"(\^|~>?|>=|<=|>|<|=)?\s*([^\s<>=^~|]+)")


def _parse_set(text: str) -> list[tuple[str, NpmKey]] | None:
    text = text.strip()
    hyphen = re.match(r"^(\S+)\s+-\s+(\S+)$", text)
    if hyphen:
        low, high = _expand(">=", hyphen.group(1)), _expand("<=", hyphen.group(2))
        return None if low is None or high is None else low + high
    bounds: list[tuple[str, NpmKey]] = []
    for m in _COMPARATOR.finditer(text):
        op = (m.group(1) or "").replace("~>", "~")
        got = _expand(op, m.group(2))
        if got is None:
            return None
        bounds += got
    return bounds


def _holds(key: NpmKey, op: str, bound: NpmKey) -> bool:
    return {
        "=": key == bound,
        ">=": key >= bound,
        "<=": key <= bound,
        ">": key > bound,
        "<": key < bound,
    }[op]


def npm_satisfies(version: str, spec: str) -> bool | None:
    """Whether ``version`` is in the npm range ``spec``; ``None`` when either is unparseable.

    As npm does, a prerelease only matches a range that names a prerelease of the same
    ``major.minor.patch``.
    """
    key = npm_key(version)
    if key is None:
        return None
    if spec.strip() in {"", "*", "latest", "x"}:
        return key[3] == ((2, ""),)
    for part in spec.split("||"):
        bounds = _parse_set(part)
        if bounds is None:
            return None
        if not all(_holds(key, op, b) for op, b in bounds):
            continue
        if key[3] != ((2, ""),) and not any(
            b[:3] == key[:3] and b[3] != ((2, ""),) for _, b in bounds if b[3] != ((0, 0),)
        ):
            continue
        return True
    return False


def npm_max_satisfying(versions: Iterable[str], spec: str) -> str | None:
    """The newest of ``versions`` in the range ``spec`` (``None`` if none or unparseable)."""
    best: tuple[NpmKey, str] | None = None
    for v in versions:
        key = npm_key(v)
        if key is not None and npm_satisfies(v, spec) and (best is None or key > best[0]):
            best = (key, v)
    return best[1] if best else None


_PEP440 = re.compile(
    r"^\s*v?(?:(\d+)!)?(\d+(?:\.\d+)*)"
    r"(?:[-_.]?(a|b|c|rc|alpha|beta|pre|preview)[-_.]?(\d*))?"
    r"(?:-(\d+)|[-_.]?(?:post|rev|r)[-_.]?(\d*))?"
    r"(?:[-_.]?dev[-_.]?(\d*))?(?:\+[a-z0-9.]+)?\s*$",
    re.IGNORECASE,
)

PypiKey = tuple[int, tuple[int, ...], tuple[int, int], int, int]


def pypi_key(version: str) -> PypiKey | None:
    """A sort key for a PEP 440 version (epoch, release, pre, post, dev)."""
    m = _PEP440.match(version)
    if not m:
        return None
    release = tuple(int(p) for p in m.group(2).split("."))
    while len(release) > 1 and release[-1] == 0:
        release = release[:-1]
    letter = (m.group(3) or "").lower()
    rank = {"a": 0, "alpha": 0, "b": 1, "beta": 1}.get(letter, 2)
    has_pre = bool(letter)
    dev = m.group(7)
    post = m.group(5) or m.group(6)
    has_post = m.group(5) is not None or (m.group(6) is not None)
    # ordering: X.devN < X.aN < X < X.postN ; a dev release of a pre sorts before that pre
    if has_pre:
        pre = (rank, int(m.group(4) or 0))
    elif dev is not None and not has_post:
        pre = (-1, 0)
    else:
        pre = (3, 0)
    return (
        int(m.group(1) or 0),
        release,
        pre,
        int(post or 0) if has_post else -1,
        int(dev or 0) if dev is not None else 1 << 30,
    )


def _is_prerelease(version: str) -> bool:
    key = pypi_key(version)
    return key is not None and (key[2][0] < 3 or key[4] != 1 << 30)


def pypi_satisfies(version: str, spec: str) -> bool | None:
    """Whether ``version`` meets a PEP 440 specifier set such as ``>=1.2,<2``."""
    key = pypi_key(version)
    if key is None:
        return None
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        m = re.match(r"^(~=|===|==|!=|>=|<=|>|<)\s*(\S+)$", clause)
        if not m:
            return None
        op, target = m.groups()
        if target.endswith(".*") and op in {"==", "!="}:
            prefix = pypi_key(target[:-2])
            if prefix is None:
                return None
            n = len(target[:-2].split("."))
            same = (key[0], (key[1] + (0,) * n)[:n]) == (prefix[0], (prefix[1] + (0,) * n)[:n])
            if same != (op == "=="):
                return False
            continue
        if op == "===":
            if version != target:
                return False
            continue
        bound = pypi_key(target)
        if bound is None:
            return None
        if op == "~=":
            parts = target.split(".")
            if len(parts) < 2:
                return None
            upper = pypi_key(".".join([*parts[:-2], str(int(parts[-2]) + 1)]))
            if upper is None or not bound <= key < (upper[0], upper[1], (-1, 0), -1, 0):
                return False
            continue
        ok = {
            "==": key == bound,
            "!=": key != bound,
            ">=": key >= bound,
            "<=": key <= bound,
            ">": key > bound,
            "<": key < bound,
        }[op]
        if not ok:
            return False
    return True


def pypi_max_satisfying(versions: Iterable[str], spec: str) -> str | None:
    """The newest final release of ``versions`` that meets ``spec`` (as pip would pick)."""
    best: tuple[PypiKey, str] | None = None
    for v in versions:
        key = pypi_key(v)
        if key is None or _is_prerelease(v) or not pypi_satisfies(v, spec):
            continue
        if best is None or key > best[0]:
            best = (key, v)
    return best[1] if best else None
