"""Seccomp: refuse the syscalls an MCP server never needs but a kernel exploit or escape does.

Bubblewrap's namespaces and Landlock decide *what* a server can reach; this filter shrinks
*how much kernel* it can reach. Debugging other processes, loading modules or BPF programs,
the keyring, userfaultfd, perf, mounting and new namespaces are all rich kernel attack surface
or sandbox-escape primitives, and no MCP server has a legitimate use for them. They fail with
``EPERM``, which programs already handle because unprivileged users see the same error.

ABI handling. A seccomp filter sees raw syscall numbers, which differ per ABI, and a 64-bit
x86 process can still enter the kernel through the i386 (``int 0x80``) or x32 ABIs, whose
numbers are different. So the filter first checks ``seccomp_data.arch``: only the native ABI
of the running interpreter (x86_64 or aarch64) is let through to the deny list, and any other
ABI kills the process outright. On x86_64 the x32 ABI shares the arch value but sets bit 30 of
the number (``__X32_SYSCALL_BIT``); those calls get ``EPERM``.

Two calls are filtered on their arguments rather than refused outright:

* ``clone`` is refused when it asks for a new namespace (the ``CLONE_NEW*`` flags), which is
  ``unshare`` by another name. ``clone3`` passes its flags in memory a filter cannot read, so
  it gets ``ENOSYS``: glibc (2.34+) then falls back to ``clone``, which we can inspect.
* ``personality`` is allowed only for the values Docker's default profile allows (the default
  persona, the Linux 2.6-uname and 32-bit personas, and the query ``0xffffffff``); other
  flags, such as ``ADDR_NO_RANDOMIZE``, would switch off ASLR for the programs it starts.

The filter is inherited across ``fork`` and ``execve`` and cannot be removed. It applies to the
calling thread only, so the launcher installs it from the thread that executes the server.
This module runs in the launcher's fresh ``python -I -S`` interpreter on every server start,
so it imports nothing but the standard library and does no work at import time.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys

__all__ = ["DENIED", "install"]

# Syscalls refused with EPERM, by name. The new mount API (open_tree .. mount_setattr) and
# quotactl_fd are listed with their older counterparts so refusing mount means something.
DENIED: tuple[str, ...] = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "mount",
    "umount2",
    "pivot_root",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "swapon",
    "swapoff",
    "reboot",
    "acct",
    "quotactl",
    "quotactl_fd",
    "open_by_handle_at",
    "name_to_handle_at",
    "setns",
    "unshare",
    "iopl",
    "ioperm",
    # A large kernel attack surface no MCP server needs (Docker's default profile refuses it).
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
)

# From /usr/include/x86_64-linux-gnu/asm/unistd_64.h.
_X86_64: dict[str, int] = {
    "clone": 56,
    "personality": 135,
    "clone3": 435,
    "ptrace": 101,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "kexec_load": 246,
    "kexec_file_load": 320,
    "init_module": 175,
    "finit_module": 313,
    "delete_module": 176,
    "bpf": 321,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "perf_event_open": 298,
    "userfaultfd": 323,
    "keyctl": 250,
    "add_key": 248,
    "request_key": 249,
    "mount": 165,
    "umount2": 166,
    "pivot_root": 155,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "mount_setattr": 442,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "acct": 163,
    "quotactl": 179,
    "quotactl_fd": 443,
    "open_by_handle_at": 304,
    "name_to_handle_at": 303,
    "setns": 308,
    "unshare": 272,
    "iopl": 172,
    "ioperm": 173,
}

# From /usr/include/asm-generic/unistd.h, which arm64 uses as is. There is no iopl or ioperm.
_AARCH64: dict[str, int] = {
    "clone": 220,
    "personality": 92,
    "clone3": 435,
    "ptrace": 117,
    "process_vm_readv": 270,
    "process_vm_writev": 271,
    "kexec_load": 104,
    "kexec_file_load": 294,
    "init_module": 105,
    "finit_module": 273,
    "delete_module": 106,
    "bpf": 280,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "perf_event_open": 241,
    "userfaultfd": 282,
    "keyctl": 219,
    "add_key": 217,
    "request_key": 218,
    "mount": 40,
    "umount2": 39,
    "pivot_root": 41,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "mount_setattr": 442,
    "swapon": 224,
    "swapoff": 225,
    "reboot": 142,
    "acct": 89,
    "quotactl": 60,
    "quotactl_fd": 443,
    "open_by_handle_at": 265,
    "name_to_handle_at": 264,
    "setns": 268,
    "unshare": 97,
}

_AUDIT_ARCH_X86_64 = 0xC000003E
_AUDIT_ARCH_AARCH64 = 0xC00000B7
_X32_SYSCALL_BIT = 0x40000000

# machine (uname -m) -> (AUDIT_ARCH value, syscall table, whether the x32 ABI exists)
_ARCHES: dict[str, tuple[int, dict[str, int], bool]] = {
    "x86_64": (_AUDIT_ARCH_X86_64, _X86_64, True),
    "aarch64": (_AUDIT_ARCH_AARCH64, _AARCH64, False),
    "arm64": (_AUDIT_ARCH_AARCH64, _AARCH64, False),
}

# The namespace-creating clone flags; all sit in the low 32 bits of the flags word.
# CLONE_NEWTIME (0x80) is left out: for clone it overlaps the exit-signal byte.
_CLONE_NEWNS = 0x00020000
_CLONE_NEWCGROUP = 0x02000000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_CLONE_NAMESPACES = (
    _CLONE_NEWNS
    | _CLONE_NEWCGROUP
    | _CLONE_NEWUTS
    | _CLONE_NEWIPC
    | _CLONE_NEWUSER
    | _CLONE_NEWPID
    | _CLONE_NEWNET
)

# PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32 and the "query only" value.
_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

# Classic BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h).
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6].
_OFF_NR = 0
_OFF_ARCH = 4
_OFF_ARG0_LOW = 16  # the low half of args[0] on a little-endian machine

_PR_GET_SECCOMP = 21
_PR_SET_SECCOMP = 22
_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_MODE_FILTER = 2

_SOCK_FILTER = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k
_BPF_MAXINSNS = 4096

# An instruction whose jump targets may still be label names.
_Insn = tuple[int, int | str, int | str, int]


def _assemble(items: list[_Insn | str]) -> bytes:
    """Lay out instructions, resolve label jumps into relative offsets, and pack them.

    A bare string in ``items`` is a label for the instruction that follows it.
    """
    labels: dict[str, int] = {}
    program: list[_Insn] = []
    for item in items:
        if isinstance(item, str):
            labels[item] = len(program)
        else:
            program.append(item)
    if len(program) > _BPF_MAXINSNS:
        raise ValueError(f"seccomp: the filter has {len(program)} instructions, too many")

    def offset(target: int | str, index: int) -> int:
        if isinstance(target, int):
            return target
        # Classic BPF only jumps forwards, by at most 255 instructions.
        distance = labels[target] - index - 1
        if not 0 <= distance <= 255:
            raise ValueError(f"seccomp: jump to {target} out of range ({distance})")
        return distance

    return b"".join(
        _SOCK_FILTER.pack(code, offset(jt, i), offset(jf, i), k)
        for i, (code, jt, jf, k) in enumerate(program)
    )


def build_filter(audit_arch: int, table: dict[str, int], has_x32: bool) -> bytes:
    """The packed ``sock_filter`` array for one architecture's syscall table.

    Exposed so tests can check the program's shape without installing it.
    """
    items: list[_Insn | str] = [
        (_LD_W_ABS, 0, 0, _OFF_ARCH),
        (_JEQ_K, 0, "kill", audit_arch),
        (_LD_W_ABS, 0, 0, _OFF_NR),
    ]
    if has_x32:
        # Unsigned compare: this also catches nr == -1, which no real syscall uses.
        items.append((_JGE_K, "eperm", 0, _X32_SYSCALL_BIT))
    items += [(_JEQ_K, "eperm", 0, table[name]) for name in DENIED if name in table]
    items += [
        (_JEQ_K, "enosys", 0, table["clone3"]),
        (_JEQ_K, "clone", 0, table["clone"]),
        (_JEQ_K, "personality", 0, table["personality"]),
        (_RET_K, 0, 0, _RET_ALLOW),
        "clone",
        # clone's flags are an unsigned long, but every CLONE_NEW* bit is in the low word.
        (_LD_W_ABS, 0, 0, _OFF_ARG0_LOW),
        (_JSET_K, "eperm", 0, _CLONE_NAMESPACES),
        (_RET_K, 0, 0, _RET_ALLOW),
        "personality",
        # personality takes an unsigned int, so the kernel ignores the high word.
        (_LD_W_ABS, 0, 0, _OFF_ARG0_LOW),
    ]
    items += [(_JEQ_K, "allow", 0, value) for value in _PERSONALITIES]
    items += [
        "eperm",
        (_RET_K, 0, 0, _RET_ERRNO | errno.EPERM),
        "allow",
        (_RET_K, 0, 0, _RET_ALLOW),
        "enosys",
        (_RET_K, 0, 0, _RET_ERRNO | errno.ENOSYS),
        "kill",
        (_RET_K, 0, 0, _RET_KILL_PROCESS),
    ]
    return _assemble(items)


class _SockFprog(ctypes.Structure):
    """struct sock_fprog: the instruction count and a pointer to the instructions."""

    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def _prctl(libc: ctypes.CDLL, option: int, *args: int | ctypes._Pointer[_SockFprog]) -> int:
    """Call ``prctl(2)`` with full-width arguments; return its result, leaving errno set."""
    # prctl is variadic: integers must be passed at full register width, unused ones as 0.
    padded = (*args, 0, 0, 0, 0)[:4]
    converted = [ctypes.c_ulong(arg) if isinstance(arg, int) else arg for arg in padded]
    ctypes.set_errno(0)
    return int(libc.prctl(ctypes.c_int(option), *converted))


def install() -> str | None:
    """Install the deny-list filter on this thread and everything it later starts.

    Returns ``None`` once the filter is in force, or a short reason when this platform has no
    seccomp or the filter has no syscall table for it: a missing layer, not an error.
    Raises :class:`OSError` if seccomp is present but installing the filter fails, so the
    caller can fail closed.
    """
    # os.uname(), not the platform module: that costs ~5 ms of every sandboxed start.
    uname = os.uname() if hasattr(os, "uname") else None
    system, machine = (uname.sysname, uname.machine) if uname else ("", "")
    if system != "Linux":
        return f"seccomp needs Linux, this is {system or 'unknown'}"
    arch = _ARCHES.get(machine)
    if arch is None:
        return f"no seccomp syscall table for {machine or 'this machine'}"
    if struct.calcsize("P") != 8 or sys.byteorder != "little":
        # A 32-bit or big-endian interpreter on a 64-bit kernel enters through another ABI;
        # the filter would kill it on its first syscall.
        return "no seccomp syscall table for a 32-bit or big-endian interpreter"
    program = build_filter(*arch)

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.restype = ctypes.c_int
    if _prctl(libc, _PR_GET_SECCOMP, 0) < 0:
        code = ctypes.get_errno()
        if code == errno.EINVAL:
            return "seccomp is not built into this kernel"
        raise OSError(code, f"seccomp: prctl(PR_GET_SECCOMP) failed: {os.strerror(code)}")
    # Required for an unprivileged process, and it keeps set-uid programs from running
    # with the filter, which could otherwise trick them into misbehaving.
    if _prctl(libc, _PR_SET_NO_NEW_PRIVS, 1) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"seccomp: prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(code)}")
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // _SOCK_FILTER.size, ctypes.addressof(buffer))
    if _prctl(libc, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.pointer(fprog)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"seccomp: installing the filter failed: {os.strerror(code)}")
    return None
