"""Shared pieces of the sandbox tests."""

from __future__ import annotations

import socket
import threading

__all__ = ["TIMEOUT", "EchoServer", "tcp_echo", "unix_echo"]

TIMEOUT = 5.0


class EchoServer:
    """Echoes every connection on ``listener``; counts the connections it accepted."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.listener.settimeout(0.2)
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(TIMEOUT)
            try:
                while data := conn.recv(4096):
                    conn.sendall(data)
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)
        self.listener.close()


def tcp_echo() -> EchoServer:
    """An echo server on 127.0.0.1 (its port: ``server.port``)."""
    server = EchoServer(socket.create_server(("127.0.0.1", 0)))
    server.port = server.listener.getsockname()[1]  # type: ignore[attr-defined]
    return server


def unix_echo(path: str) -> EchoServer:
    """An echo server on a Unix socket at ``path``."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    return EchoServer(listener)
