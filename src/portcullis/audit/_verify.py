"""``verify``: check every MAC, the seq and prev links, and the head against the anchor.

It reads a consistent snapshot: under the writers' lock (shared) it reads the anchor, opens every
file of the chain and notes each size, then releases the lock and reads at leisure, so a
verification of a large log never holds up the gateway for more than a few system calls.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portcullis._exceptions import AuditError
from portcullis.audit._anchor import Anchor, AnchorState, decode_anchor
from portcullis.audit._files import anchor_path, open_snapshot, read_lines
from portcullis.audit._record import RECOVERY_FIELD, Signer, canonical, parse_record

__all__ = ["VerifyReport", "verify"]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of ``verify``.

    ``records`` counts the records that verified. When ``ok`` is false, ``first_bad`` is the
    seq of the first bad record (for a line that is no readable record, the seq it should have
    had), ``file`` and ``line`` (1-based) say where it is (``line`` is None for a truncation
    found through the anchor), and ``reason`` says what is wrong. When ``ok`` is true,
    ``reason`` summarises what was checked.
    """

    ok: bool
    records: int
    first_bad: int | None = None
    file: str | None = None
    line: int | None = None
    reason: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"audit log intact: {self.reason}"
        where = f"{self.file}" + (f" line {self.line}" if self.line is not None else "")
        seq = f"seq {self.first_bad}" if self.first_bad is not None else "the log"
        return f"audit log broken at {seq} ({where}): {self.reason}"


@dataclass(slots=True)
class _Problem:
    seq: int | None
    file: str
    line: int | None
    reason: str
    resumable: bool = False  # a torn line: the writer carried on after it, so can the check


def verify(path: Path, key: bytes) -> VerifyReport:
    """Verify the log ``path`` (and its rotated files and anchor) with ``key``.

    Raises AuditError when there is no log at all or its files cannot be read.
    """
    path = Path(path)
    signer = Signer(key)
    snap = open_snapshot(path)
    try:
        if not snap.files and snap.anchor_data is None:
            raise AuditError(f"no audit log at {path}")
        anchor: Anchor | None = None
        state: AnchorState = "missing"
        if snap.anchor_data is not None:
            anchor, state = decode_anchor(snap.anchor_data, signer)
        checker = _Checker(path, signer, anchor, state)
        for file, fd, size in snap.files:
            if not checker.check_file(file, read_lines(fd, size)):
                return checker.report(len(snap.files))
        checker.check_anchor()
        return checker.report(len(snap.files))
    finally:
        snap.close()


