"""Static scan of an unpacked package for dangerous behaviour, pure: text in, hits out.

Patterns aim for precision over recall: each names something an MCP server package has no
honest reason to do quietly (read SSH keys or cloud credentials, post the whole environment,
pipe a download into a shell, evaluate decoded blobs). Comments are skipped and docs are not
scanned, so a README that mentions ``~/.ssh`` does not fire.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from portcullis.scan.model import Severity

__all__ = ["MAX_FILE_BYTES", "Hit", "language_of", "scan_package_json", "scan_text", "scan_tree"]

MAX_FILE_BYTES = 2 * 1024 * 1024
Language = Literal["js", "py", "sh"]

_EXTENSIONS: dict[str, Language] = {
    ".js": "js",
    ".mjs": "js",
    ".cjs": "js",
    ".jsx": "js",
    ".ts": "js",
    ".mts": "js",
    ".cts": "js",
    ".tsx": "js",
    ".py": "py",
    ".pyw": "py",
    ".sh": "sh",
    ".bash": "sh",
    ".zsh": "sh",
}


@dataclass(frozen=True)
class Hit:
    """One dangerous line: where, which pattern, and a short quote."""

    path: str
    line: int
    pattern: str
    description: str
    severity: Severity
    snippet: str

    @property
    def evidence(self) -> str:
        """``path:line: description: quote``, at most 120 characters."""
        head = f"{self.path}:{self.line}: {self.description}: "
        room = max(120 - len(head), 20)
        quote = self.snippet if len(self.snippet) <= room else self.snippet[: room - 1] + "…"
        return (head + quote)[:120]


@dataclass(frozen=True)
class _Pattern:
    id: str
    description: str
    severity: Severity
    languages: frozenset[Language]
    regex: re.Pattern[str]
    needs_network: bool = False
    """Fire only when the same file talks to the network."""
    needs_exec: bool = False
    """Fire only when the same line runs a command (a curl|sh inside a help text is fine)."""
    needs_access: bool = False
    """Fire only when the same line opens, joins or expands a path (not prose in a string)."""


_ALL: frozenset[Language] = frozenset({"js", "py", "sh"})
_JS: frozenset[Language] = frozenset({"js"})
_PY: frozenset[Language] = frozenset({"py"})
_Q = r"""['"`/\\]"""  # the path piece sits in a string or after a separator
_J = r"""['"`/\\]+\s*(?:[,/+]\s*['"`])?"""  # "/", "', '" (join) or "" / "" (pathlib) between parts

_PATTERNS: tuple[_Pattern, ...] = (
    _Pattern(
        "ssh-private-key",
        "reads SSH private keys",
        "high",
        _ALL,
        re.compile(
            rf"\.ssh{_J}id_(?:rsa|dsa|ecdsa|ed25519)\b(?!\.pub)"
            rf"|{_Q}id_(?:rsa|dsa|ecdsa|ed25519)['\"`]"
        ),
        needs_access=True,
    ),
    _Pattern(
        "ssh-dir",
        "reads the SSH directory",
        "medium",
        _ALL,
        re.compile(
            r"(?:homedir\(\)|expanduser|Path\.home\(\)|\$HOME|\$\{HOME\}|process\.env\.HOME"
            r"|os\.environ\[['\"]HOME|USERPROFILE|~)[^;\n]{0,60}['\"`/\\]\.ssh\b"
        ),
        needs_access=True,
    ),
    _Pattern(
        "cloud-credentials",
        "reads cloud credentials",
        "high",
        _ALL,
        re.compile(
            rf"\.aws{_J}credentials\b"
            r"|application_default_credentials\.json"
            rf"|\.config{_J}gcloud\b"
            rf"|\.azure{_J}(?:accessTokens\.json|msal_token_cache)"
        ),
        needs_access=True,
    ),
    _Pattern(
        # Kubernetes tools read it by design: worth a look, not an alarm
        "kube-config",
        "reads the Kubernetes credentials file",
        "medium",
        _ALL,
        re.compile(rf"\.kube{_J}config\b"),
        needs_access=True,
    ),
    _Pattern(
        "browser-store",
        "reads browser password or cookie stores",
        "high",
        _ALL,
        re.compile(
            r"(?:Google[/\\ ]Chrome|Chromium|BraveSoftware|Microsoft[/\\ ]Edge)"
            r"[^;\n]{0,80}(?:Login Data|Cookies|Local State|Web Data)"
            rf"|{_Q}(?:logins\.json|key4\.db|cookies\.sqlite)['\"`]"
        ),
        needs_access=True,
    ),
    _Pattern(
        "keychain",
        "reads the system keychain",
        "high",
        _ALL,
        re.compile(
            r"\bsecurity\s+(?:find-generic-password|find-internet-password|dump-keychain)\b"
            r"|login\.keychain(?:-db)?\b"
        ),
    ),
    _Pattern(
        "wallet",
        "reads cryptocurrency wallets",
        "high",
        _ALL,
        re.compile(
            rf"{_Q}wallet\.dat['\"`]|{_Q}\.electrum{_Q}|exodus\.wallet"
            rf"|solana{_J}id\.json|nkbihfbeogaeaoehlefnkodbefgpgknn"
        ),
        needs_access=True,
    ),
    _Pattern(
        "env-to-network",
        "sends the whole environment over the network",
        "high",
        _ALL,
        re.compile(
            r"JSON\.stringify\(\s*process\.env\s*\)"
            r"|(?:body|data|json|params)\s*[:=]\s*(?:\{\s*\.\.\.)?(?:process\.env|dict\(\s*os\.environ"
            r"\s*\)|os\.environ)\s*\}?\s*[,)}]"
            r"|json\.dumps\(\s*(?:dict\(\s*)?os\.environ\b|str\(\s*os\.environ\s*\)"
            r"|b64encode\([^)\n]{0,40}os\.environ"
        ),
        needs_network=True,
    ),
    _Pattern(
        "shell-from-network",
        "runs code fetched from the network",
        "high",
        _JS,
        re.compile(
            r"\b(?:exec|execSync|spawn|spawnSync|execFile|eval|Function)\s*\([^;\n]{0,120}?"
            r"\b(?:fetch|axios(?:\.get)?|https?\.get|got)\s*\("
            r"|\.then\(\s*(?:eval|exec|execSync)\s*\)"
        ),
    ),
    _Pattern(
        "shell-from-network",
        "runs code fetched from the network",
        "high",
        _PY,
        re.compile(
            r"\b(?:os\.system|os\.popen|subprocess\.(?:run|call|Popen|check_output|check_call)"
            r"|exec|eval)\s*\([^\n]{0,160}?\b(?:urlopen|requests\.get|httpx\.get|urllib\.request"
            r"\.urlopen)\s*\("
        ),
    ),
    _Pattern(
        "pipe-to-shell",
        "pipes a download into a shell",
        "high",
        _ALL,
        re.compile(
            r"\b(?:curl|wget)\b[^|\n]{0,200}\|\s*(?:sudo\s+)?(?:ba|z|da)?sh\b"
            r"|\b(?:iwr|irm|Invoke-WebRequest|Invoke-RestMethod)\b[^|\n]{0,200}\|\s*"
            r"(?:iex|Invoke-Expression)\b"
        ),
        needs_exec=True,
    ),
    _Pattern(
        "eval-decoded",
        "evaluates decoded data",
        "high",
        _JS,
        re.compile(
            r"\beval\s*\(\s*(?:atob|unescape|String\.fromCharCode|(?:new\s+)?Buffer\.from)\s*\("
            r"|\bFunction\s*\(\s*(?:atob|unescape|String\.fromCharCode|Buffer\.from)\s*\("
            r"|\bvm\.runIn(?:This|New)?Context\s*\(\s*(?:atob|Buffer\.from)\s*\("
            r"|\beval\s*\(\s*\w+\s*\(\s*['\"][A-Za-z0-9+/=]{200,}"
        ),
    ),
    _Pattern(
        "eval-decoded",
        "evaluates decoded data",
        "high",
        _PY,
        re.compile(
            r"\b(?:exec|eval)\s*\(\s*(?:compile\s*\(\s*)?(?:base64\.b(?:64|32|16|85)decode"
            r"|codecs\.decode|zlib\.decompress|marshal\.loads|bytes\.fromhex"
            r"|__import__\(\s*['\"](?:base64|zlib|marshal|codecs)['\"]\s*\))"
        ),
    ),
)

_NETWORK = re.compile(
    r"\bfetch\s*\(|\bhttps?\.(?:request|get)\s*\(|\baxios\b|XMLHttpRequest|\bnet\.connect"
    r"|\bWebSocket\s*\(|\bdns\.(?:resolve|lookup)|\brequests\.(?:get|post|put|request)\b"
    r"|\burlopen\s*\(|\bhttpx\.|\bhttp\.client\b|\bsocket\.socket\b|\baiohttp\b"
    r"|\bcurl\b|\bwget\b"
)
_EXEC = re.compile(
    r"\b(?:exec|execSync|spawn|spawnSync|execFile|execa|system|popen|Popen|run|call"
    r"|check_output|check_call)\s*\(|\bchild_process\b|\bsubprocess\b"
)
_ACCESS = re.compile(
    r"readFile|createReadStream|\bopen\s*\(|read_text|read_bytes|\bjoin\s*\(|homedir"
    r"|expanduser|Path\.home|\bPath\s*\(|\bresolve\s*\(|\b(?:cat|cp|tar|scp|zip)\s|\bfs\."
    r"|\bos\.path|\$HOME|\$\{HOME\}|process\.env\.HOME|USERPROFILE|glob"
)
_COMMENT = re.compile(r"^\s*(?://|#(?!!)|/?\*)")
_BLOB = re.compile(r"""['"`]([A-Za-z0-9+/=]{1000,}|(?:\\x[0-9a-fA-F]{2}){500,})['"`]""")
_EVALUATES = re.compile(r"\beval\s*\(|\bFunction\s*\(|\bexec\s*\(|\bvm\.runIn")
_OBFUSCATOR = re.compile(r"\b_0x[0-9a-f]{4,6}\b")
_SNIPPET = 100


def language_of(path: PurePosixPath | str, head: bytes = b"") -> Language | None:
    """The language a file is scanned as, from its extension or its ``#!`` line."""
    suffix = PurePosixPath(path).suffix.lower()
    if str(path).endswith(".d.ts"):
        return None  # type declarations hold no behaviour
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    if head.startswith(b"#!"):
        first = head.split(b"\n", 1)[0]
        if b"node" in first or b"deno" in first or b"bun" in first:
            return "js"
        if b"python" in first:
            return "py"
        if re.search(rb"\b(?:ba|z|da)?sh\b", first):
            return "sh"
    return None


def _snippet(line: str, start: int, end: int) -> str:
    lo = max(start - 20, 0)
    text = line[lo : max(end, lo + 1) + 20].strip()
    return " ".join(text.split())[:_SNIPPET]


def scan_text(path: str, text: str, language: Language) -> list[Hit]:
    """Every pattern hit in one file's text (at most one per pattern and line)."""
    hits: list[Hit] = []
    lines = text.splitlines()
    networked = bool(_NETWORK.search(text))
    for number, line in enumerate(lines, 1):
        if _COMMENT.match(line):
            continue
        for pat in _PATTERNS:
            if language not in pat.languages or (pat.needs_network and not networked):
                continue
            m = pat.regex.search(line)
            if m is None:
                continue
            if pat.needs_exec and language != "sh" and not _EXEC.search(line):
                continue
            if pat.needs_access and not _ACCESS.search(line):
                continue
            if (
                pat.id == "ssh-dir"
                and hits
                and hits[-1].line == number
                and (hits[-1].pattern == "ssh-private-key")
            ):
                continue  # already reported as the worse of the two
            hits.append(
                Hit(
                    path,
                    number,
                    pat.id,
                    pat.description,
                    pat.severity,
                    _snippet(line, m.start(), m.end()),
                )
            )
    if language == "js":
        count = len(_OBFUSCATOR.findall(text))
        if count >= 30:
            first = next(i for i, ln in enumerate(lines, 1) if _OBFUSCATOR.search(ln))
            hits.append(
                Hit(
                    path,
                    first,
                    "obfuscated",
                    f"is obfuscated (javascript-obfuscator style, {count} _0x names)",
                    "medium",
                    _snippet(lines[first - 1], 0, 60),
                )
            )
    if _EVALUATES.search(text):
        for number, line in enumerate(lines, 1):
            blob = _BLOB.search(line)
            if blob:
                hits.append(
                    Hit(
                        path,
                        number,
                        "encoded-blob",
                        f"holds a {len(blob.group(1))}-"
                        "character encoded blob in a file that evaluates code",
                        "medium",
                        _snippet(line, blob.start(), blob.start() + 40),
                    )
                )
                break
    return hits


def scan_package_json(path: str, text: str) -> list[Hit]:
    """Install-time scripts of a ``package.json`` that pipe a download into a shell."""
    try:
        scripts = json.loads(text).get("scripts") or {}
    except (ValueError, AttributeError):
        return []
    hits = []
    if not isinstance(scripts, dict):
        return []
    lines = text.splitlines()
    pipe = next(p for p in _PATTERNS if p.id == "pipe-to-shell")
    for hook in ("preinstall", "install", "postinstall", "prepare"):
        command = scripts.get(hook)
        if not isinstance(command, str):
            continue
        m = pipe.regex.search(command)
        if m:
            line = next((i for i, ln in enumerate(lines, 1) if f'"{hook}"' in ln), 1)
            hits.append(
                Hit(
                    path,
                    line,
                    pipe.id,
                    f"{hook} script {pipe.description}",
                    "high",
                    _snippet(command, m.start(), m.end()),
                )
            )
    return hits


def scan_tree(
    root: Path,
    files: Iterable[PurePosixPath],
    *,
    install_scripts: Mapping[str, str] | None = None,
) -> list[Hit]:
    """Scan the unpacked ``files`` under ``root``; binaries and files over 2 MB are skipped.

    ``install_scripts`` are the registry's own install hooks for the version (they can
    differ from the tarball's ``package.json``) and are scanned too.
    """
    hits: list[Hit] = []
    for rel in sorted(files):
        path = root.joinpath(*rel.parts)
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if b"\x00" in data[:8192]:
            continue  # binary
        shown = "/".join(rel.parts[1:]) if rel.parts and rel.parts[0] == "package" else str(rel)
        text = data.decode("utf-8", "replace")
        if rel.name == "package.json":
            hits += scan_package_json(shown, text)
            continue
        language = language_of(rel, data[:256])
        if language is not None:
            hits += scan_text(shown, text, language)
    if install_scripts:
        doc = json.dumps({"scripts": dict(install_scripts)}, indent=0)
        seen = {(h.pattern, h.snippet) for h in hits}
        hits += [
            h
            for h in scan_package_json("registry metadata", doc)
            if (h.pattern, h.snippet) not in seen
        ]
    return hits
