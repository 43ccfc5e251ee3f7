"""The console channel: a queue that ``portcullis approvals`` answers over a Unix socket.

Each gateway binds ``<state>/approvals/<token>.sock`` (``0600`` in a ``0700`` directory) and
writes ``<token>.json`` naming its own pid and the MCP server it launched. A client connects,
sends one JSON line and reads one JSON line back.

Who is asking is learnt from the kernel (``SO_PEERCRED``, ``LOCAL_PEERPID``), never from the
message. A process started by any live gateway's MCP server gets the list without the codes and
cannot answer: a server must not approve its own calls. Everyone else (the same OS user) must
still repeat the short code shown with the request, checked here in constant time; five wrong
codes deny the request. Anything unexpected refuses or reports the channel unavailable; nothing
here approves on its own.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import json
import os
import secrets
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

from portcullis._exceptions import ApprovalError
from portcullis.approval.lineage import started_by, started_by_client
from portcullis.approval.registry import (
    Registered,
    alive,
    barred_clients,
    barred_servers,
    check_private_dir,
    entries,
    live_gateways,
    read_registry,
    remove_gateway,
    write_registry,
)
from portcullis.approval.request import ApprovalRequest, Done, Outcome, Question, visible

__all__ = ["ConsoleChannel", "answer", "pending", "queue_dir"]

NAME: Final = "console"
_MAX_LINE: Final = 64 * 1024  # one request line; answers and lists are far smaller
_MAX_RESPONSE: Final = 16 * 1024 * 1024  # a list of many requests, each shown up to 4000 chars
_IO_TIMEOUT_S: Final = 2.0  # a peer that stalls longer is dropped
_MAX_CONNECTIONS: Final = 32
_MAX_WRONG_CODES: Final = 5
_CHANGED: Final = "the call changed since it was shown; nothing was answered, look again"
# sun_path is 108 bytes on Linux and 104 on the BSDs and macOS, both with the final NUL.
_MAX_SOCKET_PATH: Final = 107 if sys.platform.startswith("linux") else 103
# A socket without a registry is a gateway between bind() and its registry write; after this
# long it is one that died in between.
_ORPHAN_AGE_S: Final = 60.0
_NO_UNIX_SOCKETS: Final = (
    "the console approval queue needs Unix sockets, which this platform lacks; "
    "use the tty or elicitation channel"
)
# macOS: SOL_LOCAL, LOCAL_PEERCRED (struct xucred) and LOCAL_PEERPID from <sys/un.h>.
_SOL_LOCAL: Final = 0
_LOCAL_PEERCRED: Final = 1
_LOCAL_PEERPID: Final = 2


def queue_dir() -> Path:
    """``<state>/approvals``: where gateways publish their sockets (not created here)."""
    from portcullis._state import state_dir

    return state_dir() / "approvals"


class _Ticket(Question):
    """One pending request, with the wrong codes given for it."""

    def __init__(self, channel: ConsoleChannel, request: ApprovalRequest, done: Done) -> None:
        super().__init__(request, done)
        self._channel = channel
        self.wrong = 0

    def closed(self) -> None:
        self._channel._forget(self.request.id)


class ConsoleChannel:
    """The approval queue of one gateway, served on a Unix socket in ``directory``."""

    name = NAME

    def __init__(
        self,
        directory: Path,
        *,
        log: Callable[[str], None],
        client: tuple[int | None, int | None] = (None, None),
    ) -> None:
        self._dir = directory
        self._log = log
        self._client = client  # (pid, session) of the MCP client that started the gateway
        self._lock = threading.Lock()
        self._pending: dict[str, _Ticket] = {}
        self._servers: dict[int, str] = {}  # launched by this gateway
        self._seen: dict[int, Registered] = {}  # gateway pid -> what it bars, as last read
        self._registry_lock = threading.Lock()
        self._token = secrets.token_hex(6)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._wake_r = self._wake_w = -1
        self._reason: str | None = "the console channel was not started"
        self._connections = threading.BoundedSemaphore(_MAX_CONNECTIONS)

    @property
    def socket_path(self) -> Path:
        """Where this gateway listens."""
        return self._dir / f"{self._token}.sock"

    @property
    def registry_path(self) -> Path:
        """The file naming this gateway's pid and its launched server."""
        return self._dir / f"{self._token}.json"

    def start(self) -> None:
        """Bind the socket and start answering; on failure the channel stays unavailable."""
        if self._sock is not None:
            return
        try:
            self._start()
        except OSError as exc:
            self._cleanup()
            self._reason = f"cannot open the approval queue in {self._dir}: {exc.strerror or exc}"
        except ApprovalError as exc:
            self._cleanup()
            self._reason = str(exc)
        else:
            self._reason = None

    def _start(self) -> None:
        if not hasattr(socket, "AF_UNIX"):
            raise ApprovalError(_NO_UNIX_SOCKETS)
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        check_private_dir(self._dir)
        path = self.socket_path
        if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
            raise ApprovalError(
                f"the approval socket path {path} is longer than the {_MAX_SOCKET_PATH} bytes "
                "a Unix socket allows; set PORTCULLIS_HOME to a shorter directory"
            )
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock = sock
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(16)
        self._write_registry()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(
            target=self._accept_loop, name="portcullis-approvals", daemon=True
        )
        self._thread.start()

    def launched(self, server_pid: int, name: str | None = None) -> None:
        """Record the MCP server just spawned: its processes may never answer approvals."""
        with self._lock:
            self._servers[server_pid] = name or f"pid {server_pid}"
        if self._sock is not None:
            try:
                self._write_registry()
            except OSError as exc:
                # Other gateways would not know this server: take no new questions here.
                self._reason = f"cannot write the approval registry: {exc.strerror or exc}"

    def _write_registry(self) -> None:
        with self._registry_lock:
            self._write_registry_locked()

    def _write_registry_locked(self) -> None:
        with self._lock:
            servers = dict(self._servers)
        entry = Registered(os.getpid(), servers, *self._client)
        write_registry(self._dir, self.registry_path.name, entry)

    def unavailable(self) -> str | None:
        """None when the queue is being served, else why not."""
        return self._reason

    def ask(self, request: ApprovalRequest, done: Done) -> _Ticket:
        """Queue ``request`` until someone answers it with its code, or it is withdrawn."""
        ticket = _Ticket(self, request, done)
        reason = self._reason
        if reason is not None:
            # Reported from another thread, as the contract requires.
            def report() -> None:
                with ticket.lock:
                    ticket.finish(Outcome("unavailable", NAME, reason=reason))

            threading.Thread(target=report, daemon=True).start()
            return ticket
        with self._lock:
            self._pending[request.id] = ticket
        what = (
            request.subject
            if request.method == "tools/call"
            else f"{request.method} {request.subject}"
        )
        self._log(
            f"approval needed for {visible(what)} on server "
            f'"{visible(request.server)}": run `portcullis approvals` in a terminal'
        )
        return ticket

    def _forget(self, request_id: str) -> None:
        with self._lock:
            self._pending.pop(request_id, None)

    def close(self) -> None:
        """Withdraw every request, stop serving, and remove the socket and the registry."""
        with self._lock:
            tickets = list(self._pending.values())
        for ticket in tickets:
            ticket.withdraw()
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._cleanup()
        self._reason = "the console channel is closed"

    def _cleanup(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            for path in (self.socket_path, self.registry_path):
                with contextlib.suppress(OSError):
                    path.unlink()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1
        self._thread = None

    # -- serving -------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        sock, wake = self._sock, self._wake_r
        if sock is None:
            return
        # Non-blocking: a peer that resets between select() and accept() must not stall us.
        sock.setblocking(False)
        listening = sock.fileno()
        while True:
            try:
                ready, _, _ = select.select([listening, wake], [], [])
            except (OSError, ValueError):
                return
            if wake in ready:
                return
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            if not self._connections.acquire(blocking=False):
                conn.close()  # a flood from our own user: drop rather than queue
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(_IO_TIMEOUT_S)
                try:
                    response = self._respond(conn)
                except Exception as exc:
                    response = {"error": f"internal error: {exc}", "status": "refused"}
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(response).encode() + b"\n")
        finally:
            self._connections.release()

    def _respond(self, conn: socket.socket) -> dict[str, Any]:
        try:
            line = _read_line(conn, _MAX_LINE, _IO_TIMEOUT_S)
            message = json.loads(line)
        except (OSError, ValueError) as exc:
            return {"error": f"unreadable request: {exc}", "status": "refused"}
        if not isinstance(message, dict):
            return {"error": "a request is a JSON object", "status": "refused"}
        peer = _peer(conn)
        if peer is None:
            return {
                "error": "this platform cannot tell who is connecting; answer on the terminal",
                "status": "refused",
            }
        pid, uid = peer
        if hasattr(os, "getuid") and uid != os.getuid():
            return {"error": "the approval queue belongs to another user", "status": "refused"}
        barred = self._barred(pid)
        op = message.get("op")
        if op == "list":
            return self._list(barred)
        if op == "answer":
            if barred is not None:
                return {
                    "error": f"a process started by an MCP server ({barred}) cannot answer "
                    "approvals",
                    "status": "refused",
                }
            return self._answer(message, pid, uid)
        return {"error": f"unknown op {op!r}", "status": "refused"}

    def _barred(self, pid: int) -> str | None:
        """Why ``pid`` may not see codes or answer (a server's or a client's process), or None."""
        if pid <= 0:
            return "the peer's process id is unknown"
        try:
            gateways = live_gateways(self._dir)
        except ApprovalError as exc:
            return str(exc)
        with self._lock:
            # Remembered while their gateway lives: a server that rewrites or deletes its
            # gateway's registry after we have seen it stays barred here.
            for gateway_pid, entry in gateways.items():
                known = self._seen.setdefault(gateway_pid, entry)
                if known is not entry:
                    known.servers.update(entry.servers)
            for gateway_pid in [g for g in self._seen if g not in gateways]:
                if not alive(gateway_pid):
                    del self._seen[gateway_pid]
            servers = barred_servers(self._seen)
            servers.update(self._servers)
            clients = barred_clients(self._seen)
        client, client_sid = self._client
        if client is not None:
            clients[client] = (client_sid, f"the MCP client (pid {client}) of this gateway")
        return started_by(pid, servers) or started_by_client(pid, clients)

    def _list(self, barred: str | None) -> dict[str, Any]:
        now = time.time()
        with self._lock:
            tickets = list(self._pending.values())
        entries = []
        for ticket in tickets:
            r = ticket.request
            if r.expires <= now:
                continue
            entry: dict[str, Any] = {
                "id": r.id,
                "server": r.server,
                "method": r.method,
                "subject": r.subject,
                "shown": r.shown,
                "digest": r.digest,
                "created": r.created,
                "expires": r.expires,
                "session_ok": r.session_ok,
                "reason": r.reason,
                "rule": r.rule,
                "gateway_pid": os.getpid(),
            }
            if barred is None:
                entry["code"] = r.code
            else:
                # A server's process learns no more than that something waits: not the
                # arguments of other calls (of other servers, too).
                del entry["shown"], entry["digest"], entry["reason"], entry["rule"]
            entries.append(entry)
        response: dict[str, Any] = {"pending": entries}
        if barred is not None:
            response["codes_withheld"] = (
                f"a process started by an MCP server ({barred}) is not shown approval codes"
            )
        return response

    def _answer(self, message: dict[str, Any], pid: int, uid: int) -> dict[str, Any]:
        request_id, code = message.get("id"), message.get("code")
        decision, for_session = message.get("decision"), message.get("for_session", False)
        digest = message.get("digest")
        if not isinstance(request_id, str) or not isinstance(code, str):
            return {"error": "an answer needs a string id and code", "status": "refused"}
        if decision not in ("approve", "deny") or not isinstance(for_session, bool):
            return {"error": "decision must be approve or deny", "status": "refused"}
        if digest is not None and not isinstance(digest, str):
            return {"error": "digest must be a string", "status": "refused"}
        with self._lock:
            ticket = self._pending.get(request_id)
        if ticket is None:
            return {"error": "no pending request with this id", "status": "unknown"}
        with ticket.lock:
            request = ticket.request
            if ticket.over or request.expires <= time.time():
                return {"error": "the request has expired or was withdrawn", "status": "unknown"}
            if decision == "approve" and for_session and not request.session_ok:
                return {"error": "this call can only be approved once", "status": "refused"}
            if digest is not None and not _same_digest(digest, request.digest):
                # The person answered what they were shown; a different call is not that.
                return {"error": _CHANGED, "status": "refused"}
            if not _same_code(code, request.code):
                ticket.wrong += 1
                if ticket.wrong >= _MAX_WRONG_CODES:
                    ticket.finish(Outcome("denied", NAME, reason="too many wrong codes"))
                    return {
                        "error": "wrong code; too many wrong codes, the request was denied",
                        "status": "bad-code",
                    }
                left = _MAX_WRONG_CODES - ticket.wrong
                return {
                    "error": f"wrong code ({left} more wrong codes deny the request)",
                    "status": "bad-code",
                }
            approver = _user_name(uid)
            if decision == "approve":
                outcome = Outcome(
                    "approved",
                    NAME,
                    approver=approver,
                    reason=f"approved with portcullis approvals (pid {pid})",
                    for_session=for_session,
                )
            else:
                outcome = Outcome(
                    "denied",
                    NAME,
                    approver=approver,
                    reason=f"denied with portcullis approvals (pid {pid})",
                )
            if not ticket.finish(outcome):
                return {"error": "the request was withdrawn", "status": "unknown"}
        return {"ok": True, "outcome": outcome.outcome}


