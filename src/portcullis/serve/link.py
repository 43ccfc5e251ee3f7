"""One gateway :class:`~portcullis.gateway.session.Session` over one upstream connection.

The session decides (pure, no I/O); the link does its I/O on the event loop: frames from the
client go through ``Session.from_client`` and on to the upstream in order, frames from the
upstream go through ``Session.from_server`` and are handed to ``deliver`` for the client side.
Approval outcomes arrive on other threads and are brought onto the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from portcullis.gateway.frames import Oversize
from portcullis.gateway.session import Out, Session
from portcullis.serve.types import Upstream

__all__ = ["Link"]

Deliver = Callable[["Link", bytes], None]


class Link:
    """A session and its upstream; ``deliver(link, frame)`` receives frames for the client."""

    def __init__(self, name: str, session: Session, upstream: Upstream, deliver: Deliver) -> None:
        self.name = name
        self.session = session
        self.upstream = upstream
        self.deliver = deliver
        self.gone = False
        self.last_used = time.monotonic()
        self._loop = asyncio.get_running_loop()
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self.cleanup: list[Callable[[], None]] = []  # run after the upstream stopped (a sandbox)
        upstream.on_frame = self._from_server
        upstream.on_gone = self._gone
        session.wake = self._wake

    async def start(self) -> None:
        """Start the upstream and the writer that keeps frames to it in order."""
        await self.upstream.start()
        pid = getattr(self.upstream, "pid", None)
        if isinstance(pid, int):
            self.session.launched(pid)
        self._writer = asyncio.create_task(self._write_loop(), name=f"portcullis-{self.name}")

    def from_client(self, raw: bytes) -> None:
        """Relay one frame from the client through the session."""
        self.last_used = time.monotonic()
        self.dispatch(self.session.from_client(raw))

    def dispatch(self, outs: list[Out]) -> None:
        """Send what the session decided: to the upstream (queued, in order) or the client."""
        lost = False
        for dest, data in outs:
            if dest == "client":
                self.deliver(self, data)
            elif not self.gone:
                self._outbox.put_nowait(data)
            else:
                lost = True
        if lost:
            # The server is gone (or the link closed): a request just let through would
            # otherwise wait for the upstream timeout; it is answered with an error now.
            for dest, data in self.session.upstream_gone(None):
                if dest == "client":
                    self.deliver(self, data)

    def _from_server(self, item: bytes | Oversize) -> None:
        self.last_used = time.monotonic()
        if isinstance(item, Oversize):
            outs = self.session.oversize("server", item)
        else:
            outs = self.session.from_server(item)
        self.dispatch(outs)
        self.session.after_send()

    def _gone(self, status: int | None) -> None:
        if self.gone:
            return
        self.gone = True
        self.dispatch(self.session.upstream_gone(status))

    def _wake(self, fn: Callable[[], list[Out]]) -> None:
        # Approval outcomes come from the broker's threads; the session is only used on the loop.
        def run() -> None:
            self.dispatch(fn())

        self._loop.call_soon_threadsafe(run)

    async def _write_loop(self) -> None:
        while True:
            data = await self._outbox.get()
            if data is None:
                return
            try:
                await self.upstream.send(data)
            except Exception as exc:  # an upstream that cannot be written to is gone
                self.upstream_log(f"cannot send to the upstream: {type(exc).__name__}: {exc}")
                self._gone(None)

    def upstream_log(self, text: str) -> None:
        """Write a line about this link to stderr."""
        from portcullis.serve.logs import log

        log(text, server=self.name)

    async def cancel(self, rid: object) -> None:
        """The client gave up on request ``rid``: let the upstream stop its work."""
        with contextlib.suppress(Exception):
            await self.upstream.cancel(rid)

    async def close(self) -> None:
        """Withdraw open questions, stop the writer and the upstream."""
        self.gone = True  # what still reaches this link is answered at once, not dropped
        with contextlib.suppress(Exception):
            self.session.close()
        self._outbox.put_nowait(None)
        if self._writer is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._writer, 5)
        with contextlib.suppress(Exception):
            await self.upstream.close()
        for fn in self.cleanup:
            with contextlib.suppress(Exception):
                fn()
