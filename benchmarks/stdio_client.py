"""A raw JSON-RPC client over blocking pipes, shared by the benchmarks.

No MCP SDK: its own cost (about a millisecond a call) would hide what is measured.
"""

import contextlib
import os
import subprocess
import time
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent
# os.read(fd, n) allocates n bytes first; from 128 KiB up glibc serves that with mmap, so each read
# costs mmap + mremap + munmap and a page fault: about 13 µs, against under 1 µs for 64 KiB (a
# pipe holds 64 KiB anyway). 1 MiB reads in client and server raised the floor from ≈ 7 to ≈ 30 µs.
CHUNK = 1 << 16

INITIALIZE = (
    msgspec.json.encode(
        {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "portcullis-bench", "version": "1"},
            },
        }
    )
    + b"\n"
)
INITIALIZED = b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n'


class Reply(msgspec.Struct):
    id: int | str | None = None
    method: str | None = None
    result: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    error: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


_decode_reply = msgspec.json.Decoder(Reply).decode


class BenchError(Exception):
    pass


class Conn:
    """One spawned process (server or gateway) spoken to over blocking pipes."""

    def __init__(self, argv: list, env: dict, stderr_path: Path) -> None:
        self.stderr_path = stderr_path
        self.t_start_ns = time.time_ns()  # just before Popen: the start of "start → first byte"
        with open(stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                bufsize=0,
                env=env,
                cwd=ROOT,
            )
        self.pid = self.proc.pid
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        self.buf = b""

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.wfd, view) :]
        except OSError as exc:
            raise BenchError(f"cannot write to the process: {exc}{self.stderr_tail()}") from None

    def read_line(self) -> bytes:
        nl = self.buf.find(b"\n")
        if nl >= 0:
            line, self.buf = self.buf[:nl], self.buf[nl + 1 :]
            return line
        parts = [self.buf]
        while True:
            chunk = os.read(self.rfd, CHUNK)
            if not chunk:
                raise BenchError(f"the process closed its stdout{self.stderr_tail()}")
            nl = chunk.find(b"\n")
            if nl >= 0:
                parts.append(chunk[:nl])
                self.buf = chunk[nl + 1 :]
                return b"".join(parts)
            parts.append(chunk)

    def call(self, rid: int, line: bytes) -> Reply:
        """Send one request and return its response, skipping notifications in between."""
        self.send(line)
        while True:
            reply = _decode_reply(self.read_line())
            if reply.method is None and reply.id == rid:
                if reply.error is not msgspec.UNSET:
                    raise BenchError(f"request {rid} failed: {bytes(reply.error)[:300]!r}")
                return reply
            if reply.method is not None and reply.id is not None:  # a server→client request
                self.send(
                    msgspec.json.encode(
                        {
                            "jsonrpc": "2.0",
                            "id": reply.id,
                            "error": {"code": -32601, "message": "not supported by the benchmark"},
                        }
                    )
                    + b"\n"
                )

    def handshake(self) -> float:
        """Initialize; return ms from Popen to the initialize result."""
        self.call(0, INITIALIZE)
        t_init_ms = (time.time_ns() - self.t_start_ns) / 1e6
        self.send(INITIALIZED)
        return t_init_ms

    def stderr_tail(self) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace").strip()
        except OSError:
            return ""
        return "; its stderr ends:\n    " + "\n    ".join(text.splitlines()[-8:]) if text else ""

    def close(self) -> None:
        """EOF on stdin, as a client does; wait for the exit, then insist."""
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
