"""API keys for ``portcullis serve``: made by ``portcullis keys create``, stored only as hashes.

A key reads ``pcl_<id>_<secret>``: the id (64 random bits, hex) finds the record, the secret
(256 random bits, hex) is compared by its SHA-256. The keys file (default
``<state dir>/keys.json``) holds names, ids, hashes, server scopes and creation times, never a
key. A running server notices when the file changes (a ``revoke`` from another process) and
reloads it, checking at most once per second.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import msgspec

from portcullis._exceptions import ConfigError
from portcullis._state import state_dir, write_private
from portcullis.serve.types import Principal

__all__ = ["KEY_PREFIX", "KeyEntry", "KeyStore", "default_keys_path"]

KEY_PREFIX = "pcl_"
_FILE_NAME = "keys.json"
_FILE_VERSION = 1
_ID_BYTES = 8
_SECRET_BYTES = 32  # 256 bits
_RECHECK_S = 1.0
_MAX_FILE_BYTES = 4 * 1024 * 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
_KEY = re.compile(rf"{KEY_PREFIX}([0-9a-f]{{{2 * _ID_BYTES}}})_([0-9a-f]{{{2 * _SECRET_BYTES}}})")

log = logging.getLogger(__name__)


class KeyEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One API key as the keys file records it (no key, only its hash)."""

    name: str
    id: str
    hash: str  # "sha256:<hex>" of the secret part
    servers: tuple[str, ...] = ()  # server names or globs; empty: whatever the identity allows
    created: str = ""  # RFC 3339 UTC


class _KeysFile(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    keys: list[KeyEntry] = msgspec.field(default_factory=list)


def default_keys_path() -> Path:
    """``<state dir>/keys.json`` (the state directory is created when missing)."""
    return state_dir() / _FILE_NAME


def _digest(secret: str) -> str:
    # A plain SHA-256 is enough: the secret is 256 random bits, so there is nothing for a slow
    # KDF to protect against (no dictionary, no feasible brute force), and verify stays cheap
    # on every request.
    return "sha256:" + hashlib.sha256(secret.encode("ascii")).hexdigest()


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"key name {name!r}: use 1-64 letters, digits and . _ @ + - (starting with a "
            "letter or digit)"
        )
    return name


def _check_servers(servers: Sequence[str]) -> tuple[str, ...]:
    out: list[str] = []
    for server in servers:
        if not server or any(c.isspace() for c in server):
            raise ConfigError(f"server scope {server!r} must be a non-empty name or glob")
        if server not in out:
            out.append(server)
    return tuple(out)


def _now_rfc3339() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_Stamp = tuple[int, int, int, int] | None  # inode, device, size, mtime_ns; None: no file


