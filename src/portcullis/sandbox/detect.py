"""Can bubblewrap run here? If not: exactly why, and how to fix it.

The answer comes from a real probe (bubblewrap starting ``/usr/bin/true`` in the namespaces the
sandbox uses), because kernel switches, AppArmor and container seccomp profiles each refuse
unprivileged user namespaces in their own way. The probe costs a few milliseconds, so its
result is kept in the state directory, keyed by boot, user and bubblewrap binary.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

__all__ = ["find_bwrap", "unavailable"]

_PROBE_TIMEOUT_S: Final = 10.0
_INSTALL_HINT: Final = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install "
    "bubblewrap; Arch: pacman -S bubblewrap)"
)


def find_bwrap() -> str | None:
    """The bubblewrap binary on the gateway's PATH, or None.

    The PATH comes from the client configuration that also names the gateway's own command,
    so whoever could plant a bwrap there could replace the gateway itself.
    """
    return shutil.which("bwrap")


def unavailable(cache_dir: Path | None = None) -> str | None:
    """Why the sandbox cannot run here, with the fix; None when it can."""
    if not sys.platform.startswith("linux"):
        where = "macOS" if sys.platform == "darwin" else sys.platform
        return (
            f"the sandbox needs Linux (bubblewrap); on {where} it is not available yet "
            "(docs/threat-model.md has the plan); set sandbox.required: false to run "
            "unsandboxed with a warning"
        )
    bwrap = find_bwrap()
    if bwrap is None:
        return f"bubblewrap (bwrap) is not installed: {_INSTALL_HINT}"
    why = _kernel_switches()
    if why is not None:
        return why
    key = _cache_key(bwrap)
    cached = _read_cache(cache_dir, key)
    if cached is not None:
        return cached or None
    why = _probe(bwrap)
    _write_cache(cache_dir, key, why or "")
    return why


def _read_int(path: str) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def _kernel_switches() -> str | None:
    if _read_int("/proc/sys/user/max_user_namespaces") == 0:
        return (
            "user namespaces are disabled (user.max_user_namespaces = 0): run "
            "`sysctl -w user.max_user_namespaces=15000` (and make it permanent in "
            "/etc/sysctl.d/)"
        )
    if os.geteuid() == 0:
        return None  # the switches below restrict unprivileged users only
    if _read_int("/proc/sys/kernel/unprivileged_userns_clone") == 0:
        return (
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0): "
            "run `sysctl -w kernel.unprivileged_userns_clone=1`"
        )
    if _read_int("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1:
        return (
            "AppArmor restricts unprivileged user namespaces "
            "(kernel.apparmor_restrict_unprivileged_userns = 1, Ubuntu 23.10 and later): "
            "install an AppArmor profile that lets /usr/bin/bwrap use them (Ubuntu ships one "
            "in the bubblewrap package from 24.04: `apt-get install apparmor-profiles` and "
            "reload AppArmor), or run `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`"
        )
    return None


def _probe(bwrap: str) -> str | None:
    argv = [
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--ro-bind",
        "/usr",
        "/usr",
        *_links(),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "/usr/bin/true",
    ]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not be run ({exc})"
    if done.returncode == 0:
        return None
    message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no message"
    hint = ""
    if "Operation not permitted" in message or "No permissions" in message:
        hint = (
            "; in a container, user namespaces are usually blocked by its seccomp profile: "
            "run it with user namespaces allowed (Docker: --security-opt seccomp=unconfined "
            "--security-opt apparmor=unconfined), or run the gateway outside the container"
        )
    return f"bubblewrap cannot create the sandbox here: {message}{hint}"


def _links() -> list[str]:
    """The merged-/usr links (``--symlink usr/bin /bin`` …) the sandbox recreates."""
    from portcullis.sandbox.profiles import base_binds

    _, links = base_binds()
    return [arg for target, link in links for arg in ("--symlink", target, link)]


def _cache_key(bwrap: str) -> str:
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "unknown-boot"
    try:
        st = os.stat(bwrap)
        binary = f"{bwrap}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        binary = bwrap
    return f"{boot}|{os.geteuid()}|{binary}"


def _read_cache(cache_dir: Path | None, key: str) -> str | None:
    if cache_dir is None:
        return None
    try:
        data = json.loads((cache_dir / "sandbox-probe.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    why = data.get("unavailable")
    return why if isinstance(why, str) else None


def _write_cache(cache_dir: Path | None, key: str, why: str) -> None:
    if cache_dir is None:
        return
    path = cache_dir / "sandbox-probe.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps({"key": key, "unavailable": why}))
        os.replace(tmp, path)
