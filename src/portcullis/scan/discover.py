"""Find and read every MCP client configuration: ``portcullis scan`` with or without paths.

:func:`discover` walks the client table (:mod:`portcullis.scan.clients`) for one home and
project; :func:`load_paths` reads what the user named on the command line. Both stat only the
candidates, read only files that exist, and turn every unreadable, oversized or broken file into
a :class:`~portcullis.scan.model.ScanError` (never an exception): a scan that could not see
everything must never look clean.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from portcullis.scan.clients import CLIENTS, Candidate, Context, Glob, expand
from portcullis.scan.entries import extract, guess_shape
from portcullis.scan.model import ConfigFile, Format, ScanError, Scope
from portcullis.scan.parse import Document, ParseError, parse

__all__ = [
    "MAX_BYTES",
    "discover",
    "guess_client",
    "load_file",
    "load_paths",
    "read_config",
]

MAX_BYTES = 20 * 1024 * 1024
"""Files larger than this are reported, not read (a ``~/.claude.json`` is a few MB at most)."""

_WALK_DEPTH = 6
_WALK_LIMIT = 20_000
# Folders a repository walk never enters: dependencies, VCS data, caches, build output.
_PRUNE = frozenset(
    {
        "node_modules",
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "__pycache__",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "dist",
        "build",
        "target",
        ".next",
        ".cache",
    }
)
# Hidden folders that hold project-scope client configuration; other hidden folders are pruned.
_PROJECT_DIRS = frozenset(
    {
        ".cursor",
        ".vscode",
        ".roo",
        ".gemini",
        ".codex",
        ".junie",
        ".amazonq",
        ".kiro",
        ".continue",
        ".zed",
        ".devcontainer",
        ".claude",
        ".opencode",
    }
)


def _fmt_of(path: Path) -> Format:
    suffix = path.suffix.lower()
    if suffix == ".toml":
        return "toml"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    return "json"


def guess_client(path: Path) -> tuple[str, str] | None:
    """``(client, shape)`` for a file by its name and folders; ``None`` when the name is generic.

    Only names a client documents are recognised here; anything else is judged by its keys.
    """
    name = path.name
    parts = [p.lower() for p in path.parts[:-1]]
    parent = parts[-1] if parts else ""
    grand = parts[-2] if len(parts) > 1 else ""
    if name == "claude_desktop_config.json":
        return "claude-desktop", "mcpServers"
    if name == ".claude.json":
        return "claude-code", "claude-json"
    if name in (".mcp.json", "managed-mcp.json"):
        return "claude-code", "mcpServers"
    if name in ("settings.json", "settings.local.json", "managed-settings.json") and (
        parent in (".claude", "claudecode", "claude-code") or name == "managed-settings.json"
    ):
        return "claude-code", "claude-settings"
    if name == "devcontainer.json" or name == ".devcontainer.json":
        return "vscode", "devcontainer"
    if name == "cline_mcp_settings.json":
        return "cline", "mcpServers"
    if name == "mcp_settings.json" and "rooveterinaryinc.roo-cline" in parts:
        return "roo", "mcpServers"
    if name == "mcp_config.json":
        if parent == "windsurf":
            return "windsurf", "mcpServers"
        if parent == "antigravity":
            return "antigravity", "mcpServers"
    if name == "mcp-config.json":
        return "copilot-cli", "mcpServers"
    if name in ("opencode.json", "opencode.jsonc"):
        return "opencode", "opencode"
    if name == "gemini-extension.json":
        return "gemini", "mcpServers"
    if name == "config.toml" and parent == ".codex":
        return "codex", "codex"
    if name in ("config.yaml", "config.yml") and "goose" in parts:
        return "goose", "goose"
    if parent == "mcpservers" and grand == ".continue":
        return "continue", "continue"
    if name in ("config.yaml", "config.json") and parent == ".continue":
        return "continue", "continue"
    if name == "settings.json":
        if parent == ".gemini":
            return "gemini", "mcpServers"
        if parent in ("zed", ".zed"):
            return "zed", "context_servers"
        if parent == ".vscode":
            return "vscode", "vscode-settings"
        if parent == "user" and grand == "code - insiders":
            return "vscode-insiders", "vscode-settings"
        if parent == "user" and grand in ("code", "vscodium"):
            return "vscode", "vscode-settings"
    if name == "mcp.json":
        if parent == ".vscode" or (parent == "user" and grand in ("code", "vscodium")):
            return "vscode", "servers"
        if parent == "user" and grand == "code - insiders":
            return "vscode-insiders", "servers"
        if grand == "profiles" and len(parts) > 3 and parts[-4] == "code - insiders":
            return "vscode-insiders", "servers"
        if grand == "profiles":
            return "vscode", "servers"
        known = {
            ".cursor": "cursor",
            ".roo": "roo",
            ".amazonq": "amazonq",
            ".lmstudio": "lmstudio",
        }
        if parent in known:
            return known[parent], "mcpServers"
        if parent == "mcp" and grand == ".junie":
            return "junie", "mcpServers"
        if parent == "settings" and grand == ".kiro":
            return "kiro", "mcpServers"
    if (parent in ("cli-agents", "agents") and grand == "amazonq") or (
        parent == "cli-agents" and grand == ".amazonq"
    ):
        return "amazonq", "mcpServers"
    return None


def _default_shape(client: str, path: Path, value: object, fmt: Format) -> str:
    """The shape of a file of a named client, refined by the file's name and keys."""
    guessed = guess_client(path)
    if guessed is not None and guessed[0] == client:
        return guessed[1]
    by_client = {
        "codex": "codex",
        "goose": "goose",
        "opencode": "opencode",
        "continue": "continue",
        "zed": "context_servers",
    }
    if client in by_client:
        return by_client[client]
    return guess_shape(value, fmt) or "mcpServers"


