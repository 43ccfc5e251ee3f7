"""Which packages a server's command runs: npm, PyPI and container-image references.

``package_refs(server)`` reads the launch command the way the launcher would (``npx``,
``npm exec``, ``pnpm dlx``, ``yarn dlx``, ``bunx``, ``uvx``, ``uv tool run``, ``pipx run``,
``docker``/``podman run``) and returns each package with whether it is pinned to an exact
version. Servers already wrapped by ``portcullis run -- CMD …`` and Windows ``cmd /c CMD …``
launchers are seen through: the inner command is what runs. Every reference keeps the pointer
of the argument it came from (``/args/N`` or ``/command``) so findings point at the real line.

Pure functions over :class:`~portcullis.scan.model.Server`: nothing here runs or fetches.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from portcullis.scan.model import PackageRef, Server

__all__ = [
    "DockerRun",
    "Launch",
    "Token",
    "exe_name",
    "launch",
    "package_refs",
    "parse_docker_run",
    "server_args",
]


@dataclass(frozen=True)
class Token:
    """One word of the launch command and the pointer (relative to the entry) it came from."""

    value: str
    pointer: str


@dataclass(frozen=True)
class Launch:
    """A server's command as it will run: wrappers seen through, words with their pointers."""

    tokens: list[Token]
    """The effective command (the inner one for a wrapped server); empty for remote servers."""
    wrapped: bool
    """Whether the server is launched through ``portcullis run``."""


@dataclass(frozen=True)
class DockerRun:
    """A parsed ``docker run`` (or podman, nerdctl): its options and the image."""

    options: list[tuple[str, Token | None, Token]] = field(default_factory=list)
    """``(flag, value, flag token)`` in order; ``value`` is ``None`` for boolean flags."""
    image: Token | None = None
    image_index: int = -1
    """Index of the image in the effective tokens (the container's command follows it)."""


_SUFFIXES = (".exe", ".cmd", ".bat", ".ps1", ".sh")


def exe_name(value: str) -> str:
    """The program name of a command word: ``C:/node/npx.cmd`` → ``npx``."""
    base = value.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()
    for suffix in _SUFFIXES:
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


_LAUNCHERS = frozenset(
    {"npx", "npm", "pnpm", "pnpx", "yarn", "bunx", "bun", "uvx", "uv", "pipx", "docker", "podman"}
    | {"nerdctl", "cmd", "sh", "bash", "zsh", "python", "python3", "node", "deno", "portcullis"}
)


def _command_tokens(server: Server) -> list[Token]:
    if not server.command:
        return []
    cmd = server.command
    head = cmd.split(None, 1)[0] if cmd.strip() else cmd
    # Some configs put the whole command line in "command"; split it only when its first word is
    # a known launcher, so a path with spaces ("C:\Program Files\…\node.exe") stays whole.
    if not server.args and " " in cmd.strip() and exe_name(head) in _LAUNCHERS:
        try:
            parts = shlex.split(cmd)
        except ValueError:
            parts = cmd.split()
        out = [Token(p, "/command") for p in parts]
    else:
        out = [Token(cmd, "/command")]
    out.extend(Token(str(a), f"/args/{i}") for i, a in enumerate(server.args))
    return out


_PY = re.compile(r"^(?:python(?:[0-9.]*)?|py|pythonw)$")
_RUN_VALUE_OPTS = frozenset({"--policy", "--server", "--pass-env"})


def _unwrap_portcullis(tokens: list[Token]) -> list[Token] | None:
    """The inner command of ``portcullis run [opts] -- CMD …`` (``[]`` if none); else ``None``."""
    if not tokens:
        return None
    name = exe_name(tokens[0].value)
    if name == "portcullis":
        rest = tokens[1:]
    elif _PY.match(name) and [t.value for t in tokens[1:3]] == ["-m", "portcullis"]:
        rest = tokens[3:]
    else:
        return None
    if not rest or rest[0].value != "run":
        return None
    i = 1
    while i < len(rest):
        v = rest[i].value
        if v == "--":
            return rest[i + 1 :]
        if v in _RUN_VALUE_OPTS:
            i += 2
        elif v.startswith("-"):
            i += 1
        else:
            return rest[i:]
    return []


