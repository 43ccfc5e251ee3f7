"""Property test: the kernel, not the guard's resolver, judges where an allowed path lands."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from portcullis.detect.paths import PathGuard
from portcullis.gateway.pipeline import Allow

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="/proc/self/fd is Linux"
)

O_PATH = getattr(os, "O_PATH", 0)


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[Path, Path]]:
    base = Path(tempfile.mkdtemp(prefix="pc-paths-"))
    root = base / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "f").write_text("f")
    out = base / "outside"
    (out / "d").mkdir(parents=True)
    (out / "secret").write_text("s")
    (root / "in").symlink_to(root / "a")
    (root / "rin").symlink_to("a/b")
    (root / "out").symlink_to(out)
    (root / "rout").symlink_to("../outside/d")
    (root / "a" / "up").symlink_to("../..")
    (root / "sec").symlink_to(out / "secret")
    (root / "dang").symlink_to(out / "new")
    (root / "l1").symlink_to("l2")
    (root / "l2").symlink_to("l1")
    (base / "rootlink").symlink_to(root)
    yield base, root
    shutil.rmtree(base)


def _fd_path(path: str, flags: int) -> str:
    fd = os.open(path, flags)
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def landing(path: str, depth: int = 0) -> str | None:
    """Where the kernel would open or create ``path``; None when it cannot."""
    if depth > 40:
        return None
    try:
        return _fd_path(path, O_PATH)
    except FileNotFoundError:
        pass
    except OSError:
        return None
    try:
        st_ = os.lstat(path)
    except FileNotFoundError:
        st_ = None
    except OSError:
        return None
    parent, name = os.path.split(path.rstrip("/") or "/")
    try:
        real_parent = _fd_path(parent or ".", O_PATH | os.O_DIRECTORY)
    except OSError:
        return None
    if st_ is not None and os.path.islink(path):
        # O_CREAT through a dangling symlink creates its target.
        target = os.readlink(path)
        return landing(os.path.join(real_parent, target), depth + 1)
    if name in ("", ".", ".."):
        return None
    return os.path.join(real_parent, name)


COMPONENTS = st.sampled_from(
    ["a", "b", "f", "new", "in", "rin", "out", "rout", "up", "sec", "dang", "l1", "root",
     "outside", "d", "secret", "..", ".", "", "%2e%2e", "%2E", "%252e%252e", "a%2fb", "..%2f"]
)  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(COMPONENTS, min_size=1, max_size=6),
    absolute=st.booleans(),
    via_link=st.booleans(),
    slashes=st.sampled_from(["/", "//"]),
)
def test_allowed_paths_land_inside_the_root(
    world: tuple[Path, Path], parts: list[str], absolute: bool, via_link: bool, slashes: str
):
    """Whenever the guard allows a value, every spelling the kernel opens is inside the root."""
    base, root = world
    given_root = base / "rootlink" if via_link else root
    guard = PathGuard([str(given_root)], cwd=str(given_root))
    rel = slashes.join(parts)
    value = f"{given_root}/{rel}" if absolute else rel
    verdict = guard.check(value, argument="path")
    event(verdict.rule)
    if not isinstance(verdict, Allow):
        return
    real_root = os.path.realpath(root)
    joined = value if absolute else f"{given_root}/{value}"
    spellings = {joined, os.path.normpath(joined), unquote(joined)}
    full = joined
    while unquote(full) != full:
        full = unquote(full)
    spellings |= {full, os.path.normpath(full)}
    for spelling in spellings:
        where = landing(spelling)
        if where is None:
            continue
        assert where == real_root or where.startswith(real_root + "/"), (value, spelling, where)


def test_kernel_judge_sees_escapes(world: tuple[Path, Path]):
    """Sanity: the judge itself reports the escapes the guard must refuse."""
    base, root = world
    assert landing(f"{root}/out/secret") == str(base / "outside" / "secret")
    assert landing(f"{root}/dang") == str(base / "outside" / "new")
    assert landing(f"{root}/a/up/outside") == str(base / "outside")
    assert landing(f"{root}/l1") is None