class KeyStore:
    """The API keys in one keys file.

    ``verify`` is safe to call from the event loop: it does at most one ``stat`` per second and
    re-reads the file only when it changed. ``create`` and ``revoke`` re-read the file first and
    write it back atomically, so two CLI processes do not lose each other's changes.
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Use ``path`` (not read until :meth:`load` or the first use)."""
        self.path = path
        self._clock = clock
        self._entries: dict[str, KeyEntry] = {}  # by id
        self._stamp: _Stamp = None
        self._checked: float | None = None
        self._broken: str | None = None
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path | None = None) -> KeyStore:
        """Read ``path`` (default: ``<state dir>/keys.json``; a missing file means no keys).

        Raises ``ConfigError`` naming the file when it is malformed or not private.
        """
        store = cls(path if path is not None else default_keys_path())
        store._reload()
        return store

    # -- reading -------------------------------------------------------------------------

    def _stat(self) -> _Stamp:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read the keys file {self.path}: {exc.strerror}") from exc
        return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)

    def _read(self) -> tuple[dict[str, KeyEntry], _Stamp]:
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.path, flags)
        except FileNotFoundError:
            return {}, None
        except OSError as exc:
            raise ConfigError(f"cannot read the keys file {self.path}: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if os.name == "posix":
                # Whoever can write this file can add a key of their own.
                if hasattr(os, "getuid") and st.st_uid != os.getuid():
                    raise ConfigError(f"keys file {self.path} is owned by uid {st.st_uid}, not you")
                if st.st_mode & 0o022:
                    raise ConfigError(
                        f"keys file {self.path} is writable by others "
                        f"(mode {stat.S_IMODE(st.st_mode):o}); run: chmod 600 {self.path}"
                    )
            data = fh.read(_MAX_FILE_BYTES + 1)
        stamp = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)
        if len(data) > _MAX_FILE_BYTES:
            raise ConfigError(f"keys file {self.path} is larger than {_MAX_FILE_BYTES} bytes")
        if not data.strip():
            return {}, stamp
        try:
            parsed = msgspec.json.decode(data, type=_KeysFile)
        except msgspec.DecodeError as exc:
            raise ConfigError(f"keys file {self.path} is malformed: {exc}") from None
        if parsed.version != _FILE_VERSION:
            raise ConfigError(
                f"keys file {self.path} has version {parsed.version}; this Portcullis reads "
                f"version {_FILE_VERSION}"
            )
        entries: dict[str, KeyEntry] = {}
        names: set[str] = set()
        for entry in parsed.keys:
            if entry.id in entries or entry.name in names:
                raise ConfigError(f"keys file {self.path} lists key {entry.name!r} twice")
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", entry.hash):
                raise ConfigError(f"keys file {self.path}: key {entry.name!r} has a bad hash")
            entries[entry.id] = entry
            names.add(entry.name)
        return entries, stamp

    def _reload(self) -> None:
        entries, stamp = self._read()
        self._entries, self._stamp, self._broken = entries, stamp, None
        self._checked = self._clock()

    def _refresh(self) -> None:
        """Re-read the file when it changed; check at most once per second."""
        now = self._clock()
        if self._checked is not None and now - self._checked < _RECHECK_S:
            return
        with self._lock:
            self._checked = now
            try:
                stamp = self._stat()
                if stamp == self._stamp and self._broken is None:
                    return
                self._reload()
            except ConfigError as exc:
                # Fail closed: a file we cannot trust accepts no key until it is fixed.
                if self._broken != str(exc):
                    log.error("API keys refused until the keys file is fixed: %s", exc)
                self._entries, self._stamp, self._broken = {}, None, str(exc)

    def entries(self) -> list[KeyEntry]:
        """The keys, sorted by name (names, ids, scopes and times; never a key)."""
        self._refresh()
        return sorted(self._entries.values(), key=lambda e: e.name)

    def verify(self, presented: str) -> Principal | None:
        """The principal ``presented`` belongs to, or None for an unknown or revoked key."""
        match = _KEY.fullmatch(presented)
        if match is None:
            return None
        self._refresh()
        entry = self._entries.get(match.group(1))
        if entry is None:
            return None
        if not hmac.compare_digest(_digest(match.group(2)), entry.hash):
            return None
        return Principal(name=entry.name, kind="key", servers=entry.servers or None)

    # -- writing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold an exclusive lock beside the file (POSIX) while reading, changing, writing."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # Windows: one writer at a time is the user's business
            yield
            return
        lock = self.path.with_name(f".{self.path.name}.lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, entries: dict[str, KeyEntry]) -> None:
        doc = _KeysFile(version=_FILE_VERSION, keys=sorted(entries.values(), key=lambda e: e.name))
        try:
            write_private(self.path, msgspec.json.format(msgspec.json.encode(doc)) + b"\n")
        except OSError as exc:
            raise ConfigError(f"cannot write the keys file {self.path}: {exc.strerror}") from exc
        self._reload()

    def create(self, name: str, servers: Sequence[str] = (), *, replace: bool = False) -> str:
        """Make a key named ``name`` scoped to ``servers`` and return it (shown only now).

        An existing name is an error unless ``replace`` (the old key then stops working).
        """
        _check_name(name)
        scope = _check_servers(servers)
        with self._locked():
            entries, _ = self._read()
            old = [e.id for e in entries.values() if e.name == name]
            if old and not replace:
                raise ConfigError(
                    f"a key named {name!r} already exists; revoke it first or use --replace"
                )
            for key_id in old:
                del entries[key_id]
            key_id = secrets.token_hex(_ID_BYTES)
            while key_id in entries:  # pragma: no cover - 64 random bits
                key_id = secrets.token_hex(_ID_BYTES)
            secret = secrets.token_hex(_SECRET_BYTES)
            entries[key_id] = KeyEntry(
                name=name, id=key_id, hash=_digest(secret), servers=scope, created=_now_rfc3339()
            )
            self._write(entries)
        return f"{KEY_PREFIX}{key_id}_{secret}"

    def revoke(self, name: str) -> KeyEntry:
        """Delete the key named ``name`` and return its record; ConfigError when unknown."""
        with self._locked():
            entries, _ = self._read()
            found = [e for e in entries.values() if e.name == name]
            if not found:
                raise ConfigError(f"no API key named {name!r} in {self.path}")
            for entry in found:
                del entries[entry.id]
            self._write(entries)
        return found[0]
