"""Consent before ``portcullis scan --inspect`` starts a server or sends it the user's secrets.

Starting a server runs code from a configuration, and a repository's configuration chooses
where an HTTP inspection connects: a person agrees on the controlling terminal, never on stdin
(a pipe in CI), within a time limit, with the exact command and the *names* of the environment
variables it would take.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import time
from typing import Protocol

from portcullis.scan.checks._util import redact_url
from portcullis.scan.model import Server
from portcullis.scan.probe import env_refs
from portcullis.scan.report._common import safe as visible

__all__ = ["Consent", "always", "question", "tty_consent", "visible"]


class Consent(Protocol):
    """Whether a server may be started: ``(server, argv, sandboxed) -> bool``."""

    def __call__(self, server: Server, argv: list[str], sandboxed: bool) -> bool:
        """Ask; True to start the server."""
        ...


def always() -> Consent:
    """Consent to every start, sandboxed or not (for embedding and tests; see the module doc).

    The ``--yes`` flag is ``yes=True`` with :func:`tty_consent`, which still asks before an
    unsandboxed start.
    """

    def consent(server: Server, argv: list[str], sandboxed: bool) -> bool:
        return True

    return consent


def tty_consent(timeout_s: float = 120.0, tty: str = "/dev/tty") -> Consent:
    """Ask on the controlling terminal; False when there is none, on timeout, or unless "y".

    Never reads stdin (a pipe in CI) and never waits longer than ``timeout_s``.
    """

    def consent(server: Server, argv: list[str], sandboxed: bool) -> bool:
        try:
            fd = os.open(tty, os.O_RDWR | os.O_NOCTTY)
        except OSError:
            return False
        try:
            if _background(fd):
                return False
            with contextlib.suppress(Exception):  # not a terminal (tests): nothing typed ahead
                import termios

                # keys typed before the question (a "y" meant for an earlier prompt) are not
                # an answer to this one
                termios.tcflush(fd, termios.TCIFLUSH)
            os.write(fd, question(server, argv, sandboxed).encode("utf-8", "replace"))
            answer = b""
            deadline = time.monotonic() + timeout_s
            while not answer.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0:
                    os.write(fd, b"\n(no answer: not started)\n")
                    return False
                ready, _, _ = select.select([fd], [], [], left)
                if not ready:
                    continue
                chunk = os.read(fd, 256)
                if not chunk:
                    return False
                answer += chunk
            return answer.strip().lower() in (b"y", b"yes")
        except OSError:
            return False
        finally:
            os.close(fd)

    return consent


def _background(fd: int) -> bool:
    """Whether ``fd`` is our controlling terminal and we are not its foreground job.

    Reading it then would stop the scan (SIGTTIN) instead of asking; another terminal (no
    foreground group of ours) cannot stop us.
    """
    try:
        return os.tcgetpgrp(fd) != os.getpgrp()
    except OSError:
        return False


def question(server: Server, argv: list[str], sandboxed: bool) -> str:
    """The question shown before a start (or an HTTP connection), every string escaped."""
    if server.transport in ("http", "sse"):
        names = env_refs(server.headers)
        return (
            f'\nportcullis scan --inspect wants to connect to MCP server "{visible(server.name)}" '
            f"({visible(server.client)}, {visible(str(server.file))}):\n"
            f"  url: {visible(redact_url(server.url or ''))}\n"
            f"  sending from your environment: {visible(', '.join(names))} "
            "(values not shown)\n"
            "This configuration is not your own client settings: it chooses the URL. "
            "Connect? [y/N] "
        )
    env = ", ".join(sorted(server.env)) or "(none)"
    pulled = env_refs(server.env)
    if pulled:
        env += f"; taking {', '.join(pulled)} from your environment"
    where = (
        "yes (bubblewrap: no network, no writes outside a private /tmp, home hidden)"
        if sandboxed
        else "NO: the sandbox is not available here, the server runs with your permissions"
    )
    return (
        f'\nportcullis scan --inspect wants to start MCP server "{visible(server.name)}" '
        f"({visible(server.client)}, {visible(str(server.file))}):\n"
        f"  command: {visible(shlex.join(argv))}\n"
        f"  environment: {visible(env)} (values not shown)\n"
        f"  sandbox: {where}\n"
        "Start it? [y/N] "
    )
