"""Safe extraction: hostile archives are refused and nothing lands outside the target."""

from __future__ import annotations

import base64
import hashlib
import io
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from portcullis.scan.vet.archive import (
    ArchiveError,
    IntegrityError,
    Limits,
    UnsafeArchive,
    extract_archive,
    verify_integrity,
)


def tar_of(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def zip_of(entries: dict[str, bytes], *, symlink: tuple[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink[0])
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, symlink[1])
    return buf.getvalue()


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, Path]:
    """An empty target inside a parent whose other contents must stay untouched."""
    target = tmp_path / "out"
    target.mkdir()
    (tmp_path / "victim.txt").write_text("original")
    return tmp_path, target


def untouched(parent: Path, target: Path) -> bool:
    outside = {p for p in parent.rglob("*") if not p.is_relative_to(target)}
    return outside == {parent / "victim.txt"} and (
        (parent / "victim.txt").read_text() == "original"
    )


HOSTILE: dict[str, Callable[[], bytes]] = {
    "traversal": lambda: tar_of((entry("package/../../victim.txt"), b"pwned")),
    "absolute": lambda: tar_of((entry("/tmp/pc-vet-absolute.txt"), b"pwned")),
    "symlink-out": lambda: tar_of(
        (entry("package/link", tarfile.SYMTYPE, "../../victim.txt"), None),
        (entry("package/link"), b"pwned"),
    ),
    "symlink-absolute": lambda: tar_of((entry("package/etc", tarfile.SYMTYPE, "/etc"), None)),
    "hardlink-out": lambda: tar_of((entry("package/h", tarfile.LNKTYPE, "../victim.txt"), None)),
    "device": lambda: tar_of((entry("package/null", tarfile.CHRTYPE), None)),
    "fifo": lambda: tar_of((entry("package/pipe", tarfile.FIFOTYPE), None)),
    "zip-traversal": lambda: zip_of({"../victim.txt": b"pwned"}),
    "zip-backslash": lambda: zip_of({"..\\victim.txt": b"pwned"}),
    "zip-symlink-out": lambda: zip_of({}, symlink=("pkg/link", "../../victim.txt")),
    "duplicate": lambda: tar_of((entry("package/a"), b"1"), (entry("package/a"), b"2")),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_archive_is_refused(kind: str, sandbox: tuple[Path, Path]) -> None:
    """Each hostile construction raises UnsafeArchive and writes nothing outside."""
    parent, target = sandbox
    with pytest.raises(UnsafeArchive) as caught:
        extract_archive(HOSTILE[kind](), target)
    assert str(caught.value)
    assert untouched(parent, target)
    assert not Path("/tmp/pc-vet-absolute.txt").exists()


def test_zip_bomb_ratio_is_refused(sandbox: tuple[Path, Path]) -> None:
    """Megabytes of zeros from a few kilobytes trip the ratio cap."""
    parent, target = sandbox
    bomb = zip_of({"pkg/zeros.bin": b"\0" * (30 * 1024 * 1024)})
    assert len(bomb) < 100_000
    with pytest.raises(UnsafeArchive, match="compression ratio"):
        extract_archive(bomb, target)
    assert untouched(parent, target)


def test_tar_bomb_total_size_is_refused(sandbox: tuple[Path, Path]) -> None:
    """An archive unpacking past the size cap is stopped."""
    _, target = sandbox
    data = tar_of((entry("package/big"), b"\0" * 2_000_000))
    with pytest.raises(UnsafeArchive, match=r"size cap|MB"):
        extract_archive(data, target, limits=Limits(total_bytes=1_000_000))


def test_file_count_cap(sandbox: tuple[Path, Path]) -> None:
    """Too many files is refused too."""
    _, target = sandbox
    data = tar_of(*[(entry(f"package/f{i}"), b"x") for i in range(6)])
    with pytest.raises(UnsafeArchive, match="more than 5 files"):
        extract_archive(data, target, limits=Limits(files=5))


def test_internal_links_are_skipped_not_created(sandbox: tuple[Path, Path]) -> None:
    """A link that stays inside is recorded as skipped and never created."""
    _, target = sandbox
    data = tar_of(
        (entry("package/a.js"), b"1"),
        (entry("package/b.js", tarfile.SYMTYPE, "a.js"), None),
        (entry("package/dir/c.js", tarfile.LNKTYPE, "package/a.js"), None),
    )
    out = extract_archive(data, target)
    assert [str(p) for p in out.files] == ["package/a.js"]
    assert len(out.skipped) == 2
    assert not (target / "package" / "b.js").exists()


def test_normal_archives_unpack(sandbox: tuple[Path, Path]) -> None:
    """Ordinary tar.gz and zip archives (type bits left at 0 included) unpack completely."""
    _, target = sandbox
    out = extract_archive(tar_of((entry("./package/index.js"), b"ok")), target)
    assert (target / "package" / "index.js").read_bytes() == b"ok"
    assert [str(p) for p in out.files] == ["package/index.js"]
    zipped = target.parent / "zipped"
    zipped.mkdir()
    out = extract_archive(zip_of({"m/__init__.py": b"", "m-1.dist-info/METADATA": b"x"}), zipped)
    assert len(out.files) == 2


def test_unreadable_archive_is_an_archive_error_not_unsafe(sandbox: tuple[Path, Path]) -> None:
    """Garbage is a plain ArchiveError (a broken download), not a hostile archive."""
    _, target = sandbox
    with pytest.raises(ArchiveError) as caught:
        extract_archive(b"this is not an archive", target)
    assert not isinstance(caught.value, UnsafeArchive)


def test_integrity_checks() -> None:
    """sha512 SRI, sha256 and legacy sha1 digests are checked; a missing digest fails."""
    data = b"package bytes"
    sri = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    assert verify_integrity(data, integrity=sri) == "sha512"
    assert verify_integrity(data, sha256=hashlib.sha256(data).hexdigest()) == "sha256"
    assert verify_integrity(data, shasum=hashlib.sha1(data).hexdigest()) == "sha1"
    with pytest.raises(IntegrityError, match="does not match"):
        verify_integrity(b"other", integrity=sri)
    with pytest.raises(IntegrityError, match="does not match"):
        verify_integrity(b"other", sha256=hashlib.sha256(data).hexdigest())
    with pytest.raises(IntegrityError, match="no digest"):
        verify_integrity(data)


def _gz_pax_bomb(claimed: int) -> bytes:
    """A gzip'd tar whose first (PAX) header claims ``claimed`` bytes of zeros."""
    import gzip

    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = claimed
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9) as gz:
        gz.write(header.tobuf(format=tarfile.USTAR_FORMAT))
        zeros = b"\0" * (1 << 20)
        for _ in range(claimed >> 20):
            gz.write(zeros)
    return buf.getvalue()