def _same_digest(given: str, expected: str) -> bool:
    norm = given.strip().lower().removeprefix("sha256:")
    return hmac.compare_digest(norm.encode("utf-8", "replace"), expected.encode())


def _same_code(given: str, expected: str) -> bool:
    def norm(code: str) -> bytes:
        return "".join(code.split()).replace("-", "").upper().encode("utf-8", "replace")

    return hmac.compare_digest(norm(given), norm(expected))


def _user_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"uid {uid}"


def _peer(conn: socket.socket) -> tuple[int, int] | None:
    """(pid, uid) of the connected process, from the kernel; None when it cannot be told."""
    so_peercred = getattr(socket, "SO_PEERCRED", None)
    try:
        if so_peercred is not None:
            size = struct.calcsize("3i")
            pid, uid, _gid = struct.unpack(
                "3i", conn.getsockopt(socket.SOL_SOCKET, so_peercred, size)
            )
            return pid, uid
        if sys.platform == "darwin":
            raw_pid = conn.getsockopt(_SOL_LOCAL, _LOCAL_PEERPID, 4)
            (pid,) = struct.unpack("i", raw_pid)
            # struct xucred: u_int cr_version; uid_t cr_uid; short cr_ngroups; gid_t cr_groups[16]
            raw = conn.getsockopt(_SOL_LOCAL, _LOCAL_PEERCRED, 76)
            _version, uid = struct.unpack_from("II", raw)
            return pid, uid
    except (OSError, struct.error):
        return None
    return None


