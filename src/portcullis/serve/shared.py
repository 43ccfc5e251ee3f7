"""One upstream process answering several principals: a server the policy declares ``shared``.

Only 2026-07-28 requests use it: they are stateless by the protocol, and the front renumbers
their ids with ids unique in the process, so the answer to each request can be routed back to
the link (the principal's gateway session) that sent it. Each link still has its own session,
rules and audit trail; only the process is shared. Legacy sessions always get their own process:
their handshake is per-connection state.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Any

from portcullis.gateway import frames as fr
from portcullis.gateway.frames import Oversize
from portcullis.serve.front import key_of, swap_id, with_id
from portcullis.serve.types import FrameSink, GoneSink, Upstream

__all__ = ["SharedUpstream"]


def _ignore_frame(_item: bytes | Oversize) -> None:
    pass


def _ignore_gone(_status: int | None) -> None:
    pass


class SharedUpstream:
    """The real upstream and the views handed to each link."""

    def __init__(self, upstream: Upstream, *, cleanup: Callable[[], None] | None = None) -> None:
        self.upstream = upstream
        self.closed = False  # its last view left and the process was stopped
        self._cleanup = cleanup
        self.name = upstream.name
        self.views: set[_View] = set()
        self.gone = False
        self._start: asyncio.Task[None] | None = None
        # request id on the wire -> (the view that sent it, the id it sent)
        self._owners: dict[tuple[str, Any], tuple[_View, Any]] = {}
        self._numbers = itertools.count(1)
        self._refusals: set[asyncio.Future[None]] = set()
        upstream.on_frame = self._frame
        upstream.on_gone = self._gone

    def view(self) -> _View:
        """A new connection for one link."""
        view = _View(self)
        self.views.add(view)
        return view

    def _frame(self, item: bytes | Oversize) -> None:
        if isinstance(item, Oversize):
            rid = fr.guess_id(item.head, item.tail)
            owner = self._owners.pop(key_of(rid), None) if rid is not None else None
            if owner is not None:
                owner[0].on_frame(item)
            return
        try:
            frame = fr.decode_frame(item)
        except fr.FrameError:
            return
        if frame.kind == "response":
            owner = self._owners.pop(key_of(frame.id), None)
            if owner is not None:
                view, original = owner
                view.on_frame(item if original == frame.id else swap_id(item, original))
        elif frame.kind == "request":
            # No client can be asked on behalf of a process several principals share; a
            # request left unanswered would hold the server (and the call waiting on it).
            refusal = fr.error_response(
                frame.id, -32601, "a shared server cannot send requests to its clients"
            )
            task = asyncio.ensure_future(self._refuse(refusal))
            self._refusals.add(task)
            task.add_done_callback(self._refusals.discard)
        # Notifications of a shared server cannot be attributed to one principal: dropped.

    async def _refuse(self, raw: bytes) -> None:
        with contextlib.suppress(Exception):  # a server that is gone is reported by on_gone
            await self.upstream.send(raw)

    def _gone(self, status: int | None) -> None:
        self.gone = True
        for view in list(self.views):
            view.on_gone(status)

    def _sent(self, view: _View, raw: bytes) -> bytes:
        """Note the view a request's answer belongs to; the bytes to send."""
        try:
            frame = fr.decode_frame(raw)
        except fr.FrameError:
            return raw
        if frame.kind != "request":
            return raw
        rid = frame.id
        if isinstance(rid, str):
            # The gateway sessions' own requests (their tools/list before a call) use ids of
            # their own that two sessions may share: give each a wire id of its own.
            wire = f"{rid}@{next(self._numbers)}"
            self._owners[key_of(wire)] = (view, rid)
            return with_id(raw, wire)
        self._owners[key_of(rid)] = (view, rid)  # the front's ids: unique in the process
        return raw

    async def _release(self, view: _View) -> None:
        self.views.discard(view)
        self._owners = {k: v for k, v in self._owners.items() if v[0] is not view}
        if not self.views and not self.closed:
            self.closed = True
            cancelled = False
            if self._start is not None and not self._start.done():
                # Closing now would find no process yet, and the start would then spawn one
                # that nothing stops: let the start finish, then close what it started.
                try:
                    # A failed start was reported to the views that awaited it.
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self._start)
                except asyncio.CancelledError:
                    cancelled = True  # still closed below (a start racing it is refused)
            await self.upstream.close()
            if self._cleanup is not None:
                self._cleanup()
            if cancelled:
                raise asyncio.CancelledError


class _View:
    """What one link sees: an Upstream whose answers are only its own."""

    def __init__(self, shared: SharedUpstream) -> None:
        self._shared = shared
        self.name = shared.name
        self.on_frame: FrameSink = _ignore_frame
        self.on_gone: GoneSink = _ignore_gone
        self.pid = getattr(shared.upstream, "pid", None)

    async def start(self) -> None:
        """Start the shared process once; every view waits for that one start."""
        shared = self._shared
        if shared._start is None:
            shared._start = asyncio.ensure_future(shared.upstream.start())
        await asyncio.shield(shared._start)
        self.pid = getattr(shared.upstream, "pid", None)

    async def send(self, raw: bytes) -> None:
        """Send, noting which view the request's answer belongs to."""
        await self._shared.upstream.send(self._shared._sent(self, raw))

    async def cancel(self, rid: Any) -> None:
        """Pass a cancellation on; a late answer to ``rid`` is then dropped, not kept for it."""
        owners = self._shared._owners
        owner = owners.get(key_of(rid))
        if owner is not None and owner[0] is self:
            del owners[key_of(rid)]
        await self._shared.upstream.cancel(rid)

    async def close(self) -> None:
        """Leave; the process stops with its last view."""
        await self._shared._release(self)