def test_pax_header_bomb_is_refused_without_reading_it(sandbox: tuple[Path, Path]) -> None:
    """A PAX header claiming hundreds of MB (a few hundred KB of gzip) is never held in memory."""
    import tracemalloc

    _, target = sandbox
    bomb = _gz_pax_bomb(300 << 20)
    assert len(bomb) < 1_000_000
    tracemalloc.start()
    try:
        with pytest.raises(UnsafeArchive, match=r"compression ratio|MB"):
            extract_archive(bomb, target)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


def test_entry_count_includes_directories(sandbox: tuple[Path, Path]) -> None:
    """Directories and links count toward the cap: a flood of them is refused."""
    _, target = sandbox
    data = tar_of(*[(entry(f"package/d{i}", tarfile.DIRTYPE), None) for i in range(11)])
    with pytest.raises(UnsafeArchive, match="more than 10 entries"):
        extract_archive(data, target, limits=Limits(files=5))


@pytest.mark.parametrize("mode", ["w:bz2", "w:xz", "w"])
def test_other_tar_compressions_unpack(mode: str, sandbox: tuple[Path, Path]) -> None:
    """bzip2, xz and plain tars unpack through the capped stream too."""
    _, target = sandbox
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:  # type: ignore[call-overload]
        info = entry("package/index.js")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"x=1"))
    got = extract_archive(buf.getvalue(), target)
    assert [str(f) for f in got.files] == ["package/index.js"]


def test_zip_entry_flood_is_refused_before_parsing(sandbox: tuple[Path, Path]) -> None:
    """A zip of thousands of empty entries is refused by count, before zipfile reads it."""
    _, target = sandbox
    flood = zip_of({f"pkg/d{i}/": b"" for i in range(25)})
    with pytest.raises(UnsafeArchive, match="more than 10 entries"):
        extract_archive(flood, target, limits=Limits(files=5))
