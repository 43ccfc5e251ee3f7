"""What a person is asked to approve, what they answered, and the channel interface.

An approval is bound to the digest of (server, method, subject, canonical arguments): the
person sees exactly what is forwarded, and a changed argument is a different request. What is
shown is made safe to show: secrets redacted, hidden characters made visible, long values
folded with their digest (the digest still covers the whole value).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Literal, Protocol

import msgspec

from portcullis.detect.canonical import canonical_json

__all__ = [
    "ApprovalRequest",
    "Channel",
    "Done",
    "Outcome",
    "Question",
    "Ticket",
    "binding_digest",
    "fold",
    "new_request",
    "show_arguments",
    "visible",
]

# "pending" is audited when a 2026 client is asked and the call is answered before the person
# is: the retry carries the answer.
OutcomeKind = Literal["approved", "denied", "timeout", "cancelled", "unavailable", "pending"]

# Values longer than this are folded: a person cannot review 40 KB in a dialog, and a long
# value is where an attacker hides the part that matters (the digest tells two values apart).
_FOLD_AT: Final = 200
_FOLD_KEEP: Final = 160
_MAX_SHOWN: Final = 4000
# The short code: no 0/O or 1/I/L, so it can be read off a screen and typed.
_CODE_ALPHABET: Final = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
_INVISIBLE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})
_FILLERS: Final = frozenset({0x115F, 0x1160, 0x3164, 0xFFA0, 0x034F})


class ApprovalRequest(msgspec.Struct, frozen=True):
    """One call waiting for a person's decision."""

    id: str  # unguessable (128 bits, hex); names the request in the console queue
    code: str  # short code shown only with the request; scripts must repeat it to answer
    server: str
    method: str  # tools/call, prompts/get, resources/read, resources/subscribe
    subject: str  # the tool name, prompt name or resource URI
    shown: str  # the arguments as shown to the person (see show_arguments)
    digest: str  # sha256 hex of (server, method, subject, canonical arguments)
    created: float  # time.time()
    expires: float  # time.time() after which the request is denied
    session_ok: bool = False  # the policy lets the person approve it for the rest of the session
    reason: str = ""  # why the policy asked (the confirm verdict's reason), for the person
    rule: str = ""  # the policy rule that asked (e.g. "tools.confirm")

    def summary(self) -> str:
        """The question, as one block of text for a terminal or a dialog."""
        what = {"tools/call": "tool", "prompts/get": "prompt"}.get(self.method, "resource")
        lines = [
            f'MCP server "{visible(self.server)}" wants to run {what} "{visible(self.subject)}"'
            if what == "tool"
            else f'MCP server "{visible(self.server)}": {self.method} {visible(self.subject)}',
        ]
        if self.shown:
            lines += ["arguments:", self.shown]
        lines.append(f"digest: sha256:{self.digest[:16]}")
        return "\n".join(lines)


class Outcome(msgspec.Struct, frozen=True):
    """What a channel got: the person's answer, or why there was none."""

    outcome: OutcomeKind
    channel: str
    approver: str | None = None  # OS user name, or "client" for elicitation
    reason: str = ""
    for_session: bool = False  # approved for the rest of the session (only when session_ok)

    @property
    def approved(self) -> bool:
        """Whether the call may be forwarded."""
        return self.outcome == "approved"

    def audit(self) -> dict[str, Any]:
        """The audit record's ``approval`` field."""
        record: dict[str, Any] = {"channel": self.channel, "outcome": self.outcome}
        if self.approver is not None:
            record["approver"] = self.approver
        if self.for_session:
            record["scope"] = "session"
        return record


Done = Callable[[Outcome], None]


class Ticket(Protocol):
    """A question put to a person; withdrawing it means ``done`` is never called."""

    def withdraw(self) -> None:
        """Take the question back (idempotent)."""


