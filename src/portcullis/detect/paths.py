r"""Path confinement: a value is allowed only if every plausible reading stays inside a root.

A server may read a path argument in many ways: as a POSIX literal (relative to a root or to
its working directory), after percent-decoding (once or until stable), with backslashes as
separators and Windows forms (drive letters, UNC, ``\\?\``, device names, trailing dots and
spaces), as a ``file://`` URI, after Unicode NFKC or look-alike folding, after shell expansion
of ``~`` and after symlink resolution -- lexically first (``path.resolve`` then ``realpath``,
as Node does) or component by component (as the kernel does). :class:`PathGuard` computes every
such reading and allows the value only when all of them land inside one of the roots (compared
by real path) and none lands on or inside a protected path.

The only I/O is ``lstat``/``readlink`` on the real file system, to resolve symlinks. The check
is time-of-check: the file system can change between the check and the server's use (a symlink
swapped in after the check). That window is closed only by the sandbox, which binds the roots
into the server's namespace; this guard is the first line, not the only one.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote

from portcullis.detect.verdicts import Allow, Deny

__all__ = ["PathGuard", "default_protected", "inside", "is_file_uri", "looks_like_path"]

_MAX_LINKS = 40
_REASON_CAP = 200
_MAX_READINGS = 256

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SHELL_VAR = re.compile(
    r"\$[A-Za-z_{(]|`|%(?![0-9A-Fa-f]{2}%)[A-Za-z_][A-Za-z0-9_]*%|\{[^{}/]*,[^{}]*\}"
)
# A component a shell glob could expand to ".." (a literal leading dot and a metacharacter).
_DOT_GLOB = re.compile(r"(?:^|(?<=/))\.[^/]*[*?\[][^/]*")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_DRIVE = re.compile(r"^/?[A-Za-z]:")
_DEVICE = re.compile(
    r"(?:^|/)(con|prn|aux|nul|com[0-9\u00b9\u00b2\u00b3]|lpt[0-9\u00b9\u00b2\u00b3]|conin\$|conout\$)"
    r" *(?:\.[^/]*)?(?:/|$)",
    re.IGNORECASE,
)
_LOOKALIKES = str.maketrans(
    {
        "\u2215": "/",
        "\u2044": "/",
        "\u29f8": "/",
        "\uff0f": "/",
        "\u2216": "\\",
        "\u29f9": "\\",
        "\ufe68": "\\",
        "\uff3c": "\\",
        "\u2024": ".",
        "\ufe52": ".",
        "\uff0e": ".",
        "\u3002": ".",
    }
)


class _Refuse(Exception):
    def __init__(self, rule: str, why: str) -> None:
        super().__init__(why)
        self.rule = rule
        self.why = why


def _cap(text: str, limit: int = _REASON_CAP) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _shown(path: str) -> str:
    """A path fit for a reason: control characters escaped, length capped."""
    return _cap(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", path), 120)


# --------------------------------------------------------------------------- readings


def _windows_reading(value: str) -> str | None:
    """The value as a Windows server would read it, or None when it is the same."""
    if "\\" not in value and not any(c in value for c in ". "):
        return None
    v = value.replace("\\", "/")
    parts = v.split("/")
    out: list[str] = []
    for part in parts:
        stripped = part.rstrip(". ")
        if stripped == "" and part not in ("", ".", ".."):
            # "..." or ". ." -- Windows trims these in ways that vary; take the worst: up.
            stripped = ".."
        elif stripped == "" and part in (".", ".."):
            stripped = part
        out.append(stripped)
    w = "/".join(out)
    return None if w == value else w


def _file_uri_readings(value: str) -> list[str]:
    """Paths a ``file:`` URI names (with and without query and fragment)."""
    rest = value[5:]
    if rest.startswith("//"):
        host, _, tail = rest[2:].partition("/")
        if host and host.lower() != "localhost":
            raise _Refuse("paths.outside-roots", "is a file URI on a remote host")
        path = "/" + tail
    else:
        path = rest
    out = [path]
    for sep in ("?", "#"):
        if sep in path:
            out.append(path.split(sep, 1)[0])
    return out


def _expand_tilde(value: str) -> str | None:
    if not value.startswith("~"):
        return None
    expanded = os.path.expanduser(value)
    return None if expanded == value else expanded


def _transforms(value: str) -> list[str]:
    """One step of every reinterpretation a server might apply to ``value``."""
    out: list[str] = []
    if "%" in value and _PERCENT.search(value):
        out.append(unquote(value, errors="surrogateescape"))
    if not value.isascii():
        folded = value.translate(_LOOKALIKES)
        out.append(folded)
        out.append(unicodedata.normalize("NFKC", folded))
        out.append(unicodedata.normalize("NFKC", value))
    if value[:5].lower() == "file:":
        out.extend(_file_uri_readings(value))
    w = _windows_reading(value)
    if w is not None:
        out.append(w)
    t = _expand_tilde(value)
    if t is not None:
        out.append(t)
    if ("*" in value or "?" in value or "[" in value) and _DOT_GLOB.search(value):
        out.append(_DOT_GLOB.sub("..", value))
    return out


def _readings(value: str, max_length: int) -> list[str]:
    """The closure of :func:`_transforms` over ``value``; refuses unsafe readings."""
    seen = {value}
    todo = [value]
    order = [value]
    while todo:
        cur = todo.pop()
        if _CONTROL.search(cur):
            raise _Refuse("paths.control-char", "contains a control character once decoded")
        if _SHELL_VAR.search(cur):
            raise _Refuse(
                "paths.unexpandable",
                "contains a shell variable, command or brace expansion that could point anywhere",
            )
        if len(cur) > max_length:
            raise _Refuse("paths.too-long", f"is longer than {max_length} characters once decoded")
        for nxt in _transforms(cur):
            if nxt not in seen:
                seen.add(nxt)
                order.append(nxt)
                todo.append(nxt)
                if len(seen) > _MAX_READINGS:
                    raise _Refuse("paths.too-long", "has too many possible readings")
    return order


def _windows_form(reading: str) -> str | None:
    """Why ``reading`` names something outside any POSIX root on Windows, or None."""
    r = reading.replace("\\", "/")
    if r.startswith(("//?/", "//./", "/??/")):
        return "uses the Windows device namespace"
    if r.startswith("//") and not r.startswith("///"):
        return "is a UNC network path"
    if _DRIVE.match(r):
        return "is a Windows drive path"
    m = _DEVICE.search(r)
    if m is not None:
        return f"names the Windows device {m.group(1).upper()}"
    return None


# --------------------------------------------------------------------------- protected


_HOME_CONFIGS = (
    "~/.claude.json",
    "~/.claude/settings.json",
    "~/.claude/settings.local.json",
    "~/.cursor/mcp.json",
    "~/.codeium/windsurf/mcp_config.json",
    "~/.continue/config.json",
    "~/.continue/config.yaml",
    "~/.continue/config.ts",
    "~/.continue/mcpServers",
    "~/.config/zed/settings.json",
    "~/.gemini/settings.json",
    "~/.codex/config.toml",
    "~/.config/goose/config.yaml",
    "~/.config/opencode",
    "~/.lmstudio/mcp.json",
    "~/.aws/amazonq/mcp.json",
    "~/.config/Code/User/mcp.json",
    "~/.config/Code/User/settings.json",
    "~/Library/Application Support/Code/User/mcp.json",
    "~/Library/Application Support/Code/User/settings.json",
    "~/Library/Application Support/Claude/claude_desktop_config.json",
    "~/.config/Claude/claude_desktop_config.json",
    "~/AppData/Roaming/Code/User/mcp.json",
    "~/AppData/Roaming/Code/User/settings.json",
    "~/AppData/Roaming/Claude/claude_desktop_config.json",
)

_ANYWHERE = (
    ".mcp.json",
    ".claude.json",
    ".claude/settings.json",
    ".claude/settings.local.json",
    ".cursor/mcp.json",
    ".vscode/mcp.json",
    ".vscode/settings.json",
    ".roo/mcp.json",
    ".amazonq/mcp.json",
    ".aws/amazonq/mcp.json",
    ".gemini/settings.json",
    ".codex/config.toml",
    ".continue/config.json",
    ".continue/config.yaml",
    ".continue/config.ts",
    ".continue/mcpServers",
    ".codeium/windsurf/mcp_config.json",
    ".lmstudio/mcp.json",
    "claude_desktop_config.json",
    "cline_mcp_settings.json",
    "mcp_settings.json",
    "mcp_config.json",
    "opencode.json",
    "opencode.jsonc",
    "Code/User/mcp.json",
    "Code/User/settings.json",
    "Code - Insiders/User/mcp.json",
    "Code - Insiders/User/settings.json",
    "VSCodium/User/mcp.json",
    "VSCodium/User/settings.json",
    "zed/settings.json",
    "goose/config.yaml",
    "opencode/opencode.json",
    "opencode/opencode.jsonc",
)


def default_protected(policy_file: str | None, state_dir: str) -> list[str]:
    """Protected paths: the policy file, the state directory and known MCP client configs.

    Absolute entries (after ``~`` expansion) protect that file or directory and everything
    inside it; relative entries such as ``.mcp.json`` or ``.cursor/mcp.json`` match those
    trailing components anywhere, under any root.
    """
    out: list[str] = []
    if policy_file:
        out.append(os.path.abspath(os.path.expanduser(policy_file)))
    out.append(os.path.abspath(os.path.expanduser(state_dir)))
    out.extend(os.path.expanduser(p) for p in _HOME_CONFIGS)
    out.extend(_ANYWHERE)
    return out


# --------------------------------------------------------------------------- guard


def inside(path: str, root: str) -> bool:
    """Whether normalised absolute ``path`` is ``root`` or beneath it."""
    return path == root or root == "/" or path.startswith(root + "/")


class PathGuard:
    """Compiled path confinement for one set of roots and protected paths."""

    def __init__(
        self,
        roots: Sequence[str],
        *,
        protected: Sequence[str] = (),
        cwd: str | None = None,
        max_length: int = 4096,
    ) -> None:
        """Compile the guard; ``cwd`` is the server's working directory (default: ours)."""
        self.max_length = max_length
        self.cwd = os.path.normpath(os.path.abspath(cwd if cwd is not None else os.getcwd()))
        self.roots = tuple(os.path.normpath(os.path.abspath(os.path.expanduser(r))) for r in roots)
        self.real_roots = tuple(dict.fromkeys(os.path.realpath(r) for r in self.roots))
        self._roots_text = _cap(", ".join(self.roots) or "(none)", 80)
        # Ancestors of the real roots are known directories: no lstat needed for them.
        known: set[str] = {"/"}
        for r in self.real_roots:
            p = r
            while p not in known:
                known.add(p)
                p = os.path.dirname(p)
        self._known_dirs = frozenset(known)
        abs_prot: list[str] = []
        rel_prot: list[str] = []
        self._prot_inodes: set[tuple[int, int]] = set()
        for p in protected:
            if p.startswith(("/", "~")):
                ap = os.path.normpath(os.path.expanduser(p))
                for q in {ap, os.path.realpath(ap)}:
                    abs_prot.append(q.lower())
                try:
                    st = os.stat(ap)
                except OSError:
                    continue
                self._prot_inodes.add((st.st_dev, st.st_ino))
            else:
                rel = "/".join(c for c in p.replace("\\", "/").split("/") if c)
                if rel:
                    rel_prot.append(rel.lower())
        self._abs_prot = frozenset(abs_prot)
        self._abs_prot_slash = tuple(sorted({"/" if a == "/" else a + "/" for a in abs_prot}))
        self._rel_prot = (
            re.compile("/(?:" + "|".join(re.escape(r) for r in rel_prot) + ")(?:/|$)")
            if rel_prot
            else None
        )

    # -- public ---------------------------------------------------------------

    def check(self, value: str, *, argument: str) -> Allow | Deny:
        """Allow ``value`` only if every reading stays inside a root and off protected paths."""
        try:
            self._check(value)
        except _Refuse as r:
            why = r.why if r.why.startswith("/") else "the value " + r.why
            return Deny(r.rule, _cap(f'paths guard: argument "{_cap(argument, 40)}": {why}'))
        return Allow("paths.inside-roots")

    # -- internals ------------------------------------------------------------

    def _check(self, value: str) -> None:
        if len(value) > self.max_length:
            raise _Refuse("paths.too-long", f"is longer than {self.max_length} characters")
        if _CONTROL.search(value):
            raise _Refuse("paths.control-char", "contains a NUL or control character")
        readings = _readings(value, self.max_length)
        cache: dict[str, os.stat_result | None] = {}
        resolved: dict[str, str] = {}
        for reading in readings:
            why = _windows_form(reading)
            if why is not None:
                raise _Refuse("paths.outside-roots", f"{why}, outside the allowed roots")
            for absolute in self._anchored(reading):
                self._judge(absolute, cache, resolved)

    def _anchored(self, reading: str) -> Iterable[str]:
        if reading.startswith("/"):
            return (reading,)
        bases = (*self.roots, self.cwd) if self.roots else (self.cwd,)
        return dict.fromkeys(os.path.join(b, reading) for b in bases)

    def _judge(
        self,
        absolute: str,
        cache: dict[str, os.stat_result | None],
        resolved: dict[str, str],
    ) -> None:
        lexical = os.path.normpath(absolute)
        if lexical.startswith("//"):
            lexical = lexical[1:]
        targets = (
            [lexical]
            if lexical == absolute.rstrip("/") or lexical == absolute
            else [
                lexical,
                absolute,
            ]
        )
        for t in targets:
            real = resolved.get(t)
            if real is None:
                real = self._resolve(t, cache)
                resolved[t] = real
            self._protected(lexical, real, cache)
            if not self.roots:
                continue
            if any(inside(real, r) for r in self.real_roots):
                continue
            if any(inside(lexical, r) for r in (*self.roots, *self.real_roots)):
                raise _Refuse(
                    "paths.symlink-escape",
                    f"resolves through a symlink to {_shown(real)}, outside the allowed roots "
                    f"{self._roots_text}",
                )
            raise _Refuse(
                "paths.outside-roots",
                f"{_shown(real)} is outside the allowed roots {self._roots_text}",
            )

    def _resolve(self, path: str, cache: dict[str, os.stat_result | None]) -> str:
        """Resolve ``path`` as the kernel does, component by component (non-strict)."""
        todo = path.split("/")
        todo.reverse()
        cur = ""
        links = 0
        known = self._known_dirs
        while todo:
            part = todo.pop()
            if part in ("", "."):
                continue
            if part == "..":
                cur = cur.rsplit("/", 1)[0]
                continue
            nxt = cur + "/" + part
            if nxt in known:
                cur = nxt
                continue
            if nxt in cache:
                st = cache[nxt]
            else:
                try:
                    st = os.lstat(nxt)
                except (OSError, ValueError):
                    st = None
                cache[nxt] = st
            if st is not None and stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_LINKS:
                    raise _Refuse("paths.symlink-escape", "goes through a symlink loop")
                try:
                    target = os.readlink(nxt)
                except OSError as e:
                    raise _Refuse(
                        "paths.symlink-escape", "goes through an unreadable symlink"
                    ) from e
                parts = target.split("/")
                parts.reverse()
                todo.extend(parts)
                if target.startswith("/"):
                    cur = ""
                continue
            cur = nxt
        return cur or "/"

    def _protected(
        self, lexical: str, real: str, cache: Mapping[str, os.stat_result | None]
    ) -> None:
        for p in (lexical, real):
            low = p.lower()
            if (low in self._abs_prot or low.startswith(self._abs_prot_slash)) or (
                self._rel_prot is not None and self._rel_prot.search(low)
            ):
                raise _Refuse(
                    "paths.protected",
                    f"{_shown(p)} is a protected file (policy, state or MCP client "
                    "configuration) that tools may not touch",
                )
        if self._prot_inodes:
            st = cache.get(real)
            if st is not None and (st.st_dev, st.st_ino) in self._prot_inodes:
                raise _Refuse(
                    "paths.protected",
                    f"{_shown(real)} is a hard link to a protected file that tools may not touch",
                )


