"""The bubblewrap command line for one server: the filesystem it sees, built from nothing.

Pure given its inputs (the runtime found by :mod:`~portcullis.sandbox.profiles` and the policy),
so that ``portcullis sandbox test`` can show exactly what ``run`` will do. The root is an empty
tmpfs; on it: the runtime read-only, the policy's ``filesystem`` binds, the path roots
(read-only with ``paths.read_only``), a private ``/tmp`` and home, a fresh ``/proc`` and a minimal
``/dev``. New user, PID, IPC, UTS, cgroup and (unless ``network: host``) network namespaces;
``--die-with-parent``; ``--new-session`` (no terminal to inject keystrokes into). Protected paths
and the user's secrets (the D-Bus session bus, the ssh-agent and docker sockets) are masked when
they fall inside a bind; a bind of ``/`` or of the home directory itself is refused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Final, Literal

import msgspec

from portcullis._exceptions import ConfigError
from portcullis.detect.paths import inside
from portcullis.policy.compiled import SandboxSettings
from portcullis.sandbox.profiles import Runtime

__all__ = ["PROXY_PORT", "PROXY_SOCKET", "SANDBOX_HOME", "SANDBOX_TMP", "Bind", "Plan", "build"]

SANDBOX_HOME: Final = "/home/sandbox"
PROXY_SOCKET: Final = "/run/portcullis/egress.sock"  # where the egress proxy is bound inside
PROXY_PORT: Final = 3128  # the in-sandbox forwarder's port on the sandbox's own loopback
_PATH: Final = "/usr/local/bin:/usr/bin:/bin"
SANDBOX_TMP: Final = "/tmp"  # noqa: S108 - a private tmpfs inside the sandbox, not the host's
# Environment variables that are never passed in, whatever the policy says: they are how a
# process finds the user's agents and buses.
_NEVER_ENV: Final = ("SSH_AUTH_SOCK", "DBUS_SESSION_BUS_ADDRESS", "DOCKER_HOST", "GPG_AGENT_INFO")

_RESOLVER: Final = ("/etc/resolv.conf", "/etc/hosts", "/etc/gai.conf", "/etc/host.conf")

BindKind = Literal["ro", "rw", "mask-file", "mask-dir", "link"]


class Bind(msgspec.Struct, frozen=True):
    """One entry of the sandbox's filesystem, for the command line and for showing it."""

    kind: BindKind
    source: str
    dest: str
    why: str


class Plan(msgspec.Struct):
    """Everything ``run`` starts: the command line, the environment, what is visible."""

    argv: list[str]
    env: dict[str, str]
    binds: list[Bind]
    network: str
    cwd: str
    command_at: int = 0  # where the server's own command starts in argv


def _secrets(uid: int, env: Mapping[str, str]) -> list[str]:
    """The user's agent and bus sockets, wherever they are."""
    found = [f"/run/user/{uid}", "/var/run/docker.sock", "/run/docker.sock"]
    for name in ("SSH_AUTH_SOCK",):
        value = env.get(name)
        if value and os.path.isabs(value):
            found.append(value)
    return found


