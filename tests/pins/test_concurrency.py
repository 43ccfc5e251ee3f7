"""Two gateway processes recording into one pin file at once lose nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from portcullis.pins import PinStore, launch_id

WRITER = """
import os, sys, time
from pathlib import Path
from portcullis.pins import PinStore, launch_id

directory, name, count, go = sys.argv[1:5]
store = PinStore(Path(directory))
launch = launch_id("files", "npx", ["-y", "pkg@1"])
Path(go + "." + name).touch()
while not os.path.exists(go):  # start together, so the read-modify-writes interleave
    time.sleep(0.001)
for i in range(int(count)):
    key = f"{name}-{i}"
    store.record("files", launch, "tools", {key: {"name": key, "description": "d"}},
                 approve="all", complete=False)
"""


def test_concurrent_writers_keep_every_pin(tmp_path: Path) -> None:
    """Each of two processes pins 40 tools; all 80 are in the file afterwards."""
    directory, go, count = tmp_path / "pins", tmp_path / "go", 40
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(directory), f"w{n}", str(count), str(go)]
        )
        for n in range(2)
    ]
    deadline = time.monotonic() + 60
    while not all(go.with_name(f"go.w{n}").exists() for n in range(2)):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            pytest.fail("writers did not start")
        time.sleep(0.005)
    go.touch()
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    pins = PinStore(directory).load("files", launch_id("files", "npx", ["-y", "pkg@1"]))
    assert len(pins.pins["tools"]) == 2 * count
    assert sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp")) == []
