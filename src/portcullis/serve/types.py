"""The types the HTTP front's parts share: who is calling, and what an upstream looks like."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

import msgspec

from portcullis._exceptions import PortcullisError
from portcullis.gateway.frames import Oversize

__all__ = ["AuthFailure", "FrameSink", "GoneSink", "Principal", "Upstream"]


class Principal(msgspec.Struct, frozen=True):
    """An authenticated caller of ``portcullis serve``."""

    name: str  # an API key's name, or the token's principal claim (default ``sub``)
    kind: Literal["key", "oauth"]
    servers: tuple[str, ...] | None = None  # an API key's server scope (None: not limited)
    groups: tuple[str, ...] = ()  # from the token's groups claim
    scopes: tuple[str, ...] = ()  # from the token's scope / scp claim
    expires: float | None = None  # the token's exp (epoch seconds)


class AuthFailure(PortcullisError):
    """A request that is not authenticated (401) or not authorised (403).

    ``error`` is the RFC 6750 error code (``invalid_request``, ``invalid_token``,
    ``insufficient_scope``) or None when no credentials were sent at all.
    """

    def __init__(
        self,
        status: Literal[401, 403],
        description: str,
        *,
        error: str | None = "invalid_token",
        scope: tuple[str, ...] = (),
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.error = error
        self.scope = scope


FrameSink = Callable[[bytes | Oversize], None]
GoneSink = Callable[[int | None], None]


class Upstream(Protocol):
    """One connection to an upstream MCP server (a child process or a remote HTTP server).

    Frames from the server (responses, notifications, server requests) are handed to
    ``on_frame`` as they arrive, on the event loop; ``on_gone`` is called once when the
    server can no longer be reached (a child's exit status, or None).
    """

    name: str
    on_frame: FrameSink
    on_gone: GoneSink

    async def start(self) -> None:
        """Start the process or open the connection; raise GatewayError when it cannot."""

    async def send(self, raw: bytes) -> None:
        """Send one JSON-RPC message (its bytes, without a newline)."""

    async def cancel(self, rid: Any) -> None:
        """The client gave up on request ``rid``: stop the upstream work it started."""

    async def close(self) -> None:
        """Stop the server (process group) or end the upstream session; idempotent."""