class _Checker:
    """Walks the records in chain order and remembers the first problem."""

    def __init__(
        self, path: Path, signer: Signer, anchor: Anchor | None, anchor_state: AnchorState
    ) -> None:
        self.path = path
        self.signer = signer
        self.anchor = anchor
        self.anchor_state = anchor_state
        self.records = 0
        self.next_seq: int | None = None  # None until the first record
        self.prev = ""
        self.mac_at_anchor: str | None = None
        self.problem: _Problem | None = None
        self.later: _Problem | None = None  # a second problem after a torn line
        self.records_before_problem = 0
        # (file, line, length) of the last line that was not JSON, to match a writer's note.
        self.unparsed: tuple[str, int, int] | None = None

    def check_file(self, file: Path, lines: Iterator[bytes]) -> bool:
        """Check one file's lines; return False to stop at a problem."""
        name = str(file)
        return all(self._check_line(name, number, raw) for number, raw in enumerate(lines, 1))

    def _flag(self, problem: _Problem) -> bool:
        if self.problem is None:
            self.problem = problem
            self.records_before_problem = self.records
            return problem.resumable
        self.later = problem
        return False

    def _check_line(self, file: str, number: int, raw: bytes) -> bool:
        expected = self.next_seq if self.next_seq is not None else 0
        rec = parse_record(raw)
        if rec is None:
            if not raw.endswith(b"\n"):
                why = "it is torn (no newline, not valid JSON): a write interrupted by a crash?"
            else:
                why = "it is not a JSON object: a torn write, or the line was edited"
                self.unparsed = (file, number, len(raw) - 1)
            # The writer resumes after a torn line, so the chain after it is still checked.
            return self._flag(_Problem(expected, file, number, why, resumable=True))
        seq, prev, mac = rec.get("seq"), rec.get("prev"), rec.pop("mac", None)
        if not (isinstance(seq, int) and isinstance(prev, str) and isinstance(mac, str)):
            why = "it is not an audit record (seq, prev or mac missing)"
            return self._flag(_Problem(expected, file, number, why))
        if not hmac.compare_digest(mac, self.signer.record(canonical(rec))):
            why = "its mac does not match: the record was changed or forged"
            if self.records == 0 and self.anchor_state == "invalid":
                why += " (and the anchor's does not either: is this the right key? --key-file)"
            return self._flag(_Problem(seq, file, number, why))
        rec["mac"] = mac
        if canonical(rec) != (raw[:-1] if raw.endswith(b"\n") else raw):
            why = "it is not in canonical form: the line was edited (a duplicate key?)"
            return self._flag(_Problem(seq, file, number, why))
        broken = self._recovery_problem(rec.get(RECOVERY_FIELD), seq) or self._link_problem(
            seq, prev
        )
        if broken is not None:
            return self._flag(_Problem(seq, file, number, broken))
        self.records += 1
        self.next_seq = seq + 1
        self.prev = mac
        if self.anchor is not None and seq == self.anchor.seq:
            self.mac_at_anchor = mac
        return True

    def _recovery_problem(self, recovery: Any, seq: int) -> str | None:
        if not isinstance(recovery, dict):
            return None
        gap = recovery.get("truncated")
        if isinstance(gap, dict):
            return (
                f"when a writer reopened the log, records {gap.get('from_seq')}.."
                f"{gap.get('to_seq')} that the anchor vouched for were missing (truncated); "
                f"the chain resumes at seq {seq}"
            )
        state = recovery.get("anchor")
        if state is not None:
            return (
                f"when a writer reopened the log before seq {seq}, the anchor was {state}: "
                "records before this one may have been removed"
            )
        torn = recovery.get("torn_bytes")
        p = self.problem
        if self.unparsed is not None and p is not None and self.unparsed == (p.file, p.line, torn):
            # The writer that came next found this line torn and started after it.
            p.reason = (
                f"it is torn: an interrupted write left {torn} bytes, and the writer "
                "resumed on the next line"
            )
        return None  # the torn line itself is the problem, reported where it is

    def _link_problem(self, seq: int, prev: str) -> str | None:
        if self.next_seq is None:
            if seq != 0:
                return (
                    f"the chain starts at seq {seq}, not 0: its oldest records "
                    "(or rotated files) are missing"
                )
            if self.anchor is not None and prev != self.anchor.genesis:
                return (
                    "its prev is not the genesis id the anchor records: the log was replaced "
                    "or the anchor belongs to another log"
                )
            return None
        if seq > self.next_seq:
            missing = (
                f"record {self.next_seq} is"
                if seq == self.next_seq + 1
                else f"records {self.next_seq}..{seq - 1} are"
            )
            return f"seq {seq} follows seq {self.next_seq - 1}: {missing} missing or out of order"
        if seq < self.next_seq:
            return (
                f"seq {seq} follows seq {self.next_seq - 1}: records are out of order or duplicated"
            )
        if prev != self.prev:
            return (
                f"its prev is not the mac of seq {seq - 1}: a record was removed, "
                "inserted or reordered"
            )
        return None

    def check_anchor(self) -> None:
        """Compare the chain's head with the anchor (after a walk that was not stopped)."""
        active = str(self.path)
        last = self.next_seq - 1 if self.next_seq is not None else -1
        anchor = self.anchor
        if anchor is None:
            why = (
                f"the anchor {anchor_path(self.path)} is missing: a truncation cannot be ruled out"
                if self.anchor_state == "missing"
                else f"the anchor {anchor_path(self.path)} does not verify with this key: "
                "it was edited, or the key is wrong"
            )
            self._flag(_Problem(None, active, None, why))
        elif anchor.seq > last:
            count = anchor.seq - last
            why = (
                f"the log ends at seq {last} but the anchor records seq {anchor.seq}: "
                f"the last {count} record{'s' if count > 1 else ''} were removed (truncated)"
            )
            self._flag(_Problem(last + 1, active, None, why))
        elif anchor.seq >= 0 and self.mac_at_anchor != anchor.mac:
            why = (
                f"the record at seq {anchor.seq} is not the one the anchor records: the log "
                "was replaced, or the anchor belongs to another log"
            )
            self._flag(_Problem(anchor.seq, active, None, why))

    def report(self, files: int) -> VerifyReport:
        """Build the report from what the walk (and the anchor check) found."""
        p = self.problem
        if p is None:
            last = self.next_seq - 1 if self.next_seq is not None else -1
            span = f", seq 0..{last}" if last >= 0 else ""
            anchor = self.anchor
            if anchor is not None and anchor.seq < last:
                tail = (
                    f"; the anchor is {last - anchor.seq} record(s) behind the head "
                    "(a writer stopped between writing a record and updating the anchor)"
                )
            else:
                tail = "; the head matches the anchor"
            plural = "s" if files != 1 else ""
            return VerifyReport(
                ok=True,
                records=self.records,
                reason=f"{self.records} records in {files} file{plural}{span}{tail}",
            )
        reason = p.reason
        if self.later is not None:
            later = self.later
            where = later.file + (f" line {later.line}" if later.line is not None else "")
            reason += f"; then at {where}: {later.reason}"
        elif p.resumable and self.records > self.records_before_problem:
            after = self.records - self.records_before_problem
            reason += (
                "; the record after it verifies"
                if after == 1
                else f"; the {after} records after it verify"
            )
        return VerifyReport(
            ok=False,
            records=self.records,
            first_bad=p.seq,
            file=p.file,
            line=p.line,
            reason=reason,
        )
