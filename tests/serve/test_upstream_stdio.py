"""StdioUpstream against real servers and real child processes, on uvloop like ``serve``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from tests.serve.upstreams import (
    TIMEOUT,
    Frames,
    everything,
    filesystem,
    initialize,
    rpc,
    time_server,
)

from portcullis._exceptions import GatewayError
from portcullis.gateway.frames import Oversize
from portcullis.gateway.transports.stdio import child_env
from portcullis.serve.upstream_stdio import StdioUpstream, exit_status, visible

pytestmark = pytest.mark.anyio

# Echoes each line it reads; prints its pid and starts a grandchild when asked (argv).
ECHO = textwrap.dedent(
    """
    import os, subprocess, sys
    if "grandchild" in sys.argv:
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        print(f'{{"grandchild": {p.pid}}}', flush=True)
    if "stubborn" in sys.argv:
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print('{"ready": true}', flush=True)
        while True:
            signal.pause()
    for line in sys.stdin.buffer:
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
    """
)


def is_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def group_alive(pgid: int) -> bool:
    """Whether any running (non-zombie) process is left in process group ``pgid``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in "ZX":
            return True
    return False


async def gone(pred: Callable[[], bool]) -> bool:
    """Poll ``pred`` until it holds (SIGKILL is delivered asynchronously); bounded."""
    async with asyncio.timeout(TIMEOUT):
        while not pred():
            await asyncio.sleep(0.02)
    return True


async def make(
    argv: Sequence[str],
    *,
    max_bytes: int = 64 << 20,
    logs: list[str] | None = None,
    cwd: str | None = None,
) -> tuple[StdioUpstream, Frames]:
    frames = Frames()
    log: Callable[[str], None] = (logs if logs is not None else []).append
    up = StdioUpstream(
        "test", argv, env=child_env({}), cwd=cwd, max_message_bytes=max_bytes, log=log
    )
    up.on_frame = frames
    up.on_gone = frames.on_gone
    await up.start()
    return up, frames


@pytest.fixture
async def closer() -> AsyncIterator[list[StdioUpstream]]:
    ups: list[StdioUpstream] = []
    yield ups
    for up in ups:
        await up.close()


async def handshake(up: StdioUpstream, frames: Frames) -> dict[str, Any]:
    await up.send(initialize())
    init = await frames.response(0)
    await up.send(rpc("notifications/initialized"))
    return init


async def test_time_server_initialize_list_call(closer: list[StdioUpstream]) -> None:
    """Raw JSON-RPC through the upstream reaches mcp-server-time and its answers come back."""
    up, frames = await make(time_server())
    closer.append(up)
    init = await handshake(up, frames)
    assert init["result"]["serverInfo"]["name"] == "mcp-time"
    await up.send(rpc("tools/list", {}, 1))
    tools = await frames.response(1)
    assert "get_current_time" in {t["name"] for t in tools["result"]["tools"]}
    await up.send(
        rpc("tools/call", {"name": "get_current_time", "arguments": {"timezone": "UTC"}}, 2)
    )
    call = await frames.response(2)
    assert "UTC" in call["result"]["content"][0]["text"]


async def test_everything_server_echo(closer: list[StdioUpstream]) -> None:
    """The npm server-everything answers initialize, tools/list and an echo call."""
    up, frames = await make(everything())
    closer.append(up)
    await handshake(up, frames)
    await up.send(rpc("tools/list", {}, "list"))
    tools = await frames.response("list")
    assert "echo" in {t["name"] for t in tools["result"]["tools"]}
    await up.send(rpc("tools/call", {"name": "echo", "arguments": {"message": "hé"}}, 7))
    call = await frames.response(7)
    assert "hé" in call["result"]["content"][0]["text"]


async def test_filesystem_server_lists_directory(
    tmp_path: Path, closer: list[StdioUpstream]
) -> None:
    """The npm server-filesystem lists a directory given on its command line."""
    (tmp_path / "marker.txt").write_text("x")
    up, frames = await make(filesystem(tmp_path))
    closer.append(up)
    await handshake(up, frames)
    await up.send(
        rpc("tools/call", {"name": "list_directory", "arguments": {"path": str(tmp_path)}}, 3)
    )
    call = await frames.response(3)
    assert "marker.txt" in call["result"]["content"][0]["text"]


@pytest.mark.parametrize("size", [100_000, 3 << 20])
async def test_large_frames_pass_both_ways(size: int, closer: list[StdioUpstream]) -> None:
    """Frames above 64 KiB and above 1 MiB are written and read back whole."""
    up, frames = await make([sys.executable, "-c", ECHO])
    closer.append(up)
    raw = rpc("x", {"blob": "y" * size}, 1)
    await up.send(raw)
    await frames.wait(lambda: frames.items)
    assert frames.items == [raw]


