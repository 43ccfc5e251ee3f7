"""Pin files: the approved definitions of each server, and what it showed since.

One JSON file per server identity in ``<state dir>/pins/`` (directory ``0700``, files
``0600``). Every change is a read-modify-write under an exclusive ``flock`` on a lock file
beside the pin file, written to a temporary file and moved into place with ``os.replace``,
so two gateways recording at once lose nothing and a reader never sees half a file.

A server's identity is its name plus its launch: for stdio the command and arguments with
package versions taken out (``npx -y @scope/pkg@1.2.3`` and ``@scope/pkg@1.2.4`` share pins,
and the version change is recorded and reported); for HTTP the URL. Environment variable
*names* are stored, never values.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from portcullis._exceptions import ConfigError, PortcullisError
from portcullis._state import state_dir, write_private
from portcullis.detect.canonical import definition_hash
from portcullis.pins.compare import KINDS, PinReport, compare, pinned_identity

__all__ = [
    "ChangedSinceShownError",
    "LaunchId",
    "NotPendingError",
    "PinSet",
    "PinStore",
    "PinStoreError",
    "launch_id",
    "version_changes",
]

_FORMAT: Final = 1

# Launchers whose positional arguments name packages as ``pkg@version`` (npm and uvx style).
_AT_LAUNCHERS: Final = frozenset(
    {"npx", "bunx", "pnpx", "pnpm", "npm", "yarn", "bun", "uvx", "uv", "pipx", "deno"}
)
_CONTAINER_LAUNCHERS: Final = frozenset({"docker", "podman", "nerdctl"})
_NPM_SPEC = re.compile(r"^(?P<name>(?:@[\w.-]+/)?[\w][\w.-]*)@(?P<version>[^@/\s]+)$")
_PYPI_SPEC = re.compile(
    r"^(?P<name>[A-Za-z0-9][\w.-]*(?:\[[\w,.-]+\])?)(?P<version>(?:===|==|~=|>=)[^\s,;]+)$"
)
_IMAGE_SPEC = re.compile(
    r"^(?P<name>(?:[a-z0-9.-]+(?::\d+)?/)?[a-z0-9._/-]*[a-z][a-z0-9._/-]*)"
    r"(?P<version>(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?)$"
)


class PinStoreError(ConfigError):
    """A pin file cannot be read or written; the message names the file.

    The gateway treats it as "nothing approved" (fail closed); the CLI exits 2.
    """


class NotPendingError(PortcullisError):
    """``approve`` was given names that have nothing pending; nothing was approved."""

    def __init__(self, server: str, names: Sequence[str]) -> None:
        self.server = server
        self.names = list(names)
        if self.names:
            message = f"nothing pending for server {server!r} under: {', '.join(self.names)}"
        else:
            message = f"no pins or pending definitions for server {server!r}"
        super().__init__(message)


class ChangedSinceShownError(PortcullisError):
    """The pending definitions are not the ones the person was shown; nothing was approved."""

    def __init__(self, server: str) -> None:
        super().__init__(
            f"the pending definitions of {server} changed since they were shown; nothing was "
            "re-pinned: look at the diff again"
        )


@dataclass(frozen=True)
class LaunchId:
    """How a server is launched: what its pins are keyed by.

    ``env`` holds variable names only; values never reach a pin file.
    """

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    url: str | None = None
    env: tuple[str, ...] = ()

    def key(self) -> dict[str, Any]:
        """The identity with package versions taken out; equal keys share one pin file."""
        if self.url is not None and self.command is None:
            return {"name": self.name, "url": self.url}
        return {
            "name": self.name,
            "command": self.command,
            "args": [_split_version(self.command, a)[0] for a in self.args],
        }

    def versions(self) -> dict[str, str]:
        """Package → version for every versioned package in the arguments."""
        out: dict[str, str] = {}
        for arg in self.args:
            unversioned, version = _split_version(self.command, arg)
            if version:
                out[unversioned] = version
        return out

    def to_json(self) -> dict[str, Any]:
        """The launch entry as stored in a pin file."""
        return {
            "command": self.command,
            "args": list(self.args),
            "url": self.url,
            "env": sorted(self.env),
        }

    @classmethod
    def from_json(cls, name: str, data: Mapping[str, Any]) -> LaunchId:
        """Rebuild a launch from its stored entry."""
        return launch_id(
            name,
            data.get("command"),
            data.get("args") or (),
            data.get("url"),
            data.get("env") or (),
        )


def launch_id(
    server_name: str,
    command: str | None,
    args: Iterable[str] = (),
    url: str | None = None,
    env: Mapping[str, Any] | Iterable[str] = (),
) -> LaunchId:
    """Build a :class:`LaunchId`; ``env`` may be a mapping, of which only the names are kept."""
    if command is None and url is None:
        raise ConfigError(f"server {server_name!r} has neither a command nor a url")
    names = tuple(sorted(env.keys() if isinstance(env, Mapping) else env))
    return LaunchId(server_name, command, tuple(str(a) for a in args), url, names)


def version_changes(old: LaunchId, new: LaunchId) -> list[str]:
    """Describe each package version that differs between two launches of one server."""
    before, after = old.versions(), new.versions()
    out = []
    for package in sorted(before.keys() | after.keys()):
        a, b = before.get(package), after.get(package)
        if a != b:
            out.append(f"{package}: {_show(a)} -> {_show(b)}")
    return out


def _show(version: str | None) -> str:
    if not version:
        return "(unversioned)"
    # Keep range operators (">=1") visible; drop only the separators of an exact version.
    for separator in ("===", "==", "@", ":"):
        if version.startswith(separator):
            return version[len(separator) :]
    return version


def _split_version(command: str | None, arg: str) -> tuple[str, str]:
    """Split one argument into (unversioned, version); version is "" when there is none."""
    prefix = ""
    if arg.startswith("-"):
        # --package=pkg@1.2.3 / --from=pkg==1.2: the value carries the version.
        opt, eq, value = arg.partition("=")
        if not eq:
            return arg, ""
        prefix, arg = opt + "=", value
    launcher = os.path.basename(command or "").removesuffix(".exe").removesuffix(".cmd")
    match = _PYPI_SPEC.match(arg)
    if match:
        return prefix + match["name"], match["version"]
    if launcher in _AT_LAUNCHERS:
        match = _NPM_SPEC.match(arg)
        if match:
            return prefix + match["name"], "@" + match["version"]
    if launcher in _CONTAINER_LAUNCHERS and not prefix:
        match = _IMAGE_SPEC.match(arg)
        if match and match["version"]:
            return match["name"], match["version"]
    return prefix + arg, ""


@dataclass
class PinSet:
    """What one pin file holds for a server, as seen by one launch."""

    server: str
    path: Path
    exists: bool = False
    #: kind → key → pinned definition
    pins: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: kind → key → hash of the pinned definition
    hashes: dict[str, dict[str, str]] = field(default_factory=dict)
    #: kind → key → definition seen but not approved
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: kind → key → why it is pending: "new", "changed" or "held"
    reasons: dict[str, dict[str, str]] = field(default_factory=dict)
    #: the launch recorded last, and the launch the pins were approved under
    launch: LaunchId | None = None
    approved_launch: LaunchId | None = None
    #: package version changes from the approved launch to the launch given to ``load``
    version_changes: list[str] = field(default_factory=list)
    launch_history: list[dict[str, Any]] = field(default_factory=list)
    created: str | None = None
    updated: str | None = None

    def matches(self, kind: str, key: str, definition: Mapping[str, Any]) -> bool:
        """True when ``definition`` is exactly the pinned one (the check at call time)."""
        pinned = self.hashes.get(kind, {}).get(key)
        return pinned is not None and pinned == definition_hash(pinned_identity(kind, definition))

    def report(self, kind: str, current: Mapping[str, Any]) -> PinReport:
        """Compare ``current`` definitions of ``kind`` with the pins."""
        return compare(self.pins.get(kind, {}), current, kind)


class PinStore:
    """The pin files of every server, in ``<state dir>/pins`` unless told otherwise."""

    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory

    @property
    def directory(self) -> Path:
        """The pins directory (created ``0700`` on first write)."""
        return self._directory if self._directory is not None else state_dir() / "pins"

    def path_for(self, launch: LaunchId) -> Path:
        """The pin file of one server identity."""
        safe = _safe_name(launch.name)
        digest = definition_hash(launch.key()).removeprefix("sha256:")[:16]
        return self.directory / f"{safe}-{digest}.json"

    # -- reading -------------------------------------------------------------------------

    def load(self, server: str, launch: LaunchId) -> PinSet:
        """Return the pins and pending definitions of ``server`` launched as ``launch``."""
        launch = _named(server, launch)
        path = self.path_for(launch)
        data = _read(path)
        pinset = _pinset(server, path, data)
        if pinset.approved_launch is not None:
            pinset.version_changes = version_changes(pinset.approved_launch, launch)
        return pinset

    def pending(self, server: str, launch: LaunchId) -> dict[str, dict[str, Any]]:
        """Definitions seen for ``server`` but not approved: kind → key → definition."""
        return self.load(server, launch).pending

    def entries(self, server: str | None = None) -> list[PinSet]:
        """Every pin file (of one server, when named), sorted by server name then file."""
        directory = self.directory
        if not directory.is_dir():
            return []
        out = []
        # With a server named, only its files are read, so another server's damaged file
        # does not stand in the way of approving this one.
        pattern = "*.json" if server is None else f"{_safe_name(server)}-*.json"
        for path in sorted(directory.glob(pattern)):
            data = _read(path)
            if data is None:
                continue
            name = data.get("server")
            if server is None or name == server:
                out.append(_pinset(str(name), path, data))
        out.sort(key=lambda p: (p.server, p.path.name))
        return out

    # -- writing -------------------------------------------------------------------------

    def record(
        self,
        server: str,
        launch: LaunchId,
        kind: str,
        definitions: Mapping[str, Any],
        *,
        approve: Iterable[str] | Literal["all"] | None = None,
        hold: Iterable[str] = (),
        complete: bool = True,
    ) -> PinReport:
        """Record the definitions of one kind a server showed, and compare them with the pins.

        Trust on first use: the first time a kind is recorded for a server identity, all its
        definitions are pinned except those in ``hold`` (say, with a high-severity injection
        finding), which become pending. Afterwards a new or changed definition only becomes
        pending (the pin is never overwritten) unless its key is in ``approve`` or ``approve``
        is ``"all"``. ``hold`` always wins: a held definition is pinned only by :meth:`approve`,
        that is by a person who ran ``portcullis pin approve``. With ``complete`` (a whole list
        result), pending entries the server no longer shows are dropped. Returns the
        comparison of ``definitions`` with the pins after recording.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown definition kind {kind!r}")
        launch = _named(server, launch)
        held = set(hold)
        current = {k: pinned_identity(kind, v) for k, v in definitions.items()}
        path = self.path_for(launch)
        with self._locked(path):
            data = _read(path) or _new_file(server, launch)
            before = json.dumps(data, sort_keys=True)
            now = _now()
            first_sight = kind not in data["kinds"]
            pins = data["pins"].setdefault(kind, {})
            pending = data["pending"].setdefault(kind, {})
            for key, definition in current.items():
                digest = definition_hash(definition)
                old = pins.get(key)
                if old is not None and old["hash"] == digest:
                    pending.pop(key, None)
                    continue
                explicit = approve == "all" or (approve is not None and key in set(approve))
                if key not in held and (explicit or (first_sight and old is None)):
                    pins[key] = {"definition": definition, "hash": digest, "pinned_at": now}
                    pending.pop(key, None)
                    continue
                reason = "held" if key in held else ("changed" if old else "new")
                previous = pending.get(key)
                seen_at = previous["seen_at"] if previous and previous["hash"] == digest else now
                pending[key] = {
                    "definition": definition,
                    "hash": digest,
                    "seen_at": seen_at,
                    "reason": reason,
                }
            if complete:
                for key in [k for k in pending if k not in current]:
                    del pending[key]
            if first_sight:
                data["kinds"].append(kind)
            _note_launch(data, launch, now)
            # The gateway records every listing; only a real change costs a write and fsync.
            if not path.exists() or json.dumps(data, sort_keys=True) != before:
                data["updated"] = now
                _write(path, data)
            return compare({k: e["definition"] for k, e in pins.items()}, current, kind)

    def approve(
        self,
        server: str,
        names: Iterable[str] | Literal["all"],
        launch: LaunchId | None = None,
        *,
        expect: Iterable[tuple[str, str, str, str]] | None = None,
    ) -> list[tuple[str, str]]:
        """Move pending definitions into the pins; return the (kind, key) pairs approved.

        Without ``launch`` every pin file of ``server`` is searched. Names match keys of any
        kind (a tool name, a resource URI, ``server`` for the instructions). Names with
        nothing pending raise :class:`NotPendingError` and nothing is approved. ``"all"``
        also accepts the current launch, so its version changes stop being reported.

        ``expect``, when given, is what the person was shown: (pin file name, kind, key,
        definition hash) for each definition the approval covers. It is compared under the
        files' locks, and when the pending definitions differ (one changed or was added since),
        :class:`ChangedSinceShownError` is raised and nothing is approved.
        """
        wanted = None if names == "all" else set(names)
        if launch is not None:
            paths = [self.path_for(_named(server, launch))]
        else:
            paths = [p.path for p in self.entries(server)]
        if not paths:
            raise NotPendingError(server, sorted(wanted or ()))
        with contextlib.ExitStack() as stack:
            for path in paths:
                stack.enter_context(self._locked(path))
            files = {path: _read(path) for path in paths}
            found: set[str] = set()
            approved: list[tuple[str, str]] = []
            covered: set[tuple[str, str, str, str]] = set()
            for path, data in files.items():
                if data is None:
                    continue
                for kind, pending in data["pending"].items():
                    for key, entry in pending.items():
                        if wanted is None or key in wanted:
                            found.add(key)
                            approved.append((kind, key))
                            covered.add((path.name, kind, key, entry["hash"]))
            missing = sorted((wanted or set()) - found)
            if missing:
                raise NotPendingError(server, missing)
            if expect is not None and covered != set(expect):
                raise ChangedSinceShownError(server)
            now = _now()
            for path, data in files.items():
                if data is None:
                    continue
                for kind, pending in data["pending"].items():
                    pins = data["pins"].setdefault(kind, {})
                    for key in [k for k in pending if wanted is None or k in wanted]:
                        entry = pending.pop(key)
                        pins[key] = {
                            "definition": entry["definition"],
                            "hash": entry["hash"],
                            "pinned_at": now,
                        }
                if wanted is None:
                    data["approved_launch"] = data["launch"]
                data["updated"] = now
                _write(path, data)
        return sorted(set(approved))

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        _ensure_dir(path.parent)
        lock = path.with_name(f".{path.name}.lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            _lock(fd)
            yield
        finally:
            os.close(fd)  # closing releases the lock


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)


