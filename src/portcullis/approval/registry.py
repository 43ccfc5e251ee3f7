"""Who may not answer approvals: the registry each gateway keeps in the queue directory.

Every gateway writes ``<token>.json`` beside its socket, naming its own pid, the MCP servers it
launched, and the MCP client that launched it. An answer is refused from a process that
descends from any live gateway's server or shares a server's session (servers run in sessions
of their own), and from a process that descends from a gateway's client or is in the client's
own session: that is where an agent's shell tools run (a Claude Code ``Bash`` call, say).
Registries of gateways that are gone are removed by whoever notices.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

import msgspec

from portcullis._exceptions import ApprovalError

__all__ = [
    "Registered",
    "alive",
    "barred_clients",
    "barred_servers",
    "check_private_dir",
    "client_of",
    "entries",
    "live_gateways",
    "read_registry",
    "remove_gateway",
    "write_registry",
]

_MAX_BYTES: Final = 64 * 1024


class Registered(msgspec.Struct):
    """What one gateway bars from answering."""

    gateway_pid: int
    servers: dict[int, str] = msgspec.field(default_factory=dict)  # pid -> description
    client: int | None = None  # the pid of the MCP client that started the gateway
    client_sid: int | None = None  # the client's session id


def client_of() -> tuple[int | None, int | None]:
    """The client that started this process: (its pid, its session), or Nones when unknown.

    A gateway whose parent is init (its client is gone) has no client to bar: barring pid 1
    would bar every process.
    """
    parent = os.getppid()
    if parent <= 1:
        return None, None
    try:
        sid = os.getsid(parent)
    except OSError:
        sid = None
    # A client in the session of init, or of nobody, names no session worth barring.
    return parent, sid if sid and sid > 1 else None


def write_registry(directory: Path, name: str, entry: Registered) -> None:
    """Write ``<name>`` in ``directory`` atomically (``0600``)."""
    data = {
        "gateway_pid": entry.gateway_pid,
        "server_pid": next(reversed(entry.servers), None),
        "servers": {str(pid): what for pid, what in entry.servers.items()},
        "client_pid": entry.client,
        "client_sid": entry.client_sid,
    }
    target = directory / name
    tmp = directory / f".{name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def read_registry(path: Path) -> Registered | None:
    """One gateway's registry; None when the file vanished meanwhile."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ApprovalError(f"cannot read approval registry {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read(_MAX_BYTES)
    try:
        data = json.loads(raw)
        entry = Registered(_pid(data["gateway_pid"], "gateway_pid"))
        for key, what in (data.get("servers") or {}).items():
            entry.servers[int(key)] = str(what)
        latest = data.get("server_pid")
        if latest is not None:
            entry.servers.setdefault(_pid(latest, "server_pid"), f"pid {latest}")
        for field in ("client_pid", "client_sid"):
            if data.get(field) is not None:
                _pid(data[field], field)
        entry.client = data.get("client_pid")
        entry.client_sid = data.get("client_sid")
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ApprovalError(
            f"approval registry {path} is damaged ({exc}); remove it if no gateway is running"
        ) from None
    return entry


def _pid(value: object, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(field)
    return value


def live_gateways(directory: Path) -> dict[int, Registered]:
    """Every live gateway's registry, by gateway pid (dead ones are removed).

    Raises :class:`ApprovalError` when a registry cannot be read: not knowing whom a gateway
    bars must refuse answers, not allow them.
    """
    gateways: dict[int, Registered] = {}
    for path in entries(directory, ".json"):
        entry = read_registry(path)
        if entry is None:
            continue
        if not alive(entry.gateway_pid):
            remove_gateway(path.with_suffix(".sock"), path)
            continue
        known = gateways.setdefault(entry.gateway_pid, entry)
        if known is not entry:
            known.servers.update(entry.servers)
    return gateways


def barred_servers(gateways: Mapping[int, Registered]) -> dict[int, str]:
    """{server pid: description} over all gateways."""
    return {
        pid: f"{what}, gateway pid {g.gateway_pid}"
        for g in gateways.values()
        for pid, what in g.servers.items()
    }


def barred_clients(gateways: Mapping[int, Registered]) -> dict[int, tuple[int | None, str]]:
    """{client pid: (its session, description)} over all gateways."""
    return {
        g.client: (g.client_sid, f"the MCP client (pid {g.client}) of gateway pid {g.gateway_pid}")
        for g in gateways.values()
        if g.client is not None
    }


def entries(directory: Path, suffix: str) -> Iterator[Path]:
    """The files of the queue directory ending in ``suffix`` (none when it does not exist)."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ApprovalError(f"cannot list the approval queue {directory}: {exc.strerror}") from None
    for name in names:
        if name.endswith(suffix) and not name.startswith("."):
            yield directory / name


def check_private_dir(path: Path) -> None:
    """Refuse a queue directory that is a symlink, someone else's, or writable by others."""
    from portcullis._exceptions import ConfigError
    from portcullis._state import check_private_dir as check

    try:
        check(path, "approval queue")
    except ConfigError as exc:
        raise ApprovalError(str(exc)) from None
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ApprovalError(f"cannot check the approval queue {path}: {exc.strerror}") from None


def alive(pid: int) -> bool:
    """Whether ``pid`` exists (unknown counts as alive: its servers stay barred)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists under another user, or cannot tell
        return True
    return True


def remove_gateway(sock: Path, registry: Path) -> None:
    """Remove a gone gateway's socket and registry."""
    for path in (sock, registry):
        with contextlib.suppress(OSError):
            path.unlink()