class Question:
    """A request put on a channel: answered once or withdrawn, never both.

    ``done`` is called under ``lock`` (reentrant: ``done`` may withdraw this very question),
    so that :meth:`withdraw` cannot return while an answer is still to be delivered.
    """

    def __init__(self, request: ApprovalRequest, done: Done) -> None:
        self.request = request
        self._done = done
        self.lock = threading.RLock()
        self.over = False

    def finish(self, outcome: Outcome) -> bool:
        """Deliver ``outcome`` unless withdrawn or already answered; True when delivered."""
        with self.lock:
            if self.over:
                return False
            self.over = True
            self.closed()
            self._done(outcome)
            return True

    def withdraw(self) -> None:
        """Take the question back; ``done`` is never called after this returns."""
        with self.lock:
            if self.over:
                return
            self.over = True
        self.closed()

    def closed(self) -> None:
        """Called once when the question ends (the channel's hook; nothing by default)."""


class Channel(Protocol):
    """A way to reach a person out of band (the console queue, the terminal)."""

    name: str

    def unavailable(self) -> str | None:
        """Why this channel cannot reach a person now, or None when it can."""

    def ask(self, request: ApprovalRequest, done: Done) -> Ticket:
        """Put the question; ``done`` is called at most once, later, from another thread."""


def binding_digest(server: str, method: str, subject: str, args: Any) -> str:
    """The sha256 hex an approval is bound to; any change to the arguments changes it."""
    try:
        data = canonical_json([server, method, subject, args])
    except (TypeError, ValueError):
        # Not canonicalisable (cannot happen for decoded JSON): bind to a form that still
        # differs whenever the value does.
        data = repr([server, method, subject, args]).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def new_request(
    server: str,
    method: str,
    subject: str,
    args: Any,
    *,
    timeout_s: float,
    session_ok: bool = False,
    reason: str = "",
    rule: str = "",
    clock: Callable[[], float] = time.time,
) -> ApprovalRequest:
    """A fresh request with an unguessable id and a short code.

    ``reason`` and ``rule`` say why the policy asked; they are shown with the request.
    """
    import secrets  # (approvals are rare: kept off the gateway's start-up)

    now = clock()
    code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(6))
    return ApprovalRequest(
        id=secrets.token_hex(16),  # hex: an id starting with "-" would read as an option
        code=f"{code[:3]}-{code[3:]}",
        server=server,
        method=method,
        subject=subject,
        shown=show_arguments(args),
        digest=binding_digest(server, method, subject, args),
        created=now,
        expires=now + timeout_s,
        session_ok=session_ok,
        reason=reason,
        rule=rule,
    )


def visible(text: str, *, multiline: bool = False, mark: str = "<U+{:04X}>") -> str:
    """``text`` with every invisible or control character written as ``<U+XXXX>``.

    Newlines and tabs are kept only in ``multiline`` text: in a one-line field (a server or
    tool name) they could draw a fake line of the question. ``mark`` is the format of the
    replacement (the web console writes ``⟨U+XXXX⟩``).
    """
    if text.isascii() and text.isprintable():
        return text
    import unicodedata

    out: list[str] = []
    for ch in text:
        cp = ord(ch)
        if (
            unicodedata.category(ch) in _INVISIBLE_CATEGORIES
            or 0xFE00 <= cp <= 0xFE0F  # variation selectors
            or 0xE0100 <= cp <= 0xE01EF
            or cp in _FILLERS
            or (unicodedata.category(ch) == "Zs" and cp != 0x20)
        ) and not (multiline and ch in "\n\t"):
            out.append(mark.format(cp))
        else:
            out.append(ch)
    return "".join(out)


def show_arguments(args: Any) -> str:
    """The arguments as a person should see them: redacted, visible, folded; '' for none."""
    if args is None or args == {}:
        return ""
    import json

    from portcullis.detect.redact import redact_value

    redacted, _ = redact_value(args)
    text = json.dumps(fold(redacted), ensure_ascii=False, indent=2, sort_keys=True)
    text = visible(text, multiline=True)
    if len(text) > _MAX_SHOWN:
        more = len(text) - _MAX_SHOWN
        text = f"{text[:_MAX_SHOWN]}\n… ({more} more characters not shown; the digest covers all)"
    return text


def fold(value: Any) -> Any:
    """``value`` with every string over 200 characters cut, its length and digest added."""
    if isinstance(value, str):
        if len(value) <= _FOLD_AT:
            return value
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        return f"{value[:_FOLD_KEEP]}… ({len(value)} characters, sha256:{digest})"
    if isinstance(value, dict):
        return {str(k): fold(v) for k, v in value.items()}
    if isinstance(value, list):
        return [fold(v) for v in value]
    return value
