"""Landlock: confine an MCP server's filesystem access from inside its own process.

Bubblewrap already gives the server a private mount namespace, but a mount namespace is only
as tight as the bind mounts it was built from, and a kernel or bwrap bug in mount handling is a
way out. Landlock is an independent, unprivileged LSM layer: once :func:`restrict` has run, the
calling thread and every program it then executes can only reach the listed paths, whatever the
mount table says. The sandbox launcher calls it just before it executes the server.

ABI handling. The kernel reports its Landlock ABI version through
``landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)``. We handle every
filesystem right that version knows, so nothing the kernel could police is left open:

* ABI 1: the thirteen original rights. Renaming or linking a file into a different directory is
  then always refused (``EXDEV``); that is the kernel's behaviour, not something we can relax.
* ABI 2 adds ``REFER`` (cross-directory rename/link), granted only under ``read_write`` paths.
* ABI 3 adds ``TRUNCATE``; ABI 5 adds ``IOCTL_DEV``. Both are granted only under ``read_write``.
* ABI 4 (TCP) and ABI 6 (abstract UNIX socket and signal scoping) are deliberately not handled:
  bubblewrap's network and PID namespaces and the egress proxy own those concerns, and a
  ruleset that handles them would need rules of its own to keep the proxy reachable.

A kernel newer than this module still gets every right listed here; rights it added later are
simply not handled, which is what an older kernel would do.

This module runs in the launcher's fresh ``python -I -S`` interpreter on every server start,
so it imports nothing but the standard library and does no work at import time.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import struct

# Not `from typing import TYPE_CHECKING`: importing typing costs milliseconds of every
# sandboxed start; type checkers treat any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["restrict"]

# Landlock arrived after the syscall tables were unified, so the numbers are the same on every
# architecture except alpha; we still only claim the ones we test on.
_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_SUPPORTED_MACHINES = frozenset({"x86_64", "aarch64", "arm64"})

_PR_SET_NO_NEW_PRIVS = 38
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1

_EXECUTE = 1 << 0
_WRITE_FILE = 1 << 1
_READ_FILE = 1 << 2
_READ_DIR = 1 << 3
_REMOVE_DIR = 1 << 4
_REMOVE_FILE = 1 << 5
_MAKE_CHAR = 1 << 6
_MAKE_DIR = 1 << 7
_MAKE_REG = 1 << 8
_MAKE_SOCK = 1 << 9
_MAKE_FIFO = 1 << 10
_MAKE_BLOCK = 1 << 11
_MAKE_SYM = 1 << 12
_REFER = 1 << 13  # ABI 2
_TRUNCATE = 1 << 14  # ABI 3
_IOCTL_DEV = 1 << 15  # ABI 5

_ABI1_RIGHTS = (1 << 13) - 1  # _EXECUTE through _MAKE_SYM

# A rule on a non-directory may only carry rights that make sense on a single file; anything
# else makes landlock_add_rule fail with EINVAL.
_FILE_RIGHTS = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV
_READ_ONLY_RIGHTS = _EXECUTE | _READ_FILE | _READ_DIR

# struct landlock_ruleset_attr starts with __u64 handled_access_fs; the kernel accepts a
# shorter struct than it knows, so we pass just that field and leave net and scope unhandled.
_RULESET_ATTR = struct.Struct("=Q")
# struct landlock_path_beneath_attr is packed: __u64 allowed_access, __s32 parent_fd.
_PATH_BENEATH_ATTR = struct.Struct("=Qi")


def _handled_rights(abi: int) -> int:
    """Every filesystem right the kernel's ABI version can enforce."""
    rights = _ABI1_RIGHTS
    if abi >= 2:
        rights |= _REFER
    if abi >= 3:
        rights |= _TRUNCATE
    if abi >= 5:
        rights |= _IOCTL_DEV
    return rights


class _Libc:
    """The two libc entry points we need, with errno capture."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(None, use_errno=True)
        self._syscall = lib.syscall
        self._syscall.restype = ctypes.c_long
        self._prctl = lib.prctl
        self._prctl.restype = ctypes.c_int

    def syscall(self, number: int, *args: int | ctypes.Array[ctypes.c_char] | None) -> int:
        """Call ``syscall(2)``; return its result and leave errno for :func:`ctypes.get_errno`."""
        # syscall(2) is variadic: every argument must be passed at full register width.
        converted: list[ctypes.c_long | ctypes.Array[ctypes.c_char] | None] = [
            ctypes.c_long(arg) if isinstance(arg, int) else arg for arg in args
        ]
        ctypes.set_errno(0)
        return int(self._syscall(ctypes.c_long(number), *converted))

    def no_new_privs(self) -> None:
        """Set ``PR_SET_NO_NEW_PRIVS``, which an unprivileged Landlock domain requires."""
        ctypes.set_errno(0)
        one, zero = ctypes.c_ulong(1), ctypes.c_ulong(0)
        if self._prctl(ctypes.c_int(_PR_SET_NO_NEW_PRIVS), one, zero, zero, zero) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"landlock: prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(code)}")


def _abi_version(libc: _Libc) -> int | str:
    """The kernel's Landlock ABI version, or the reason Landlock cannot be used."""
    version = libc.syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    if version >= 1:
        return version
    code = ctypes.get_errno()
    if code == errno.ENOSYS:
        return "Landlock is not built into this kernel (ENOSYS)"
    if code == errno.EOPNOTSUPP:
        return "Landlock is disabled on this kernel (EOPNOTSUPP)"
    raise OSError(code, f"landlock: querying the ABI version failed: {os.strerror(code)}")