def _read_text(path: Path) -> str:
    """The file's text; ``OSError`` when unreadable or too big, ``ParseError`` when not text."""
    # O_NONBLOCK: a FIFO swapped in after the caller's stat must not hang the open; the fstat
    # of the open file then refuses anything but a regular file, and measures what is read.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with open(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "is a directory")
            raise OSError(errno.EINVAL, "not a regular file")
        size = st.st_size
        if size > MAX_BYTES:
            raise OSError(errno.EFBIG, f"larger than {MAX_BYTES // (1024 * 1024)} MB; not read")
        data = fh.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise OSError(errno.EFBIG, f"larger than {MAX_BYTES // (1024 * 1024)} MB; not read")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ParseError("not UTF-8 text", line, 1) from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise ParseError("binary data (a NUL byte)", line, 1)
    return text.removeprefix("\ufeff")


def _config(
    path: Path,
    text: str,
    doc: Document,
    *,
    client: str | None,
    scope: Scope,
    shape: str | None,
    project: str | None,
    named: bool = False,
) -> tuple[ConfigFile, list[ScanError]]:
    if client is None:
        guessed = guess_client(path)
        if guessed is not None:
            client, shape = guessed
        else:
            shape = guess_shape(doc.value, doc.format)
            if shape is None:
                unknown = ConfigFile(path, "unknown", scope, doc.format, text=text)
                if not named:
                    return unknown, []
                # The user named this file and nothing in it was scanned: not a clean result.
                return unknown, [
                    ScanError(
                        "not recognised as an MCP client configuration (none of mcpServers, "
                        "servers, mcp.servers, context_servers, mcp_servers, extensions, mcp): "
                        "nothing in it was scanned",
                        str(path),
                        kind="config",
                    )
                ]
            client = {
                "servers": "vscode",
                "vscode-settings": "vscode",
                "devcontainer": "vscode",
                "context_servers": "zed",
                "codex": "codex",
                "goose": "goose",
                "opencode": "opencode",
                "continue": "continue",
                "claude-json": "claude-code",
                "claude-settings": "claude-code",
            }.get(shape, "unknown")
    if shape is None:
        shape = _default_shape(client, path, doc.value, doc.format)
    got = extract(doc, shape=shape, path=path, client=client, scope=scope, project=project)
    file = ConfigFile(path, client, scope, doc.format, got.servers, got.settings, text)
    return file, got.errors


