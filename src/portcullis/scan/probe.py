"""A small, bounded MCP client that only lists: raw JSON-RPC over stdio or Streamable HTTP.

Not the ``mcp`` SDK: it is slow to import, drops unknown fields, and has no default timeouts.
Here every wait has a deadline, every message a size cap and every list a page cap, so a
hostile or broken server can make the scan report an error but never hang it or fill memory.

Both protocol eras: the legacy ``initialize`` handshake first (what most servers speak); when a
server refuses it, ``server/discover`` with the 2026-07-28 per-request ``_meta``. Requests the
server sends while being listed (``roots/list``, sampling, elicitation) get a JSON-RPC error:
the scan answers nothing on the user's behalf.

Stdio servers are started by :func:`started`: inside the sandbox with a least-privilege policy
made here (no network, no writes outside the sandbox's private ``/tmp``, the runtime and the
paths the entry's arguments name read-only, only the entry's own environment plus locale and
time zone), in their own process group, which is killed when the listing is done.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from portcullis._version import __version__

if TYPE_CHECKING:
    from portcullis.sandbox.launch import Sandboxed
    from portcullis.scan.model import Server

__all__ = [
    "LEGACY_VERSION",
    "MAX_MESSAGE_BYTES",
    "MAX_PAGES",
    "MODERN_VERSION",
    "HttpChannel",
    "Listing",
    "ProbeError",
    "Profile",
    "RpcError",
    "StartError",
    "StdioChannel",
    "env_refs",
    "list_server",
    "read_only_paths",
    "resolve_refs",
    "sandbox_profile",
    "started",
    "stop",
]

LEGACY_VERSION: Final = "2025-11-25"
MODERN_VERSION: Final = "2026-07-28"
MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
MAX_PAGES: Final = 100
MAX_ITEMS: Final = 10_000
STDERR_TAIL: Final = 4096
CLIENT_INFO: Final = {"name": "portcullis-scan", "version": __version__}
_MODERN_META: Final = {
    "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
}
# (capability, method, result field): what is listed when the server declares it.
_LISTS: Final = (
    ("tools", "tools/list", "tools"),
    ("prompts", "prompts/list", "prompts"),
    ("resources", "resources/list", "resources"),
    ("resources", "resources/templates/list", "resourceTemplates"),
)


class ProbeError(Exception):
    """The server could not be listed: it died, timed out, or spoke something else."""


class RpcError(ProbeError):
    """The server answered a request with a JSON-RPC error."""

    def __init__(self, method: str, error: Any) -> None:
        err = error if isinstance(error, dict) else {}
        self.code = err.get("code") if isinstance(err.get("code"), int) else None
        self.error_message = str(err.get("message", ""))[:300]
        self.data = err.get("data")
        super().__init__(f"{method} failed: {self.error_message} (code {self.code})")


def _result(method: str, answer: Mapping[str, Any]) -> dict[str, Any]:
    """The ``result`` object of a JSON-RPC answer; its ``error`` raised as :class:`RpcError`."""
    if "error" in answer:
        raise RpcError(method, answer["error"])
    result = answer.get("result")
    if not isinstance(result, dict):
        raise ProbeError(f"{method}: the result is not an object")
    return result


class Channel(Protocol):
    """One connection to a server: send a request and get its result, or notify."""

    def request(self, method: str, params: dict[str, Any], deadline: float) -> dict[str, Any]:
        """The result of ``method``; raises RpcError or ProbeError."""
        ...

    def notify(self, method: str, params: dict[str, Any]) -> None:
        """Send a notification (no answer)."""
        ...


@dataclass
class Listing:
    """Everything a server showed: its identity, instructions and definitions."""

    era: str
    server_info: dict[str, Any] = field(default_factory=dict)
    instructions: str | None = None
    capabilities: dict[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] = field(default_factory=list)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    resourceTemplates: list[dict[str, Any]] = field(default_factory=list)  # the wire name
    problems: list[str] = field(default_factory=list)
    """Lists that failed (the rest were still read): reported as errors, never as clean."""
    failed: set[str] = field(default_factory=set)
    """The kinds (``tools``, ``prompts``…) whose list failed: not pinned, not compared."""


def _answer_server_request(msg: dict[str, Any]) -> dict[str, Any] | None:
    """The reply to a request the server sent us, or None when ``msg`` is not one."""
    if "method" not in msg or "id" not in msg:
        return None
    if msg["method"] == "ping":
        return {"jsonrpc": "2.0", "id": msg["id"], "result": {}}
    return {
        "jsonrpc": "2.0",
        "id": msg["id"],
        "error": {"code": -32601, "message": "portcullis scan answers no server requests"},
    }


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProbeError(f"the server sent something that is not JSON ({exc})") from None


class StdioChannel:
    """Newline-delimited JSON-RPC with a child process; stderr kept (bounded) for errors."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None
        assert proc.stdout is not None
        self._proc = proc
        self._buffer = bytearray()
        self._next = 0
        self._tail = bytearray()
        self._lock = threading.Lock()
        self._drain: threading.Thread | None = None
        if proc.stderr is not None:
            # Drained all the time: a server blocked on a full stderr pipe never answers.
            self._drain = threading.Thread(target=self._read_stderr, daemon=True)
            self._drain.start()
        os.set_blocking(proc.stdout.fileno(), False)

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        fd = self._proc.stderr.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self._tail += chunk
                del self._tail[:-STDERR_TAIL]

    def stderr_tail(self, wait: float = 0.5) -> str:
        """The last few KB the server wrote to stderr, control characters made visible."""
        if self._drain is not None:
            self._drain.join(wait)
        with self._lock:
            text = bytes(self._tail).decode("utf-8", "replace")
        return "".join(c if c.isprintable() or c in "\n\t" else f"\\x{ord(c):02x}" for c in text)

    def _send(self, msg: Mapping[str, Any]) -> None:
        assert self._proc.stdin is not None
        data = json.dumps(msg, separators=(",", ":")).encode() + b"\n"
        try:
            self._proc.stdin.write(data)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise ProbeError(self._gone()) from None

    def _gone(self) -> str:
        status = self._proc.poll()
        if status is None:
            return "the server closed its input"
        return f"the server exited (status {status}) before answering"

    def _read_line(self, deadline: float) -> bytes:
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                end = self._buffer.find(b"\n")
                if end > MAX_MESSAGE_BYTES or (end < 0 and len(self._buffer) > MAX_MESSAGE_BYTES):
                    raise ProbeError(f"the server sent a message over {MAX_MESSAGE_BYTES} bytes")
                if end >= 0:
                    line = bytes(self._buffer[:end])
                    del self._buffer[: end + 1]
                    return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ProbeError("timed out waiting for the server")
                if not sel.select(left):
                    continue
                try:
                    chunk = os.read(fd, 1 << 20)
                except BlockingIOError:
                    continue
                if not chunk:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self._proc.wait(0.5)
                    raise ProbeError(self._gone())
                self._buffer += chunk

    def request(self, method: str, params: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Send one request and wait for its response, answering server requests meanwhile."""
        self._next += 1
        rid = f"portcullis-scan-{self._next}"
        self._send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        while True:
            line = self._read_line(deadline).strip()
            if not line:
                continue
            msg = _decode(line)
            if not isinstance(msg, dict):
                continue
            reply = _answer_server_request(msg)
            if reply is not None:
                self._send(reply)
                continue
            if msg.get("id") != rid or "method" in msg:
                continue  # a notification, or a stale answer
            return _result(method, msg)

    def notify(self, method: str, params: dict[str, Any]) -> None:
        """Send a notification."""
        self._send({"jsonrpc": "2.0", "method": method, "params": params})


class HttpChannel:
    """Streamable HTTP: POST each message, read a JSON or SSE answer; no redirects followed."""

    def __init__(self, url: str, headers: Mapping[str, str], *, timeout_s: float) -> None:
        import httpx2

        self._url = url
        self._headers = dict(headers)
        self._session: str | None = None
        self.version: str | None = None
        self._next = 0
        self._client = httpx2.Client(
            follow_redirects=False, timeout=httpx2.Timeout(timeout_s), trust_env=False
        )

    def close(self) -> None:
        """Close the connection pool (and end a legacy session, best effort)."""
        if self._session is not None:
            with contextlib.suppress(Exception):
                self._client.delete(self._url, headers=self._base_headers(None), timeout=2.0)
        self._client.close()

    def _base_headers(self, method: str | None) -> dict[str, str]:
        headers = {
            **self._headers,
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        }
        if self._session is not None:
            headers["Mcp-Session-Id"] = self._session
        if self.version is not None:
            headers["MCP-Protocol-Version"] = self.version
        if method is not None and self.version == MODERN_VERSION:
            headers["Mcp-Method"] = method
        return headers

    def _post(
        self,
        msg: Mapping[str, Any],
        deadline: float,
        on_message: Callable[[Any], bool] | None = None,
    ) -> None:
        """POST one message; hand each message of the answer to ``on_message`` as it comes.

        ``on_message`` returns True when it has what it waited for: an SSE stream the server
        keeps open after the answer is then left, not read to the deadline.
        """
        import httpx2

        method = msg.get("method") if isinstance(msg.get("method"), str) else None
        left = max(0.1, deadline - time.monotonic())
        body = json.dumps(msg, separators=(",", ":")).encode()
        try:
            with self._client.stream(
                "POST",
                self._url,
                content=body,
                headers=self._base_headers(method),
                timeout=httpx2.Timeout(left),
            ) as response:
                if response.is_redirect:
                    where = response.headers.get("location", "?")
                    raise ProbeError(
                        f"the server redirected to {where!r}; redirects are not followed"
                    )
                if response.status_code == 202:
                    return
                if response.status_code >= 400:
                    raise ProbeError(f"HTTP {response.status_code} for {method or 'a reply'}")
                session = response.headers.get("mcp-session-id")
                if session and method == "initialize":
                    self._session = session
                kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
                sse = kind == "text/event-stream"
                raw = bytearray()
                total = 0
                for chunk in response.iter_bytes():
                    raw += chunk
                    total += len(chunk)
                    if total > MAX_MESSAGE_BYTES:
                        raise ProbeError(f"the answer is over {MAX_MESSAGE_BYTES} bytes")
                    if time.monotonic() > deadline:
                        raise ProbeError("timed out waiting for the server")
                    if sse and on_message is not None:
                        events, raw = _split_events(raw)
                        if any(on_message(m) for m in _sse_messages(events)):
                            return
        except httpx2.HTTPError as exc:
            raise ProbeError(f"HTTP request failed: {type(exc).__name__}: {exc}") from None
        if on_message is None or not raw.strip():
            return
        values = _sse_messages(bytes(raw)) if sse else [_decode(bytes(raw))]
        for value in values:
            for item in value if isinstance(value, list) else [value]:
                if on_message(item):
                    return

    def request(self, method: str, params: dict[str, Any], deadline: float) -> dict[str, Any]:
        """POST one request; answer server requests met in an SSE answer with a new POST."""
        self._next += 1
        rid = f"portcullis-scan-{self._next}"
        answer: list[dict[str, Any]] = []

        def on_message(msg: Any) -> bool:
            if not isinstance(msg, dict):
                return False
            reply = _answer_server_request(msg)
            if reply is not None:
                self._post(reply, deadline)
                return False
            if msg.get("id") == rid and "method" not in msg:
                answer.append(msg)
                return True
            return False

        self._post(
            {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}, deadline, on_message
        )
        found = answer[0] if answer else None
        if found is None:
            raise ProbeError(f"{method}: the server sent no answer")
        return _result(method, found)

    def notify(self, method: str, params: dict[str, Any]) -> None:
        """POST a notification; failures do not matter (the next request shows them)."""
        with contextlib.suppress(ProbeError):
            self._post(
                {"jsonrpc": "2.0", "method": method, "params": params}, time.monotonic() + 10
            )


def _split_events(raw: bytearray) -> tuple[bytes, bytearray]:
    """(the complete SSE events in ``raw``, the incomplete rest)."""
    text = bytes(raw).replace(b"\r\n", b"\n")
    end = text.rfind(b"\n\n")
    if end < 0:
        return b"", bytearray(text)
    return text[: end + 2], bytearray(text[end + 2 :])


def _sse_messages(raw: bytes) -> list[Any]:
    """The JSON messages of an SSE body (``data:`` lines joined per event)."""
    out: list[Any] = []
    data: list[str] = []
    for line in [*raw.decode("utf-8", "replace").splitlines(), ""]:
        if not line:
            if data:
                with contextlib.suppress(ProbeError):
                    out.append(_decode("\n".join(data).encode()))
                data = []
            continue
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    return out


def _list_all(
    channel: Channel,
    method: str,
    field_name: str,
    deadline: float,
    meta: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        params: dict[str, Any] = {}
        if cursor is not None:
            params["cursor"] = cursor
        if meta is not None:
            params["_meta"] = meta
        result = channel.request(method, params, deadline)
        page = result.get(field_name)
        if not isinstance(page, list):
            raise ProbeError(f"{method}: no {field_name!r} list in the result")
        items += [item for item in page if isinstance(item, dict)]
        if len(items) > MAX_ITEMS:
            raise ProbeError(f"{method}: more than {MAX_ITEMS} entries")
        nxt = result.get("nextCursor")
        if not isinstance(nxt, str) or not nxt:
            return items
        if nxt in seen:
            raise ProbeError(f"{method}: the server repeats cursor {nxt[:40]!r}")
        seen.add(nxt)
        cursor = nxt
    raise ProbeError(f"{method}: more than {MAX_PAGES} pages")


def _hello(channel: Channel, deadline: float) -> tuple[Listing, dict[str, Any] | None]:
    """Open the conversation in the era the server speaks; (listing so far, modern _meta)."""
    try:
        result = channel.request(
            "initialize",
            {"protocolVersion": LEGACY_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO},
            deadline,
        )
    except RpcError as refused:
        # A 2026-07-28-only server refuses the handshake (unsupported version, or no such
        # method); it must implement server/discover.
        try:
            result = channel.request("server/discover", {"_meta": dict(_MODERN_META)}, deadline)
        except RpcError:
            raise refused from None
        meta = result.get("_meta")
        info = meta.get("io.modelcontextprotocol/serverInfo") if isinstance(meta, dict) else None
        if isinstance(channel, HttpChannel):
            channel.version = MODERN_VERSION
        listing = Listing(
            era=MODERN_VERSION,
            server_info=info if isinstance(info, dict) else {},
            instructions=_text(result.get("instructions")),
            capabilities=_dict(result.get("capabilities")),
        )
        return listing, dict(_MODERN_META)
    version = result.get("protocolVersion")
    if isinstance(channel, HttpChannel):
        channel.version = version if isinstance(version, str) else LEGACY_VERSION
    channel.notify("notifications/initialized", {})
    listing = Listing(
        era=str(version) if isinstance(version, str) else "legacy",
        server_info=_dict(result.get("serverInfo")),
        instructions=_text(result.get("instructions")),
        capabilities=_dict(result.get("capabilities")),
    )
    return listing, None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def list_server(channel: Channel, timeout_s: float) -> Listing:
    """Handshake, then every list the server's capabilities declare, within ``timeout_s``.

    A list that fails after the handshake is noted in ``Listing.problems`` and the others are
    still read; a failed handshake raises ProbeError.
    """
    deadline = time.monotonic() + timeout_s
    listing, meta = _hello(channel, deadline)
    for capability, method, name in _LISTS:
        if capability not in listing.capabilities:
            continue
        try:
            items = _list_all(channel, method, name, deadline, meta)
        except RpcError as exc:
            if exc.code == -32601 and name == "resourceTemplates":
                continue  # templates are optional even when resources are declared
            listing.problems.append(str(exc))
            listing.failed.add(name)
            continue
        except ProbeError as exc:
            listing.problems.append(f"{method}: {exc}")
            listing.failed.add(name)
            if time.monotonic() >= deadline:
                break
            continue
        setattr(listing, name, items)
    return listing


# -- starting stdio servers --------------------------------------------------------------

Profile = Literal["node", "python", "binary"]
_STOP_GRACE_S: Final = 1.0
# Locale and time zone only: everything else of the user's environment stays outside.
_ENV_PASS: Final = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")
_REF: Final = re.compile(r"\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)\}")


class StartError(ProbeError):
    """The server could not be started (the sandbox refused it, or the command is missing)."""


@contextlib.contextmanager
def started(
    server: Server, argv: list[str], state_dir: Path, sandboxed: bool, log: Callable[[str], None]
) -> Iterator[StdioChannel]:
    """The running server (sandboxed when possible); its process group is killed on exit."""
    from portcullis._exceptions import ConfigError
    from portcullis.gateway.transports.stdio import child_env

    env, missing = resolve_refs(server.env)
    if missing:
        log(f'server "{server.name}": {", ".join(missing)} not set in the environment')
    jail = None
    if sandboxed:
        try:
            jail = _sandbox(server, argv, env, state_dir, log)
        except ConfigError as exc:
            raise StartError(f"cannot start it in the sandbox: {exc}") from None
        command, child, cwd = jail.plan.argv, jail.plan.env, None
        log(f'inspecting "{server.name}" in the sandbox')
    else:
        command, child = argv, child_env(env)
        cwd = server.cwd if server.cwd and os.path.isdir(server.cwd) else None
        log(f'inspecting "{server.name}" WITHOUT the sandbox (you agreed)')
    try:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child,
            cwd=cwd,
            start_new_session=True,
        )
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the command
        if jail is not None:
            jail.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise StartError(f"cannot run {argv[0]!r}: {reason}") from None
    try:
        yield StdioChannel(proc)
    finally:
        stop(proc)
        if jail is not None:
            jail.close()


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Close its input, give it a moment, then kill its whole process group."""
    with contextlib.suppress(OSError):
        if proc.stdin is not None:
            proc.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(_STOP_GRACE_S)
    # The group outlives its leader when children were started: kill it either way.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    for stream in (proc.stdout, proc.stderr):
        with contextlib.suppress(OSError):
            if stream is not None:
                stream.close()


def env_refs(values: Mapping[str, str]) -> list[str]:
    """The environment variables ``${VAR}`` references in ``values`` would read."""
    return sorted({m.group(1) for v in values.values() for m in _REF.finditer(v)})


def resolve_refs(values: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """``${VAR}`` / ``${env:VAR}`` in the entry's own values, from this environment.

    Only the references written in the entry are looked up, so nothing else of the user's
    environment reaches the server; a missing variable becomes empty and is named.
    """
    missing: list[str] = []

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            missing.append(name)
            return ""
        return os.environ[name]

    return {k: _REF.sub(sub, v) for k, v in values.items()}, sorted(set(missing))


def sandbox_profile(argv: list[str]) -> Profile:
    """The sandbox runtime profile the command needs."""
    import shutil

    name = os.path.basename(argv[0]).lower()
    if name in ("npx", "node", "nodejs") or name.startswith("node"):
        return "node"
    if name in ("uvx", "uv", "pipx") or name.startswith("python"):
        return "python"
    exe = shutil.which(argv[0])
    if exe is not None:
        try:
            with open(exe, "rb") as fh:
                head = fh.read(128)
        except OSError:
            head = b""
        if head.startswith(b"#!"):
            first = head.split(b"\n", 1)[0]
            if b"node" in first:
                return "node"
            if b"python" in first:
                return "python"
    return "binary"


def read_only_paths(server: Server, protected: Sequence[str]) -> list[str]:
    """Existing paths the arguments (and the working directory) name, safe to bind read-only.

    Never ``/``, the home directory or anything containing it, or a protected path: the sandbox
    refuses those binds, and a server that needs them is not one to start for a scan.
    """
    from portcullis.detect.paths import inside

    home = os.path.realpath(os.path.expanduser("~"))
    base = server.cwd or server.project
    found: list[str] = []
    candidates = [a.partition("=")[2] if a.startswith("-") else a for a in server.args]
    if server.cwd:
        candidates.append(server.cwd)
    for arg in candidates:
        if not arg or "\x00" in arg:
            continue
        path = os.path.expanduser(arg)
        if not os.path.isabs(path):
            if not base or not ("/" in arg or os.sep in arg or "." in arg):
                continue
            path = os.path.join(base, path)
        if not os.path.exists(path):
            continue
        real = os.path.realpath(path)
        if real == "/" or inside(home, real):
            continue
        if any(os.path.isabs(p) and inside(real, os.path.realpath(p)) for p in protected):
            continue
        found.append(real)
    # A script needs what it imports: node resolves packages through the node_modules of every
    # ancestor, python imports its neighbours.
    for script in [p for p in found if os.path.isfile(p)]:
        root = _script_root(script)
        if (
            root
            and root != "/"
            and not inside(home, root)
            and not any(os.path.isabs(p) and inside(root, os.path.realpath(p)) for p in protected)
        ):
            found.append(root)
    return sorted(set(found))


def _script_root(script: str) -> str | None:
    """The folder a script's imports resolve from.

    The outermost ancestor holding ``node_modules`` for a JavaScript file, the script's own
    folder for a Python one.
    """
    if script.endswith(".py"):
        return os.path.dirname(script)
    if not script.endswith((".js", ".mjs", ".cjs", ".ts")):
        return None
    root = None
    folder = os.path.dirname(script)
    while folder not in ("/", ""):
        if os.path.isdir(os.path.join(folder, "node_modules")):
            root = folder
        folder = os.path.dirname(folder)
    return root or os.path.dirname(script)


def _sandbox(
    server: Server,
    argv: list[str],
    env: dict[str, str],
    state_dir: Path,
    log: Callable[[str], None],
) -> Sandboxed:
    """The sandboxed launch: no network, private /tmp, read-only runtime and argument paths."""
    from portcullis.detect.paths import default_protected
    from portcullis.policy.compiled import Launch, SandboxSettings, ServerPolicy
    from portcullis.sandbox.launch import Sandboxed, prepare

    protected = [*default_protected(None, str(state_dir)), str(Path(server.file).absolute())]
    policy = ServerPolicy(
        name=server.name,
        launch=Launch(command=argv[0], args=tuple(argv[1:]), cwd=server.cwd, env=dict(env)),
        sandbox=SandboxSettings(
            required=True,
            profile=sandbox_profile(argv),
            network="none",
            read_only=tuple(read_only_paths(server, protected)),
            env=_ENV_PASS,
        ),
    )
    jail = prepare(
        policy,
        argv,
        env=env,
        passthrough=os.environ,
        protected=protected,
        state_dir=state_dir,
        log=log,
    )
    if not isinstance(jail, Sandboxed):
        # prepare() only runs unsandboxed with required: false, which is never set here.
        from portcullis._exceptions import ConfigError

        raise ConfigError(f"the sandbox is not available: {jail}")
    return jail