def build(
    settings: SandboxSettings,
    runtime: Runtime,
    *,
    bwrap: str,
    roots: Sequence[str],
    roots_read_only: bool,
    env: Mapping[str, str],
    passthrough: Mapping[str, str],
    protected: Sequence[str],
    cwd: str | None,
    home: str,
    proxy_socket: str | None = None,
) -> Plan:
    """The plan for one server; raises ConfigError for a bind that would expose too much.

    ``env`` is the server's own environment from the policy (always passed); ``passthrough``
    holds the gateway's variables the policy passes (``sandbox.env``, ``--pass-env``).
    The in-sandbox launcher (Landlock, seccomp, forwarder) goes in at ``Plan.command_at``.
    """
    home_real = os.path.realpath(home)
    # The policy's binds first, the runtime after: a writable root that holds a virtual
    # environment (or the gateway itself) must not make it writable, so the runtime's
    # read-only binds are mounted on top.
    user: list[tuple[str, BindKind, str]] = [
        (p, "ro", "filesystem.read_only") for p in settings.read_only
    ]
    user += [(r, "ro" if roots_read_only else "rw", "paths.roots") for r in roots]
    user += [(p, "rw", "filesystem.read_write") for p in settings.read_write]
    user += [(p, "ro", "runtime") for p in runtime.read_only]
    if settings.network == "host":
        # Name resolution for the host's network (allow_hosts resolves in the gateway's proxy).
        user += [(p, "ro", "network: host") for p in _RESOLVER if os.path.exists(p)]
    binds: list[Bind] = [Bind("link", target, link, "runtime") for target, link in runtime.links]
    for path, kind, why in user:
        real = os.path.realpath(path)
        if real == "/":
            raise ConfigError(f"{why}: the sandbox never binds / (the whole filesystem)")
        if inside(home_real, real):
            raise ConfigError(
                f"{why}: {path} would expose your home directory; bind the directories the "
                "server needs instead (for a runtime installed in your home directory, "
                "install it elsewhere)"
            )
        shielded = next((p for p in protected if os.path.isabs(p) and inside(real, p)), None)
        if shielded is not None:
            raise ConfigError(f"{why}: {path} is inside the protected path {shielded}")
        if not os.path.exists(real):
            raise ConfigError(f"{why}: {path} does not exist")
        binds.append(Bind(kind, real, real, why))
    binds += _masks(binds, protected, _secrets(os.getuid(), os.environ))

    argv = [
        bwrap,
        "--unshare-all",
        *(["--share-net"] if settings.network == "host" else []),
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--hostname",
        "portcullis-sandbox",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        SANDBOX_TMP,
        "--dir",
        SANDBOX_HOME,
    ]
    for bind in binds:
        if bind.kind == "link":
            argv += ["--symlink", bind.source, bind.dest]
        elif bind.kind == "ro":
            argv += ["--ro-bind", bind.source, bind.dest]
        elif bind.kind == "rw":
            argv += ["--bind", bind.source, bind.dest]
        elif bind.kind == "mask-file":
            argv += ["--ro-bind", "/dev/null", bind.dest]
        else:
            argv += ["--tmpfs", bind.dest, "--remount-ro", bind.dest]
    if settings.network == "allow_hosts" and proxy_socket is not None:
        argv += ["--ro-bind", proxy_socket, PROXY_SOCKET]
    workdir = _workdir(cwd, binds)
    argv += ["--chdir", workdir, "--"]
    command_at = len(argv)
    argv += runtime.argv

    child_env = dict(passthrough)
    child_env.update(env)
    for name in _NEVER_ENV:
        child_env.pop(name, None)
    child_env.update({"HOME": SANDBOX_HOME, "TMPDIR": SANDBOX_TMP})
    child_env.setdefault("PATH", _PATH)
    if settings.network == "allow_hosts":
        proxy = f"http://127.0.0.1:{PROXY_PORT}"
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            child_env[name] = proxy
        child_env["NO_PROXY"] = child_env["no_proxy"] = ""
    return Plan(
        argv=argv,
        env=child_env,
        binds=binds,
        network=settings.network,
        cwd=workdir,
        command_at=command_at,
    )


def _masks(binds: list[Bind], protected: Sequence[str], secrets: Sequence[str]) -> list[Bind]:
    """Hide what must never be seen that a bind would otherwise expose."""
    dirs = [b.dest for b in binds if b.kind in ("ro", "rw") and os.path.isdir(b.source)]
    candidates: list[tuple[str, str]] = []
    for entry in protected:
        if os.path.isabs(entry):
            candidates.append((entry, "protected"))
        else:  # ".mcp.json" and the like: at the top of each bound directory
            candidates += [(os.path.join(d, entry), "protected") for d in dirs]
    candidates += [(s, "user secret") for s in secrets]
    masks: list[Bind] = []
    for path, why in candidates:
        real = os.path.realpath(path)
        if not os.path.lexists(real) or not any(inside(real, d) for d in dirs):
            continue
        kind: BindKind = "mask-dir" if os.path.isdir(real) else "mask-file"
        masks.append(Bind(kind, real, real, why))
    return masks


def _workdir(cwd: str | None, binds: list[Bind]) -> str:
    """The server's working directory if the sandbox shows it, else the sandbox home."""
    if cwd:
        real = os.path.realpath(cwd)
        if any(b.kind in ("ro", "rw") and inside(real, b.dest) for b in binds):
            return real
    return SANDBOX_HOME
