"""Fixtures and helpers of the ``portcullis serve`` tests (also imported by tests/e2e).

Redis: ``redis_url`` and ``redis_clean`` come from :mod:`tests.serve.redis_fixture`.

:class:`Served` starts ``python -m portcullis serve --policy F --port 0`` as a real process with
its own ``PORTCULLIS_HOME`` (a short dir under /tmp) and waits (bounded) for its
``listening on`` line. Its API, kept stable for other test modules::

    served = Served(POLICY_YAML, env={"X": "1"}, home=None, args=())  # writes the policy
    served.start()                      # or: with Served(...) as served:
    served.url, served.port, served.home, served.policy_path
    served.key("alice", servers=("time",))  # `portcullis keys create`; returns the key
    served.revoke("alice")              # `portcullis keys revoke`
    served.cli("keys", "list")          # any `portcullis` command on the same home
    served.write_policy(text)           # rewrite the policy file (then served.hup())
    served.hup()                        # SIGHUP (reload the policy)
    served.stderr_text()                # all it wrote to stderr so far
    served.audit_records()              # <home>/audit.jsonl as a list of dicts
    served.children()                   # pids of its (direct) child processes
    served.stop()                       # SIGTERM; asserts it exits (returns the status)

Two replicas sharing one Redis: two ``Served`` objects (each its own home) with the same
policy text naming ``serve.redis`` and ``serve.sessions.key``.

:func:`sdk_client` is an async context manager yielding an initialized official SDK ``Client``
on ``served.url + path`` with a bearer token, in either era (``mode="legacy"`` or
``mode="2026-07-28"``). :func:`http` returns a raw ``httpx2.AsyncClient`` (bounded timeouts).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from tests.serve.issuer import LocalIssuer, local_issuer
from tests.serve.redis_fixture import redis_clean, redis_url  # noqa: F401

__all__ = [
    "FIXTURES",
    "REPO",
    "TIMEOUT",
    "Served",
    "fixture_server",
    "http",
    "sdk_client",
    "text_of",
    "time_server",
]

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
# Generous, never asserted on: only a bound so a broken gateway fails a test instead of hanging.
TIMEOUT = 60.0


def time_server() -> list[str]:
    """The command of PyPI mcp-server-time (both eras)."""
    return [str(Path(sys.executable).parent / "mcp-server-time")]


def fixture_server(*args: str) -> list[str]:
    """The SDK fixture server (tests/fixtures/mcp_server.py), both eras."""
    return [sys.executable, str(FIXTURES / "mcp_server.py"), *args]


def text_of(result: Any) -> str:
    """The concatenated text content of a CallToolResult."""
    return "".join(getattr(block, "text", "") for block in result.content)


def _base_env() -> dict[str, str]:
    keep = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "CI")
    return {k: os.environ[k] for k in keep if k in os.environ}


class Served:
    """One ``portcullis serve`` process with a private state directory."""

    def __init__(
        self,
        policy: str,
        *,
        env: Mapping[str, str] | None = None,
        home: Path | None = None,
        args: Sequence[str] = (),
    ) -> None:
        """Prepare (not start) a serve process for the policy YAML ``policy``."""
        self._own_home = home is None
        self.home = home or Path(tempfile.mkdtemp(dir="/tmp", prefix="pcs-"))
        self.home.chmod(0o700)
        self.policy_path = self.home / "policy.yaml"
        self.policy_path.write_text(policy)
        self.extra_env = dict(env or {})
        self.args = list(args)
        self.stderr_path = self.home / "serve.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.url = ""

    # -- life ------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The environment of serve and of the CLI commands run against it."""
        env = _base_env()
        env["PORTCULLIS_HOME"] = str(self.home)
        env.update(self.extra_env)
        return env

    def argv(self) -> list[str]:
        """The serve command line."""
        return [
            sys.executable,
            "-m",
            "portcullis",
            "serve",
            "--policy",
            str(self.policy_path),
            "--port",
            "0",
            *self.args,
        ]

    def start(self) -> Served:
        """Start serve and wait for its ``listening on`` line; fail the test otherwise."""
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=self.env(),
                cwd=self.home,
                start_new_session=True,
            )
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for line in self.stderr_text().splitlines():
                if "listening on http" in line:
                    self.url = line.split("listening on ", 1)[1].split()[0]
                    self.port = int(self.url.rsplit(":", 1)[1])
                    return self
            if self.proc.poll() is not None:
                pytest.fail(
                    f"portcullis serve exited with {self.proc.returncode}:\n{self.stderr_text()}",
                    pytrace=False,
                )
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"portcullis serve did not start:\n{self.stderr_text()}", pytrace=False)

    def run(self, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run serve to completion (for refusals to start); capture its output."""
        return subprocess.run(
            self.argv(),
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=self.home,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def stop(self) -> int:
        """SIGTERM; assert that serve exits (bounded); return its status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(f"serve ignored SIGTERM:\n{self.stderr_text()}", pytrace=False)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL serve's whole process group (cleanup only)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=TIMEOUT)

    def close(self) -> None:
        """Stop serve (SIGTERM, then SIGKILL on failure) and remove an owned home."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.stop()
        finally:
            self.kill()
            if self._own_home:
                shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> Served:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- observing and steering ------------------------------------------------------------

    def stderr_text(self) -> str:
        """Everything serve (and its stdio servers) wrote to stderr so far."""
        if not self.stderr_path.exists():
            return ""
        return self.stderr_path.read_text(errors="replace")

    def audit_records(self) -> list[dict[str, Any]]:
        """The audit log (``<home>/audit.jsonl``) as a list of records."""
        path = self.home / "audit.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``python -m portcullis ARGS`` on the same state directory."""
        return subprocess.run(
            [sys.executable, "-m", "portcullis", *args],
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=self.home,
            timeout=TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def key(self, name: str, servers: Sequence[str] = ()) -> str:
        """Create an API key for principal ``name`` (optionally scoped); return it."""
        argv = ["keys", "create", name]
        for server in servers:
            argv += ["--server", server]
        done = self.cli(*argv)
        assert done.returncode == 0, done.stderr
        key = done.stdout.strip().splitlines()[-1].split()[-1]
        self._await_key(key, valid=True)
        return key

    def revoke(self, name: str, key: str | None = None) -> None:
        """Revoke principal ``name``'s key; with ``key``, wait until serve refuses it."""
        done = self.cli("keys", "revoke", name)
        assert done.returncode == 0, done.stderr
        if key is not None:
            self._await_key(key, valid=False)

    def _await_key(self, key: str, *, valid: bool) -> None:
        # A running serve re-reads the keys file at most once a second: wait (bounded) until
        # /metrics (authenticated, not rate-limited) agrees, so tests never race the reload.
        if self.proc is None or self.proc.poll() is not None:
            return
        deadline = time.monotonic() + TIMEOUT
        with httpx2.Client(timeout=10.0) as client:
            while time.monotonic() < deadline:
                got = client.get(
                    self.url + "/metrics", headers={"Authorization": f"Bearer {key}"}
                ).status_code
                if (got != 401) == valid:
                    return
                time.sleep(0.1)
        pytest.fail(f"serve never {'accepted' if valid else 'refused'} the key", pytrace=False)

    def write_policy(self, text: str) -> None:
        """Rewrite the policy file (serve reads it again on :meth:`hup`)."""
        self.policy_path.write_text(text)

    def hup(self) -> None:
        """Send SIGHUP (reload the policy)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def wait_stderr(self, needle: str, *, count: int = 1) -> str:
        """Wait (bounded) until ``needle`` appears ``count`` times on stderr; return stderr."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            text = self.stderr_text()
            if text.count(needle) >= count:
                return text
            time.sleep(0.05)
        pytest.fail(f"serve never wrote {needle!r}:\n{self.stderr_text()}", pytrace=False)

    def children(self) -> list[int]:
        """The pids of serve's direct children (its stdio servers)."""
        assert self.proc is not None
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []


def http(token: str | None = None, **headers: str) -> httpx2.AsyncClient:
    """A raw async HTTP client with bounded timeouts and, when given, a bearer token."""
    head = dict(headers)
    if token is not None:
        head["Authorization"] = f"Bearer {token}"
    return httpx2.AsyncClient(headers=head, timeout=httpx2.Timeout(TIMEOUT))


@contextlib.asynccontextmanager
async def sdk_client(
    served: Served, token: str, path: str = "/mcp", *, mode: str = "legacy", **kwargs: Any
) -> AsyncIterator[Client]:
    """An initialized SDK ``Client`` on ``served.url + path`` with ``token`` as bearer."""
    kwargs.setdefault("read_timeout_seconds", TIMEOUT)
    async with http(token) as hc:
        transport = streamable_http_client(served.url + path, http_client=hc)
        async with Client(transport, mode=mode, cache=None, **kwargs) as client:
            yield client


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """The async tests run on asyncio with uvloop, as `portcullis serve` does."""
    return ("asyncio", {"use_uvloop": True})


@pytest.fixture
def issuer() -> Iterator[LocalIssuer]:
    """A local OAuth issuer (tests/serve/issuer.py), stopped after the test."""
    with local_issuer() as iss:
        yield iss


@pytest.fixture
def served_factory() -> Iterator[Any]:
    """Make :class:`Served` processes that are stopped at the end of the test."""
    made: list[Served] = []

    def make(policy: str, **kwargs: Any) -> Served:
        served = Served(policy, **kwargs)
        made.append(served)
        return served

    yield make
    for served in made:
        served.close()