def _read_line(conn: socket.socket, limit: int, within_s: float = 5.0) -> bytes:
    """One line (without its newline), at most ``limit`` bytes, within ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    buf = bytearray()
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the peer is too slow")
        # A peer trickling one byte at a time must not hold the connection for long.
        conn.settimeout(min(left, conn.gettimeout() or left))
        chunk = conn.recv(65536)
        if not chunk:
            break
        buf += chunk
        if len(buf) > limit:
            raise ValueError(f"message longer than {limit} bytes")
    line, _, _ = bytes(buf).partition(b"\n")
    return line


# -- the client side -------------------------------------------------------------------------


def _request(sock_path: Path, message: dict[str, Any]) -> dict[str, Any]:
    if not hasattr(socket, "AF_UNIX"):
        raise ApprovalError(_NO_UNIX_SOCKETS)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5.0)
        sock.connect(str(sock_path))
        sock.sendall(json.dumps(message).encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        line = _read_line(sock, _MAX_RESPONSE)
    try:
        response = json.loads(line)
    except ValueError:
        raise ApprovalError(f"unreadable answer from the gateway at {sock_path}") from None
    if not isinstance(response, dict):
        raise ApprovalError(f"unreadable answer from the gateway at {sock_path}")
    return response


def _gateways(directory: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(socket, list response) for every gateway that answers; dead ones are cleaned up."""
    try:
        check_private_dir(directory)
    except FileNotFoundError:
        return
    for sock_path in entries(directory, ".sock"):
        try:
            response = _request(sock_path, {"op": "list"})
        except (ConnectionRefusedError, FileNotFoundError):
            _clean_dead(sock_path)
            continue
        except (OSError, ApprovalError):
            continue  # busy or stuck: not ours to remove
        yield sock_path, response