def _unwrap_cmd(tokens: list[Token]) -> list[Token] | None:
    """``cmd /c npx …`` (how Windows configs launch npx) → ``npx …``; else ``None``."""
    if len(tokens) < 3 or exe_name(tokens[0].value) != "cmd":
        return None
    if tokens[1].value.lower() not in ("/c", "/k", "/s/c", "/d/c"):
        return None
    rest = tokens[2:]
    if len(rest) == 1 and " " in rest[0].value.strip():
        # A single-string script is unwrapped only when it is one plain command: anything with
        # shell operators is a script, judged by the shell checks, not by package parsing.
        if re.search(r"[|&<>^]", rest[0].value):
            return None
        try:
            words = shlex.split(rest[0].value, posix=False)
        except ValueError:
            return None
        return [Token(w.strip('"'), rest[0].pointer) for w in words]
    return rest


def launch(server: Server) -> Launch:
    """The command that really runs for ``server``, and whether Portcullis wraps it."""
    tokens = _command_tokens(server)
    wrapped = False
    # Wrappers nest (portcullis run -- cmd /c npx …); a few rounds cover every real config.
    for _ in range(4):
        inner = _unwrap_portcullis(tokens)
        if inner is not None:
            wrapped = True
            tokens = inner
            continue
        inner = _unwrap_cmd(tokens)
        if inner is not None:
            tokens = inner
            continue
        break
    return Launch(tokens=tokens, wrapped=wrapped)


# --------------------------------------------------------------------------- npm

_EXACT_SEMVER = re.compile(r"^[=v]?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
_GIT_SHA = re.compile(r"[#@]([0-9a-f]{40})$")
_NPM_VALUE_OPTS = frozenset(
    {"--registry", "--cache", "--userconfig", "--prefix", "-w", "--workspace", "--node-options"}
    | {"--loglevel", "--shell", "--script-shell", "--node-arg", "-n"}
)


def _local(spec: str) -> bool:
    return spec.startswith((".", "/", "~", "file:", "\\")) or bool(
        re.match(r"^[A-Za-z]:[\\/]", spec)
    )


def _npm_ref(tok: Token) -> PackageRef | None:
    s = tok.value
    if not s or _local(s):
        return None
    if s.startswith(("git+", "git:", "github:", "gitlab:", "bitbucket:", "http:", "https:")) or (
        "/" in s and not s.startswith("@")
    ):
        sha = _GIT_SHA.search(s)
        name = re.split(r"[#]", s, maxsplit=1)[0]
        return PackageRef("npm", name, sha.group(1) if sha else None, bool(sha), s, tok.pointer)
    if s.startswith("@"):
        scope, _, rest = s[1:].partition("/")
        base, _, ver = rest.partition("@")
        name = f"@{scope}/{base}"
    else:
        name, _, ver = s.partition("@")
    pinned = bool(ver) and bool(_EXACT_SEMVER.match(ver))
    return PackageRef("npm", name, ver or None, pinned, s, tok.pointer)


def _npm_exec(tokens: list[Token], start: int) -> tuple[list[PackageRef], int]:
    """Parse ``npx``-style options from ``start``; return the refs and the server-args index."""
    pkgs: list[Token] = []
    i = start
    while i < len(tokens):
        t = tokens[i]
        v = t.value
        if v == "--":
            i += 1
            break
        if v in ("-p", "--package") and i + 1 < len(tokens):
            pkgs.append(tokens[i + 1])
            i += 2
            continue
        if v.startswith("--package="):
            pkgs.append(Token(v.split("=", 1)[1], t.pointer))
            i += 1
            continue
        if v in ("-c", "--call") or v in _NPM_VALUE_OPTS:
            i += 2
            continue
        if v.startswith("-"):
            i += 1
            continue
        break
    refs = [r for r in (_npm_ref(p) for p in pkgs) if r]
    if i >= len(tokens):
        return refs, i
    if not pkgs:
        ref = _npm_ref(tokens[i])
        if ref:
            refs.append(ref)
    # With -p the first positional is the binary to run, not a package.
    return refs, i + 1


# --------------------------------------------------------------------------- PyPI

_PEP508 = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)$")
# The same language as ``v?\d+(?:\.\d+)*[a-z0-9.+-]*`` without its overlapping repeats, which
# backtracked quadratically on a long "1.1.1…!" argument in a hostile configuration.
_VERSIONISH = re.compile(r"^v?\d[a-z0-9.+-]*$", re.IGNORECASE)


