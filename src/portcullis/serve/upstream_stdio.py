"""An upstream MCP server run as a child process, spoken to over its stdin and stdout (asyncio).

This is the event-loop counterpart of :mod:`portcullis.gateway.transports.stdio` (which uses
threads for ``portcullis run``): the same process-group handling and kill sequence, but reads
and writes are asyncio pipes so that ``portcullis serve`` can hold many children on one loop.
It decides nothing: frames go to ``on_frame`` and the caller runs them through its session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Callable, Sequence
from typing import Any, Final

from portcullis._exceptions import GatewayError
from portcullis.gateway.frames import LineReader, Oversize

__all__ = ["StdioUpstream", "exit_status", "visible"]

# A pipe holds 64 KiB; reading more at once buys nothing (see transports/stdio.py).
_CHUNK: Final = 1 << 16
_GRACE_S: Final = 2.0
# A stderr "line" longer than this is emitted in pieces, so a child that never writes a
# newline cannot make us buffer without bound.
_STDERR_LINE: Final = 8192


def visible(text: str) -> str:
    """``text`` with control and invisible characters shown as ``<U+XXXX>`` (tabs kept).

    A server's stderr shares our terminal or log; escape sequences could forge log lines or
    redraw the screen. The same rule as the approval questions' (``approval.request.visible``).
    """
    from portcullis.approval.request import visible as shown

    return shown(text, multiline=True)


def exit_status(returncode: int) -> int:
    """A child's status in the shell's convention: its exit code, or 128+N when killed by signal N.

    The same convention as ``portcullis run``, whose own exit status is the child's.
    """
    return 128 - returncode if returncode < 0 else returncode


def _ignore_frame(_frame: bytes | Oversize) -> None:
    return None


def _ignore_gone(_status: int | None) -> None:
    return None


class StdioUpstream:
    """An MCP server child process in its own process group, framed by newlines.

    Set ``on_frame`` and ``on_gone`` before :meth:`start`. ``on_gone`` is called at most once,
    when the child's stdout closes, with its exit status (:func:`exit_status`; None when the
    process still ran after a grace period) — never after :meth:`close` was called, since the
    caller then knows already.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cwd: str | None,
        max_message_bytes: int,
        log: Callable[[str], None],
    ) -> None:
        """Describe the server; nothing is started until :meth:`start`."""
        if not argv:
            raise GatewayError(f'the MCP server "{name}" has no command')
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.max_message_bytes = max_message_bytes
        self.log = log
        self.on_frame: Callable[[bytes | Oversize], None] = _ignore_frame
        self.on_gone: Callable[[int | None], None] = _ignore_gone
        self.pid: int | None = None
        self.returncode: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._write_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._closed = asyncio.Event()

    async def start(self) -> None:
        """Start the child; raise GatewayError when the command cannot be started."""
        if self._proc is not None:
            return
        if self._closing:
            # close() found nothing to stop; a process started now would outlive it.
            raise GatewayError(f'the MCP server "{self.name}" was closed before it started')
        exe = shutil.which(self.argv[0], path=self.env.get("PATH")) or self.argv[0]
        try:
            self._proc = await asyncio.create_subprocess_exec(
                exe,
                *self.argv[1:],
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.env,
                cwd=self.cwd,
                # Its own session (process group): the child and whatever it starts (npx →
                # node) are signalled together and cannot outlive close().
                start_new_session=True,
            )
        except OSError as exc:
            raise GatewayError(
                f'cannot start the MCP server "{self.name}" ({self.argv[0]!r}): '
                f"{exc.strerror or exc}"
            ) from exc
        self.pid = self._proc.pid
        if self._closing:  # close() ran while the process was being spawned
            self._kill_group(signal.SIGKILL)
            await self._proc.wait()
            raise GatewayError(f'the MCP server "{self.name}" was closed while starting')
        self._tasks = [
            asyncio.create_task(self._read_stdout(), name=f"upstream-{self.name}-stdout"),
            asyncio.create_task(self._relay_stderr(), name=f"upstream-{self.name}-stderr"),
        ]

    async def send(self, raw: bytes) -> None:
        """Write one frame and a newline; writes are serialized and flow-controlled (drain).

        A write to a server that is gone is dropped with a log line: its exit is reported
        through ``on_gone``, which is where the caller answers what the server still owed.
        """
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise GatewayError(f'the MCP server "{self.name}" is not started')
        async with self._write_lock:
            try:
                proc.stdin.write(raw)
                proc.stdin.write(b"\n")
                await proc.stdin.drain()
            except (ConnectionError, RuntimeError, OSError) as exc:
                self.log(f'portcullis: cannot write to the MCP server "{self.name}": {exc}')

    async def cancel(self, rid: Any) -> None:
        """Nothing to do on stdio: the session sends ``notifications/cancelled`` itself.

        A stdio server has one connection only; there is no stream to close per request.
        """
        return None

    async def close(self) -> None:
        """Close stdin, then SIGTERM and SIGKILL the process group, each after a 2 s grace.

        The group is killed at the end even when the child exited: what it started (npx →
        node) may live on in it. Idempotent; a second caller waits for the first.
        """
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            await self._stop()
        finally:
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._closed.set()

    async def _stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            if proc.stdin is not None:
                with contextlib.suppress(Exception):
                    proc.stdin.close()
            if not await self._wait(proc, _GRACE_S):
                self._kill_group(signal.SIGTERM)
                if not await self._wait(proc, _GRACE_S):
                    self._kill_group(signal.SIGKILL)
                    await proc.wait()
        self._kill_group(signal.SIGKILL)
        self.returncode = proc.returncode

    @staticmethod
    async def _wait(proc: asyncio.subprocess.Process, timeout: float) -> bool:
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _kill_group(self, sig: int) -> None:
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    async def _read_stdout(self) -> None:
        proc = self._proc
        assert proc is not None
        assert proc.stdout is not None
        reader = LineReader(self.max_message_bytes)
        while True:
            try:
                # read(n), not readline(): no 64 KiB StreamReader limit; LineReader caps frames.
                chunk = await proc.stdout.read(_CHUNK)
            except (ConnectionError, OSError):
                chunk = b""
            if not chunk:
                break
            for item in reader.feed(chunk):
                self._deliver(item)
        if reader.pending():
            self.log(
                f'portcullis: the MCP server "{self.name}" closed its stdout in the middle of a '
                f"message ({reader.pending()} bytes dropped)"
            )
        status: int | None = None
        if await self._wait(proc, _GRACE_S):
            assert proc.returncode is not None
            status = exit_status(proc.returncode)
            self.returncode = proc.returncode
        if not self._closing:
            try:
                self.on_gone(status)
            except Exception as exc:  # a broken callback must not kill the reader silently
                self.log(f'portcullis: error handling the exit of "{self.name}": {exc!r}')

    def _deliver(self, item: bytes | Oversize) -> None:
        try:
            self.on_frame(item)
        except Exception as exc:
            # One bad frame handler must not stop the stream (the caller answers errors).
            self.log(f'portcullis: error handling a frame from "{self.name}": {exc!r}')

    async def _relay_stderr(self) -> None:
        proc = self._proc
        assert proc is not None
        assert proc.stderr is not None
        prefix = visible(self.name)
        pending = b""
        while True:
            try:
                chunk = await proc.stderr.read(_CHUNK)
            except (ConnectionError, OSError):
                chunk = b""
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            while len(pending) > _STDERR_LINE:
                lines.append(pending[:_STDERR_LINE])
                pending = pending[_STDERR_LINE:]
            for line in lines:
                self._write_stderr(prefix, line)
        if pending:
            self._write_stderr(prefix, pending)

    @staticmethod
    def _write_stderr(server: str, line: bytes) -> None:
        from portcullis.serve.logs import server_stderr

        server_stderr(server, visible(line.rstrip(b"\r").decode("utf-8", "replace")))
