"""``portcullis console`` as a real process: the Console line, refusals, signals, no browser."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.console.conftest import WAIT_S


def env(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PORTCULLIS_HOME": str(home), **extra}


def start(home: Path, *args: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "portcullis", "console", *args],
        env=env(home, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=WAIT_S)


def first_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the console prints it once it listens
    assert line, f"no output; stderr: {proc.stderr.read() if proc.stderr else ''}"
    return line


def test_prints_the_console_line_and_stops_on_sigterm(
    home: Path, procs: list[subprocess.Popen[str]]
) -> None:
    """One `Console: http://127.0.0.1:P/?token=T` line; the URL logs in; SIGTERM exits 0."""
    proc = start(home, "--no-browser")
    procs.append(proc)
    line = first_line(proc)
    assert line.startswith("Console: http://127.0.0.1:") and "/?token=" in line
    url = line.removeprefix("Console: ").strip()
    with httpx2.Client(timeout=WAIT_S) as c:
        r = c.get(url)
        assert r.status_code == 303
        base = url.split("/?token=")[0]
        assert c.get(f"{base}/approvals").status_code == 200
        # A live stream must not keep the server from stopping.
        with c.stream("GET", f"{base}/events/approvals") as stream:
            next(stream.iter_lines())
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=WAIT_S) == 0
    out, _ = proc.communicate(timeout=WAIT_S)
    assert out == ""  # exactly one line


def test_port_option(home: Path, procs: list[subprocess.Popen[str]]) -> None:
    """--port P is used; SIGINT also exits 0."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = start(home, "--no-browser", "--port", str(port))
    procs.append(proc)
    assert first_line(proc).startswith(f"Console: http://127.0.0.1:{port}/?token=")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=WAIT_S) == 0


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "example.com"])
def test_non_loopback_without_tls_is_refused(home: Path, host: str) -> None:
    """--host off loopback without --tls-cert/--tls-key exits 2 with a clear message."""
    r = subprocess.run(
        [sys.executable, "-m", "portcullis", "console", "--no-browser", "--host", host],
        env=env(home),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2
    assert r.stdout == ""
    assert f"refusing to listen on {host} without TLS" in r.stderr


def test_half_tls_is_refused(home: Path) -> None:
    """--tls-cert without --tls-key is a usage error (exit 2)."""
    r = subprocess.run(
        [sys.executable, "-m", "portcullis", "console", "--tls-cert", "c.pem"],
        env=env(home),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and "go together" in r.stderr


def test_bad_policy_exits_2(home: Path) -> None:
    """An invalid policy is reported on stderr with exit 2, nothing on stdout."""
    bad = home / "bad.yaml"
    bad.write_text("version: 1\nnonsense: [\n")
    r = subprocess.run(
        [sys.executable, "-m", "portcullis", "console", "--no-browser", "--policy", str(bad)],
        env=env(home),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and r.stdout == "" and "bad.yaml" in r.stderr


def browser_script(tmp: Path, name: str) -> tuple[str, Path]:
    """A fake $BROWSER that records the URL it was given."""
    opened = tmp / f"{name}.txt"
    script = tmp / f"{name}.sh"
    script.write_text(f'#!/bin/sh\nprintf "%s" "$1" > {opened}\n')
    script.chmod(0o700)
    return str(script), opened


def test_no_browser_opens_nothing(
    home: Path, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    """With --no-browser the browser is never started; without it, it gets the URL."""
    quiet_browser, quiet_opened = browser_script(tmp_path, "quiet")
    loud_browser, loud_opened = browser_script(tmp_path, "loud")
    quiet = start(home, "--no-browser", BROWSER=quiet_browser)
    procs.append(quiet)
    first_line(quiet)
    loud = start(home, BROWSER=loud_browser)
    procs.append(loud)
    url = first_line(loud).removeprefix("Console: ").strip()
    deadline = time.monotonic() + WAIT_S
    while not (loud_opened.exists() and loud_opened.read_text()):
        assert time.monotonic() < deadline, "the browser was not started without --no-browser"
        time.sleep(0.05)
    assert loud_opened.read_text() == url
    # The quiet console started first and has had longer than the loud one needed.
    assert quiet.poll() is None
    assert not quiet_opened.exists()
