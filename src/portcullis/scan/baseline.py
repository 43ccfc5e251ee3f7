"""Baselines and suppressions: accepted findings that ``portcullis scan`` reports but never counts.

One file format (JSON)::

    {"version": 1,
     "suppressions": [
       {"fingerprint": "…", "rule": "plaintext-secret", "server": "db", "file": ".mcp.json",
        "reason": "test database, no real data", "expires": "2026-12-31"}]}

Matching. An entry with a ``fingerprint`` matches exactly that finding (the fingerprint ignores
line numbers and wording, so moving or re-wording does not reopen it); ``rule``, ``server`` and
``file`` beside it are for the reader. An entry without a fingerprint is a hand-written rule-wide
suppression: it matches every finding of ``rule``, narrowed by ``server`` and ``file`` when they
are given. A relative ``file`` is relative to the baseline's own directory, and :func:`write`
stores files under that directory relative, with a fingerprint computed on the relative path,
so a baseline committed to a repository keeps matching in another checkout.

Every entry needs a ``reason``: an ignore list without reasons is how accepted risk rots.

Expiry. ``expires`` is a date (``YYYY-MM-DD``); the entry stops matching the day after. An
expired entry is not an error (the scan still saw everything, so the exit status is not 2): the
finding comes back, counted as usual, and the report carries a warning note naming the entry.
Entries that matched nothing are noted too (the finding was fixed or moved; rewrite the
baseline). Notes and the reason of each suppression are kept in ``result.options`` under
:data:`NOTES_KEY` and :data:`REASONS_KEY` until ``ScanResult`` grows fields of its own; the
reports read them from there.

Errors (:class:`BaselineError`, exit 2) name the file and the line: bad JSON with its line and
column, an unknown ``version``, an entry with an unknown key (a typo such as ``expire`` must not
silently never expire), a missing reason or a bad date. A missing file is an error when the user
named it (``load(path)``) and an empty baseline with ``required=False``.
"""

from __future__ import annotations

import dataclasses
import json
import json.scanner
import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from portcullis._exceptions import ConfigError
from portcullis._state import write_private
from portcullis.scan.model import Finding, ScanResult

__all__ = [
    "NOTES_KEY",
    "REASONS_KEY",
    "Baseline",
    "BaselineError",
    "Suppression",
    "load",
    "portable_fingerprint",
    "write",
]

VERSION = 1
NOTES_KEY = "notes"
"""``result.options`` key: warnings for the report (expired or unused entries)."""
REASONS_KEY = "suppression_reasons"
"""``result.options`` key: fingerprint → ``{"reason", "expires", "source"}`` per suppression."""

_KEYS = frozenset({"fingerprint", "rule", "server", "file", "reason", "expires"})


