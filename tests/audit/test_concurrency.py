"""Several gateway processes writing one log: one chain, no lost or duplicated seq."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from portcullis.audit import AuditLog, log_files, verify

from .conftest import sample

WRITER = """
import os, sys, time
from pathlib import Path
from portcullis.audit import AuditLog

path, key, name, count, rotate, go = sys.argv[1:7]
log = AuditLog(Path(path), bytes.fromhex(key), rotate_bytes=int(rotate))
Path(go + "." + name).touch()
while not os.path.exists(go):  # start together, so the appends interleave
    time.sleep(0.001)
for i in range(int(count)):
    log.append({"server": name, "id": i, "tool": "read_text_file", "decision": "allow"})
    time.sleep(0.0002)  # a gateway has work between calls; without it one writer finishes first
log.close()
"""


def _start(
    path: Path, key: bytes, *, count: int, rotate: int, writers: int = 2
) -> list[subprocess.Popen[bytes]]:
    go = path.with_name("go")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                str(path),
                key.hex(),
                f"w{n}",
                str(count),
                str(rotate),
                str(go),
            ]
        )
        for n in range(writers)
    ]
    deadline = time.monotonic() + 60
    while not all(path.with_name(f"go.w{n}").exists() for n in range(writers)):
        assert time.monotonic() < deadline, "writers did not start"
        assert all(p.poll() is None for p in procs), "a writer failed to start"
        time.sleep(0.005)
    go.write_text("go")
    return procs


def _run_writers(path: Path, key: bytes, *, count: int, rotate: int) -> None:
    for p in _start(path, key, count=count, rotate=rotate):
        assert p.wait(timeout=60) == 0


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for f in log_files(path) for line in f.read_bytes().splitlines()]


def test_two_processes_make_one_chain(log_path: Path, key: bytes) -> None:
    """Two processes appending 200 records each leave 400 records, seq 0..399, verified."""
    _run_writers(log_path, key, count=200, rotate=100 * 1024 * 1024)
    report = verify(log_path, key)
    assert report.ok, report
    assert report.records == 400
    records = _records(log_path)
    assert [r["seq"] for r in records] == list(range(400))
    by_writer = {name: [r["id"] for r in records if r["server"] == name] for name in ("w0", "w1")}
    assert by_writer == {"w0": list(range(200)), "w1": list(range(200))}
    switches = sum(a["server"] != b["server"] for a, b in itertools.pairwise(records))
    assert switches >= 10, "the writers did not interleave"


def test_two_processes_across_rotations(log_path: Path, key: bytes) -> None:
    """Two processes writing while the log rotates often still make one verified chain."""
    _run_writers(log_path, key, count=200, rotate=8000)
    assert len(log_files(log_path)) > 5
    report = verify(log_path, key)
    assert report.ok, report
    assert report.records == 400
    assert [r["seq"] for r in _records(log_path)] == list(range(400))


def test_verify_while_writers_append(log_path: Path, key: bytes) -> None:
    """A verify during appends sees a consistent snapshot: intact, never a false alarm."""
    procs = _start(log_path, key, count=400, rotate=20000)
    checks = 0
    while any(p.poll() is None for p in procs):
        if log_files(log_path):
            report = verify(log_path, key)
            assert report.ok, report
            checks += 1
    for p in procs:
        assert p.wait(timeout=60) == 0
    assert verify(log_path, key).records == 800
    assert checks > 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_reopens_the_log(log_path: Path, key: bytes) -> None:
    """A child forked with the log open gets its own lock, so parent and child interleave safely."""
    log = AuditLog(log_path, key)
    log.append(sample(0))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        status = 0
        try:
            for i in range(100):
                log.append({"server": "child", "id": i})
        except BaseException:
            status = 1
        os._exit(status)
    for i in range(100):
        log.append({"server": "parent", "id": i})
    _, status = os.waitpid(pid, 0)
    log.close()
    assert os.waitstatus_to_exitcode(status) == 0
    report = verify(log_path, key)
    assert report.ok, report
    assert report.records == 201
