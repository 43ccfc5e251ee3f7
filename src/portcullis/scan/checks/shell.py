"""Code that is fetched or written inline instead of installed: ``curl | sh``, ``python -c``.

A server launched as ``sh -c "curl … | bash"`` runs whatever that URL serves at each start,
with no version, no review and no record. ``npx -c`` is the same through npm. Inline
interpreter code (``python -c``, ``node -e``) is smaller but hides what runs from every
package check; it is flagged so that someone reads it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable

from portcullis.scan.checks._util import scrub
from portcullis.scan.model import Finding, Rule, Server, Severity
from portcullis.scan.packages import Token, exe_name, launch

__all__ = ["INLINE_INTERPRETER_CODE", "RULES", "SHELL_FETCH_AND_RUN", "check"]

SHELL_FETCH_AND_RUN = Rule(
    id="shell-fetch-and-run",
    title="Server command downloads and runs code",
    severity="high",
    checklist=("vetted-pinned-packages", "sandboxing"),
    help=(
        "A launch command that pipes a download into a shell (curl … | sh, iex (iwr …)) or "
        "runs a shell through npx -c executes whatever the remote end serves, every time the "
        "client starts, with no version or review. Install the server as a pinned package "
        '("npx", "-y", "pkg@1.2.3") or download it once, check its hash, and run the local '
        "copy."
    ),
)
INLINE_INTERPRETER_CODE = Rule(
    id="inline-interpreter-code",
    title="Server command runs inline interpreter code",
    severity="medium",
    checklist=("vetted-pinned-packages", "regular-review"),
    help=(
        "python -c, node -e and similar run code written into the config file, which no "
        "package check or review sees and which anything able to edit the config can change. "
        "Move the code into a script file in the project (python3 server.py) or install the "
        "server as a pinned package."
    ),
)
RULES = (SHELL_FETCH_AND_RUN, INLINE_INTERPRETER_CODE)

_FETCH = r"(?:curl|wget|fetch|iwr|irm|invoke-webrequest|invoke-restmethod|aria2c|http(?:ie)?)"
_RUNNER = (
    r"(?:sudo\s+(?:-\S+\s+)*)?(?:/\S*/)?(?:sh|bash|zsh|dash|ksh|ash|fish|python[0-9.]*|node|perl"
    r"|ruby|php|iex|invoke-expression|pwsh|powershell|deno|bun|source|cmd|\.)"
)
_FETCH_RUN = [
    # curl … | sh
    re.compile(rf"(?is)\b{_FETCH}\b[^|;&]*\|\s*{_RUNNER}(?:\s|$|;|&|\))"),
    # sh <(curl …), source <(curl …)
    re.compile(rf"(?is){_RUNNER}\s+<\(\s*{_FETCH}\b"),
    # sh -c "$(curl …)", eval "$(wget -O- …)", `curl …`
    re.compile(rf"(?is)(?:\$\(|`)\s*{_FETCH}\b"),
    # iex (iwr …), Invoke-Expression (New-Object Net.WebClient).DownloadString(…)
    re.compile(
        r"(?is)\b(?:iex|invoke-expression)\b\s*\(?\s*(?:\(?\s*(?:iwr|irm|invoke-webrequest"
        r"|invoke-restmethod)\b|\(?\s*new-object\s+(?:system\.)?net\.webclient)"
    ),
    re.compile(r"(?is)\.downloadstring\s*\(.*\|\s*(?:iex|invoke-expression)\b"),
    # curl -o x … && sh x / chmod +x x && ./x
    re.compile(
        rf"(?is)\b{_FETCH}\b[^;&|]*(?:-o|-O|--output|>)\s*\S+.*?(?:&&|;|\n)\s*"
        r"(?:sh|bash|zsh|python[0-9.]*|node|chmod\s+\+?[0-7]*x|\./)"
    ),
]
_SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "ash", "fish", "busybox"})
_POWERSHELL = frozenset({"powershell", "pwsh"})
_INLINE: dict[str, frozenset[str]] = {
    "node": frozenset({"-e", "--eval", "-p", "--print"}),
    "nodejs": frozenset({"-e", "--eval", "-p", "--print"}),
    "bun": frozenset({"-e", "--eval", "-p", "--print"}),
    "perl": frozenset({"-e", "-E"}),
    "ruby": frozenset({"-e"}),
    "php": frozenset({"-r"}),
}
_PYTHON = re.compile(r"^(?:python(?:[0-9.]*)?|py|pythonw|pypy[0-9.]*)$")
# Inline code that fetches and then executes is the fetch-and-run pattern in another language.
_CODE_FETCH = re.compile(r"(?i)urlopen|urllib|requests\.|httpx|\bfetch\(|https?://|http\.get")
_CODE_EXEC = re.compile(
    r"(?i)\bexec\s*\(|\beval\s*\(|child_process|subprocess|os\.system|Function\("
)


def _script(tokens: list[Token]) -> Token | None:
    """The script of ``sh -c``, ``cmd /c``, ``powershell -Command`` (decoded when encoded)."""
    if not tokens:
        return None
    name = exe_name(tokens[0].value)
    rest = tokens[1:]
    if name == "env":
        # env [-i] [VAR=x …] sh -c …
        i = 0
        while i < len(rest) and (rest[i].value.startswith("-") or "=" in rest[i].value):
            i += 1
        return _script(rest[i:])
    if name in _SHELLS:
        for i, t in enumerate(rest):
            v = t.value
            if v.startswith("-") and not v.startswith("--") and "c" in v[1:] and i + 1 < len(rest):
                return _join(rest[i + 1 :])
        return None
    if name == "cmd":
        for i, t in enumerate(rest):
            if t.value.lower() in ("/c", "/k", "/s/c", "/d/c") and i + 1 < len(rest):
                return _join(rest[i + 1 :])
        return None
    if name in _POWERSHELL:
        for i, t in enumerate(rest):
            flag = t.value.lower()
            if flag in ("-encodedcommand", "-enc", "-e", "-ec") and i + 1 < len(rest):
                return Token(_decode_ps(rest[i + 1].value), rest[i + 1].pointer)
            if flag in ("-command", "-c") and i + 1 < len(rest):
                return _join(rest[i + 1 :])
        return None
    return None


def _join(tokens: list[Token]) -> Token:
    return Token(" ".join(t.value for t in tokens), tokens[0].pointer)


def _decode_ps(value: str) -> str:
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4)).decode("utf-16-le")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        # An encoded command we cannot read is itself hiding what runs.
        return value


def _npx_call(tokens: list[Token]) -> Token | None:
    if not tokens:
        return None
    name = exe_name(tokens[0].value)
    second = tokens[1].value if len(tokens) > 1 else ""
    start = (
        1 if name in ("npx", "pnpx") else 2 if (name == "npm" and second in ("exec", "x")) else 0
    )
    if not start:
        return None
    for i in range(start, len(tokens)):
        v = tokens[i].value
        if v in ("-c", "--call") and i + 1 < len(tokens):
            return tokens[i + 1]
        if v.startswith("--call="):
            return Token(v.split("=", 1)[1], tokens[i].pointer)
        if not v.startswith("-"):
            break
    return None


def _inline(tokens: list[Token]) -> Token | None:
    if not tokens:
        return None
    name = exe_name(tokens[0].value)
    flags = frozenset({"-c"}) if _PYTHON.match(name) else _INLINE.get(name, frozenset())
    if name == "deno" and len(tokens) > 2 and tokens[1].value == "eval":
        return tokens[2]
    for i, t in enumerate(tokens[1:], start=1):
        if t.value in flags and i + 1 < len(tokens):
            return tokens[i + 1]
        if not t.value.startswith("-"):
            # The first positional is a script or module: later "-e"s belong to the server.
            break
        if t.value == "-m":
            break
    return None


def _remote_script(tokens: list[Token]) -> Token | None:
    """``deno run https://…/server.ts``: a script run straight from a URL."""
    if not tokens or exe_name(tokens[0].value) != "deno":
        return None
    if len(tokens) < 3 or tokens[1].value != "run":
        return None
    for t in tokens[2:]:
        if t.value.startswith("-"):
            continue
        return t if re.match(r"(?i)^https?://", t.value) else None
    return None