def _pypi_ref(tok: Token) -> PackageRef | None:
    s = tok.value.strip()
    if not s or _local(s) or (s.endswith((".whl", ".tar.gz", ".zip")) and "://" not in s):
        return None
    if "://" in s or s.startswith("git+"):
        sha = re.search(r"@([0-9a-f]{40})(?:#.*)?$", s)
        return PackageRef("pypi", s, sha.group(1) if sha else None, bool(sha), s, tok.pointer)
    m = _PEP508.match(s)
    if not m:
        return None
    name, rest = m.group(1), m.group(3).split(";", 1)[0].strip()
    if not rest:
        return PackageRef("pypi", name, None, False, s, tok.pointer)
    if rest.startswith("@"):
        target = rest[1:].strip()
        if "://" in target or target.startswith("git+"):
            sha = re.search(r"@([0-9a-f]{40})(?:#.*)?$", target)
            return PackageRef(
                "pypi", name, sha.group(1) if sha else target, bool(sha), s, tok.pointer
            )
        # uvx's own form: pkg@1.2.3 (exact) or pkg@latest.
        exact = bool(_VERSIONISH.match(target))
        return PackageRef("pypi", name, target or None, exact, s, tok.pointer)
    exact_m = re.match(r"^===?\s*([^,;*\s]+)$", rest)
    if exact_m:
        return PackageRef("pypi", name, exact_m.group(1), True, s, tok.pointer)
    return PackageRef("pypi", name, rest, False, s, tok.pointer)


_UV_VALUE_OPTS = frozenset(
    {"-p", "--python", "--index", "--default-index", "-i", "--index-url", "--extra-index-url"}
    | {"-f", "--find-links", "--index-strategy", "--keyring-provider", "--resolution"}
    | {"--prerelease", "--exclude-newer", "-C", "--config-setting", "--reinstall-package"}
    | {"--refresh-package", "-P", "--upgrade-package", "--link-mode", "--cache-dir"}
    | {"--directory", "--project", "--config-file", "--color", "--env-file", "--with-editable"}
    | {"--with-requirements", "--python-preference", "-c", "--constraints", "--overrides"}
    | {"--build-constraints", "--allow-insecure-host", "--no-build-package", "--no-binary-package"}
)


def _option_value(tokens: list[Token], i: int) -> tuple[Token, int] | None:
    """The value of the option at ``i`` (``--opt=value`` or ``--opt value``), and the next index."""
    _flag, eq, val = tokens[i].value.partition("=")
    if eq:
        return Token(val, tokens[i].pointer), i + 1
    if i + 1 < len(tokens):
        return tokens[i + 1], i + 2
    return None


def _uv_run(tokens: list[Token], start: int) -> tuple[list[PackageRef], int]:
    main: Token | None = None
    extra: list[Token] = []
    i = start
    while i < len(tokens):
        v = tokens[i].value
        if v == "--":
            i += 1
            break
        flag = v.partition("=")[0]
        if flag in ("--from", "--with", "-w"):
            taken = _option_value(tokens, i)
            if taken is None:
                break
            value, i = taken
            if flag == "--from":
                main = value
            else:
                extra.extend(Token(p, value.pointer) for p in value.value.split(",") if p)
            continue
        if v in _UV_VALUE_OPTS:
            i += 2
            continue
        if v.startswith("-"):
            i += 1
            continue
        break
    if main is None and i < len(tokens):
        main = tokens[i]
    refs = [r for r in (_pypi_ref(t) for t in ([main] if main else []) + extra) if r]
    return refs, i + 1


_PIPX_VALUE_OPTS = frozenset({"--python", "--pip-args", "--index-url", "-i", "--spec"})


def _pipx_run(tokens: list[Token], start: int) -> tuple[list[PackageRef], int]:
    spec: Token | None = None
    i = start
    while i < len(tokens):
        v = tokens[i].value
        if v == "--":
            i += 1
            break
        if v.partition("=")[0] == "--spec":
            taken = _option_value(tokens, i)
            if taken is None:
                break
            spec, i = taken
            continue
        if v in _PIPX_VALUE_OPTS:
            i += 2
            continue
        if v.startswith("-"):
            i += 1
            continue
        break
    if spec is None and i < len(tokens):
        spec = tokens[i]
    ref = _pypi_ref(spec) if spec else None
    return ([ref] if ref else []), i + 1


# --------------------------------------------------------------------------- containers

