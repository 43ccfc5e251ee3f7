"""The terminal channel: ask on the controlling terminal of the gateway (``/dev/tty``).

Stdin and stdout carry the MCP protocol, so the question goes to the terminal device itself,
opened afresh for each prompt. Prompts are asked one at a time, in order. Input typed before a
prompt appears is discarded, so a stray ``y`` cannot answer a question nobody has read. Only
``y``/``yes`` (and ``s``/``session`` when the policy allows it) approve; anything else,
including an empty line and end of file, denies.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import queue
import select
import threading
from typing import Final

from portcullis.approval.request import ApprovalRequest, Done, Outcome, Question

__all__ = ["TtyChannel"]

NAME: Final = "tty"
_MAX_ANSWER: Final = 4096
# select() wakes this often even without input, as a backstop to the wake pipe.
_POLL_S: Final = 1.0


class _Ticket(Question):
    """One question; withdrawing it wakes the prompt if it is on screen."""

    def __init__(self, channel: TtyChannel, request: ApprovalRequest, done: Done) -> None:
        super().__init__(request, done)
        self._channel = channel

    def closed(self) -> None:
        # (After an answer, the extra wake-up is drained before the next prompt.)
        self._channel._wake()


class TtyChannel:
    """Ask on the terminal at ``path`` (the gateway's controlling terminal by default)."""

    name = NAME

    def __init__(self, path: str = "/dev/tty") -> None:
        self._path = path
        self._queue: queue.SimpleQueue[_Ticket | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._closing = False

    def unavailable(self) -> str | None:
        """None when the terminal can be opened, else why not."""
        if os.name != "posix":
            return "the terminal channel needs a POSIX terminal (not available on this platform)"
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_NOCTTY)
        except OSError as exc:
            return f"no controlling terminal ({self._path}: {exc.strerror})"
        os.close(fd)
        return None

    def ask(self, request: ApprovalRequest, done: Done) -> _Ticket:
        """Queue the question; the worker asks it when the ones before it are answered."""
        ticket = _Ticket(self, request, done)
        with self._lock:
            if self._closing:
                # Reported from another thread, as the contract requires.
                closed = Outcome("unavailable", NAME, reason="the terminal channel closed")
                threading.Thread(target=ticket.finish, args=(closed,), daemon=True).start()
                return ticket
            if self._worker is None:
                self._wake_r, self._wake_w = os.pipe()
                os.set_blocking(self._wake_r, False)
                self._worker = threading.Thread(
                    target=self._run, name="portcullis-tty", daemon=True
                )
                self._worker.start()
        self._queue.put(ticket)
        return ticket

    def close(self) -> None:
        """Stop asking: questions not yet answered are reported unavailable."""
        with self._lock:
            worker = self._worker
            self._closing = True
        if worker is None:
            return
        self._queue.put(None)
        self._wake()
        worker.join(timeout=5)
        with self._lock:
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._wake_r = self._wake_w = -1
            self._worker = None

    def _wake(self) -> None:
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")

    def _run(self) -> None:
        while True:
            ticket = self._queue.get()
            if ticket is None:
                return
            if ticket.over:
                continue
            if self._closing:
                ticket.finish(Outcome("unavailable", NAME, reason="the terminal channel closed"))
                continue
            try:
                outcome = self._prompt(ticket)
            except Exception as exc:
                outcome = Outcome("unavailable", NAME, reason=f"terminal error: {exc}")
            if outcome is not None:
                ticket.finish(outcome)

    def _prompt(self, ticket: _Ticket) -> Outcome | None:
        """The person's answer, or None when the question was withdrawn."""
        request = ticket.request
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_NOCTTY)
        except OSError as exc:
            return Outcome(
                "unavailable",
                NAME,
                reason=f"no controlling terminal ({self._path}: {exc.strerror})",
            )
        try:
            self._drain_wake()
            _discard_typeahead(fd)
            choices = "[y]es / [n]o" + (" / [s]ession" if request.session_ok else "")
            text = f"\nportcullis: approval needed\n{request.summary()}\nApprove? {choices} "
            _write(fd, text)
            try:
                line = self._read_line(fd, ticket)
            except OSError as exc:
                return Outcome(
                    "unavailable", NAME, reason=f"cannot read the terminal: {exc.strerror}"
                )
            if line is None:
                with contextlib.suppress(OSError):
                    _write(fd, "\n(withdrawn)\n")
                if self._closing and not ticket.over:
                    return Outcome("unavailable", NAME, reason="the terminal channel closed")
                return None
            word = line.strip().lower()
            user = _user()
            if word in ("y", "yes"):
                outcome = Outcome(
                    "approved", NAME, approver=user, reason="approved on the terminal"
                )
            elif word in ("s", "session") and request.session_ok:
                outcome = Outcome(
                    "approved",
                    NAME,
                    approver=user,
                    reason="approved on the terminal for the session",
                    for_session=True,
                )
            else:
                outcome = Outcome("denied", NAME, approver=user, reason="denied on the terminal")
            with contextlib.suppress(OSError):
                _write(fd, f"{outcome.outcome}\n")
            return outcome
        finally:
            os.close(fd)

    def _read_line(self, fd: int, ticket: _Ticket) -> str | None:
        """A line from the terminal ("" at end of file), or None once withdrawn."""
        buf = b""
        while True:
            if ticket.over or self._closing:
                return None
            ready, _, _ = select.select([fd, self._wake_r], [], [], _POLL_S)
            if self._wake_r in ready:
                self._drain_wake()
            if fd not in ready:
                continue
            if ticket.over or self._closing:
                return None
            chunk = os.read(fd, 1024)
            if not chunk:
                return buf.decode("utf-8", "replace")
            buf += chunk
            if b"\n" in buf or b"\r" in buf or len(buf) > _MAX_ANSWER:
                return buf.splitlines()[0].decode("utf-8", "replace") if buf.strip() else ""

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self._wake_r, 512):
                pass


def _discard_typeahead(fd: int) -> None:
    try:
        import termios
    except ImportError:
        return
    # Not a terminal that can be flushed: the prompt still needs a fresh line.
    with contextlib.suppress(termios.error, OSError):
        termios.tcflush(fd, termios.TCIFLUSH)


def _write(fd: int, text: str) -> None:
    data = text.encode("utf-8", "replace")
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return "unknown"
