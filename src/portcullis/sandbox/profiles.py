"""What a server needs to run at all: the runtime files of its profile, found on this host.

Everything is bound read-only. ``binary``: the system libraries and the program itself.
``python``: also the interpreter's installation and the virtual environment the command lives
in (found through ``pyvenv.cfg``). ``node``: also the node installation and the
``node_modules`` tree the command lives in; ``npx -y PKG@VERSION`` is resolved to the package
npx already installed in its cache (``_npx``), which runs from there read-only, because npx
itself needs a writable cache (read-only, it answers ENOTCACHED even for cached packages) and
installing inside the sandbox would run the package's install scripts there on every start.
``uvx PKG@VERSION`` likewise runs the tool from the environment uv already built in its cache
(uv will not even take its lock on a read-only cache).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import msgspec

from portcullis._exceptions import ConfigError

__all__ = ["Runtime", "base_binds", "outermost", "python_dirs", "runtime"]

# The system files every profile gets (those that exist): libraries and the dynamic loader's
# cache, TLS roots, time zones, and the alternatives links Debian puts binaries behind.
_BASE: Final = (
    "/usr",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/mime.types",
)
_USR_LINKS: Final = ("bin", "sbin", "lib", "lib64", "lib32", "libx32")


class Runtime(msgspec.Struct):
    """The read-only paths a server needs, and its command as it runs inside."""

    read_only: list[str]
    links: list[tuple[str, str]]  # (target, link path): merged-/usr symlinks
    argv: list[str]


def base_binds() -> tuple[list[str], list[tuple[str, str]]]:
    """The system paths that exist here, and the merged-/usr links to recreate."""
    paths = [p for p in _BASE if os.path.exists(p)]
    links: list[tuple[str, str]] = []
    for name in _USR_LINKS:
        path = f"/{name}"
        if os.path.islink(path):
            links.append((os.readlink(path), path))
        elif os.path.isdir(path):
            paths.append(path)
    return paths, links


def runtime(profile: str, argv: Sequence[str], env: Mapping[str, str]) -> Runtime:
    """The runtime of ``argv`` under ``profile``; raises ConfigError when it cannot be found."""
    paths, links = base_binds()
    command = list(argv)
    exe = shutil.which(command[0], path=env.get("PATH")) if command else None
    if exe is None:
        raise ConfigError(f"cannot find the server command {command[:1]} to sandbox it")
    if profile == "python" and os.path.basename(exe) == "uvx":
        command = _uvx(command, env)
        exe = command[0]
    if profile == "node" and os.path.basename(exe) == "npx":
        command, package = _npx(command, env)
        paths.append(package)
        exe = shutil.which(command[0], path=env.get("PATH"))
        if exe is None:
            raise ConfigError("the node profile needs `node` on the PATH")
    real = os.path.realpath(exe)
    paths.append(real)
    interpreter = _shebang(real)
    if interpreter is not None:
        paths.append(os.path.realpath(interpreter))
    if profile == "python":
        for candidate in (real, interpreter):
            if candidate is not None:
                paths += python_dirs(candidate)
    elif profile == "node":
        node = shutil.which("node", path=env.get("PATH"))
        if node is not None:
            # A node outside /usr (nvm, a tarball): its whole installation.
            paths.append(str(Path(os.path.realpath(node)).parents[1]))
        for candidate in (exe, real):
            tree = _node_modules(candidate)
            if tree is not None:
                paths.append(tree)
    command[0] = exe
    return Runtime(read_only=outermost(paths), links=links, argv=command)


def _shebang(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    if not words:
        return None
    interpreter = words[0].decode(errors="replace")
    if os.path.basename(interpreter) == "env" and len(words) > 1:
        found = shutil.which(words[1].decode(errors="replace"))
        return found
    return interpreter


def python_dirs(path: str) -> list[str]:
    """The virtual environment ``path`` is in, and the Python installation behind it."""
    found: list[str] = []
    here = Path(path).parent
    for directory in (here, *here.parents):
        cfg = directory / "pyvenv.cfg"
        if cfg.is_file():
            found.append(str(directory))
            for line in cfg.read_text(errors="replace").splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "home" and value.strip():
                    found.append(str(Path(os.path.realpath(value.strip())).parent))
            break
    else:
        real = Path(os.path.realpath(path))
        if real.parent.name == "bin":
            found.append(str(real.parents[1]))  # a plain installation: its prefix
    return found


def _node_modules(path: str) -> str | None:
    parts = Path(path).parts
    if "node_modules" not in parts:
        return None
    top = parts.index("node_modules")
    return str(Path(*parts[: top + 1]))


def _npx(argv: list[str], env: Mapping[str, str]) -> tuple[list[str], str]:
    """``npx [-y] PKG@VER ARGS`` → (``node BIN ARGS``, the installed package's directory)."""
    args = argv[1:]
    while args and args[0] in ("-y", "--yes"):
        args = args[1:]
    if not args or args[0].startswith("-"):
        raise ConfigError(
            f"the node profile runs `npx [-y] PACKAGE@VERSION ARGS`, not {' '.join(argv)}"
        )
    spec, rest = args[0], args[1:]
    name, at, version = spec.rpartition("@")
    if not at or not name or not version:
        raise ConfigError(
            f"npx package {spec!r} is not pinned: write {spec}@VERSION so that the sandbox "
            "runs a known version from the cache"
        )
    cache = Path(env.get("npm_config_cache") or Path(env.get("HOME", "~")) / ".npm")
    cache = cache.expanduser()
    for manifest in sorted((cache / "_npx").glob("*/package.json")):
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        meta = data.get("_npx") if isinstance(data, dict) else None
        if not isinstance(meta, dict) or meta.get("packages") != [spec]:
            continue
        root = manifest.parent
        bin_path = _package_bin(root / "node_modules" / name, name)
        if bin_path is not None:
            return ["node", str(bin_path), *rest], str(root)
    raise ConfigError(
        f"{spec} is not in npx's cache ({cache / '_npx'}); install it once outside the "
        f"sandbox with `npx -y {spec} --help` (or set npm_config_cache in the server's env to "
        "where it is), then start again"
    )


def _uvx(argv: list[str], env: Mapping[str, str]) -> list[str]:
    """``uvx PKG@VER ARGS`` → the tool's command in the environment uv built for it."""
    args = argv[1:]
    if not args or args[0].startswith("-"):
        raise ConfigError(
            f"the python profile runs `uvx PACKAGE@VERSION ARGS`, not {' '.join(argv)}"
        )
    spec, rest = args[0], args[1:]
    name, sep, version = spec.partition("==") if "==" in spec else spec.partition("@")
    if not sep or not name or not version:
        raise ConfigError(
            f"uvx package {spec!r} is not pinned: write {spec}@VERSION so that the sandbox "
            "runs a known version from uv's cache"
        )
    default = Path(env.get("XDG_CACHE_HOME") or Path(env.get("HOME", "~")) / ".cache") / "uv"
    cache = Path(env.get("UV_CACHE_DIR") or default).expanduser()
    wanted = f"{_normalise(name)}-{version}.dist-info"
    for link in sorted(cache.glob("environments-v*/*/*")):
        if not link.is_dir():
            continue
        venv = link.resolve()
        tool = venv / "bin" / name
        if tool.exists() and any(
            d.name.lower() == wanted.lower() for d in venv.glob("lib/python*/site-packages/*")
        ):
            return [str(tool), *rest]
    raise ConfigError(
        f"{spec} is not in uv's cache ({cache}); install it once outside the sandbox with "
        f"`uvx {spec} --help` (or set UV_CACHE_DIR in the server's env to where it is), then "
        "start again"
    )


def _normalise(name: str) -> str:
    return "".join("_" if c in "-." else c for c in name.lower())


def _package_bin(package: Path, name: str) -> Path | None:
    try:
        data = json.loads((package / "package.json").read_text())
    except (OSError, ValueError):
        return None
    bins = data.get("bin")
    if isinstance(bins, str):
        return package / bins
    if isinstance(bins, dict) and bins:
        short = name.rsplit("/", 1)[-1]
        chosen = bins.get(short) or next(iter(bins.values()))
        return package / str(chosen)
    return None


def outermost(paths: list[str]) -> list[str]:
    """Deduplicated paths, dropping those inside another one (a bind covers its subtree)."""
    kept: list[str] = []
    for path in sorted({os.path.normpath(p) for p in paths}, key=len):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return sorted(kept)