def _fetch_run(script: str) -> bool:
    return any(p.search(script) for p in _FETCH_RUN)


def _shown(script: str) -> str:
    s = scrub(" ".join(script.split()))
    return s if len(s) <= 160 else s[:159] + "…"


def check(server: Server) -> Iterable[Finding]:
    """Flag download-and-run shell wrappers, ``npx -c`` and inline interpreter code."""
    tokens = launch(server).tokens
    out: list[Finding] = []
    call = _npx_call(tokens)
    if call is not None:
        out.append(
            Finding.of(
                SHELL_FETCH_AND_RUN,
                server,
                f'server "{server.name}" runs a shell command through npx -c/--call: '
                "npm fetches and runs whatever the command names",
                fix='Run the package directly, pinned: "args": ["-y", "pkg@1.2.3", …].',
                pointer=call.pointer,
                evidence=_shown(call.value),
            )
        )
    script = _script(tokens)
    if script is not None and _fetch_run(script.value):
        out.append(
            Finding.of(
                SHELL_FETCH_AND_RUN,
                server,
                f'server "{server.name}" downloads code and runs it at every start',
                fix=(
                    "Replace the shell wrapper with the installed, pinned server, e.g. "
                    '"command": "npx", "args": ["-y", "pkg@1.2.3"]; or download the script '
                    "once, verify its checksum, and run the local copy."
                ),
                pointer=script.pointer,
                evidence=_shown(script.value),
            )
        )
    remote = _remote_script(tokens)
    if remote is not None:
        out.append(
            Finding.of(
                SHELL_FETCH_AND_RUN,
                server,
                f'server "{server.name}" runs a script straight from a URL',
                fix=(
                    "Vendor the script into the project (or pin it with a lock file: "
                    "`deno run --lock=deno.lock --frozen …`) and run the local copy."
                ),
                pointer=remote.pointer,
                evidence=_shown(remote.value),
                severity="high" if remote.value.lower().startswith("http://") else "medium",
            )
        )
    code = _inline(tokens)
    if code is not None:
        fetches = bool(_CODE_FETCH.search(code.value) and _CODE_EXEC.search(code.value))
        severity: Severity = "high" if fetches else "medium"
        out.append(
            Finding.of(
                INLINE_INTERPRETER_CODE,
                server,
                f'server "{server.name}" runs code written inline in the config'
                + (" that downloads and executes more code" if fetches else ""),
                fix=(
                    "Move the code into a file kept with the project and run that "
                    '("command": "python3", "args": ["server.py"]), or use the published '
                    "package pinned to a version."
                ),
                pointer=code.pointer,
                evidence=_shown(code.value),
                severity=severity,
            )
        )
    return out