def read_config(
    path: Path,
    *,
    client: str | None = None,
    scope: Scope = "given",
    shape: str | None = None,
    project: str | None = None,
    named: bool = False,
) -> tuple[ConfigFile, list[ScanError]]:
    """Read, parse and normalise one file, with the problems of its entries.

    ``named`` (the user gave this file by path): a file of no known shape is an error too.

    Raises ``OSError`` (unreadable, a directory, over :data:`MAX_BYTES`) or
    :class:`~portcullis.scan.parse.ParseError` (broken, with its line). Problems inside a file
    that parsed (an entry that is not an object, a non-string argument) come back as errors
    beside the servers that are fine.
    """
    text = _read_text(path)
    doc = parse(text, _fmt_of(path))
    return _config(
        path, text, doc, client=client, scope=scope, shape=shape, project=project, named=named
    )


def load_file(path: Path, *, client: str | None = None, scope: Scope = "given") -> ConfigFile:
    """Read, parse and normalise one configuration file.

    ``client=None`` guesses the client from the path (``.mcp.json``, ``.vscode/mcp.json``,
    ``claude_desktop_config.json``, ``~/.claude.json``, ``.codex/config.toml``,
    ``goose/config.yaml``…) or else from the keys; a file with none of the known keys is a
    :class:`ConfigFile` of client ``unknown`` with no servers. Raises ``OSError`` or
    :class:`~portcullis.scan.parse.ParseError` (with the line). Problems inside entries are
    dropped here; :func:`read_config` returns them.
    """
    return read_config(path, client=client, scope=scope)[0]


def _error(path: Path, exc: Exception) -> ScanError:
    if isinstance(exc, ParseError):
        from portcullis.scan.checks._util import scrub

        # a parser may quote the text it stopped at (a key, an alias): never a credential
        return ScanError(f"cannot parse: {scrub(str(exc))}", str(path), exc.line, kind="config")
    if isinstance(exc, IsADirectoryError):
        return ScanError("is a directory, expected a file", str(path), kind="config")
    if isinstance(exc, PermissionError):
        return ScanError("permission denied", str(path), kind="config")
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
        return ScanError(f"cannot read: {reason}", str(path), kind="config")
    return ScanError(f"cannot read: {exc}", str(path), kind="config")


class _Reader:
    """Reads each file once (by device and inode), collecting files and errors in order."""

    def __init__(self) -> None:
        self.files: list[ConfigFile] = []
        self.errors: list[ScanError] = []
        self.seen: set[tuple[int, int]] = set()

    def read(
        self,
        path: Path,
        *,
        client: str | None,
        scope: Scope,
        shape: str | None = None,
        project: str | None = None,
        must_exist: bool = False,
    ) -> None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if must_exist:
                self.errors.append(ScanError("no such file or directory", str(path)))
            return
        except NotADirectoryError:
            return
        except OSError as exc:
            self.errors.append(_error(path, exc))
            return
        if stat.S_ISDIR(st.st_mode):
            self.errors.append(ScanError("is a directory, expected a file", str(path)))
            return
        if not stat.S_ISREG(st.st_mode):
            # A FIFO or device would block or never end; clients do not keep config there.
            self.errors.append(ScanError("not a regular file", str(path)))
            return
        key = (st.st_dev, st.st_ino)
        if key in self.seen:
            return
        self.seen.add(key)
        if st.st_size > MAX_BYTES:
            limit = MAX_BYTES // (1024 * 1024)
            self.errors.append(ScanError(f"larger than {limit} MB; not read", str(path)))
            return
        try:
            file, problems = read_config(
                path, client=client, scope=scope, shape=shape, project=project, named=must_exist
            )
        except (OSError, ParseError) as exc:
            self.errors.append(_error(path, exc))
            return
        except (
            RecursionError,
            MemoryError,
            ValueError,
            TypeError,
            KeyError,
            AttributeError,
        ) as exc:
            # a bug on a hostile file: this file is not scanned (exit 2), the others still are;
            # only the type is shown, as the text may quote the file
            self.errors.append(
                ScanError(f"cannot read: internal error ({type(exc).__name__})", str(path))
            )
            return
        self.files.append(file)
        self.errors.extend(problems)


