"""Find, load and cache the policy; pick the server a command should guard.

``portcullis run`` must forward its first byte within 150 ms, and importing pydantic and PyYAML
alone costs about 100 ms. So a compiled policy is cached as msgspec JSON in
``<state dir>/cache/``, keyed by a hash of the file's bytes, and a cache hit decodes it without
importing either: this module imports only the standard library and msgspec at module level, and
the slow path (:func:`_build`) imports the parser inside the function.

Search order when no path is given: ``$PORTCULLIS_POLICY``, then
``$XDG_CONFIG_HOME/portcullis/policy.yaml`` (``~/.config/portcullis/policy.yaml``); never the
current directory, so a cloned repository cannot choose its own policy. With no policy file the
built-in default applies (:func:`builtin_policy`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from pathlib import Path

import msgspec

from portcullis._exceptions import ConfigError, PolicyError
from portcullis._state import state_dir
from portcullis._version import __version__
from portcullis.policy.compiled import CompiledPolicy, ServerPolicy

__all__ = [
    "BUILTIN_DIGEST",
    "DEFAULTS_NAME",
    "builtin_policy",
    "find_policy",
    "load_policy",
    "select_server",
    "unimplemented_keys",
]

BUILTIN_DIGEST = "builtin"
# The ServerPolicy used for `portcullis run -- CMD` when the file names no server.
DEFAULTS_NAME = "defaults"

_MAX_POLICY_BYTES = 16 * 1024 * 1024  # a policy is kilobytes; this stops /dev/zero, not users
_MAX_CACHE_ENTRIES = 32
# Modules whose code decides what a cached compiled policy holds. Their size and mtime are part
# of the cache key, so an upgrade (or an edit in a development checkout) that keeps the version
# number cannot serve a policy compiled by older code.
_COMPILER_MODULES = ("compiled.py", "compile.py", "model.py", "parse.py", "source.py")


def find_policy() -> Path | None:
    """Return the policy file to use when none is given, or None for the built-in default.

    ``$PORTCULLIS_POLICY`` is returned even if it does not exist (loading it then fails loudly
    instead of quietly falling back); the config-dir file only if it exists.
    """
    env = os.environ.get("PORTCULLIS_POLICY")
    if env:
        return Path(env).expanduser()
    config = _config_home()
    if config is None:
        return None
    candidate = config / "portcullis" / "policy.yaml"
    return candidate if candidate.is_file() else None


def _config_home() -> Path | None:
    xdg = os.environ.get("XDG_CONFIG_HOME")
    # The XDG spec says relative values are invalid; honouring one would make the current
    # directory choose the policy.
    if xdg and os.path.isabs(xdg):
        return Path(xdg)
    try:
        return Path.home() / ".config"
    except RuntimeError:  # no home directory: no user config either
        return None


def builtin_policy() -> CompiledPolicy:
    """The policy in force when no file is found: every tool allowed, all else at defaults.

    Its guards (tool rules allow all, redaction of secrets, injection flagging, pinning) are the
    defaults of :mod:`portcullis.policy.compiled`; none is listed as unimplemented because none
    was asked for by a file.
    """
    return CompiledPolicy(
        digest=BUILTIN_DIGEST, source=None, defaults=ServerPolicy(name=DEFAULTS_NAME)
    )


def load_policy(
    path: str | os.PathLike[str] | None = None, *, use_cache: bool = True
) -> CompiledPolicy:
    """Load, validate and compile a policy file (or find one; see :func:`find_policy`).

    Raises :class:`PolicyError` naming file, line and key path when the file is invalid or
    unreadable. ``use_cache=False`` always re-validates and leaves the state directory alone.
    """
    if path is None:
        found = find_policy()
        if found is None:
            return builtin_policy()
        path = found
    filename = os.fspath(path)
    data = _read(filename)
    digest = hashlib.sha256(data).hexdigest()
    if not use_cache:
        return _build(data, filename, digest)
    key = _cache_key(data)
    cached = _cache_read(key, digest)
    if cached is not None:
        return msgspec.structs.replace(cached, source=filename)
    policy = _build(data, filename, digest)
    _cache_write(key, policy)
    return policy


def select_server(policy: CompiledPolicy, name: str | None, *, have_command: bool) -> ServerPolicy:
    """Return the server ``portcullis run`` guards; raise :class:`ConfigError` if ambiguous.

    With a name, that server or an error listing the servers. Without one: the defaults when a
    command was given and the policy has no servers, the only server when there is exactly one,
    and otherwise an error asking for ``--server``.
    """
    names = ", ".join(policy.servers) or "none"
    where = policy.source or "(the built-in default: no policy file was found)"
    if name is not None:
        server = policy.servers.get(name)
        if server is None:
            raise ConfigError(f"server {name!r} is not in the policy {where} (servers: {names})")
        return server
    if not policy.servers:
        if have_command:
            return policy.defaults
        raise ConfigError(
            f"the policy {where} defines no servers: give the server's command "
            "after `--`, or add it under servers: and pass --server NAME"
        )
    if len(policy.servers) == 1:
        return next(iter(policy.servers.values()))
    raise ConfigError(
        f"the policy {where} defines several servers ({names}): choose one with --server NAME"
    )


def unimplemented_keys(policy: CompiledPolicy) -> list[str]:
    """Every key path of ``policy`` this version cannot enforce: defaults, servers, top level."""
    keys: list[str] = []
    for server in (policy.defaults, *policy.servers.values()):
        keys.extend(k for k in server.unimplemented if k not in keys)
    keys.extend(k for k in policy.unimplemented if k not in keys)
    return keys


def _read(filename: str) -> bytes:
    try:
        with open(filename, "rb") as fh:
            data = fh.read(_MAX_POLICY_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise PolicyError(f"cannot read the policy file: {reason}", path=filename) from None
    if len(data) > _MAX_POLICY_BYTES:
        raise PolicyError(
            f"the policy file is larger than {_MAX_POLICY_BYTES} bytes", path=filename
        )
    return data


def _build(data: bytes, filename: str, digest: str) -> CompiledPolicy:
    # The slow path: PyYAML and pydantic are imported here and only here.
    from portcullis.policy.compile import compile_policy
    from portcullis.policy.parse import parse_policy

    model, lines = parse_policy(data, filename)
    return compile_policy(model, digest=digest, source=filename, lines=lines)


# ---- the cache -------------------------------------------------------------------------------


def _cache_key(data: bytes) -> str:
    h = hashlib.sha256(data)
    h.update(b"\0" + __version__.encode())
    # Roots are compiled with "~" expanded, so the same file means different paths per user.
    h.update(b"\0" + os.path.expanduser("~").encode("utf-8", "surrogateescape"))
    here = os.path.dirname(__file__)
    for module in _COMPILER_MODULES:
        try:
            st = os.stat(os.path.join(here, module))
        except OSError:
            continue
        h.update(f"\0{module}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _cache_path(key: str) -> Path | None:
    """The cache file for ``key``, or None when the state directory cannot be trusted."""
    directory = _cache_dir(create=False)
    return directory / f"policy-{key}.json" if directory is not None else None


def _cache_dir(*, create: bool) -> Path | None:
    # A cache is only as trustworthy as its directory: anyone who can write it can replace the
    # policy. state_dir() refuses shared or foreign directories; so does the check below.
    try:
        directory = state_dir(create=create) / "cache"
        if create and not directory.exists():
            directory.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(directory)
    except (ConfigError, OSError):
        return None
    if not stat.S_ISDIR(st.st_mode):
        return None
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return None
    if os.name == "posix" and st.st_mode & 0o022:
        return None
    return directory


def _cache_read(key: str, digest: str) -> CompiledPolicy | None:
    path = _cache_path(key)
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read()
        policy = msgspec.json.decode(raw, type=CompiledPolicy)
    except (OSError, msgspec.DecodeError):
        return None  # corrupt or from older code: rebuilt and overwritten by the caller
    if policy.digest != digest:
        return None
    return policy


def _cache_write(key: str, policy: CompiledPolicy) -> None:
    directory = _cache_dir(create=True)
    if directory is None:
        return
    final = directory / f"policy-{key}.json"
    tmp = directory / f".policy-{key}.{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600
        )
        with os.fdopen(fd, "wb") as fh:
            fh.write(msgspec.json.encode(policy))
        # Readers see the old entry, no entry, or the whole new one; a torn file after a crash
        # fails to decode and is rebuilt.
        os.replace(tmp, final)
    except OSError:
        tmp.unlink(missing_ok=True)
        return
    _prune(directory)


def _prune(directory: Path) -> None:
    try:
        entries = sorted(
            directory.glob("policy-*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True
        )
        for stale in entries[_MAX_CACHE_ENTRIES:]:
            stale.unlink(missing_ok=True)
    except OSError:
        pass  # a full or read-only cache only costs speed