# --------------------------------------------------------------------------- path-like


_PATH_WORDS = frozenset(
    {
        "path", "paths", "file", "files", "filename", "filenames", "filepath", "filepaths",
        "dir", "dirs", "directory", "directories", "folder", "folders", "source", "sources",
        "destination", "dest", "target", "src", "dst", "cwd", "root", "roots", "uri", "uris",
        "pathname", "dirname", "basename", "workdir", "location",
    }
)  # fmt: skip
_FULL_ONLY = frozenset({"uri", "uris", "location", "target", "source", "sources", "root"})
_TOKEN = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_DESC = re.compile(r"\b(?:file|directory|folder)\b|\bpaths?\b", re.IGNORECASE)
_FORMATS = frozenset({"uri", "uri-reference", "iri", "iri-reference", "path", "file-path"})


def looks_like_path(name: str, schema: dict[str, Any] | None) -> bool:
    """Whether an argument (by name or JSON-schema property) plausibly holds a file path."""
    tokens = [t.lower() for t in _TOKEN.findall(name)]
    joined = "".join(tokens)
    if joined in _PATH_WORDS or joined in {"filepath", "filename", "workingdirectory"}:
        return True
    if tokens and tokens[-1] in _PATH_WORDS and tokens[-1] not in _FULL_ONLY:
        return True
    if tokens and tokens[-1] in {"uri", "uris"} and len(tokens) > 1:
        return True
    if not isinstance(schema, dict):
        return False
    if schema.get("format") in _FORMATS:
        return True
    desc = schema.get("description")
    if isinstance(desc, str) and _DESC.search(desc):
        return True
    items = schema.get("items")
    if isinstance(items, dict) and items is not schema:
        return looks_like_path(name, items)
    return False


def is_file_uri(value: str) -> bool:
    """Whether a URI-valued argument names a local file (and so must pass :class:`PathGuard`)."""
    return value[:5].lower() == "file:"