def _candidates(ctx: Context) -> Iterable[Candidate]:
    for client in CLIENTS.values():
        yield from client.locations(ctx)


def discover(
    *, home: Path, cwd: Path | None, env: Mapping[str, str], system: str
) -> tuple[list[ConfigFile], list[ScanError]]:
    """Every known client's configuration files that exist, for ``home`` and project ``cwd``.

    Missing files are silently absent. A file that exists but cannot be read or parsed, or
    whose servers are not shaped as its client expects, is a ``ScanError``; the good servers of
    a file that parsed are still returned. A file reached twice (a symlink, a shared path) is
    read once, for the first client that names it.
    """
    ctx = Context(home, cwd, env, system)
    reader = _Reader()
    for cand in _candidates(ctx):
        if isinstance(cand.path, Glob):
            paths, capped = expand(cand.path)
            if capped:
                reader.errors.append(
                    ScanError(
                        f"more than {cand.path.limit} entries; the rest were not scanned",
                        str(cand.path.directory),
                    )
                )
        else:
            paths = [cand.path]
        for path in paths:
            reader.read(
                path, client=cand.client, scope=cand.scope, shape=cand.shape, project=cand.project
            )
    return reader.files, reader.errors


def _wanted(path: Path) -> bool:
    """Whether a file met in a folder walk is client configuration, by name and folder."""
    if guess_client(path) is not None:
        return True
    return path.name == "mcp.json"


def _outside(path: str, real_root: Path) -> bool:
    """Whether the symlink ``path`` leads out of the folder being walked."""
    try:
        return not Path(os.path.realpath(path)).is_relative_to(real_root)
    except (OSError, ValueError):
        return True


def _walk(root: Path, reader: _Reader) -> None:
    """Read the configuration files under ``root``, pruning dependency and VCS folders.

    A symlinked file that leads out of ``root`` is not read: a repository could otherwise
    make the scan read (and a CI report show) the runner's own configuration.
    """
    real_root = Path(os.path.realpath(root))
    stack: list[tuple[str, int]] = [(os.fspath(root), 0)]
    visited = 0
    while stack:
        directory, depth = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except PermissionError:
            reader.errors.append(ScanError("permission denied", directory))
            continue
        except OSError as exc:
            reader.errors.append(_error(Path(directory), exc))
            continue
        subdirs: list[tuple[str, int]] = []
        for entry in entries:
            visited += 1
            if visited > _WALK_LIMIT:
                reader.errors.append(
                    ScanError(
                        f"more than {_WALK_LIMIT} entries; the rest of the folder was not "
                        "scanned (name the project folders instead)",
                        os.fspath(root),
                    )
                )
                return
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            name = entry.name
            if is_dir:
                if depth >= _WALK_DEPTH or name in _PRUNE:
                    continue
                if name.startswith(".") and name not in _PROJECT_DIRS:
                    continue
                subdirs.append((entry.path, depth + 1))
            elif _wanted(Path(entry.path)):
                if entry.is_symlink() and _outside(entry.path, real_root):
                    reader.errors.append(
                        ScanError(
                            "a symbolic link to a file outside the folder being scanned: "
                            "not followed (name its target to scan it)",
                            entry.path,
                            kind="config",
                        )
                    )
                    continue
                reader.read(Path(entry.path), client=None, scope="given")
        stack.extend(reversed(subdirs))


def load_paths(paths: Sequence[Path]) -> tuple[list[ConfigFile], list[ScanError]]:
    """``portcullis scan PATH…``: read the files named, and the configuration inside folders.

    A folder is walked (depth ≤ 6, pruning ``node_modules``, ``.git``, virtualenvs and build
    output) for project-scope files (``.mcp.json``, ``.vscode/mcp.json``, ``.cursor/mcp.json``
    …) and files with a client's name; a missing path is an error.
    """
    reader = _Reader()
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            reader.errors.append(ScanError("no such file or directory", str(path)))
            continue
        except OSError as exc:
            reader.errors.append(_error(path, exc))
            continue
        if stat.S_ISDIR(st.st_mode):
            _walk(path, reader)
        else:
            reader.read(path, client=None, scope="given", must_exist=True)
    return reader.files, reader.errors
