"""What the console shows and does, without HTTP: approvals, definition changes, audit.

Each function reads or changes state through the same library calls as the CLI commands
(``portcullis approvals``, ``portcullis pin approve``, ``portcullis audit``), so the console is
one more client of the same stores, never a second source of truth. Blocking I/O: the routes
call these from a worker thread.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal

from portcullis.console.render import pretty, show_marked, visible

__all__ = [
    "DECISIONS",
    "PAGE_SIZE",
    "TOO_DEEP",
    "AnswerResult",
    "ApprovalView",
    "AuditFilters",
    "AuditPage",
    "DefinitionChange",
    "Integrity",
    "answer_request",
    "approval_views",
    "approve_definitions",
    "audit_page",
    "audit_record",
    "definition_changes",
    "integrity",
    "log_signature",
    "shown_digest",
]

DECISIONS: Final = ("allow", "deny", "confirm", "redact", "flag")
PAGE_SIZE: Final = 50
_KIND_NAMES: Final = {
    "tools": "tool",
    "prompts": "prompt",
    "resources": "resource",
    "resourceTemplates": "resource",
    "server": "instructions",
}


# -- approvals ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalView:
    """One pending request as the page shows it (every text already made visible)."""

    id: str
    server: str
    method: str
    subject: str
    shown: str
    digest: str
    reason: str
    rule: str
    session_ok: bool
    seconds_left: int
    answerable: bool  # False when this console was not given the code (started by a server)


def approval_views(entries: list[dict[str, Any]], now: float | None = None) -> list[ApprovalView]:
    """The queue's entries (``approval.console.pending``) as views, oldest first."""
    now = time.time() if now is None else now
    views = []
    for e in entries:
        try:
            expires = float(e.get("expires") or 0)
        except (TypeError, ValueError):
            expires = 0.0
        views.append(
            ApprovalView(
                id=visible(str(e.get("id", ""))),
                server=visible(str(e.get("server", ""))),
                method=visible(str(e.get("method", ""))),
                subject=visible(str(e.get("subject", ""))),
                shown=show_marked(str(e.get("shown") or "")),
                digest=visible(str(e.get("digest") or "")),
                reason=visible(str(e.get("reason") or "")),
                rule=visible(str(e.get("rule") or "")),
                session_ok=e.get("session_ok") is True,
                seconds_left=max(0, int(expires - now)),
                answerable=isinstance(e.get("code"), str),
            )
        )
    return views


@dataclass(frozen=True)
class AnswerResult:
    """What became of an answer: ``ok`` and a sentence for the person."""

    ok: bool
    message: str


def answer_request(
    queue: Path,
    request_id: str,
    decision: Literal["approve", "deny", "session"],
    digest: str,
) -> AnswerResult:
    """Answer one request with the code the queue gave us, bound to the digest shown."""
    from portcullis._exceptions import ApprovalError
    from portcullis.approval.console import answer, pending

    try:
        entries = pending(queue)
    except ApprovalError as exc:
        return AnswerResult(False, f"the approval queue cannot be read: {exc}")
    entry = next((e for e in entries if e.get("id") == request_id), None)
    if entry is None:
        return AnswerResult(False, "that request is no longer waiting (answered, expired or gone)")
    code = entry.get("code")
    if not isinstance(code, str):
        why = entry.get("codes_withheld") or "the queue did not give this console the code"
        return AnswerResult(False, f"cannot answer: {visible(str(why))}")
    try:
        response = answer(
            queue,
            request_id,
            code,
            "deny" if decision == "deny" else "approve",
            for_session=decision == "session",
            digest=digest,
        )
    except ApprovalError as exc:
        return AnswerResult(False, str(exc))
    if response.get("ok"):
        what = {"approve": "approved", "deny": "denied", "session": "approved for this session"}
        subject = visible(str(entry.get("subject", "")))
        return AnswerResult(True, f"{what[decision]}: {subject}")
    return AnswerResult(False, visible(str(response.get("error") or "the gateway refused")))


# -- definitions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DefinitionChange:
    """One pending definition with its diff against the pinned one."""

    server: str
    kind: str  # tool | prompt | resource | instructions
    key: str  # as stored: what ``approve`` takes
    name: str  # made visible
    reason: str  # new | changed | held
    diff: list[tuple[str, str]] = field(default_factory=list)  # (css class, line)
    #: what approving this name would re-pin, as (pin file, kind, key, definition hash)
    item: tuple[str, str, str, str] = ("", "", "", "")
    #: the digest of everything "Approve (re-pin)" on this card re-pins: the form carries it
    bound: str = ""
    #: what the injection detectors find in the new definition (severity, rule, field, evidence)
    findings: list[tuple[str, str, str, str]] = field(default_factory=list)


