"""The in-sandbox launcher: what it loads, and how it starts the server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from portcullis.sandbox import inner

SANDBOX_DIR = Path(inner.__file__).parent


@pytest.mark.parametrize("module", ["inner", "landlock", "seccomp", "forwarder"])
def test_launcher_modules_load_only_the_standard_library(module: str) -> None:
    """Each module the launcher runs imports nothing outside the stdlib (it runs every start)."""
    code = (
        "import importlib.util, json, sys\n"
        "before = set(sys.modules)\n"
        f"spec = importlib.util.spec_from_file_location({module!r}, "
        f"{str(SANDBOX_DIR / (module + '.py'))!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    foreign = [name for name in loaded if name.split(".")[0] not in sys.stdlib_module_names]
    assert foreign == []


def test_launcher_applies_the_layers_then_runs_the_command(tmp_path: Path) -> None:
    """Under the launcher: files outside its paths are unreadable and ptrace is refused."""
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    probe = (
        "import ctypes, json, sys\n"
        "out = {}\n"
        "try:\n open(sys.argv[1]).read(); out['read'] = 'allowed'\n"
        "except OSError as exc:\n out['read'] = exc.strerror\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "out['ptrace'] = libc.ptrace(0, 0, None, None)\n"
        "print(json.dumps(out))\n"
    )
    base = str(Path(sys.base_prefix).resolve())
    argv = inner.command(
        sys.executable,
        str(SANDBOX_DIR),
        read_only=["/usr", "/etc", "/proc", sys.prefix, base, str(SANDBOX_DIR)],
        read_write=["/dev"],
    )
    done = subprocess.run(
        [*argv, sys.executable, "-I", "-c", probe, str(secret)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen == {"read": "Permission denied", "ptrace": -1}


def test_server_gets_the_default_sigpipe() -> None:
    """Python's ignored SIGPIPE is not passed on to the server."""
    argv = inner.command(sys.executable, str(SANDBOX_DIR), read_only=[], read_write=[])
    argv = [a for a in argv if a not in ("--landlock", "--seccomp")]
    done = subprocess.run(
        [*argv, "/usr/bin/grep", "SigIgn", "/proc/self/status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    ignored = int(done.stdout.split()[1], 16)
    assert not ignored & (1 << 12)  # SIGPIPE is signal 13: bit 12


def test_launcher_refuses_unknown_options() -> None:
    """A malformed launcher command never starts the server."""
    argv = [sys.executable, "-I", "-S", "-c", inner.BOOTSTRAP, str(SANDBOX_DIR), "--bogus", "--"]
    done = subprocess.run([*argv, "/usr/bin/true"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 126
    assert "unknown launcher option" in done.stderr