_DOCKER_VALUE_OPTS = frozenset(
    {"-v", "--volume", "-e", "--env", "--env-file", "--name", "--network", "--net", "-p"}
    | {"--publish", "--mount", "-w", "--workdir", "-u", "--user", "--entrypoint", "--cap-add"}
    | {"--cap-drop", "--pid", "--ipc", "--uts", "--userns", "--security-opt", "--device"}
    | {"-l", "--label", "--label-file", "-m", "--memory", "--cpus", "--platform", "--pull"}
    | {"--add-host", "--dns", "-h", "--hostname", "--restart", "--log-driver", "--log-opt"}
    | {"--tmpfs", "--ulimit", "--group-add", "--runtime", "--gpus", "--shm-size"}
    | {"--stop-signal", "--stop-timeout", "--health-cmd", "--health-interval", "--cidfile"}
    | {"--health-retries", "--health-start-period", "--health-timeout", "--cgroupns"}
    | {"--cgroup-parent", "--expose", "--link", "--volumes-from", "--mac-address", "--ip"}
    | {"--ip6", "--network-alias", "--sysctl", "--storage-opt", "--blkio-weight", "-c"}
    | {"--cpu-shares", "--cpuset-cpus", "--cpuset-mems", "--memory-swap", "--oom-score-adj"}
    | {"--pids-limit", "--isolation", "--domainname", "--annotation", "-a", "--attach"}
    | {"--detach-keys", "--device-cgroup-rule", "--dns-option", "--dns-search"}
    | {"--memory-reservation", "--memory-swappiness", "--cpu-period", "--cpu-quota"}
    | {"--cpu-rt-period", "--cpu-rt-runtime", "--device-read-bps", "--device-write-bps"}
    | {"--device-read-iops", "--device-write-iops", "--link-local-ip", "--volume-driver"}
    | {"--kernel-memory", "--arch", "--os", "--variant", "--secret", "--hooks-dir"}
    | {"--pod", "--requires", "--sdnotify", "--systemd", "--tz", "--umask", "--image-volume"}
)
_DOCKER_SHORT_VALUE = frozenset("veplwumhca")
_DOCKER_GLOBAL_VALUE = frozenset(
    {"--context", "-c", "-H", "--host", "--config", "-l", "--log-level", "--url"}
)


def parse_docker_run(tokens: list[Token]) -> DockerRun | None:
    """Parse tokens that are a ``docker|podman|nerdctl [container] run``; else ``None``."""
    if not tokens or exe_name(tokens[0].value) not in ("docker", "podman", "nerdctl"):
        return None
    i = 1
    while i < len(tokens) and tokens[i].value.startswith("-"):
        i += 2 if tokens[i].value in _DOCKER_GLOBAL_VALUE else 1
    if i < len(tokens) and tokens[i].value == "container":
        i += 1
    if i >= len(tokens) or tokens[i].value != "run":
        return None
    i += 1
    run = DockerRun()
    while i < len(tokens):
        t = tokens[i]
        v = t.value
        if v == "--":
            i += 1
            break
        if v.startswith("--"):
            flag, eq, val = v.partition("=")
            if eq:
                run.options.append((flag, Token(val, t.pointer), t))
                i += 1
            elif flag in _DOCKER_VALUE_OPTS and i + 1 < len(tokens):
                run.options.append((flag, tokens[i + 1], t))
                i += 2
            else:
                run.options.append((flag, None, t))
                i += 1
            continue
        if v.startswith("-") and len(v) > 1:
            letters = v[1:]
            consumed = 1
            for k, ch in enumerate(letters):
                if ch in _DOCKER_SHORT_VALUE:
                    rest = letters[k + 1 :].lstrip("=")
                    if rest:
                        run.options.append((f"-{ch}", Token(rest, t.pointer), t))
                    elif i + 1 < len(tokens):
                        run.options.append((f"-{ch}", tokens[i + 1], t))
                        consumed = 2
                    break
                run.options.append((f"-{ch}", None, t))
            i += consumed
            continue
        break
    if i < len(tokens):
        run = DockerRun(options=run.options, image=tokens[i], image_index=i)
    return run


def _image_ref(tok: Token) -> PackageRef:
    s = tok.value
    name, at, digest = s.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag: str | None = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    if at and digest.startswith("sha256:"):
        return PackageRef("docker", name, digest, True, s, tok.pointer)
    return PackageRef("docker", name, tag, False, s, tok.pointer)


# --------------------------------------------------------------------------- public


_SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "ash"})
_SEGMENTS = re.compile(r"&&|\|\||[;|&\n]")
_PREFIX_WORDS = frozenset({"exec", "command", "env", "time", "nohup", "call", "start"})


