"""Process ancestry: whether a process was started by an MCP server the gateway launched.

An MCP server must never answer its own approvals. The console channel learns the peer's pid
from the kernel and asks :func:`started_by` whether that pid descends from a launched server
(parent links), or shares its session (a daemonised grandchild is reparented to init but keeps
the session id, because servers are launched with ``start_new_session=True``). When ancestry
cannot be read, the answer is "descended": the caller refuses, it never approves.

Known limit: a server that calls ``setsid()`` in a child and then lets that child's parent
exit leaves a process that neither link reaches; the short code shown only to a person is the
second line of defence.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from typing import Final

from portcullis._exceptions import ApprovalError

__all__ = ["ancestry", "parent_of", "started_by"]

# Deeper than any real process tree; bounds the walk if the table changes under us.
_MAX_DEPTH: Final = 4096


def parent_of(pid: int) -> int | None:
    """The parent pid of ``pid``, or None when it cannot be read (gone, or unsupported)."""
    if pid <= 0:
        return None
    if sys.platform.startswith("linux"):
        return _linux_parent(pid)
    if os.name == "posix":
        return _ps_parent(pid)
    # Windows has no parent links the gateway can trust (pids are reused freely and the
    # parent is never reparented); callers treat None as "cannot tell", which refuses.
    return None


def _linux_parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so the fields start
    # after the LAST ")".
    try:
        rest = data[data.rindex(b")") + 1 :].split()
        return int(rest[1])
    except (ValueError, IndexError):
        return None


def _ps_parent(pid: int) -> int | None:
    try:
        out = subprocess.run(
            ["ps", "-o", "ppid=", "-p", str(pid)],
            capture_output=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    try:
        return int(out.stdout.strip())
    except ValueError:
        return None


def ancestry(pid: int) -> list[int]:
    """``pid``, its parent, its grandparent … up to the root (whose parent is 0).

    Raises :class:`ApprovalError` when a link cannot be read (a process gone, or a platform
    without parent links), so that the chain returned is always complete.
    """
    chain: list[int] = []
    seen: set[int] = set()
    current = pid
    while True:
        if current in seen or len(chain) >= _MAX_DEPTH:
            raise ApprovalError(f"process ancestry of pid {pid} loops at pid {current}")
        chain.append(current)
        seen.add(current)
        parent = parent_of(current)
        if parent is None:
            raise ApprovalError(f"cannot read the parent of pid {current} (ancestry of {pid})")
        if parent == 0:
            return chain
        current = parent


def started_by(pid: int, servers: Mapping[int, str]) -> str | None:
    """Which launched server ``pid`` descends from (its description), or None for none.

    ``servers`` maps the pid of each launched MCP server to a description. A process in the
    session of a server counts as started by it. When the ancestry cannot be determined the
    result is a reason string (never None): unknown counts as descended.
    """
    try:
        chain = ancestry(pid)
    except ApprovalError as exc:
        return f"ancestry unknown: {exc}"
    for ancestor in chain:
        if ancestor in servers:
            return servers[ancestor]
    if not servers:
        return None
    for ancestor in chain:
        try:
            sid = os.getsid(ancestor)
        except (OSError, AttributeError):
            if ancestor == pid:
                return f"ancestry unknown: cannot read the session of pid {pid}"
            # An ancestor that exited after the walk: the peer itself was checked above
            # or below, and its parent links already are.
            continue
        if sid in servers:
            return servers[sid]
    return None


def started_by_client(pid: int, clients: Mapping[int, tuple[int | None, str]]) -> str | None:
    """Which MCP client ``pid`` descends from or shares its own session with, or None.

    ``clients`` maps a client's pid to (its session id, a description). Unlike servers, only
    the process's *own* session is compared: a client's session is often a whole desktop
    session, and the terminal a person answers from descends from that too.
    """
    if not clients:
        return None
    try:
        chain = ancestry(pid)
    except ApprovalError as exc:
        return f"ancestry unknown: {exc}"
    for ancestor in chain:
        if ancestor in clients:
            return clients[ancestor][1]
    try:
        sid = os.getsid(pid)
    except OSError:
        return f"ancestry unknown: cannot read the session of pid {pid}"
    for client_sid, what in clients.values():
        if client_sid is not None and sid == client_sid:
            return f"{what}, same session"
    return None
