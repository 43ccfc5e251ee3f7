"""The seccomp deny list: the real filter in child interpreters, and a BPF model for both arches."""

from __future__ import annotations

import errno
import json
import os
import platform
import re
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import portcullis.sandbox.seccomp as seccomp

MODULE = Path(seccomp.__file__).resolve()
X86_64 = platform.machine() == "x86_64"
ON_LINUX = platform.system() == "Linux" and platform.machine() in seccomp._ARCHES
linux_only = pytest.mark.skipif(not ON_LINUX, reason="seccomp filter needs Linux x86_64/aarch64")

# Syscall probes with arguments that fail harmlessly when nothing filters them (we run as
# root in CI, so e.g. a valid mount or unshare would succeed): with the filter they must get
# EPERM, without it anything but EPERM, which proves the EPERM is ours.
PROBES: dict[str, tuple[str, list[int]]] = {
    "ptrace": ("ptrace", [-1, 0, 0, 0]),  # bad request, pid 0: ESRCH
    "process_vm_readv": ("process_vm_readv", [-1, 0, 0, 0, 0, 0]),  # no iovecs: 0
    "bpf": ("bpf", [-1, 0, 0]),  # bad command
    "keyctl": ("keyctl", [-1, 0, 0, 0, 0]),  # bad operation
    "add_key": ("add_key", [0, 0, 0, 0, 0]),  # NULL type: EFAULT
    "perf_event_open": ("perf_event_open", [0, 0, -1, -1, 0]),  # NULL attr: EFAULT
    "userfaultfd": ("userfaultfd", [-1]),  # bad flags
    "mount": ("mount", [0, 0, 0, 0, 0]),  # NULL target: EFAULT
    "umount2": ("umount2", [0, 0]),  # NULL target: EFAULT
    "fsopen": ("fsopen", [0, 0]),  # NULL name: EFAULT
    "setns": ("setns", [-1, 0]),  # bad fd
    "unshare": ("unshare", [0xFF]),  # CSIGNAL bits are not unshare flags: EINVAL
    "finit_module": ("finit_module", [-1, 0, 0]),  # bad fd
    "name_to_handle_at": ("name_to_handle_at", [-1, 0, 0, 0, 0]),  # NULL path: EFAULT
    "personality(ADDR_NO_RANDOMIZE)": ("personality", [0x0040000]),  # would succeed
}

CHILD = r"""
import ctypes, errno, importlib.util, json, os, platform, sys

spec = importlib.util.spec_from_file_location("seccomp", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
config = json.loads(sys.argv[2])
table = module._ARCHES[platform.machine()][1]
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def call(number, args):
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) for a in args))
    return "ok" if result >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")

reason = module.install() if config["install"] else None
results = {
    label: call(table[name], args) for label, (name, args) in config["probes"].items()
}
print(json.dumps({"reason": reason, "results": results}))
"""


