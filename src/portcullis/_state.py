"""The state directory: audit log, pins, approval queue, keys and the install key.

``$PORTCULLIS_HOME`` or ``~/.local/state/portcullis``, created ``0700``. It is refused when it is
a symlink, owned by another user, or writable by others, because everything in it is trusted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from portcullis._exceptions import ConfigError

__all__ = ["check_private_dir", "install_key", "state_dir", "write_private"]

_KEY_FILE = "install.key"
_KEY_BYTES = 32


def state_dir(create: bool = True) -> Path:
    """Return the state directory, creating it ``0700`` when it does not exist."""
    env = os.environ.get("PORTCULLIS_HOME")
    path = Path(env).expanduser() if env else Path.home() / ".local" / "state" / "portcullis"
    if create and not path.exists():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists():
        check_private_dir(path)
    return path


def check_private_dir(path: Path, what: str = "state directory") -> None:
    """Refuse a directory that is a symlink, someone else's, or writable by others."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise ConfigError(f"{what} {path} is a symlink; refusing to use it")
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{what} {path} is not a directory")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise ConfigError(f"{what} {path} is owned by uid {st.st_uid}, not by you")
    if os.name == "posix" and st.st_mode & 0o022:
        raise ConfigError(
            f"{what} {path} is writable by others (mode {st.st_mode & 0o777:o}); "
            f"run: chmod 700 {path}"
        )


def install_key(directory: Path | None = None) -> bytes:
    """Return the per-install HMAC key, creating it (``0600``) on first use."""
    directory = directory or state_dir()
    path = directory / _KEY_FILE
    if not path.exists():
        # Written aside and linked into place: a second gateway starting at the same moment
        # sees either no key or the whole key, never a half-written one.
        tmp = directory / f".{_KEY_FILE}.{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(_KEY_BYTES))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ConfigError(f"cannot read the install key {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as fh:
        key = fh.read()
    if len(key) != _KEY_BYTES:
        raise ConfigError(f"install key {path} is damaged ({len(key)} bytes, expected 32)")
    return key


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (``0600``) aside, fsync, then rename over it.

    Readers see the old file or the new one, never half of one. Raises ``OSError``; the
    temporary file is removed on failure.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