async def test_oversize_frame_is_reported(closer: list[StdioUpstream]) -> None:
    """A frame past the cap arrives as Oversize (size and edges); the next frame is whole."""
    up, frames = await make([sys.executable, "-c", ECHO], max_bytes=1 << 20)
    closer.append(up)
    big = rpc("x", {"blob": "y" * (2 << 20)}, 5)
    await up.send(big)
    await up.send(rpc("after", None, 6))
    await frames.wait(lambda: len(frames.items) == 2)
    over, after = frames.items
    assert isinstance(over, Oversize)
    assert over.size == len(big)
    assert big.startswith(over.head)
    assert big.endswith(over.tail)
    assert after == rpc("after", None, 6)


async def test_close_kills_child_and_grandchildren() -> None:
    """close() leaves no process of the child's group running, grandchildren included."""
    up, frames = await make([sys.executable, "-c", ECHO, "grandchild"])
    first = await frames.wait(lambda: frames.items)
    grandchild = json.loads(first[0])["grandchild"]
    assert up.pid is not None
    assert os.getpgid(up.pid) == up.pid  # its own group
    assert is_alive(grandchild)
    await up.close()
    pid = up.pid
    assert not is_alive(pid)
    assert await gone(lambda: not is_alive(grandchild))
    assert await gone(lambda: not group_alive(pid))
    assert frames.gone == []  # no on_gone after close()
    await up.close()  # idempotent


async def test_close_kills_a_child_that_ignores_sigterm() -> None:
    """A child that ignores stdin EOF and SIGTERM is killed by SIGKILL."""
    up, frames = await make([sys.executable, "-c", ECHO, "stubborn"])
    await frames.wait(lambda: frames.items)
    await asyncio.wait_for(up.close(), TIMEOUT)
    assert up.pid is not None
    assert not is_alive(up.pid)
    assert up.returncode == -signal.SIGKILL


@pytest.mark.parametrize(
    ("code", "status"),
    [("import sys; sys.exit(3)", 3), ("import os; os.kill(os.getpid(), 9)", 128 + 9)],
)
async def test_child_exit_calls_on_gone(code: str, status: int) -> None:
    """A child that exits on its own is reported once with its status (128+N for signal N)."""
    up, frames = await make([sys.executable, "-c", code])
    try:
        gone = await frames.wait(lambda: frames.gone)
        assert gone == [status]
    finally:
        await up.close()


async def test_send_after_exit_is_dropped_with_a_log() -> None:
    """Writing to a server that is gone does not raise; it is logged."""
    logs: list[str] = []
    up, frames = await make([sys.executable, "-c", "pass"], logs=logs)
    try:
        await frames.wait(lambda: frames.gone)
        for _ in range(3):
            await up.send(rpc("x", None, 1))
        assert any("cannot write" in line for line in logs)
    finally:
        await up.close()


async def test_command_that_cannot_start() -> None:
    """A missing command raises GatewayError naming the server and the command."""
    up = StdioUpstream(
        "ghost",
        ["/nonexistent/portcullis-no-such-server"],
        env=child_env({}),
        cwd=None,
        max_message_bytes=1 << 20,
        log=lambda _: None,
    )
    with pytest.raises(GatewayError, match=r'"ghost".*no-such-server'):
        await up.start()


async def test_stderr_is_prefixed_and_controls_are_visible(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The child's stderr lines get a [server NAME] prefix, escape sequences shown inertly."""
    code = "import sys; sys.stderr.write('hello\\x1b[31mred\\r\\nsecond\\n'); sys.stderr.flush()"
    up, frames = await make([sys.executable, "-c", code])
    await frames.wait(lambda: frames.gone)
    await up.close()
    err = capsys.readouterr().err
    assert "[server test] hello<U+001B>[31mred\n" in err
    assert "[server test] second\n" in err
    assert "\x1b" not in err


async def test_chatty_stderr_does_not_block_the_child(closer: list[StdioUpstream]) -> None:
    """Megabytes on stderr are drained, so the child still answers on stdout."""
    code = (
        "import sys\n"
        "for _ in range(2000): sys.stderr.write('z' * 1000 + '\\n')\n"
        "sys.stderr.flush()\n"
        "print('{\"done\": 1}', flush=True)\n"
        "sys.stdin.read()\n"
    )
    up, frames = await make([sys.executable, "-c", code])
    closer.append(up)
    await frames.wait(lambda: frames.items)
    assert frames.items == [b'{"done": 1}']


def test_helpers() -> None:
    """exit_status follows the shell's 128+N rule; visible() escapes C0 and C1 controls."""
    assert exit_status(0) == 0
    assert exit_status(-15) == 143
    assert visible("a\x1b\x9bb\tc") == "a<U+001B><U+009B>b\tc"