def child(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh ``python -I -S``, as the sandbox launcher does."""
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", script, str(MODULE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def probe(install: bool, probes: dict[str, tuple[str, list[int]]]) -> dict[str, Any]:
    """Run syscall probes in a child, with or without the filter; return their outcomes."""
    proc = child(CHILD, json.dumps({"install": install, "probes": probes}))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["reason"] is None, report["reason"]
    return dict(report["results"])


@linux_only
def test_denied_syscalls_get_eperm_only_from_the_filter() -> None:
    assert probe(install=True, probes=PROBES) == dict.fromkeys(PROBES, "EPERM")
    unfiltered = probe(install=False, probes=PROBES)
    assert "EPERM" not in unfiltered.values(), unfiltered


@linux_only
def test_clone_namespaces_personality_query_and_clone3() -> None:
    probes = {
        "clone3": ("clone3", [0, 0]),
        "personality(query)": ("personality", [0xFFFFFFFF]),
        "personality(default)": ("personality", [0]),
    }
    assert probe(install=True, probes=probes) == {
        "clone3": "ENOSYS",
        "personality(query)": "ok",
        "personality(default)": "ok",
    }


CLONE_CHILD = r"""
import ctypes, importlib.util, os, platform, sys

spec = importlib.util.spec_from_file_location("seccomp", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
assert module.install() is None
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
CLONE_NEWUSER, SIGCHLD = 0x10000000, 17
# A fork-like raw clone: should the filter let it through, the child must leave at once.
pid = libc.syscall(
    ctypes.c_long(module._ARCHES[platform.machine()][1]["clone"]),
    ctypes.c_long(CLONE_NEWUSER | SIGCHLD), *(ctypes.c_long(0) for _ in range(4)),
)
if pid == 0:
    os._exit(0)
if pid > 0:
    os.waitpid(pid, 0)
print(pid, ctypes.get_errno())
"""


@linux_only
def test_clone_into_a_new_namespace_is_refused() -> None:
    proc = child(CLONE_CHILD)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["-1", str(errno.EPERM)]


WORKLOAD = r"""
import importlib.util, json, os, subprocess, sys, threading

spec = importlib.util.spec_from_file_location("seccomp", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
commands = json.loads(sys.argv[2])
assert module.install() is None

with open(sys.argv[1]) as f:
    assert "def install" in f.read()
seen = []
threads = [threading.Thread(target=seen.append, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert sorted(seen) == [0, 1, 2, 3]
pid = os.fork()
if pid == 0:
    os._exit(7)
assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7
codes = [subprocess.run(c, capture_output=True).returncode for c in commands]
print(json.dumps(codes))
"""


@linux_only
def test_ordinary_programs_still_work() -> None:
    commands = [["/usr/bin/true"], [sys.executable, "-c", "pass"]]
    node = shutil.which("node")
    if node is not None:
        # Node starts a thread pool, so this covers clone3 falling back to clone.
        commands.append([node, "-e", "require('child_process').execFileSync('/usr/bin/true')"])
    proc = child(WORKLOAD, json.dumps(commands))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [0] * len(commands)


I386_CHILD = r"""
import ctypes, importlib.util, mmap, sys

if sys.argv[2] == "filtered":
    spec = importlib.util.spec_from_file_location("seccomp", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.install() is None
# mov eax, 20 (getpid in the i386 table); int 0x80; ret
code = b"\xb8\x14\x00\x00\x00\xcd\x80\xc3"
page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
page.write(code)
address = ctypes.addressof(ctypes.c_char.from_buffer(page))
print(ctypes.CFUNCTYPE(ctypes.c_int)(address)(), flush=True)
"""


@pytest.mark.skipif(not (ON_LINUX and X86_64), reason="the i386 ABI is an x86_64 concern")
def test_i386_abi_kills_the_process() -> None:
    control = child(I386_CHILD, "plain")
    if control.returncode != 0:
        pytest.skip(f"no i386 emulation here (int 0x80 gave {control.returncode})")
    filtered = child(I386_CHILD, "filtered")
    assert filtered.returncode == -signal.SIGSYS
    assert filtered.stdout == ""


@linux_only
def test_x32_abi_is_refused() -> None:
    if not X86_64:
        pytest.skip("x32 is an x86_64 concern")
    getpid_x32: tuple[str, list[int]] = ("getpid", [])
    table = dict(seccomp._X86_64, getpid=39 | seccomp._X32_SYSCALL_BIT)
    proc = child(
        CHILD.replace("table = module._ARCHES[platform.machine()][1]", f"table = {table!r}"),
        json.dumps({"install": True, "probes": {"x32 getpid": getpid_x32}}),
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"] == {"x32 getpid": "EPERM"}


# A classic-BPF interpreter for the opcodes the filter uses, so the aarch64 program is
# checked here too, and every table entry is checked without calling it.
def run_filter(program: bytes, arch: int, nr: int, arg0: int = 0) -> int:
    data = struct.pack("<iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    insns = [struct.unpack_from("=HBBI", program, i) for i in range(0, len(program), 8)]
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == seccomp._LD_W_ABS:
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == seccomp._RET_K:
            return int(k)
        else:
            taken = {
                seccomp._JEQ_K: acc == k,
                seccomp._JGE_K: acc >= k,
                seccomp._JSET_K: bool(acc & k),
            }[code]
            pc += jt if taken else jf


EPERM = seccomp._RET_ERRNO | errno.EPERM
ENOSYS = seccomp._RET_ERRNO | errno.ENOSYS
ALLOW, KILL = seccomp._RET_ALLOW, seccomp._RET_KILL_PROCESS


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_filter_model(machine: str) -> None:
    audit_arch, table, has_x32 = seccomp._ARCHES[machine]
    program = seccomp.build_filter(audit_arch, table, has_x32)
    for name in seccomp.DENIED:
        if name in table:
            assert run_filter(program, audit_arch, table[name]) == EPERM, name
    denied = {table[name] for name in seccomp.DENIED if name in table}
    special = {table["clone"], table["clone3"], table["personality"]}
    for nr in set(range(512)) - denied - special:
        assert run_filter(program, audit_arch, nr) == ALLOW, nr
    assert run_filter(program, audit_arch, table["clone3"]) == ENOSYS
    assert run_filter(program, audit_arch, table["clone"], 17) == ALLOW  # SIGCHLD: fork
    assert run_filter(program, audit_arch, table["clone"], 0x003D0F00) == ALLOW  # a thread
    for flag in (0x20000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000):
        assert run_filter(program, audit_arch, table["clone"], 17 | flag) == EPERM, hex(flag)
    assert run_filter(program, audit_arch, table["clone"], 0x40000000) == EPERM
    for persona in (0, 8, 0x20000, 0x20008, 0xFFFFFFFF, 0xFFFFFFFF_00000000):
        assert run_filter(program, audit_arch, table["personality"], persona) == ALLOW
    assert run_filter(program, audit_arch, table["personality"], 0x0040000) == EPERM
    assert run_filter(program, audit_arch, table["personality"], 0x0400000) == EPERM
    x32 = run_filter(program, audit_arch, 39 | seccomp._X32_SYSCALL_BIT)
    assert x32 == (EPERM if has_x32 else ALLOW)
    for other in (0x40000003, 0xC000003E, 0xC00000B7, 0x40000028, 0):  # i386, ARM, ...
        if other != audit_arch:
            assert run_filter(program, other, 39) == KILL
            assert run_filter(program, other, table["ptrace"]) == KILL


def test_tables_cover_the_deny_list() -> None:
    assert set(seccomp._X86_64) == {*seccomp.DENIED, "clone", "clone3", "personality"}
    assert set(seccomp._AARCH64) == set(seccomp._X86_64) - {"iopl", "ioperm"}
    assert len(set(seccomp._X86_64.values())) == len(seccomp._X86_64)
    assert len(set(seccomp._AARCH64.values())) == len(seccomp._AARCH64)


def header_numbers(path: Path) -> dict[str, int]:
    text = path.read_text()
    return {
        name: int(number)
        for name, number in re.findall(r"#define __NR(?:3264)?_(\w+)\s+(\d+)\b", text)
    }


@pytest.mark.parametrize(
    ("header", "table"),
    [
        ("/usr/include/x86_64-linux-gnu/asm/unistd_64.h", seccomp._X86_64),
        ("/usr/include/asm/unistd_64.h", seccomp._X86_64),
        ("/usr/include/asm-generic/unistd.h", seccomp._AARCH64),
    ],
)
def test_tables_match_the_kernel_headers(header: str, table: dict[str, int]) -> None:
    path = Path(header)
    if not path.exists():
        pytest.skip(f"{header} is not installed")
    numbers = header_numbers(path)
    assert {name: numbers.get(name) for name in table} == table


def test_unknown_platforms_are_a_missing_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another system or an unknown machine: the layer is missing, nothing is installed."""

    def fake(sysname: str, machine: str) -> os.uname_result:
        return os.uname_result((sysname, "host", "release", "version", machine))

    monkeypatch.setattr(os, "uname", lambda: fake("Darwin", "arm64"))
    assert seccomp.install() == "seccomp needs Linux, this is Darwin"
    monkeypatch.setattr(os, "uname", lambda: fake("Linux", "riscv64"))
    assert seccomp.install() == "no seccomp syscall table for riscv64"