class BaselineError(ConfigError):
    """A baseline file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Suppression:
    """One accepted finding (by fingerprint) or a rule-wide suppression (by rule)."""

    reason: str
    fingerprint: str | None = None
    rule: str | None = None
    server: str | None = None
    file: str | None = None
    expires: date | None = None
    line: int | None = None
    """Where the entry is in the baseline file, for notes."""

    def expired(self, today: date) -> bool:
        """True from the day after ``expires``."""
        return self.expires is not None and today > self.expires

    def matches(self, finding: Finding, base: Path | None) -> bool:
        """Whether this entry covers ``finding`` (ignoring expiry)."""
        if self.fingerprint is not None:
            return self.fingerprint in (finding.fingerprint, portable_fingerprint(finding, base))
        if self.rule != finding.rule:
            return False
        if self.server is not None and self.server != finding.server:
            return False
        if self.file is not None:
            want = Path(self.file)
            if base is not None and not want.is_absolute():
                want = base / want
            if finding.file is None or _norm(Path(finding.file)) != _norm(want):
                return False
        return True

    def describe(self) -> str:
        """A short human label: ``rule-id on server "x" in file``."""
        what = self.rule or f"fingerprint {self.fingerprint}"
        if self.server:
            what += f" on server {self.server!r}"
        if self.file:
            what += f" in {self.file}"
        return what

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of an entry (keys in a fixed order, empty ones left out)."""
        out: dict[str, Any] = {}
        for key in ("fingerprint", "rule", "server", "file", "reason"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.expires is not None:
            out["expires"] = self.expires.isoformat()
        return out


@dataclass
class Baseline:
    """The suppressions of one baseline file."""

    path: Path | None = None
    suppressions: list[Suppression] = field(default_factory=list)

    @property
    def base(self) -> Path | None:
        """The directory relative ``file`` entries are resolved against."""
        return _norm(self.path).parent if self.path is not None else None

    def apply(self, result: ScanResult, *, today: date | None = None) -> None:
        """Move matching findings to ``result.suppressed``; note expired and unused entries."""
        today = today or datetime.now(UTC).date()
        reasons: dict[str, Any] = result.options.setdefault(REASONS_KEY, {})
        notes: list[str] = result.options.setdefault(NOTES_KEY, [])
        used: set[int] = set()
        expired_hit: set[int] = set()
        kept: list[Finding] = []
        base = self.base
        # Fingerprint entries are looked up by key; only rule-wide entries are scanned, so a
        # large baseline against many findings stays linear.
        by_fp: dict[str, list[int]] = {}
        wide: list[int] = []
        for i, entry in enumerate(self.suppressions):
            if entry.fingerprint is not None:
                by_fp.setdefault(entry.fingerprint, []).append(i)
            else:
                wide.append(i)
        for finding in result.findings:
            keys = {finding.fingerprint, portable_fingerprint(finding, base)}
            candidates = sorted(
                [i for k in keys if k is not None for i in by_fp.get(k, [])]
                + [i for i in wide if self.suppressions[i].matches(finding, base)]
            )
            hit = None
            for i in candidates:
                entry = self.suppressions[i]
                if entry.expired(today):
                    expired_hit.add(i)
                    continue
                hit = i
                break
            if hit is None:
                kept.append(finding)
                continue
            used.add(hit)
            entry = self.suppressions[hit]
            result.suppressed.append(finding)
            reasons[finding.fingerprint] = {
                "reason": entry.reason,
                "expires": entry.expires.isoformat() if entry.expires else None,
                "source": self._where(entry),
            }
        result.findings[:] = kept
        for i in sorted(expired_hit):
            entry = self.suppressions[i]
            assert entry.expires is not None  # only dated entries expire
            notes.append(
                f"{self._where(entry)}: the suppression of {entry.describe()} expired on "
                f"{entry.expires.isoformat()}; the finding is reported again "
                f"(reason was: {entry.reason})"
            )
        unused = [
            i
            for i, e in enumerate(self.suppressions)
            if i not in used and i not in expired_hit and e.fingerprint is not None
        ]
        if unused:
            n = len(unused)
            notes.append(
                f"{self.path}: {n} baseline {'entry matches' if n == 1 else 'entries match'} "
                "no finding (fixed or moved); rewrite the baseline to drop "
                f"{'it' if n == 1 else 'them'}"
            )

    def _where(self, entry: Suppression) -> str:
        where = str(self.path) if self.path is not None else "baseline"
        return f"{where}:{entry.line}" if entry.line else where


def portable_fingerprint(finding: Finding, base: Path | None) -> str | None:
    """The fingerprint with ``file`` relative to ``base``; None when the file is not under it.

    Stored by :func:`write` so a committed baseline matches in any checkout of the repository.
    """
    if base is None or finding.file is None:
        return None
    path = _norm(Path(finding.file))
    if not path.is_relative_to(base):
        return None
    rel = path.relative_to(base).as_posix()
    return dataclasses.replace(finding, file=rel).fingerprint


def load(path: Path, *, required: bool = True) -> Baseline:
    """Read a baseline file; :class:`BaselineError` names the file and line of any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if not required:
            return Baseline(path=path)
        raise BaselineError(f"baseline {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise BaselineError(f"cannot read baseline {path}: {reason}") from exc
    try:
        data, lines = _parse_with_lines(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    return Baseline(path=path, suppressions=_entries(path, data, lines))


def write(path: Path, result: ScanResult, reason: str) -> Baseline:
    """Write every current finding (and every already suppressed one) as a baseline.

    Existing entries keep their reason and expiry; hand-written rule-wide entries are kept as
    they are (and findings they cover get no entry of their own); entries for findings that are
    gone are dropped. Written atomically, ``0600``.
    """
    if not reason.strip():
        raise BaselineError("a baseline needs a reason for the accepted findings")
    old = load(path, required=False)
    base = Baseline(path=path).base
    by_fp = {e.fingerprint: e for e in old.suppressions if e.fingerprint is not None}
    manual = [e for e in old.suppressions if e.fingerprint is None]
    today = datetime.now(UTC).date()
    entries: dict[str, Suppression] = {}
    for finding in [*result.findings, *result.suppressed]:
        if any(e.matches(finding, base) and not e.expired(today) for e in manual):
            continue  # already covered by a hand-written rule-wide entry
        portable = portable_fingerprint(finding, base)
        fp = portable or finding.fingerprint
        if fp in entries:
            continue
        prior = by_fp.get(fp) or by_fp.get(finding.fingerprint)
        file = finding.file
        if portable is not None and finding.file is not None and base is not None:
            file = _norm(Path(finding.file)).relative_to(base).as_posix()
        entries[fp] = Suppression(
            reason=prior.reason if prior else reason,
            fingerprint=fp,
            rule=finding.rule,
            server=finding.server,
            file=file,
            expires=prior.expires if prior else None,
        )
    ordered = sorted(
        entries.values(), key=lambda e: (e.file or "", e.server or "", e.rule or "", e.fingerprint)
    )
    new = Baseline(path=path, suppressions=[*manual, *ordered])
    body = {"version": VERSION, "suppressions": [e.to_dict() for e in new.suppressions]}
    _atomic_write(path, json.dumps(body, indent=2, ensure_ascii=True) + "\n")
    return new


def _norm(path: Path) -> Path:
    # abspath, not resolve: a symlinked checkout should match by the path the user sees.
    return Path(os.path.abspath(path.expanduser()))


def _parse_with_lines(text: str) -> tuple[Any, dict[int, int]]:
    """Parse JSON, remembering the line each object starts on (keyed by ``id``)."""
    # Typed Any: parse_object and scan_once are undocumented attributes typeshed leaves out.
    decoder: Any = json.JSONDecoder()
    lines: dict[int, int] = {}
    parse_object = decoder.parse_object

    def _object(s_and_end: tuple[str, int], *args: Any) -> tuple[Any, int]:
        s, end = s_and_end
        obj, new_end = parse_object(s_and_end, *args)
        lines[id(obj)] = s.count("\n", 0, end) + 1
        return obj, new_end

    # The C scanner ignores a replaced parse_object; baselines are small, so the pure-Python
    # scanner's speed does not matter.
    decoder.parse_object = _object
    decoder.scan_once = getattr(json.scanner, "py_make_scanner")(decoder)  # noqa: B009
    return decoder.decode(text), lines


def _entries(path: Path, data: Any, lines: dict[int, int]) -> list[Suppression]:
    def fail(obj: Any, message: str) -> BaselineError:
        line = lines.get(id(obj))
        return BaselineError(f"{path}:{line}: {message}" if line else f"{path}: {message}")

    if not isinstance(data, dict):
        raise BaselineError(f"{path}: a baseline is a JSON object with version and suppressions")
    version = data.get("version")
    if version != VERSION:
        raise fail(
            data,
            f"unknown baseline version {version!r}; this Portcullis reads version {VERSION}",
        )
    unknown = set(data) - {"version", "suppressions"}
    if unknown:
        raise fail(data, f"unknown key {sorted(unknown)[0]!r} (expected version, suppressions)")
    raw = data.get("suppressions", [])
    if not isinstance(raw, list):
        raise fail(data, "suppressions must be a list")
    return [_entry(item, i, fail, lines) for i, item in enumerate(raw)]


def _entry(item: Any, index: int, fail: Any, lines: dict[int, int]) -> Suppression:
    at = f"suppressions[{index}]"
    if not isinstance(item, dict):
        raise fail(item, f"{at} must be an object")
    unknown = sorted(set(item) - _KEYS)
    if unknown:
        raise fail(item, f"{at}: unknown key {unknown[0]!r} (expected one of {sorted(_KEYS)})")
    for key in _KEYS - {"expires"}:
        if key in item and item[key] is not None and not isinstance(item[key], str):
            raise fail(item, f"{at}.{key} must be a string")
    if not item.get("fingerprint") and not item.get("rule"):
        raise fail(item, f"{at} needs a fingerprint or a rule")
    reason = item.get("reason")
    if not reason or not reason.strip():
        raise fail(item, f"{at} needs a reason (why this finding is accepted)")
    expires = item.get("expires")
    when: date | None = None
    if expires is not None:
        try:
            when = date.fromisoformat(str(expires)[:10]) if isinstance(expires, str) else None
        except ValueError:
            when = None
        if when is None:
            raise fail(item, f"{at}.expires must be a date such as 2026-12-31, not {expires!r}")
    return Suppression(
        reason=reason,
        fingerprint=item.get("fingerprint") or None,
        rule=item.get("rule") or None,
        server=item.get("server"),
        file=item.get("file"),
        expires=when,
        line=lines.get(id(item)),
    )


def _atomic_write(path: Path, text: str) -> None:
    try:
        write_private(path, text.encode("utf-8"))
    except OSError as exc:
        raise BaselineError(f"cannot write baseline {path}: {exc.strerror}") from exc
