"""The out-of-band channels of one gateway, each question bounded by ``approvals.timeout_s``.

The session runs the order of ``approvals.channels`` itself (elicitation goes through the
client, which only the session talks to); the broker puts one question to one out-of-band
channel and turns silence into a ``timeout`` outcome. Outcomes arrive on other threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from portcullis.approval.request import ApprovalRequest, Channel, Done, Outcome, Ticket

__all__ = ["Broker", "Deferred"]

_BUILD_WAIT_S = 10.0


class _Timed:
    """One question with a deadline; whichever comes first (answer, deadline, withdraw) wins."""

    def __init__(self, name: str, timeout_s: float, done: Done) -> None:
        self._name = name
        self._timeout_s = timeout_s
        self._done = done
        self._lock = threading.Lock()
        self._over = False
        self._ticket: Ticket | None = None
        self._timer = threading.Timer(timeout_s, self._expire)
        self._timer.daemon = True

    def start(self, channel: Channel, request: ApprovalRequest) -> None:
        self._ticket = channel.ask(request, self._answer)
        self._timer.start()

    def _finish(self) -> bool:
        with self._lock:
            if self._over:
                return False
            self._over = True
        return True

    def _answer(self, outcome: Outcome) -> None:
        if self._finish():
            self._timer.cancel()
            # Called outside the lock: ``done`` takes the relay's lock, and the relay may be
            # withdrawing this very question while holding it.
            self._done(outcome)

    def _expire(self) -> None:
        if self._finish():
            if self._ticket is not None:
                self._ticket.withdraw()
            reason = f"no answer on the {self._name} within {self._timeout_s:g} s"
            self._done(Outcome("timeout", self._name, reason=reason))

    def withdraw(self) -> None:
        if self._finish():
            self._timer.cancel()
            if self._ticket is not None:
                self._ticket.withdraw()


class _Timer:
    """A cancellable callback after a delay (the legacy elicitation's deadline)."""

    def __init__(self, seconds: float, fn: Callable[[], None]) -> None:
        self._timer = threading.Timer(seconds, fn)
        self._timer.daemon = True
        self._timer.start()

    def withdraw(self) -> None:
        self._timer.cancel()


class Deferred:
    """A channel built on a thread, so its imports and socket overlap the server's start-up.

    Questions wait for the build (bounded); launched servers noted before it are passed on
    once it is done.
    """

    def __init__(self, name: str, build: Callable[[], Channel]) -> None:
        self.name = name
        self._build_channel = build
        self._lock = threading.Lock()
        self._channel: Channel | None = None
        self._error = "still starting"
        self._early: list[int] = []
        self._thread = threading.Thread(target=self._build, name=f"portcullis-{name}", daemon=True)
        self._thread.start()

    def _build(self) -> None:
        try:
            channel = self._build_channel()
        except Exception as exc:  # an unbuilt channel is an unavailable one
            self._error = f"failed to start ({type(exc).__name__}: {exc})"
            return
        with self._lock:
            self._channel, early = channel, self._early
        for pid in early:
            self._launched(channel, pid)

    def _ready(self) -> Channel | None:
        self._thread.join(_BUILD_WAIT_S)
        return self._channel

    def unavailable(self) -> str | None:
        """Why the channel cannot reach a person (not built yet counts), or None."""
        channel = self._ready()
        return self._error if channel is None else channel.unavailable()

    def ask(self, request: ApprovalRequest, done: Done) -> Ticket:
        """Ask on the built channel (callers check :meth:`unavailable` first)."""
        channel = self._ready()
        if channel is None:
            raise RuntimeError(self._error)
        return channel.ask(request, done)

    def launched(self, pid: int) -> None:
        """Pass the launched server on, now or once the channel is built."""
        with self._lock:
            channel = self._channel
            if channel is None:
                self._early.append(pid)
                return
        self._launched(channel, pid)

    @staticmethod
    def _launched(channel: Channel, pid: int) -> None:
        hook = getattr(channel, "launched", None)
        if hook is not None:
            hook(pid)

    def close(self) -> None:
        """Close the channel once it is built."""
        channel = self._ready()
        hook = getattr(channel, "close", None)
        if hook is not None:
            hook()


class Broker:
    """Out-of-band channels by name, and the deadline every question gets."""

    def __init__(
        self,
        channels: Mapping[str, Channel],
        timeout_s: float,
        *,
        order: tuple[str, ...] = (),
    ) -> None:
        self.channels = dict(channels)
        self.timeout_s = timeout_s
        self.order = order  # approvals.channels, elicitation included

    def unavailable(self, name: str) -> str | None:
        """Why channel ``name`` cannot reach a person now, or None."""
        channel = self.channels.get(name)
        if channel is None:
            return "not set up in this gateway"
        try:
            return channel.unavailable()
        except Exception as exc:  # a broken channel is an unavailable one, never an approval
            return f"failed ({type(exc).__name__}: {exc})"

    def ask(self, name: str, request: ApprovalRequest, done: Done) -> Ticket:
        """Ask on channel ``name``; ``done`` gets the answer or a timeout, once, on a thread."""
        timed = _Timed(name, self.timeout_s, done)
        timed.start(self.channels[name], request)
        return timed

    def after(self, seconds: float, fn: Callable[[], None]) -> Ticket:
        """Call ``fn`` on a thread after ``seconds`` unless withdrawn first."""
        return _Timer(seconds, fn)

    def launched(self, pid: int) -> None:
        """The gateway started its MCP server: processes it starts may not approve."""
        for channel in self.channels.values():
            hook = getattr(channel, "launched", None)
            if hook is not None:
                hook(pid)

    def close(self) -> None:
        """Stop the channels (the console queue's socket, the terminal's worker)."""
        for channel in self.channels.values():
            hook = getattr(channel, "close", None)
            if hook is not None:
                hook()
