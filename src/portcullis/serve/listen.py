"""Listening sockets for the HTTP commands (``serve``, ``console``): binding and head limits.

Imported only by those commands; uvicorn is imported when the protocol is built.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["HEAD_TIMEOUT_S", "MAX_HEAD_BYTES", "bind", "guarded_protocol"]

MAX_HEAD_BYTES: Final = 64 * 1024  # request line and headers (keys, tokens, session ids fit)
HEAD_TIMEOUT_S: Final = 20.0  # to send a request's line and headers, from its first byte


def guarded_protocol(head_timeout_s: float = HEAD_TIMEOUT_S) -> Any:
    """The httptools protocol of uvicorn with a cap on a request's head: size and time.

    uvicorn bounds neither (it buffers a header of any size and waits forever for a head that
    never ends), so one unauthenticated client could hold memory or connections at will.
    """
    import asyncio

    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class Guarded(HttpToolsProtocol):
        _head = 0
        _in_head = True
        _timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._timer = asyncio.get_running_loop().call_later(head_timeout_s, self._expire)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expire(self) -> None:
            self._timer = None
            if self._in_head and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()  # a connection that never sends a full head is closed

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head, self._in_head = 0, True
            self._arm()

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._disarm()
            super().on_headers_complete()

        def data_received(self, data: bytes) -> None:
            counting = self._in_head
            super().data_received(data)
            if counting and self._in_head and not self.transport.is_closing():
                self._head += len(data)
                if self._head > MAX_HEAD_BYTES:
                    self._disarm()
                    self.send_400_response("Request header fields too large.")

    return Guarded


def bind(host: str, port: int) -> Any:
    """A TCP socket bound to ``host:port`` (port 0: a free one); ConfigError when it cannot be."""
    import socket

    from portcullis._exceptions import ConfigError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock
