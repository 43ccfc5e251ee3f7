"""The I/O around a plan: find the files and the executable, store secrets, write safely.

Writing is careful because these are files a person (and their client) owns: a ``0600`` backup
beside the file first, then a temporary file renamed over the original (same mode; a symlink is
followed, so dotfile managers keep their link), and never over a file that changed since it was
read: the client may have written it in between, and that edit would be lost.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from portcullis._exceptions import ConfigError, PortcullisError
from portcullis.scan.model import ConfigFile
from portcullis.wrap.plan import Plan, SecretMove

__all__ = [
    "ChangedOnDisk",
    "apply_plan",
    "default_policy_path",
    "keyring_lookup",
    "keyring_usable",
    "load_targets",
    "policy_refs",
    "portcullis_command",
    "read_policy",
    "sandbox_available",
]

BACKUP_SUFFIX = ".portcullis-backup-"


class ChangedOnDisk(PortcullisError):
    """A file changed between the time it was read and the time it would be written."""


def portcullis_command() -> list[str]:
    """The absolute command that starts this portcullis: its script, else ``python -m``.

    Absolute because GUI clients do not inherit the shell's PATH. The script installed next to
    the running interpreter comes first (it is this very installation), then ``portcullis`` on
    PATH, then the interpreter itself with ``-m portcullis``.
    """
    here = Path(sys.executable).parent
    for name in ("portcullis", "portcullis.exe"):
        candidate = here / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return [str(candidate.absolute())]
    found = shutil.which("portcullis")
    # A relative PATH entry (".") would pick whatever `portcullis` the current directory holds,
    # maybe a cloned repository's, and every client would then run it.
    if found and os.path.isabs(found) and os.path.isfile(found):
        return [found]
    exe = Path(sys.executable).absolute()
    if not exe.is_file():
        raise ConfigError("cannot find the portcullis executable or the Python running it")
    return [str(exe), "-m", "portcullis"]


def default_policy_path(env: Mapping[str, str] = os.environ) -> Path:
    """The policy file ``run`` would use without ``--policy`` (created by wrap if missing)."""
    explicit = env.get("PORTCULLIS_POLICY")
    if explicit:
        return Path(explicit).expanduser().absolute()
    xdg = env.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".config"
    return base / "portcullis" / "policy.yaml"


def read_policy(path: Path) -> str | None:
    """The policy file's text, or None when it does not exist yet."""
    try:
        return path.read_bytes().decode("utf-8").removeprefix("\ufeff")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the policy file {path}: {exc}") from None


def keyring_usable() -> bool:
    """Whether the keyring package has a real backend (not the fail or null one)."""
    try:
        import keyring
        from keyring.backends import fail, null
    except ImportError:
        return False
    try:
        backend = keyring.get_keyring()
    except Exception:  # any backend failure means "no keyring here"
        return False
    if isinstance(backend, (fail.Keyring, null.Keyring)):
        return False
    with contextlib.suppress(ImportError):
        from keyring.backends.chainer import ChainerBackend

        if isinstance(backend, ChainerBackend) and not backend.backends:
            return False
    return True


def keyring_lookup(service: str, name: str) -> str | None:
    """A secret from the OS keyring (None when absent or unreadable)."""
    import keyring
    import keyring.errors

    try:
        value = keyring.get_password(service, name)
    except keyring.errors.KeyringError:
        return None
    return value if isinstance(value, str) else None


def sandbox_available() -> bool:
    """Whether the bubblewrap sandbox runs on this machine."""
    from portcullis._state import state_dir
    from portcullis.sandbox.detect import unavailable

    try:
        cache: Path | None = state_dir()
    except ConfigError:
        cache = None
    return unavailable(cache) is None


_MAX_POLICY = 10 * 1024 * 1024


