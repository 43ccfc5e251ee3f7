"""Containers that are not a sandbox: ``docker``/``podman run`` options that open the host.

A container is often the user's reason to feel safe about a server. ``--privileged``, the
Docker socket, ``-v /:/host``, host namespaces and broad capabilities each undo that: the
server can then reach, or become, root on the host.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from portcullis.scan.checks.paths import classify_path
from portcullis.scan.model import Finding, Rule, Server, Severity
from portcullis.scan.packages import DockerRun, Token, launch, parse_docker_run

__all__ = [
    "DOCKER_CAP_ADD",
    "DOCKER_HOST_MOUNT",
    "DOCKER_HOST_NAMESPACE",
    "DOCKER_HOST_NETWORK",
    "DOCKER_PRIVILEGED",
    "RULES",
    "check",
]

_SANDBOX_HELP = (
    " Drop the option; give the container only what it needs (a named volume or one project "
    "directory mounted read-only, the default bridge network, no added capabilities)."
)
DOCKER_PRIVILEGED = Rule(
    id="docker-privileged",
    title="Container runs privileged or unconfined",
    severity="critical",
    checklist=("sandboxing", "least-privilege"),
    help="--privileged (or an unconfined seccomp/AppArmor profile) gives the container every "
    "device and capability of the host: it is root on the host, not sandboxed." + _SANDBOX_HELP,
)
DOCKER_HOST_MOUNT = Rule(
    id="docker-host-mount",
    title="Container mounts a sensitive host path",
    severity="high",
    checklist=("sandboxing", "least-privilege", "filtered-sensitive-data"),
    help="Mounting /, a home directory, a credential directory or the Docker socket hands the "
    "server the host's files or full control of the host's containers (the Docker socket is "
    "root on the host)." + _SANDBOX_HELP,
)
DOCKER_HOST_NETWORK = Rule(
    id="docker-host-network",
    title="Container shares the host network",
    severity="medium",
    checklist=("sandboxing",),
    help="--network host lets the server reach every service bound to the host's loopback "
    "(databases, admin consoles, the cloud metadata endpoint) and listen on host ports."
    + _SANDBOX_HELP,
)
DOCKER_HOST_NAMESPACE = Rule(
    id="docker-host-namespace",
    title="Container shares a host namespace",
    severity="high",
    checklist=("sandboxing",),
    help="--pid host, --ipc host, --uts host or --userns host let the server see and signal "
    "the host's processes or share its memory and identity." + _SANDBOX_HELP,
)
DOCKER_CAP_ADD = Rule(
    id="docker-cap-add",
    title="Container is given extra Linux capabilities",
    severity="medium",
    checklist=("sandboxing", "least-privilege"),
    help="--cap-add widens what root in the container may do; ALL and SYS_ADMIN are close to "
    "--privileged." + _SANDBOX_HELP,
)
RULES = (
    DOCKER_PRIVILEGED,
    DOCKER_HOST_MOUNT,
    DOCKER_HOST_NETWORK,
    DOCKER_HOST_NAMESPACE,
    DOCKER_CAP_ADD,
)

_SOCKET = re.compile(
    r"(?i)(?:^|/)(?:docker|podman|containerd|crio|cri-dockerd)\.sock$|^//\./pipe/docker_engine$"
    r"|^\\\\\.\\pipe\\docker_engine$"
)
_CAPS_HIGH = frozenset(
    {"ALL", "SYS_ADMIN", "SYS_MODULE", "SYS_PTRACE", "SYS_RAWIO", "DAC_READ_SEARCH"}
)


def _mount_source(flag: str, value: str) -> str | None:
    """The host side of ``-v SRC:DST[:opts]`` or ``--mount type=bind,source=SRC,…``."""
    if flag in ("-v", "--volume"):
        v = value
        # A Windows drive letter is part of the source, not a separator (C:\Users\me:/data).
        if re.match(r"^[A-Za-z]:[\\/]", v):
            src, _, _ = v[2:].partition(":")
            return v[:2] + src
        return v.partition(":")[0] if ":" in v else None
    if flag == "--mount":
        fields = dict(p.partition("=")[::2] for p in value.split(","))
        if fields.get("type", "volume") != "bind":
            return None
        return fields.get("source") or fields.get("src")
    return None


def _finding(
    rule: Rule, server: Server, tok: Token, message: str, evidence: str, severity: Severity | None
) -> Finding:
    return Finding.of(
        rule,
        server,
        f'server "{server.name}": {message}',
        fix=f"Remove `{evidence}` from the args." + _SANDBOX_HELP,
        pointer=tok.pointer,
        evidence=evidence,
        severity=severity,
    )


def _options(run: DockerRun, server: Server) -> Iterable[Finding]:
    for flag, value, tok in run.options:
        val = value.value if value else ""
        where = value or tok
        shown = f"{flag} {val}".strip()
        if flag == "--privileged":
            yield _finding(
                DOCKER_PRIVILEGED, server, tok, "the container runs --privileged", shown, None
            )
        elif flag == "--security-opt" and re.search(r"(?i)unconfined|no-new-privileges=false", val):
            yield _finding(
                DOCKER_PRIVILEGED,
                server,
                where,
                f"the container drops a kernel confinement ({val})",
                shown,
                "high",
            )
        elif flag in ("--network", "--net") and val.lower() == "host":
            yield _finding(
                DOCKER_HOST_NETWORK,
                server,
                where,
                "the container shares the host network",
                shown,
                None,
            )
        elif flag in ("--pid", "--ipc", "--uts", "--userns", "--cgroupns") and (
            val.lower() == "host"
        ):
            yield _finding(
                DOCKER_HOST_NAMESPACE,
                server,
                where,
                f"the container shares the host's {flag[2:]} namespace",
                shown,
                None,
            )
        elif flag == "--cap-add":
            caps = {c.strip().upper().removeprefix("CAP_") for c in val.split(",") if c.strip()}
            severity: Severity = "high" if caps & _CAPS_HIGH else "medium"
            yield _finding(
                DOCKER_CAP_ADD,
                server,
                where,
                f"the container gains {', '.join(sorted(caps))}",
                shown,
                severity,
            )
        elif flag in ("-v", "--volume", "--mount") and val:
            src = _mount_source(flag, val)
            if not src:
                continue
            if _SOCKET.search(src.rstrip("/")):
                yield _finding(
                    DOCKER_HOST_MOUNT,
                    server,
                    where,
                    f"the container mounts the container-engine socket {src} "
                    "(full control of the host)",
                    shown,
                    "critical",
                )
                continue
            verdict = classify_path(src)
            if verdict:
                what, sev = verdict
                yield _finding(
                    DOCKER_HOST_MOUNT,
                    server,
                    where,
                    f"the container mounts {what} ({src})",
                    shown,
                    sev,
                )


def check(server: Server) -> Iterable[Finding]:
    """Flag container options that give the server the host."""
    run = parse_docker_run(launch(server).tokens)
    if run is None:
        return []
    return list(_options(run, server))
