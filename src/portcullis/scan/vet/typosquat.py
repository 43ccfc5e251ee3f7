"""Offline name checks: look-alikes of well-known MCP server packages, and known malware.

Both lists live in ``data/`` so they can be reviewed and extended without touching code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from portcullis.scan.model import PackageRef, Severity
from portcullis.scan.vet.pypi import normalize
from portcullis.scan.vet.rules import Issue
from portcullis.scan.vet.versions import npm_satisfies, pypi_satisfies

__all__ = [
    "KnownMalicious",
    "distance",
    "known_malicious",
    "look_alike",
    "malicious_issue",
    "typosquat_issue",
    "well_known",
]

# Characters and pairs that read alike in a terminal or a README, folded to one spelling.
_HOMOGLYPHS = (("rn", "m"), ("vv", "w"), ("cl", "d"), ("0", "o"), ("1", "l"), ("5", "s"))


@dataclass(frozen=True)
class KnownMalicious:
    """A package (and the versions) known to be malicious, with where that is documented."""

    ecosystem: str
    name: str
    versions: str
    other_versions_severity: Severity | None
    summary: str
    source: str


def _data(name: str) -> Any:
    return json.loads(
        resources.files(__package__).joinpath("data").joinpath(name).read_text("utf-8")
    )


@cache
def well_known() -> dict[str, frozenset[str]]:
    """Well-known MCP server package names per ecosystem (PyPI names normalised)."""
    data = _data("well-known.json")
    return {
        "npm": frozenset(n.lower() for n in data["npm"]),
        "pypi": frozenset(normalize(n) for n in data["pypi"]),
    }


@cache
def known_malicious() -> tuple[KnownMalicious, ...]:
    """The known-malicious package list."""
    return tuple(KnownMalicious(**entry) for entry in _data("malicious.json")["packages"])


def distance(a: str, b: str, limit: int = 3) -> int:
    """Edit distance counting a swap of neighbours as one edit, capped at ``limit``."""
    if abs(len(a) - len(b)) >= limit:
        return limit
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) >= limit:
            return limit
        prev2, prev = prev, cur
    return min(prev[-1], limit)


def _fold(name: str) -> str:
    name = name.lower().lstrip("@")
    for seen, same in _HOMOGLYPHS:
        name = name.replace(seen, same)
    return re.sub(r"[-_./]+", "", name)


def _bare(name: str) -> str:
    return name.split("/", 1)[1] if name.startswith("@") and "/" in name else name


def _canonical(ecosystem: str, name: str) -> str:
    if ecosystem == "pypi":
        return normalize(re.sub(r"\[.*\]$", "", name.strip()))  # extras name no other project
    return name.strip().lower()


def look_alike(ecosystem: str, name: str) -> tuple[str, str] | None:
    """The well-known package ``name`` imitates and how, or ``None``.

    Imitation is: the same letters after folding look-alike characters and separators; one
    edit from a name of 8 to 14 characters or two from a longer one; or the distinctive
    unscoped part of a scoped well-known name under another scope (or none).
    """
    known = well_known().get(ecosystem)
    if not known:
        return None
    name = _canonical(ecosystem, name)
    if name in known:
        return None
    bares: dict[str, int] = {}
    for k in known:
        bares[_bare(k)] = bares.get(_bare(k), 0) + 1
    folded = _fold(name)
    best: tuple[int, str, str] | None = None
    for target in sorted(known):
        if _fold(target) == folded:
            return target, "the same name with look-alike characters or separators"
        # short names sit one edit from many honest ones ("mcp" / "mcpo"): too noisy to judge
        allowed = 0 if len(target) < 8 else 1 if len(target) < 15 else 2
        d = distance(name, target, allowed + 1)
        if 0 < d <= allowed and (best is None or d < best[0]):
            edits = "one character" if d == 1 else "two characters"
            best = (d, target, f"{edits} away")
        bare = _bare(target)
        # a generic tail shared by several vendors ("mcp", "mcp-server") proves nothing
        if (
            target.startswith("@")
            and bares[bare] == 1
            and len(bare) >= 10
            and (_bare(name) == bare and name != target)
        ):
            best = best or (3, target, "the same name under another scope (or none)")
    return (best[1], best[2]) if best else None


def typosquat_issue(ref: PackageRef) -> Issue | None:
    """A ``package-typosquat`` issue when ``ref`` imitates a well-known package."""
    found = look_alike(ref.ecosystem, ref.name)
    if found is None:
        return None
    target, how = found
    note = ""
    if ref.name.startswith("@") and ref.name.split("/")[0].lower() == target.split("/")[0]:
        # only the owner can publish under a scope: this is a typo rather than a squat
        note = " (same scope: most likely a typo for it)"
    return Issue(
        "package-typosquat",
        f"{ref.name} looks like the well-known {target}: {how}{note}",
        evidence=f"{ref.name} ~ {target}",
        fix=f"Use the exact package name from the official documentation (e.g. {target}).",
    )


def malicious_issue(ref: PackageRef, version: str | None = None) -> Issue | None:
    """A ``package-known-malicious`` issue when ``ref`` (at ``version``) is known malware.

    ``version`` is the version in use when the registry resolved it; otherwise the pinned
    one. An unpinned reference to a package with malicious versions is reported at full
    severity: nothing stops it from resolving to one.
    """
    name = _canonical(ref.ecosystem, ref.name)
    for entry in known_malicious():
        if entry.ecosystem != ref.ecosystem or _canonical(entry.ecosystem, entry.name) != name:
            continue
        in_use = version or (ref.version if ref.pinned else None)
        covered: bool | None = None
        if entry.versions.strip() in {"*", ""}:
            covered = True
        elif in_use is not None:
            test = npm_satisfies if ref.ecosystem == "npm" else pypi_satisfies
            covered = test(in_use, entry.versions)
        shown = f"{ref.name}@{in_use}" if in_use else ref.name
        if covered is False:
            if entry.other_versions_severity is None:
                return None
            return Issue(
                "package-known-malicious",
                f"{shown} is outside the known-malicious range {entry.versions}, but "
                f"{ref.name} {entry.summary}",
                evidence=f"{ref.name} {entry.versions}; source: {entry.source}"[:120],
                severity=entry.other_versions_severity,
            )
        why = "" if in_use else " and is not pinned, so it may resolve to a malicious version"
        return Issue(
            "package-known-malicious",
            f"{shown} is known malicious{why}: {entry.summary} (source: {entry.source})",
            evidence=f"{ref.name} {entry.versions}"[:120],
        )
    return None
