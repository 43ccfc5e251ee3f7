"""Shared pieces of the approval tests: outcome recorders, short state dirs, terminals."""

from __future__ import annotations

import os
import queue
import select
import threading
import time

import pytest

from portcullis.approval.request import Outcome

__all__ = ["WAIT_S", "Done", "Terminal"]

WAIT_S = 10.0


class Done:
    """Records outcomes and checks they arrive on another thread."""

    def __init__(self) -> None:
        self.outcomes: queue.Queue[tuple[Outcome, int]] = queue.Queue()

    def __call__(self, outcome: Outcome) -> None:
        self.outcomes.put((outcome, threading.get_ident()))

    def wait(self) -> Outcome:
        outcome, thread = self.outcomes.get(timeout=WAIT_S)
        assert thread != threading.get_ident(), "done was called synchronously"
        return outcome

    def assert_silent(self, for_s: float = 0.3) -> None:
        with pytest.raises(queue.Empty):
            self.outcomes.get(timeout=for_s)


class Terminal:
    """The person's side of a pty; its other side is handed to what is tested."""

    def __init__(self) -> None:
        import pty

        self.master, self.slave = pty.openpty()
        self.path = os.ttyname(self.slave)
        self.seen = ""
        self.everything = ""  # all output so far, for "never shown" checks

    def read_until(self, text: str) -> str:
        deadline = time.monotonic() + WAIT_S
        while text not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} never appeared; got {self.seen!r}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096).decode("utf-8", "replace")
                except OSError:  # EIO: the other side closed
                    break
                self.seen += chunk
                self.everything += chunk
        before, _, after = self.seen.partition(text)
        self.seen = after
        return before + text

    def type(self, line: str) -> None:
        os.write(self.master, line.encode())

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)