def _clean_dead(sock_path: Path) -> None:
    registry = sock_path.with_suffix(".json")
    try:
        data = read_registry(registry)
    except ApprovalError:
        return
    if data is None:
        # No registry: a gateway between bind() and its registry write, or one that died
        # there. Only the second grows old.
        with contextlib.suppress(OSError):
            if time.time() - os.lstat(sock_path).st_mtime > _ORPHAN_AGE_S:
                sock_path.unlink()
        return
    if not alive(data.gateway_pid):
        remove_gateway(sock_path, registry)


def pending(directory: Path) -> list[dict[str, Any]]:
    """Every request pending in every live gateway (with codes, when we may see them)."""
    entries: list[dict[str, Any]] = []
    for _sock, response in _gateways(directory):
        listed = response.get("pending")
        if not isinstance(listed, list):
            continue
        withheld = response.get("codes_withheld")
        for entry in listed:
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                if isinstance(withheld, str):
                    entry.setdefault("codes_withheld", withheld)
                entries.append(entry)
    entries.sort(key=lambda e: (e.get("created") or 0, e["id"]))
    return entries


def answer(
    directory: Path,
    request_id: str,
    code: str,
    decision: str,
    for_session: bool = False,
    digest: str | None = None,
) -> dict[str, Any]:
    """Answer one request: the gateway's response (``ok`` or ``error`` with a ``status``).

    With ``digest`` (the one shown to the person), a request whose digest differs is refused
    with status ``refused``: the answer binds to what was shown, never to a changed call.
    """
    if decision not in ("approve", "deny"):
        raise ApprovalError(f"decision must be approve or deny, not {decision!r}")
    for sock_path, response in _gateways(directory):
        listed = response.get("pending")
        if not isinstance(listed, list):
            continue
        found = [e for e in listed if isinstance(e, dict) and e.get("id") == request_id]
        if found:
            shown = found[0].get("digest")
            if digest is not None and not (isinstance(shown, str) and _same_digest(digest, shown)):
                return {"error": _CHANGED, "status": "refused"}
            message: dict[str, Any] = {
                "op": "answer",
                "id": request_id,
                "code": code,
                "decision": decision,
                "for_session": for_session,
            }
            if digest is not None:
                message["digest"] = digest
            try:
                return _request(sock_path, message)
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                    return {
                        "error": "the gateway holding this request has exited",
                        "status": "unknown",
                    }
                raise ApprovalError(
                    f"no answer from the gateway at {sock_path}: {exc.strerror or exc}"
                ) from None
    return {"error": "no pending request with this id", "status": "unknown"}
