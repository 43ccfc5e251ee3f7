"""Landlock confinement, exercised in child interpreters: a restriction cannot be undone."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import portcullis.sandbox.landlock as landlock

MODULE = Path(landlock.__file__).resolve()

# Runs in a fresh `python -I -S`, like the sandbox launcher: it loads the module by file path,
# restricts itself, then reports what each probe did as JSON on stdout.
CHILD = r"""
import errno, importlib.util, json, os, subprocess, sys

spec = importlib.util.spec_from_file_location("landlock", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
config = json.loads(sys.argv[2])

def outcome(fn):
    try:
        value = fn()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return "ok" if value is None else value

def read(path):
    with open(path) as f:
        f.read()

def write(path):
    with open(path, "w") as f:
        f.write("x")

def listdir(path):
    os.listdir(path)

def run(argv):
    return subprocess.run(argv, capture_output=True).returncode

reason = module.restrict(config["read_only"], config["read_write"])
probes = {
    "read": read,
    "write": write,
    "listdir": listdir,
    "mkdir": os.mkdir,
    "unlink": os.unlink,
    "rename": lambda p: os.rename(*p),
    "run": run,
}
results = [outcome(lambda: probes[op](arg)) for op, arg in config["probes"]]
print(json.dumps({"reason": reason, "results": results}))
"""


def restricted(
    read_only: list[str], read_write: list[str], probes: list[tuple[str, Any]]
) -> list[Any]:
    """Restrict a child interpreter, run the probes in it, and return their outcomes."""
    config = json.dumps({"read_only": read_only, "read_write": read_write, "probes": probes})
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", CHILD, str(MODULE), config],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    if report["reason"] is not None:
        pytest.skip(f"Landlock unavailable: {report['reason']}")
    return list(report["results"])


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """ro/ and out/ each hold a file; rw/ starts empty."""
    for name in ("ro", "rw", "out"):
        (tmp_path / name).mkdir()
    (tmp_path / "ro" / "file").write_text("readable")
    (tmp_path / "ro" / "other").write_text("readable too")
    (tmp_path / "out" / "file").write_text("secret")
    return tmp_path


def test_read_only_dir_can_be_read_and_listed_but_not_written(tree: Path) -> None:
    ro = tree / "ro"
    results = restricted(
        [str(ro)],
        [],
        [
            ("read", str(ro / "file")),
            ("listdir", str(ro)),
            ("write", str(ro / "file")),
            ("write", str(ro / "new")),
            ("mkdir", str(ro / "dir")),
            ("unlink", str(ro / "file")),
        ],
    )
    assert results == ["ok", "ok", "EACCES", "EACCES", "EACCES", "EACCES"]
    assert (ro / "file").read_text() == "readable"


def test_everything_outside_the_lists_is_refused(tree: Path) -> None:
    results = restricted(
        [str(tree / "ro")],
        [str(tree / "rw")],
        [
            ("read", str(tree / "out" / "file")),
            ("listdir", str(tree / "out")),
            ("listdir", str(tree)),
            ("write", str(tree / "out" / "new")),
            ("read", "/etc/passwd"),
        ],
    )
    assert results == ["EACCES"] * 5
    assert not (tree / "out" / "new").exists()


def test_read_write_dir_allows_creating_changing_and_removing(tree: Path) -> None:
    rw = tree / "rw"
    results = restricted(
        [],
        [str(rw)],
        [
            ("write", str(rw / "a")),
            ("read", str(rw / "a")),
            ("mkdir", str(rw / "sub")),
            ("rename", [str(rw / "a"), str(rw / "sub" / "b")]),
            ("listdir", str(rw / "sub")),
            ("unlink", str(rw / "sub" / "b")),
        ],
    )
    assert results == ["ok"] * 6
    assert list((rw / "sub").iterdir()) == []


def test_programs_under_read_only_run_and_inherit_the_restriction(tree: Path) -> None:
    cat = shutil.which("cat", path="/usr/bin")
    assert cat is not None
    shutil.copy("/usr/bin/true", tree / "out" / "true")
    results = restricted(
        ["/usr", str(tree / "ro")],
        [],
        [
            ("run", ["/usr/bin/true"]),
            ("run", [cat, str(tree / "ro" / "file")]),
            # The executed cat is still confined: Landlock survives execve.
            ("run", [cat, str(tree / "out" / "file")]),
            # Executing needs the execute right, which only listed paths grant.
            ("run", [str(tree / "out" / "true")]),
        ],
    )
    assert results[:2] == [0, 0]
    assert results[2] != 0
    assert results[3] == "EACCES"


def test_single_files_get_only_file_rights(tree: Path) -> None:
    ro_file, rw_file = tree / "ro" / "file", tree / "out" / "file"
    results = restricted(
        [str(ro_file)],
        [str(rw_file)],
        [
            ("read", str(ro_file)),
            ("write", str(ro_file)),
            ("read", str(tree / "ro" / "other")),
            ("write", str(rw_file)),
            ("read", str(rw_file)),
        ],
    )
    assert results == ["ok", "EACCES", "EACCES", "ok", "ok"]


def test_missing_paths_are_skipped(tree: Path) -> None:
    missing = [str(tree / "nope"), str(tree / "ro" / "file" / "below-a-file")]
    results = restricted(
        [*missing, str(tree / "ro")],
        missing,
        [("read", str(tree / "ro" / "file")), ("read", str(tree / "out" / "file"))],
    )
    assert results == ["ok", "EACCES"]


def test_handled_rights_follow_the_abi() -> None:
    assert landlock._handled_rights(1) == (1 << 13) - 1
    assert landlock._handled_rights(2) == (1 << 14) - 1
    assert landlock._handled_rights(3) == (1 << 15) - 1
    assert landlock._handled_rights(4) == (1 << 15) - 1
    assert landlock._handled_rights(5) == (1 << 16) - 1
    assert landlock._handled_rights(7) == (1 << 16) - 1


def fake_uname(sysname: str, machine: str) -> os.uname_result:
    """What os.uname() says on another system (the layers must not really be applied here)."""
    return os.uname_result((sysname, "host", "release", "version", machine))


def test_not_linux_is_a_missing_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another system: the layer is missing, and nothing is restricted."""
    monkeypatch.setattr(os, "uname", lambda: fake_uname("Darwin", "arm64"))
    assert landlock.restrict(["/usr"], []) == "Landlock needs Linux, this is Darwin"


@pytest.mark.parametrize(
    ("code", "word"), [(errno.ENOSYS, "ENOSYS"), (errno.EOPNOTSUPP, "EOPNOTSUPP")]
)
def test_kernel_without_landlock_is_a_missing_layer(
    monkeypatch: pytest.MonkeyPatch, code: int, word: str
) -> None:
    def no_landlock(self: object, number: int, *args: object) -> int:
        assert number == landlock._SYS_CREATE_RULESET
        ctypes.set_errno(code)
        return -1

    monkeypatch.setattr(os, "uname", lambda: fake_uname("Linux", "x86_64"))
    monkeypatch.setattr(landlock._Libc, "syscall", no_landlock)
    reason = landlock.restrict(["/usr"], [])
    assert reason is not None
    assert word in reason


def test_unexpected_open_failure_raises(monkeypatch: pytest.MonkeyPatch, tree: Path) -> None:
    def broken_open(path: str, flags: int) -> int:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "open", broken_open)
    with pytest.raises(OSError, match="cannot open"):
        landlock._open_rules([str(tree)], [], landlock._handled_rights(1))