def _open_rules(
    read_only: Sequence[str], read_write: Sequence[str], handled: int
) -> list[tuple[str, int, int]]:
    """Open every existing path with O_PATH and pair it with the rights it should get.

    On failure every descriptor already opened is closed before the error propagates.
    """
    wanted = [(path, _READ_ONLY_RIGHTS & handled) for path in read_only]
    wanted += [(path, handled) for path in read_write]
    rules: list[tuple[str, int, int]] = []
    try:
        for path, rights in wanted:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError):
                # The caller lists the usual system locations; not all exist on every distro.
                continue
            except OSError as exc:
                raise OSError(exc.errno, f"landlock: cannot open {path!r}: {exc.strerror}") from exc
            rules.append((path, fd, rights))
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                rules[-1] = (path, fd, rights & _FILE_RIGHTS)
    except BaseException:
        for _, fd, _ in rules:
            os.close(fd)
        raise
    return rules


def _enforce(libc: _Libc, handled: int, rules: list[tuple[str, int, int]]) -> None:
    """Create the ruleset, add one path-beneath rule per descriptor, and restrict ourselves."""
    attr = ctypes.create_string_buffer(_RULESET_ATTR.pack(handled), _RULESET_ATTR.size)
    ruleset_fd = libc.syscall(_SYS_CREATE_RULESET, attr, _RULESET_ATTR.size, 0)
    if ruleset_fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"landlock: landlock_create_ruleset failed: {os.strerror(code)}")
    try:
        for path, fd, rights in rules:
            if not rights:
                continue
            rule = ctypes.create_string_buffer(
                _PATH_BENEATH_ATTR.pack(rights, fd), _PATH_BENEATH_ATTR.size
            )
            if libc.syscall(_SYS_ADD_RULE, ruleset_fd, _RULE_PATH_BENEATH, rule, 0) != 0:
                code = ctypes.get_errno()
                raise OSError(
                    code,
                    f"landlock: adding the rule for {path!r} (rights {rights:#x}) failed: "
                    f"{os.strerror(code)}",
                )
        libc.no_new_privs()
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset_fd, 0) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"landlock: landlock_restrict_self failed: {os.strerror(code)}")
    finally:
        os.close(ruleset_fd)


def restrict(read_only: Sequence[str], read_write: Sequence[str]) -> str | None:
    """Confine this thread, and every program it later executes, to the listed paths.

    Afterwards files and directories under ``read_only`` may be read, listed and executed;
    under ``read_write`` anything the kernel's Landlock ABI can govern is allowed (including
    execute, since servers run tools they install into their own cache); everything else
    is refused with ``EACCES`` (or ``EXDEV`` for cross-directory renames on ABI 1).
    Paths that do not exist are skipped. The restriction cannot be undone and applies to the
    calling thread only, so call it from the thread that will ``execve`` the server.

    Returns ``None`` once the restriction is in force, or a short reason when this kernel or
    platform has no Landlock: a missing layer, not an error. Raises :class:`OSError` if
    Landlock is present but anything goes wrong, so the caller can fail closed.
    """
    # os.uname(), not the platform module: that costs ~5 ms of every sandboxed start.
    uname = os.uname() if hasattr(os, "uname") else None
    system, machine = (uname.sysname, uname.machine) if uname else ("", "")
    if system != "Linux":
        return f"Landlock needs Linux, this is {system or 'unknown'}"
    if machine not in _SUPPORTED_MACHINES:
        return f"Landlock syscall numbers are not known for {machine or 'this machine'}"
    libc = _Libc()
    abi = _abi_version(libc)
    if isinstance(abi, str):
        return abi
    handled = _handled_rights(abi)
    rules = _open_rules(read_only, read_write, handled)
    try:
        _enforce(libc, handled, rules)
    finally:
        for _, fd, _ in rules:
            os.close(fd)
    return None