def _shell_script(tokens: list[Token]) -> Token | None:
    name = exe_name(tokens[0].value)
    for i, t in enumerate(tokens[1:], start=1):
        v = t.value
        is_c = name in _SHELLS and v.startswith("-") and not v.startswith("--") and "c" in v
        if (is_c or (name == "cmd" and v.lower() in ("/c", "/k"))) and i + 1 < len(tokens):
            return Token(" ".join(x.value for x in tokens[i + 1 :]), tokens[i + 1].pointer)
    return None


def _script_refs(script: Token, depth: int) -> list[PackageRef]:
    """Refs of each simple command in a shell script (``source nvm.sh && npx -y pkg``)."""
    refs: list[PackageRef] = []
    for segment in _SEGMENTS.split(script.value):
        try:
            words = shlex.split(segment)
        except ValueError:
            continue
        while words and (words[0] in _PREFIX_WORDS or re.match(r"^[A-Za-z_]\w*=", words[0])):
            words.pop(0)
        if words:
            refs.extend(_parse([Token(w, script.pointer) for w in words], depth + 1)[0])
    return refs


def _parse(tokens: list[Token], depth: int = 0) -> tuple[list[PackageRef], int]:
    """The refs of an effective command and the index where the server's own args begin."""
    if not tokens:
        return [], 0
    name = exe_name(tokens[0].value)
    if (name in _SHELLS or name == "cmd") and depth < 3:
        script = _shell_script(tokens)
        if script is not None:
            # The server's own args are inside the script: none are visible as arguments.
            return _script_refs(script, depth), len(tokens)
    second = tokens[1].value if len(tokens) > 1 else ""
    third = tokens[2].value if len(tokens) > 2 else ""
    if name in ("npx", "bunx", "pnpx"):
        return _npm_exec(tokens, 1)
    if (name == "npm" and second in ("exec", "x")) or (
        name in ("pnpm", "yarn") and second == "dlx"
    ):
        return _npm_exec(tokens, 2)
    if name == "bun" and second == "x":
        return _npm_exec(tokens, 2)
    if name == "uvx":
        return _uv_run(tokens, 1)
    if name == "uv" and second == "tool" and third == "run":
        return _uv_run(tokens, 3)
    if name == "uv" and second == "x":
        return _uv_run(tokens, 2)
    if name == "pipx" and second == "run":
        return _pipx_run(tokens, 2)
    run = parse_docker_run(tokens)
    if run is not None:
        if run.image is None:
            return [], len(tokens)
        return [_image_ref(run.image)], run.image_index + 1
    return [], 1


def _direct(ref: PackageRef) -> bool:
    """A git or URL source rather than a registry name."""
    if ref.ecosystem == "docker":
        return False
    name = ref.name
    return (
        "://" in name
        or name.startswith(("git+", "git:", "github:", "gitlab:", "bitbucket:"))
        or ("/" in name and not name.startswith("@"))
    )


def package_refs(server: Server, *, direct: bool = False) -> list[PackageRef]:
    """The npm, PyPI and container-image packages ``server``'s command runs, in order.

    ``pinned`` is true only for an exact version (npm ``1.2.3``, PyPI ``==1.2.3``, a git commit)
    or an image digest. Local paths (``./server``, ``/opt/x.whl``) are not packages. Sources
    that are not registry names (``git+https://…``, ``github:o/r``, tarball URLs) are included
    only with ``direct=True`` (the pinning check wants them; registry look-ups cannot use them).
    """
    refs = _parse(launch(server).tokens)[0]
    return refs if direct else [r for r in refs if not _direct(r)]


def server_args(server: Server) -> list[Token]:
    """The arguments the server program itself receives (after the launcher and package).

    For ``npx -y pkg /srv`` that is ``[/srv]``; for ``node server.js --root /`` it is
    ``[--root, /]``; for a container it is empty (the host side is in the ``run`` options).
    """
    tokens = launch(server).tokens
    refs, start = _parse(tokens)
    if parse_docker_run(tokens) is not None:
        return []
    if not refs and tokens:
        name = exe_name(tokens[0].value)
        if name in ("npm", "pnpm", "yarn", "bun", "uv", "pipx", "uvx", "npx", "bunx"):
            # A launcher whose package we could not read: its own options are not server args.
            return []
        if _PY.match(name) or name in ("node", "nodejs", "deno", "bun"):
            start = _script_index(tokens)
    return tokens[start:]


def _script_index(tokens: list[Token]) -> int:
    """Index just past an interpreter's script or module (``python -m x``, ``node s.js``)."""
    i = 1
    while i < len(tokens):
        v = tokens[i].value
        if v in ("-m", "run"):
            return i + 2
        if v.startswith("-"):
            i += 1
            continue
        return i + 1
    return i