def _read_small(path: Path) -> str:
    """A regular file's text, refusing anything else (OSError).

    The path comes from the entry being unwrapped, which a hostile project may have written:
    ``/dev/zero`` or a FIFO must neither fill memory nor hang unwrap.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        data = fh.read(_MAX_POLICY + 1)
    if len(data) > _MAX_POLICY:
        raise OSError(errno.EFBIG, "too large for a policy file")
    return data.decode("utf-8")


def policy_refs(policy: str, server: str) -> dict[str, str]:
    """The ``${keyring:portcullis/…}`` env references of one server block of a policy file."""
    import yaml

    try:
        data = yaml.safe_load(_read_small(Path(policy)))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    block: Any = data.get("servers", {}).get(server) if isinstance(data, dict) else None
    env = block.get("env") if isinstance(block, dict) else None
    if not isinstance(env, dict):
        return {}
    return {
        str(k): v
        for k, v in env.items()
        if isinstance(v, str) and v.startswith("${keyring:portcullis/") and v.endswith("}")
    }


def load_targets(
    target: str | None, *, home: Path, cwd: Path, env: Mapping[str, str], system: str
) -> tuple[list[ConfigFile], list[str]]:
    """The client files to work on, and notes about what was left out.

    ``target`` is a client id (its files that exist), a file, or None (every discovered file).
    Managed (administrator) and plugin files are never edited. Raises :class:`ConfigError` for
    an unknown client, or a named file or client file that cannot be read or parsed (with its
    line); without a target such files are skipped with a note.
    """
    from portcullis.scan.clients import CLIENTS, client_paths
    from portcullis.scan.discover import discover, load_file
    from portcullis.scan.parse import ParseError

    notes: list[str] = []
    if target is not None and target not in CLIENTS:
        path = Path(target).expanduser()
        if not path.exists() and os.sep not in target and "." not in target:
            raise ConfigError(
                f"{target!r} is neither a file nor a client ({', '.join(sorted(CLIENTS))})"
            )
        try:
            return [load_file(path.absolute())], notes
        except ParseError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    files, errors = discover(home=home, cwd=cwd, env=env, system=system)
    if target is not None:
        # Only the named client's broken files matter here, not every client's.
        mine = {str(p) for p in client_paths(target, home=home, cwd=cwd, env=env, system=system)}
        errors = [e for e in errors if e.file in mine]
    problems = [
        f"{e.file}:{e.line}: {e.message}" if e.line else f"{e.file}: {e.message}" for e in errors
    ]
    if target is not None and problems:
        raise ConfigError("; ".join(problems))
    notes += [f"{p} (skipped)" for p in problems]
    chosen = []
    for f in files:
        if target is not None and f.client != target:
            continue
        if f.scope in ("managed", "plugin"):
            notes.append(f"{f.path}: {f.scope} configuration, not edited")
            continue
        chosen.append(f)
    return chosen, notes


def _current(path: Path) -> tuple[str | None, bool]:
    """The file's text now as the plan saw it (a UTF-8 BOM removed), and whether it had one."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, False
    bom = data.startswith(b"\xef\xbb\xbf")
    return data.decode("utf-8", errors="replace").removeprefix("\ufeff"), bom


def _keep_owner(fd: int, owner: tuple[int, int] | None) -> None:
    """Give a new file the owner of the one it replaces or copies.

    Run with sudo, wrap would otherwise leave the user's configuration owned by root, and a
    client that rewrites it (Claude Code) could no longer save. Only root may give a file away;
    for anyone else this is a no-op.
    """
    if owner is None or not hasattr(os, "fchown"):
        return
    if (os.geteuid(), os.getegid()) != owner:
        with contextlib.suppress(OSError):
            os.fchown(fd, *owner)