def shown_digest(changes: list[DefinitionChange], server: str, key: str | None = None) -> str:
    """The digest of the pending definitions an approval of ``server`` (``key``) covers.

    The page puts it in each form; :func:`approve_definitions` re-pins only when the store
    still holds exactly those definitions, so a server that changes a definition between
    the page and the click (or adds one before "Approve all") gets nothing re-pinned.
    """
    items = sorted(c.item for c in changes if c.server == server and (key is None or c.key == key))
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def definition_changes(directory: Path | None = None) -> list[DefinitionChange]:
    """Every pending definition in the pin store, by server, kind and name."""
    from portcullis.detect.canonical import definition_hash
    from portcullis.pins.diff import diff_definitions
    from portcullis.pins.store import PinStore

    out = []
    for entry in PinStore(directory).entries():
        for kind in sorted(entry.pending):
            for key, definition in sorted(entry.pending[kind].items()):
                old = entry.pins.get(kind, {})
                text = diff_definitions({key: old[key]} if key in old else {}, {key: definition})
                out.append(
                    DefinitionChange(
                        server=entry.server,
                        kind=_KIND_NAMES.get(kind, kind),
                        key=key,
                        name=visible(key),
                        reason=entry.reasons.get(kind, {}).get(key, "new"),
                        diff=[_diff_line(line) for line in text.splitlines()],
                        item=(entry.path.name, kind, key, definition_hash(definition)),
                        findings=_definition_findings(definition),
                    )
                )
    return [replace(c, bound=shown_digest(out, c.server, c.key)) for c in out]


def _definition_findings(definition: Any) -> list[tuple[str, str, str, str]]:
    """Injection and hidden-character findings in a pending definition, most severe first."""
    from portcullis.detect.injection import scan_definition

    if not isinstance(definition, dict):
        return []
    order = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
    found = [
        (f.severity, f.rule, visible(pointer or "/"), visible(f.evidence)[:200])
        for pointer, f in scan_definition(definition)
    ]
    return sorted(found, key=lambda f: (order.get(f[0], 5), f[1], f[2]))


def _diff_line(line: str) -> tuple[str, str]:
    if line.startswith(("+++", "---")):
        return "head", line
    if line.startswith("+"):
        return "ins", line
    if line.startswith("-"):
        return "del", line
    if line.startswith("@@"):
        return "hunk", line
    return "same", line


def approve_definitions(
    server: str,
    keys: list[str] | Literal["all"],
    directory: Path | None = None,
    *,
    shown: str,
) -> list[tuple[str, str]]:
    """Re-pin pending definitions, as ``portcullis pin approve --server S [NAME…|--all]``.

    ``shown`` is the :func:`shown_digest` the page displayed with the button: when the
    pending definitions it covers changed since (a new version, or one more for "all"),
    nothing is re-pinned and :class:`ApprovalError` says to look again.
    """
    from portcullis._exceptions import ApprovalError
    from portcullis.pins.store import ChangedSinceShownError, PinStore

    changes = definition_changes(directory)
    if keys == "all":
        current = shown_digest(changes, server)
    elif len(keys) == 1:
        current = shown_digest(changes, server, keys[0])
    else:
        raise ApprovalError("approve one definition, or all of a server")
    if not hmac.compare_digest(shown.strip().lower().encode("utf-8", "replace"), current.encode()):
        raise ApprovalError(
            "the pending definitions changed since the page was shown (or the page is old); "
            "nothing was re-pinned: look at the diff again"
        )
    shown_items = [
        c.item for c in changes if c.server == server and (keys == "all" or c.key == keys[0])
    ]
    try:
        # The store compares what it would re-pin with what was shown, under its own locks.
        return PinStore(directory).approve(server, keys, expect=shown_items)
    except ChangedSinceShownError as exc:
        raise ApprovalError(str(exc)) from None


# -- audit ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilters:
    """The audit page's filters (empty strings are unset)."""

    server: str = ""
    tool: str = ""
    decision: str = ""
    rule: str = ""
    principal: str = ""
    since: str = ""
    until: str = ""

    def problems(self) -> list[str]:
        """What is wrong with the filters, for the page (an empty list when usable)."""
        from portcullis.audit import parse_time

        out = []
        if self.decision and self.decision not in DECISIONS:
            out.append(f"unknown decision {visible(self.decision)!r}")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value:
                try:
                    parse_time(value)
                except ValueError:
                    out.append(f"{name}: {visible(value)!r} is not a date or RFC 3339 time")
        return out