def _safe_name(server: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", server)[:64]


def _named(server: str, launch: LaunchId) -> LaunchId:
    if launch.name == server:
        return launch
    return LaunchId(server, launch.command, launch.args, launch.url, launch.env)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _new_file(server: str, launch: LaunchId) -> dict[str, Any]:
    now = _now()
    return {
        "format": _FORMAT,
        "server": server,
        "identity": launch.key(),
        "launch": launch.to_json(),
        "approved_launch": launch.to_json(),
        "launch_history": [],
        "kinds": [],
        "pins": {},
        "pending": {},
        "created": now,
        "updated": now,
    }


def _note_launch(data: dict[str, Any], launch: LaunchId, now: str) -> None:
    """Record a launch that differs from the last one (a version bump, a new env name)."""
    entry = launch.to_json()
    if data["launch"] != entry:
        previous = LaunchId.from_json(data["server"], data["launch"])
        data["launch_history"].append(
            {
                "at": now,
                "from": data["launch"],
                "to": entry,
                "changes": version_changes(previous, launch),
            }
        )
        data["launch"] = entry


def _ensure_dir(directory: Path) -> None:
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise PinStoreError(f"pins directory {directory} is not a plain directory")
    if os.name == "posix" and st.st_mode & 0o022:
        # Anyone who can write here can approve tools by swapping a file in.
        raise PinStoreError(
            f"pins directory {directory} is writable by others "
            f"(mode {st.st_mode & 0o777:o}); run: chmod 700 {directory}"
        )


def _read(path: Path) -> dict[str, Any] | None:
    """Read and check one pin file; None when it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PinStoreError(f"cannot read pin file {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PinStoreError(f"pin file {path} is damaged (not JSON: {exc})") from None
    problem = _shape_problem(data)
    if problem:
        raise PinStoreError(f"pin file {path} is damaged ({problem})")
    result: dict[str, Any] = data
    return result


def _shape_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return "not a JSON object"
    if data.get("format") != _FORMAT:
        return f"unknown format {data.get('format')!r}"
    if not isinstance(data.get("server"), str):
        return "no server name"
    for name in ("launch", "approved_launch", "pins", "pending"):
        if not isinstance(data.get(name), dict):
            return f"{name!r} is not an object"
    if not isinstance(data.get("kinds"), list) or not isinstance(data.get("launch_history"), list):
        return "'kinds' or 'launch_history' is not a list"
    for section in ("pins", "pending"):
        for kind, entries in data[section].items():
            if kind not in KINDS or not isinstance(entries, dict):
                return f"{section}.{kind} is not a known kind"
            for key, entry in entries.items():
                if not isinstance(entry, dict) or "definition" not in entry:
                    return f"{section}.{kind}.{key} has no definition"
                # A hand-edited definition must not keep an old hash and pass as pinned.
                try:
                    digest = definition_hash(entry["definition"])
                except (TypeError, ValueError):
                    return f"{section}.{kind}.{key} is not a JSON definition"
                if entry.get("hash") != digest:
                    return f"{section}.{kind}.{key} does not match its hash"
    return None


def _pinset(server: str, path: Path, data: dict[str, Any] | None) -> PinSet:
    if data is None:
        return PinSet(server=server, path=path)
    return PinSet(
        server=server,
        path=path,
        exists=True,
        pins={k: {n: e["definition"] for n, e in v.items()} for k, v in data["pins"].items()},
        hashes={k: {n: e["hash"] for n, e in v.items()} for k, v in data["pins"].items()},
        pending={
            k: {n: e["definition"] for n, e in v.items()} for k, v in data["pending"].items() if v
        },
        reasons={
            k: {n: e.get("reason", "new") for n, e in v.items()}
            for k, v in data["pending"].items()
            if v
        },
        launch=LaunchId.from_json(server, data["launch"]),
        approved_launch=LaunchId.from_json(server, data["approved_launch"]),
        launch_history=list(data["launch_history"]),
        created=data.get("created"),
        updated=data.get("updated"),
    )


def _write(path: Path, data: Mapping[str, Any]) -> None:
    # ASCII-only: a lone surrogate in a hostile definition must not make the file invalid UTF-8.
    body = json.dumps(data, indent=1, sort_keys=True).encode("ascii")
    try:
        write_private(path, body + b"\n")
    except OSError as exc:
        raise PinStoreError(f"cannot write pin file {path}: {exc.strerror}") from exc