def _atomic_write(
    path: Path,
    text: str,
    mode: int,
    owner: tuple[int, int] | None = None,
    *,
    check: bool = False,
    before: str | None = None,
) -> None:
    """Write ``text`` to a temporary file and rename it over ``path``.

    With ``check``, ``path`` must still hold ``before`` (None: not exist) at the very last
    moment, after the slow part (writing and syncing a multi-MB file): a client's write in
    between would be lost.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
            _keep_owner(fh.fileno(), owner)
        os.chmod(tmp, mode)
        if check and _current(path)[0] != before:
            raise ChangedOnDisk(f"{path} changed since it was read; it was not written")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _backup(path: Path, stamp: str, owner: tuple[int, int] | None = None) -> Path:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for n in range(1000):
        backup = path.with_name(f"{path.name}{BACKUP_SUFFIX}{stamp}{f'-{n}' if n else ''}")
        try:
            fd = os.open(backup, flags, 0o600)
        except FileExistsError:
            continue  # two runs within one second: never overwrite an older backup
        with os.fdopen(fd, "wb") as fh:
            _keep_owner(fh.fileno(), owner)
            fh.write(path.read_bytes())
        return backup
    raise ConfigError(f"cannot find a free backup name beside {path}")


def _store(secrets: list[SecretMove]) -> None:
    import keyring
    import keyring.errors

    for s in secrets:
        # Never overwrite a different value: it may be the only copy of the user's secret (wrap
        # removed it from the client file), and an entry of the same name in a project file
        # could otherwise swap in a token of its own.
        if keyring_lookup(s.service, s.var) not in (None, s.value):
            raise ConfigError(
                f"the keyring already holds a different {s.var} for {s.service}; nothing written"
            )
    for s in secrets:
        try:
            keyring.set_password(s.service, s.var, s.value)
        except keyring.errors.KeyringError as exc:
            raise ConfigError(
                f"could not store {s.var} in the keyring ({type(exc).__name__}); nothing written"
            ) from None
        if keyring_lookup(s.service, s.var) != s.value:
            raise ConfigError(f"the keyring did not keep {s.var}; nothing written")


def _check_writable(path: Path) -> None:
    """Raise ``PermissionError`` unless ``path`` can be replaced (checked before any write).

    The rename would replace a read-only file as long as its directory is writable; a file
    made read-only (by its owner, or a dotfile manager) is a choice wrap must not override.
    Checking every file first also means a refusal never leaves some files written.
    """
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(errno.EACCES, "the file is read-only; nothing written", str(path))
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(
            errno.EACCES, "its directory is not writable; nothing written", str(parent)
        )


def apply_plan(plan: Plan) -> list[Path]:
    """Store the plan's secrets, then write the policy and the client files; return backups.

    Every file is checked against the text the plan was made from first: if any changed on
    disk, nothing is written (:class:`ChangedOnDisk`). Secrets go to the keyring before any
    file refers to them; the policy is written before the client files that name it.
    """
    writes: list[tuple[Path, str | None, str]] = []
    if plan.policy is not None and plan.policy.changed:
        writes.append((plan.policy.path, plan.policy.before, plan.policy.after))
    writes += [(f.path, f.before, f.after) for f in plan.files if f.changed]
    targets = [(p.resolve() if p.exists() else p, before, after) for p, before, after in writes]
    for path, before, _ in targets:
        if _current(path)[0] != before:
            raise ChangedOnDisk(f"{path} changed since it was read; nothing written (run again)")
    for path, _, _ in targets:
        _check_writable(path)
    _store(plan.secrets)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    backups: list[Path] = []
    for path, before, after in targets:
        # Checked again just before each rename: a client may write at any moment.
        now, bom = _current(path)
        if now != before:
            raise ChangedOnDisk(f"{path} changed since it was read; it was not written")
        if bom:
            after = "\ufeff" + after
        owner: tuple[int, int] | None = None
        if before is None:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            mode = 0o600
        else:
            st = path.stat()
            mode, owner = st.st_mode & 0o7777, (st.st_uid, st.st_gid)
            backups.append(_backup(path, stamp, owner))
        _atomic_write(path, after, mode, owner, check=True, before=before)
    return backups
