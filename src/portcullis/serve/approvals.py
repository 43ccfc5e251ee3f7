"""Approvals across replicas: the ``console`` channel of ``portcullis serve``.

A ``confirm`` call is put into the shared approval queue (Redis, or memory for one replica)
with the labels of the principal who made it. Anyone authenticated may list the questions they
are allowed to answer (``GET /approvals``) and answer one (``POST /approvals/ID``): only a
principal an identity lets ``approve`` the caller's principal. The replica holding the call
waits on the queue, so an answer given through any replica releases it; silence past
``approvals.timeout_s`` is a denial (the broker's timer).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from portcullis.approval.request import ApprovalRequest, Done, Outcome
from portcullis.serve.types import Principal

__all__ = ["ServeChannel", "public_entry"]


class _Ticket:
    def __init__(self, channel: ServeChannel, rid: str) -> None:
        self._channel = channel
        self._rid = rid
        self.task: asyncio.Task[None] | None = None

    def withdraw(self) -> None:
        """Take the question back: stop waiting and remove it from the queue."""
        loop = self._channel.loop

        def run() -> None:
            if self.task is not None:
                self.task.cancel()
            loop.create_task(self._channel.state.approval_withdraw(self._rid))

        loop.call_soon_threadsafe(run)


class ServeChannel:
    """Puts one principal's questions into the shared queue and waits for an answer."""

    name = "console"

    def __init__(
        self, state: Any, principal: Principal, requester: str, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.state = state
        self.principal = principal
        self.requester = requester  # the caller's labels, one a line (identity.labels)
        self.loop = loop

    def unavailable(self) -> str | None:
        """Always reachable: the queue is served over HTTP."""
        return None

    def ask(self, request: ApprovalRequest, done: Done) -> _Ticket:
        """Queue ``request``; ``done`` gets the answer given on any replica."""
        ticket = _Ticket(self, request.id)
        ttl = max(1.0, request.expires - request.created)
        record: dict[str, Any] = {
            "id": request.id,
            "code": request.code,
            "server": request.server,
            "method": request.method,
            "subject": request.subject,
            "shown": request.shown,
            "digest": request.digest,
            "created": request.created,
            "expires": request.expires,
            "session_ok": request.session_ok,
            "principal": self.principal.name,
            # kind:name, so that no principal answers its own question (see App._approvals)
            "owner": f"{self.principal.kind}:{self.principal.name}",
            "requester": self.requester,
        }

        async def wait() -> None:
            try:
                await self.state.approval_put(request.id, record, ttl)
                answer = await self.state.approval_wait(request.id, ttl)
            except Exception as exc:  # the queue cannot be reached: nobody can answer
                reason = f"the approval queue is unreachable ({type(exc).__name__})"
                done(Outcome("unavailable", "console", reason=reason))
                return
            if answer is None:
                return  # the broker's timer turns silence into a denial
            done(
                Outcome(
                    "approved" if answer.get("outcome") == "approved" else "denied",
                    "console",
                    approver=str(answer.get("approver") or "") or None,
                    reason=str(answer.get("reason") or ""),
                    for_session=bool(answer.get("for_session")) and request.session_ok,
                )
            )

        def start() -> None:
            ticket.task = self.loop.create_task(wait())

        self.loop.call_soon_threadsafe(start)
        return ticket

    def close(self) -> None:
        """Nothing to stop: questions are withdrawn one by one."""

    def launched(self, pid: int, name: str | None = None) -> None:
        """Launched servers cannot reach this channel (it needs an authenticated principal)."""


def public_entry(record: dict[str, Any]) -> dict[str, Any]:
    """What ``GET /approvals`` shows of a queued question."""
    with contextlib.suppress(Exception):
        return {
            k: record[k]
            for k in (
                "id",
                "code",
                "server",
                "method",
                "subject",
                "shown",
                "digest",
                "created",
                "expires",
                "session_ok",
                "principal",
            )
        }
    return {"id": record.get("id")}
