"""Escape attempts run inside a server's sandbox by ``portcullis sandbox test``.

Each probe really tries (open, write, connect, ptrace) and reports what happened; the command
compares that with what the policy grants. The probe program runs under the same launcher as
the server (Landlock, seccomp, forwarder), with only the standard library.
"""

from __future__ import annotations

import msgspec

__all__ = ["PROBE_SOURCE", "Probe", "expectations"]

# Set inside the sandbox by bubblewrap (PWD) and by Python's C-locale coercion (LC_CTYPE),
# not passed from outside.
_BENIGN = ("PWD", "LC_CTYPE")

# Input: argv[1] = JSON list of [name, kind, target]; output: JSON list of [name, result].
PROBE_SOURCE = r"""
import ctypes, json, os, socket, sys
def attempt(kind, target):
    try:
        if kind == "read":
            if os.path.isdir(target):
                os.listdir(target)
            else:
                with open(target, "rb") as fh:
                    fh.read(1)
        elif kind == "write":
            path = os.path.join(target, ".portcullis-probe")
            with open(path, "w") as fh:
                fh.write("x")
            os.unlink(path)
        elif kind == "connect":
            host, port = target.rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=3):
                pass
        elif kind == "proxy":
            host = target
            with socket.create_connection(("127.0.0.1", 3128), timeout=5) as s:
                s.sendall(f"CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                line = s.recv(200).split(b"\r\n", 1)[0].decode(errors="replace")
            if " 200" not in line:
                return "denied (" + line + ")"
        elif kind == "ptrace":
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.ptrace(0, 0, None, None) != 0:
                return "denied (" + os.strerror(ctypes.get_errno()) + ")"
        elif kind == "env":
            return "seen: " + ",".join(sorted(os.environ))
    except OSError as exc:
        return "denied (" + (exc.strerror or type(exc).__name__) + ")"
    return "allowed"
print(json.dumps([[n, attempt(k, t)] for n, k, t in json.loads(sys.argv[1])]))
"""


class Probe(msgspec.Struct, frozen=True):
    """One escape attempt and what the policy says should happen."""

    name: str
    kind: str  # read, write, connect, proxy, ptrace, env
    target: str
    expect: str  # "allowed", "denied", or for env the names that may be seen (comma-separated)


def expectations(
    *,
    home: str,
    policy_file: str | None,
    state_dir: str,
    roots: list[str],
    roots_read_only: bool,
    read_write: list[str],
    gateway_pid: int,
    loopback: str,
    network: str,
    env_names: list[str],
) -> list[Probe]:
    """The probes for one server and what each must give."""
    probes = [
        Probe("read ~/.ssh", "read", f"{home}/.ssh", "denied"),
        Probe("read the home directory", "read", home, "denied"),
        Probe("read the state directory (audit log, keys)", "read", state_dir, "denied"),
        Probe("read the gateway's environment", "read", f"/proc/{gateway_pid}/environ", "denied"),
        Probe("ptrace", "ptrace", "", "denied"),
        Probe(
            f"connect to the host's loopback ({loopback})",
            "connect",
            loopback,
            "allowed" if network == "host" else "denied",
        ),
        Probe("environment variables", "env", "", ",".join(sorted({*env_names, *_BENIGN}))),
    ]
    if policy_file:
        probes.append(Probe("read the policy file", "read", policy_file, "denied"))
    for root in roots:
        probes.append(Probe(f"read root {root}", "read", root, "allowed"))
        expect = "denied" if roots_read_only else "allowed"
        probes.append(Probe(f"write root {root}", "write", root, expect))
    for path in read_write:
        probes.append(Probe(f"write {path}", "write", path, "allowed"))
    if network == "allow_hosts":
        probes.append(
            Probe("proxy to a host not in allow_hosts", "proxy", "example.invalid:443", "denied")
        )
    return probes
