"""Process ancestry, read from the real process table with real child processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from portcullis._exceptions import ApprovalError
from portcullis.approval import lineage
from portcullis.approval.lineage import ancestry, parent_of, started_by

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process ancestry is POSIX-only")

SLEEPER = "import sys, time; print('ready', flush=True); time.sleep(30)"

# A "server": starts a child that itself starts a grandchild, prints the grandchild's pid.
SERVER = """
import subprocess, sys, time
mode = sys.argv[1]
if mode == "direct":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    print(child.pid, flush=True)
else:
    # Double fork: the middle process exits, so the grandchild is reparented away from us.
    middle = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
         "'import time; time.sleep(30)']); print(p.pid, flush=True)"],
        stdout=subprocess.PIPE, text=True,
    )
    pid = middle.stdout.readline().strip()
    middle.wait(timeout=20)  # reparented only once the middle process is gone
    print(pid, flush=True)
time.sleep(30)
"""


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=10)
    return proc.pid


@pytest.fixture
def server() -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    """A fake MCP server in its own session, as the gateway launches them."""
    procs: list[subprocess.Popen[str]] = []

    def start(mode: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, mode],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        # The whole session we started: the server and the grandchild it left behind.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


def test_parent_of_self_is_the_real_parent() -> None:
    """The parent read from the process table is the one the kernel reports."""
    assert parent_of(os.getpid()) == os.getppid()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/PID/comm is Linux")
def test_parent_of_survives_parentheses_and_spaces_in_the_command_name() -> None:
    """A process named "a) 1 2 (b" cannot shift the fields of /proc/PID/stat."""
    script = "open('/proc/self/comm', 'w').write('a) 1 2 (b'); " + SLEEPER
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        with open(f"/proc/{proc.pid}/comm") as fh:
            assert fh.read().strip() == "a) 1 2 (b"
        assert parent_of(proc.pid) == os.getpid()
    finally:
        proc.kill()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.mark.skipif(shutil.which("ps") is None, reason="needs ps")
def test_ps_fallback_agrees_with_the_kernel() -> None:
    """The ``ps`` path used on macOS and the BSDs gives the same parent."""
    assert lineage._ps_parent(os.getpid()) == os.getppid()


def test_parent_of_unknown_pids_is_none() -> None:
    """A dead pid, 0 and negative pids have no readable parent."""
    assert parent_of(dead_pid()) is None
    assert parent_of(0) is None
    assert parent_of(-5) is None


def test_ancestry_runs_from_the_process_to_the_root() -> None:
    """The chain starts at the pid, goes through its parent, and ends where the parent is 0."""
    chain = ancestry(os.getpid())
    assert chain[:2] == [os.getpid(), os.getppid()]
    assert parent_of(chain[-1]) == 0
    assert len(set(chain)) == len(chain)


def test_ancestry_of_a_dead_process_raises() -> None:
    """An unreadable link is an error, never a short chain."""
    with pytest.raises(ApprovalError, match="cannot read the parent"):
        ancestry(dead_pid())


def test_descendant_of_a_server_is_started_by_it(server) -> None:
    """A grandchild of a launched server is attributed to that server."""
    proc = server("direct")
    grandchild = int(proc.stdout.readline())
    assert started_by(grandchild, {proc.pid: "files"}) == "files"
    assert started_by(proc.pid, {proc.pid: "files"}) == "files"


def test_double_forked_process_is_caught_by_its_session(server) -> None:
    """A grandchild reparented away from the server still shares the server's session."""
    proc = server("double")
    grandchild = int(proc.stdout.readline())
    assert proc.pid not in ancestry(grandchild)
    assert os.getsid(grandchild) == proc.pid
    assert started_by(grandchild, {proc.pid: "files"}) == "files"


def test_unrelated_process_is_not_started_by_a_server(server) -> None:
    """A process that did not come from the server (this test) is not barred."""
    proc = server("direct")
    proc.stdout.readline()
    assert started_by(os.getpid(), {proc.pid: "files"}) is None
    assert started_by(os.getpid(), {}) is None


def test_unknown_ancestry_counts_as_descended() -> None:
    """When the chain cannot be read the answer is a reason, not None (fail closed)."""
    reason = started_by(dead_pid(), {})
    assert reason is not None
    assert reason.startswith("ancestry unknown")
