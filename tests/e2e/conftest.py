"""Shared pieces of the end-to-end tests: server commands, the gateway under test, raw clients.

Every test starts ``python -m portcullis run`` as a real process with its own state directory
(``PORTCULLIS_HOME`` in a tmp dir), in front of a real MCP server: the npm servers in
tests/servers, ``mcp-server-time`` from the venv, or the fixture servers in tests/fixtures.
Clients are the official SDK ``Client`` (:meth:`Gateway.client`) or, for bytes the SDK would
never send, a raw JSON-RPC pipe (:meth:`Gateway.raw`).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

REPO = Path(__file__).resolve().parents[2]
NODE_BIN = REPO / "tests" / "servers" / "node_modules" / ".bin"
FIXTURES = REPO / "tests" / "fixtures"
# Generous, never asserted on: only a bound so a broken gateway fails a test instead of hanging.
TIMEOUT = 120.0

# A policy that allows everything and sets none of the keys this version refuses to start with.
ALLOW_ALL = """\
version: 1
defaults:
  tools: {default: allow}
"""

__all__ = [
    "ALLOW_ALL",
    "FIXTURES",
    "TIMEOUT",
    "Gateway",
    "RawClient",
    "direct_response_line",
    "everything",
    "filesystem",
    "fixture_server",
    "is_alive",
    "raw_server",
    "text_of",
    "time_server",
]


def _need(path: Path, how: str) -> str:
    if not path.exists():
        pytest.fail(f"{path} is missing: {how}", pytrace=False)
    return str(path)


def everything() -> list[str]:
    """The command of @modelcontextprotocol/server-everything (legacy era only)."""
    exe = _need(
        NODE_BIN / "mcp-server-everything",
        "install the test servers with `npm ci --prefix tests/servers`",
    )
    return [exe, "stdio"]


def filesystem(*roots: Path) -> list[str]:
    """The command of @modelcontextprotocol/server-filesystem serving ``roots``."""
    exe = _need(
        NODE_BIN / "mcp-server-filesystem",
        "install the test servers with `npm ci --prefix tests/servers`",
    )
    return [exe, *map(str, roots)]


def time_server() -> list[str]:
    """The command of PyPI mcp-server-time (speaks both eras)."""
    exe = _need(
        Path(sys.executable).parent / "mcp-server-time",
        "install the test dependencies with `.venv/bin/pip install -e '.[test]'`",
    )
    return [exe]


def fixture_server(*args: str) -> list[str]:
    """The SDK fixture server (tests/fixtures/mcp_server.py), both eras."""
    return [sys.executable, str(FIXTURES / "mcp_server.py"), *args]


def raw_server() -> list[str]:
    """The hand-written fixture server (tests/fixtures/raw_server.py), legacy era."""
    return [sys.executable, str(FIXTURES / "raw_server.py")]


def text_of(result: Any) -> str:
    """The concatenated text content of a CallToolResult."""
    return "".join(getattr(block, "text", "") for block in result.content)


def is_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie, killed but not reaped, counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no procfs: fall back to a signal probe
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    # The state letter follows the command name, which is in parentheses and may hold spaces.
    return stat[stat.rindex(")") + 2] not in "ZX"


_INIT = {
    "protocolVersion": "2025-06-18",
    "capabilities": {},
    "clientInfo": {"name": "portcullis-e2e-raw", "version": "1"},
}


def direct_response_line(server: Sequence[str], request: dict[str, Any], cwd: Path) -> bytes:
    """Run ``server`` without the gateway; return the exact line it answers ``request`` with."""
    messages = [
        {"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": _INIT},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", **request},
    ]
    proc = subprocess.Popen(
        list(server),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=cwd,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for msg in messages:
            proc.stdin.write(json.dumps(msg).encode() + b"\n")
        proc.stdin.flush()
        for line in proc.stdout:
            if line.strip() and json.loads(line).get("id") == request["id"]:
                return line.strip()
        pytest.fail(f"{server[0]} closed its stdout before answering")
    finally:
        proc.stdin.close()
        proc.stdout.close()
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RawClient:
    """A JSON-RPC client on the gateway's stdin/stdout pipes, for bytes the SDK never sends."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cwd: Path,
        stderr: IO[str],
        preexec: Callable[[], None] | None = None,
    ) -> None:
        # Its own session (no controlling terminal), unless ``preexec`` arranges one itself.
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            cwd=cwd,
            start_new_session=preexec is None,
            preexec_fn=preexec,
        )
        self._lines: queue.Queue[bytes] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._next_id = 1000

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(b"")  # end of stream

    def send_bytes(self, data: bytes) -> None:
        """Write one frame (a newline is added)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(data + b"\n")
        self.proc.stdin.flush()

    def send(self, message: dict[str, Any]) -> None:
        """Write one JSON-RPC message."""
        self.send_bytes(json.dumps({"jsonrpc": "2.0", **message}).encode())

    def recv_line(self) -> bytes:
        """The next line the gateway writes (b"" at end of stream)."""
        try:
            return self._lines.get(timeout=TIMEOUT)
        except queue.Empty:
            pytest.fail(f"the gateway wrote nothing for {TIMEOUT} s")

    def response_line(self, rid: Any) -> bytes:
        """Read until the response to ``rid`` (skipping other messages); return its bytes."""
        while True:
            line = self.recv_line()
            if not line:
                pytest.fail(f"the gateway closed its stdout before answering id {rid!r}")
            msg = json.loads(line)
            if msg.get("id") == rid and "method" not in msg:
                return line.strip()

    def response(self, rid: Any) -> dict[str, Any]:
        """Read until the response to ``rid``, skipping notifications and other messages."""
        msg: dict[str, Any] = json.loads(self.response_line(rid))
        return msg

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request with a fresh id and return its response."""
        self._next_id += 1
        rid = self._next_id
        self.send({"id": rid, "method": method, **({"params": params} if params else {})})
        return self.response(rid)

    def initialize(self) -> dict[str, Any]:
        """The legacy handshake: initialize, then notifications/initialized."""
        result = self.request("initialize", _INIT)
        assert "result" in result, result
        self.send({"method": "notifications/initialized"})
        return result["result"]

    def call(self, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """A tools/call; returns the whole response."""
        return self.request("tools/call", {"name": name, "arguments": arguments or {}})

    def close_stdin(self) -> None:
        """Hang up as a client does: close the gateway's stdin."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()

    def wait(self) -> int:
        """Wait for the gateway to exit; return its status."""
        try:
            return self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the gateway did not exit within {TIMEOUT} s")

    def kill(self) -> None:
        """Make sure the gateway is gone (hang up first, so it stops its server); free the pipes."""
        if self.proc.poll() is None:
            self.close_stdin()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=TIMEOUT)
        self._reader.join(timeout=TIMEOUT)  # the gateway is gone, so its stdout is at EOF
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


class Gateway:
    """Starts ``python -m portcullis run`` for one test, with a private state directory."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.home = tmp / "state"
        self.home.mkdir(mode=0o700)
        self.stderr_path = tmp / "gateway.stderr"
        self._stderr: IO[str] | None = None
        self._raw: list[RawClient] = []

    # -- what to run -------------------------------------------------------------------------

    def policy(self, text: str, name: str = "policy.yaml") -> Path:
        """Write a policy file and return its path."""
        path = self.tmp / name
        path.write_text(text)
        return path

    def argv(
        self,
        server: Sequence[str] | None,
        policy: str | Path | None = ALLOW_ALL,
        *,
        options: Sequence[str] = (),
    ) -> list[str]:
        """The gateway's command line; ``policy`` is YAML text or a path to a written file."""
        cmd = [sys.executable, "-m", "portcullis", "run"]
        if policy is not None:
            path = policy if isinstance(policy, Path) else self.policy(policy)
            cmd += ["--policy", str(path)]
        cmd += list(options)
        if server is not None:
            cmd += ["--", *server]
        return cmd

    def env(self, **extra: str) -> dict[str, str]:
        """The gateway's environment: the SDK's safe defaults, the state dir, and ``extra``."""
        env = {
            k: os.environ[k]
            for k in ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER")
            if k in os.environ
        }
        env["PORTCULLIS_HOME"] = str(self.home)
        env.update(extra)
        return env

    def _errlog(self) -> IO[str]:
        if self._stderr is None:
            self._stderr = open(self.stderr_path, "w")  # noqa: SIM115 - closed in close()
        return self._stderr

    def stderr(self) -> str:
        """Everything the gateway (and its server, which shares its stderr) wrote to stderr."""
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    # -- clients -------------------------------------------------------------------------------

    def client(
        self,
        server: Sequence[str] | None,
        policy: str | Path | None = ALLOW_ALL,
        *,
        mode: str = "legacy",
        options: Sequence[str] = (),
        env: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Client:
        """An SDK client whose server is the gateway in front of ``server``."""
        argv = self.argv(server, policy, options=options)
        params = StdioServerParameters(
            command=argv[0], args=argv[1:], env=env if env is not None else self.env(), cwd=self.tmp
        )
        kwargs.setdefault("read_timeout_seconds", TIMEOUT)
        transport = stdio_client(params, errlog=self._errlog())
        return Client(transport, mode=mode, cache=None, **kwargs)

    def raw(
        self,
        server: Sequence[str] | None,
        policy: str | Path | None = ALLOW_ALL,
        *,
        options: Sequence[str] = (),
        env: dict[str, str] | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> RawClient:
        """A raw pipe client on a new gateway in front of ``server``."""
        raw = RawClient(
            self.argv(server, policy, options=options),
            env=env if env is not None else self.env(),
            cwd=self.tmp,
            stderr=self._errlog(),
            preexec=preexec,
        )
        self._raw.append(raw)
        return raw

    def run(
        self,
        server: Sequence[str] | None,
        policy: str | Path | None = ALLOW_ALL,
        *,
        options: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the gateway with an empty stdin (the client hangs up at once); capture output."""
        return subprocess.run(
            self.argv(server, policy, options=options),
            input="",
            capture_output=True,
            text=True,
            env=env if env is not None else self.env(),
            cwd=self.tmp,
            timeout=TIMEOUT,
            check=False,
        )

    def cli(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -m portcullis ARGS`` (no stdin) against the test's state directory."""
        return subprocess.run(
            [sys.executable, "-m", "portcullis", *args],
            capture_output=True,
            text=True,
            env=env if env is not None else self.env(),
            cwd=self.tmp,
            stdin=subprocess.DEVNULL,
            timeout=TIMEOUT,
            check=False,
        )

    # -- after the session ---------------------------------------------------------------------

    def audit_records(self) -> list[dict[str, Any]]:
        """The records of the default audit log, in order."""
        path = self.home / "audit.jsonl"
        assert path.exists(), f"no audit log at {path}; gateway stderr:\n{self.stderr()}"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def close(self) -> None:
        """Stop what is still running and close files."""
        for raw in self._raw:
            raw.kill()
        if self._stderr is not None:
            self._stderr.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Gateway]:
    gateway = Gateway(tmp_path)
    try:
        yield gateway
    finally:
        gateway.close()
