"""The in-sandbox forwarder: TCP on loopback to a Unix socket, and its lifetime."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from portcullis.sandbox import forwarder
from tests.sandbox.conftest import TIMEOUT, unix_echo

FORWARDER = Path(forwarder.__file__)


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie not yet reaped by its new parent counts)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.05)
    return False


def roundtrip(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # passed on as a half-close; the echo then ends
        got = b""
        while chunk := sock.recv(4096):
            got += chunk
        return got


@pytest.fixture
def child_pids() -> Iterator[list[int]]:
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        os.waitpid(pid, 0)


def test_relays_tcp_to_the_unix_socket_and_back(home: Path, child_pids: list[int]) -> None:
    sock_path = home / "proxy.sock"
    port = free_port()
    # Fork before the echo server's thread starts: the child needs none of the parent's threads.
    pid = forwarder.start(port, str(sock_path))
    child_pids.append(pid)
    assert pid > 0
    echo = unix_echo(str(sock_path))
    try:
        assert roundtrip(port, b"hello") == b"hello"
        big = os.urandom(300_000)
        assert roundtrip(port, big) == big
    finally:
        echo.close()


def test_port_is_listening_when_start_returns(home: Path, child_pids: list[int]) -> None:
    """The server may connect at once: the port is bound in the parent before the fork."""
    port = free_port()
    child_pids.append(forwarder.start(port, str(home / "missing.sock")))
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.settimeout(TIMEOUT)
        # No proxy behind it: the connection is accepted, then closed.
        assert sock.recv(10) == b""


def test_port_in_use_raises_in_the_caller(child_pids: list[int]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="in use"):
            forwarder.start(port, "/nonexistent.sock")


def test_child_exits_when_its_parent_dies(home: Path) -> None:
    port = free_port()
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('forwarder', {str(FORWARDER)!r})\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(mod)\n"
        f"print(mod.start({port}, {str(home / 'proxy.sock')!r}), flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.strip())
    try:
        assert wait_gone(pid), "the forwarder outlived its parent"
    finally:
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)


def test_script_starts_forwarder_then_execs_command(home: Path) -> None:
    sock_path = home / "proxy.sock"
    echo = unix_echo(str(sock_path))
    port = free_port()
    client = (
        "import socket\n"
        f"s = socket.create_connection(('127.0.0.1', {port}), timeout=5)\n"
        "s.sendall(b'via exec'); s.shutdown(socket.SHUT_WR)\n"
        "print(s.recv(100).decode())\n"
    )
    try:
        done = subprocess.run(
            [
                sys.executable,
                str(FORWARDER),
                str(port),
                str(sock_path),
                sys.executable,
                "-c",
                client,
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT * 2,
        )
    finally:
        echo.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "via exec"


def test_script_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, str(FORWARDER), "x"], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode != 0
    assert "usage" in done.stderr


def test_script_gives_the_command_default_sigpipe(home: Path) -> None:
    """Python ignores SIGPIPE and exec keeps ignored signals: the server must get the default."""
    done = subprocess.run(
        [
            sys.executable,
            str(FORWARDER),
            str(free_port()),
            str(home / "p.sock"),
            "cat",
            "/proc/self/status",
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    ignored = next(line for line in done.stdout.splitlines() if line.startswith("SigIgn:"))
    assert int(ignored.split()[1], 16) & (1 << (signal.SIGPIPE - 1)) == 0
