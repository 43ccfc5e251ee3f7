"""Forwarder: TCP ``127.0.0.1:PORT`` inside the sandbox to the egress proxy's Unix socket.

A sandbox run with ``sandbox.network: allow_hosts`` has a network namespace of its own holding
only loopback, and HTTP clients expect a TCP proxy address in ``HTTP_PROXY``, not a Unix socket.
This module bridges the two: it listens on loopback inside the sandbox and relays every
connection, byte for byte, to the gateway's egress proxy (:mod:`portcullis.sandbox.egress`),
whose socket is bind-mounted into the sandbox. It decides nothing; the proxy does.

It runs inside the sandbox, in a fresh interpreter on every server start, so it imports only the
standard library (no portcullis, no third-party packages) and little of that.

:func:`start` binds the port *before* forking, so the server may connect as soon as
``start`` returns, and the forked child exits once its parent (the process that called
``start``, usually about to ``exec`` the server) is gone. Run as a script,
``python forwarder.py PORT SOCKET_PATH COMMAND [ARG...]`` starts the forwarder and then
execs the command in the calling process.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time

__all__ = ["main", "start"]

_CHUNK = 64 * 1024
_MAX_CONNECTIONS = 128
_PARENT_POLL = 0.25


def start(port: int, socket_path: str) -> int:
    """Listen on ``127.0.0.1:port``, fork a relay to ``socket_path``; return the child's pid.

    The listening socket is bound before this returns. The child exits when the calling
    process dies; it never returns into the caller's code.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
    except BaseException:
        listener.close()
        raise
    parent = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        listener.close()
        return pid
    code = 1
    try:
        _detach(listener.fileno())
        _serve(listener, socket_path, parent)
        code = 0
    finally:
        # Never unwind into the caller's code, atexit handlers or buffered output: those
        # belong to the parent.
        os._exit(code)


def _detach(keep: int) -> None:
    # The inherited descriptors include the server's stdio pipes to the gateway; holding them
    # would delay the gateway seeing the server's end of stream.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if devnull > 2:
        os.close(devnull)
    os.closerange(3, keep)
    os.closerange(keep + 1, 1 << 16)


def _serve(listener: socket.socket, socket_path: str, parent: int) -> None:
    slots = threading.BoundedSemaphore(_MAX_CONNECTIONS)
    # Polling the parent pid rather than PR_SET_PDEATHSIG: it needs no ctypes import, and
    # PDEATHSIG fires when the forking *thread* exits, not the process.
    listener.settimeout(_PARENT_POLL)
    while os.getppid() == parent:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            time.sleep(0.05)  # e.g. EMFILE: back off rather than spin
            continue
        if not slots.acquire(blocking=False):
            conn.close()
            continue
        try:
            threading.Thread(target=_handle, args=(conn, socket_path, slots), daemon=True).start()
        except RuntimeError:  # no thread to be had: drop this connection, keep serving
            slots.release()
            conn.close()


def _handle(conn: socket.socket, socket_path: str, slots: threading.BoundedSemaphore) -> None:
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.setblocking(True)
        upstream.connect(socket_path)
        _relay(conn, upstream)
    except OSError:
        pass
    finally:
        upstream.close()
        conn.close()
        slots.release()


def _relay(client: socket.socket, upstream: socket.socket) -> None:
    # Same shape as the proxy's relay: a thread per direction (one loop blocked writing one way
    # can deadlock a full-duplex exchange); the client's end of stream is passed on as a
    # half-close, the proxy's end of stream or any error ends both directions.
    outbound = threading.Thread(target=_pump, args=(client, upstream, False), daemon=True)
    outbound.start()
    _pump(upstream, client, True)
    outbound.join()


def _pump(src: socket.socket, dst: socket.socket, final: bool) -> None:
    try:
        while data := src.recv(_CHUNK):
            dst.sendall(data)
        if not final:
            dst.shutdown(socket.SHUT_WR)
            return
    except OSError:
        pass
    for sock in (src, dst):
        try:  # noqa: SIM105 -- contextlib would be one more import on every server start
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> None:
    """``forwarder.py PORT SOCKET_PATH COMMAND [ARG...]``: start the forwarder, exec COMMAND."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or not args[0].isdigit():
        sys.exit("usage: forwarder.py PORT SOCKET_PATH COMMAND [ARG...]")
    start(int(args[0]), args[1])
    # Python ignores SIGPIPE and an ignored signal survives exec: give the server the default.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.execvp(args[2], args[2:])  # noqa: S606 -- the launcher execs the server by design


if __name__ == "__main__":
    main()