@dataclass(frozen=True)
class AuditRow:
    """One record as a table row (every text made visible)."""

    seq: int
    ts: str
    server: str
    tool: str
    decision: str
    rule: str
    principal: str
    reason: str


@dataclass(frozen=True)
class AuditPage:
    """A page of matching records, newest first."""

    rows: list[AuditRow]
    page: int
    more: bool
    skipped: int  # unreadable lines


#: A record nested deeper than rendering recurses (only a damaged or tampered log has one).
TOO_DEEP: Final = (
    "the record is nested too deeply to show (a damaged or tampered log); "
    "`portcullis audit verify` names the first bad record"
)


def audit_page(log: Path, filters: AuditFilters, page: int = 1) -> AuditPage:
    """Page ``page`` (1-based) of the records matching ``filters``, newest first."""
    from portcullis.audit import log_files, query

    page = max(1, page)
    if not log_files(log) or filters.problems():
        return AuditPage([], page, False, 0)
    errors: list[str] = []
    # Only the newest page*size+1 matches are kept: memory stays bounded however long the log.
    newest: deque[dict[str, Any]] = deque(maxlen=page * PAGE_SIZE + 1)
    newest.extend(query(log, **{k: v or None for k, v in vars(filters).items()}, errors=errors))
    ordered = list(reversed(newest))
    start = (page - 1) * PAGE_SIZE
    chosen = ordered[start : start + PAGE_SIZE]
    more = len(ordered) > start + PAGE_SIZE
    return AuditPage([_row(r) for r in chosen], page, more, len(errors))


def _text(value: Any) -> str:
    if value is None:
        return ""
    return visible(value if isinstance(value, str) else str(value))[:500]


def _row(rec: dict[str, Any]) -> AuditRow:
    seq = rec.get("seq")
    return AuditRow(
        seq=seq if isinstance(seq, int) else -1,
        ts=_text(rec.get("ts")),
        server=_text(rec.get("server")),
        tool=_text(rec.get("tool") or rec.get("subject") or rec.get("method")),
        decision=_text(rec.get("decision")),
        rule=_text(rec.get("rule")),
        principal=_text(rec.get("principal")),
        reason=_text(rec.get("reason")),
    )


def audit_record(log: Path, seq: int) -> str | None:
    """The record with ``seq`` as pretty, redacted, visible JSON; None when there is none.

    Raises :class:`~portcullis._exceptions.AuditError` when the log cannot be read that far.
    """
    from portcullis._exceptions import AuditError
    from portcullis.audit import log_files, read_records

    if not log_files(log):
        return None
    try:
        for rec in read_records(log):
            if rec.get("seq") == seq:
                return pretty(rec, folded=False)
    except RecursionError:
        raise AuditError(f"record {seq} cannot be shown: {TOO_DEEP}") from None
    return None


@dataclass(frozen=True)
class Integrity:
    """The chain's state for the banner."""

    ok: bool
    text: str


def log_signature(log: Path) -> tuple[tuple[str, int, int], ...]:
    """Sizes and mtimes of the log's files: changes whenever a record is written."""
    from portcullis.audit import anchor_path, log_files

    out = []
    for path in [*log_files(log), anchor_path(log)]:
        try:
            st = os.stat(path)
        except OSError:
            continue
        out.append((str(path), st.st_size, st.st_mtime_ns))
    return tuple(out)


def integrity(log: Path, key_dir: Path) -> Integrity:
    """Verify the chain with the install key in ``key_dir``; the banner's text."""
    from portcullis._exceptions import AuditError
    from portcullis._state import install_key
    from portcullis.audit import log_files, tail, verify

    if not log_files(log):
        return Integrity(True, f"No audit log yet at {visible(str(log))}")
    if not (key_dir / "install.key").exists():
        return Integrity(False, f"Chain not verified: no install key in {visible(str(key_dir))}")
    try:
        report = verify(log, install_key(key_dir))
    except AuditError as exc:
        return Integrity(False, f"Chain not verified: {visible(str(exc))}")
    if report.ok:
        last = tail(log, 1)
        seq = last[0].get("seq") if last else None
        upto = seq if isinstance(seq, int) else report.records - 1
        return Integrity(True, f"Chain verified up to record {upto} ({report.records} records)")
    where = report.first_bad if report.first_bad is not None else "?"
    return Integrity(False, f"Chain broken at record {where}: {visible(report.reason)}")
