"""Check a downloaded package archive against the registry's digest and unpack it safely.

npm tarballs, sdists (``.tar.gz``) and wheels (``.zip``) are unpacked into a fresh directory.
Anything that could write outside it is refused outright: absolute names, ``..``
components, links that point out, devices and FIFOs. Links that stay inside are skipped
rather than created, so no later entry can be written through one. Total size, file count
and compression ratio are capped against decompression bombs.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import hashlib
import io
import lzma
import os
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

__all__ = [
    "ArchiveError",
    "Extracted",
    "IntegrityError",
    "Limits",
    "UnsafeArchive",
    "extract_archive",
    "verify_integrity",
]

_CHUNK = 1 << 16


class ArchiveError(Exception):
    """The archive could not be unpacked; nothing outside the target was written."""


class UnsafeArchive(ArchiveError):
    """The archive tries to escape the target or is a decompression bomb: hostile."""


class IntegrityError(Exception):
    """The download does not match the digest the registry published."""


@dataclass(frozen=True)
class Limits:
    """Caps on what one archive may unpack to."""

    total_bytes: int = 200 * 1024 * 1024
    files: int = 20_000
    ratio: int = 200
    """Unpacked bytes per archive byte; text compresses about 5-10x, bombs 1000x and more."""
    ratio_floor: int = 10 * 1024 * 1024
    """Below this many unpacked bytes the ratio is not checked (tiny files compress well)."""


@dataclass
class Extracted:
    """What was unpacked: files relative to ``root``, and links skipped (never created)."""

    root: Path
    files: list[PurePosixPath] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def verify_integrity(
    data: bytes,
    *,
    integrity: str | None = None,
    sha256: str | None = None,
    shasum: str | None = None,
) -> str:
    """Check ``data`` against an SRI ``integrity`` string, a sha256 or an npm sha1 ``shasum``.

    The strongest digest offered is the one checked; with none offered the download cannot
    be trusted, which is an error too. Returns the algorithm used.
    """
    if integrity:
        offered: dict[str, list[str]] = {}
        for token in integrity.split():
            alg, _, value = token.partition("-")
            offered.setdefault(alg.lower(), []).append(value.split("?")[0])
        for alg in ("sha512", "sha384", "sha256"):
            if alg in offered:
                digest = base64.b64encode(hashlib.new(alg, data).digest()).decode()
                if digest not in offered[alg]:
                    raise IntegrityError(
                        f"{alg} digest {digest[:16]}… does not match the "
                        f"registry's {offered[alg][0][:16]}…"
                    )
                return alg
    if sha256:
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256.lower():
            raise IntegrityError(
                f"sha256 {digest[:16]}… does not match the registry's {sha256[:16]}…"
            )
        return "sha256"
    if shasum:
        # npm's legacy sha1: weak, but what old versions publish
        digest = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        if digest != shasum.lower():
            raise IntegrityError(
                f"sha1 {digest[:16]}… does not match the registry's {shasum[:16]}…"
            )
        return "sha1"
    raise IntegrityError("the registry published no digest to check the download against")


def _safe_name(name: str) -> PurePosixPath:
    """The entry name as a relative path, or :class:`ArchiveError` if it could escape."""
    if "\x00" in name:
        raise UnsafeArchive(f"entry {name!r} has a NUL byte in its name")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise UnsafeArchive(f"entry {name!r} has an absolute path")
    parts = [p for p in unified.split("/") if p not in {"", "."}]
    if ".." in parts:
        raise UnsafeArchive(f"entry {name!r} climbs out with '..'")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def _link_escapes(entry: PurePosixPath, target: str, *, hard: bool) -> bool:
    """Whether a link at ``entry`` pointing to ``target`` would leave the archive root."""
    unified = target.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        return True
    # symlinks resolve from their own directory, hardlinks from the archive root
    base = [] if hard else list(entry.parent.parts)
    for part in unified.split("/"):
        if part in {"", "."}:
            continue
        if part == "..":
            if not base:
                return True
            base.pop()
        else:
            base.append(part)
    return False


class _Writer:
    """Writes entries under ``root`` with the running totals checked."""

    def __init__(self, root: Path, archive_size: int, limits: Limits) -> None:
        self.root = root
        self.real = root.resolve()
        self.archive_size = max(archive_size, 1)
        self.limits = limits
        self.total = 0
        self.out = Extracted(root)

    def _path(self, rel: PurePosixPath) -> Path:
        path = self.root.joinpath(*rel.parts)
        if not path.resolve().is_relative_to(self.real):  # belt and braces after _safe_name
            raise UnsafeArchive(f"entry {rel} resolves outside the target directory")
        return path

    def directory(self, rel: PurePosixPath) -> None:
        self._path(rel).mkdir(mode=0o700, parents=True, exist_ok=True)

    def file(self, rel: PurePosixPath, stream: IO[bytes]) -> None:
        if len(self.out.files) >= self.limits.files:
            raise UnsafeArchive(f"more than {self.limits.files} files")
        path = self._path(rel)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError as exc:
            raise UnsafeArchive(f"entry {rel} appears twice") from exc
        with os.fdopen(fd, "wb") as fh:
            while chunk := stream.read(_CHUNK):
                self.total += len(chunk)
                self._check()
                fh.write(chunk)
        self.out.files.append(rel)

    def _check(self) -> None:
        if self.total > self.limits.total_bytes:
            raise UnsafeArchive(f"unpacks to more than {self.limits.total_bytes // 2**20} MB")
        if self.total > self.limits.ratio_floor and (
            self.total / self.archive_size > self.limits.ratio
        ):
            raise UnsafeArchive(
                f"compression ratio over {self.limits.ratio}:1 (a decompression bomb)"
            )


# Tar headers (512 bytes each, PAX and GNU long names) on top of the file data a tar stream
# may decompress to.
_HEADER_ALLOWANCE = 64 * 1024 * 1024


class _Capped(io.RawIOBase):
    """A decompressed stream that refuses to yield more than a cap (or past the ratio).

    tarfile reads a PAX or GNU long-name header's whole claimed size into memory before any
    entry is seen: a few KB of gzip could otherwise make it hold gigabytes.
    """

    def __init__(
        self, inner: IO[bytes] | gzip.GzipFile, cap: int, archive_size: int, limits: Limits
    ) -> None:
        self._inner = inner
        self._cap = cap
        self._archive_size = max(archive_size, 1)
        self._limits = limits
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        chunk = self._inner.read(min(len(view), _CHUNK))
        self.total += len(chunk)
        if self.total > self._cap:
            raise UnsafeArchive(f"unpacks to more than {self._cap // 2**20} MB of tar data")
        if self.total > self._limits.ratio_floor and (
            self.total / self._archive_size > self._limits.ratio
        ):
            raise UnsafeArchive(
                f"compression ratio over {self._limits.ratio}:1 (a decompression bomb)"
            )
        view[: len(chunk)] = chunk
        return len(chunk)


def _decompressed(data: bytes) -> IO[bytes] | gzip.GzipFile:
    """The tar stream inside ``data`` (gzip, bzip2, xz or none), read lazily."""
    raw = io.BytesIO(data)
    if data[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if data[:3] == b"BZh":
        return bz2.BZ2File(raw, mode="rb")
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(raw, mode="rb")
    return raw


def _extract_tar(data: bytes, writer: _Writer) -> None:
    limits = writer.limits
    stream = _Capped(_decompressed(data), limits.total_bytes + _HEADER_ALLOWANCE, len(data), limits)
    entries = 0
    try:
        # Stream mode ("r|"): entries are read once, in order, through the capped stream.
        with tarfile.open(fileobj=io.BufferedReader(stream), mode="r|") as tar:
            for member in tar:
                entries += 1
                if entries > 2 * limits.files:  # directories and links count too
                    raise UnsafeArchive(f"more than {2 * limits.files} entries")
                rel = _safe_name(member.name)
                if member.issym() or member.islnk():
                    if _link_escapes(rel, member.linkname, hard=member.islnk()):
                        kind = "hardlink" if member.islnk() else "symlink"
                        raise UnsafeArchive(
                            f"{kind} {member.name!r} points outside the archive "
                            f"({member.linkname!r})"
                        )
                    writer.out.skipped.append(f"{member.name} -> {member.linkname}")
                elif member.isdir():
                    writer.directory(rel)
                elif member.isfile():
                    if member.size > writer.limits.total_bytes - writer.total:
                        raise UnsafeArchive(
                            f"entry {member.name!r} claims {member.size} bytes, over the size cap"
                        )
                    content = tar.extractfile(member)
                    if content is None:
                        raise ArchiveError(f"entry {member.name!r} cannot be read")
                    writer.file(rel, content)
                else:
                    kind = (
                        "device"
                        if member.ischr() or member.isblk()
                        else "FIFO"
                        if member.isfifo()
                        else "special file"
                    )
                    raise UnsafeArchive(f"entry {member.name!r} is a {kind}")
    except (tarfile.TarError, EOFError, OSError, ValueError, lzma.LZMAError, zlib.error) as exc:
        if isinstance(exc, ArchiveError):
            raise
        raise ArchiveError(f"not a readable tar archive: {exc}") from exc


def _extract_zip(data: bytes, writer: _Writer) -> None:
    # zipfile builds an object per central-directory entry before any is checked: a 100 MB
    # archive of empty entries would take gigabytes. Count the record signatures first
    # (an overcount only refuses sooner).
    entries = data.count(b"PK\x01\x02")
    if entries > 2 * writer.limits.files:
        raise UnsafeArchive(f"more than {2 * writer.limits.files} entries")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                rel = _safe_name(info.filename)
                mode = info.external_attr >> 16
                if info.flag_bits & 0x1:
                    raise ArchiveError(f"entry {info.filename!r} is encrypted")
                if stat.S_ISLNK(mode):
                    with zf.open(info) as link:
                        target = link.read(4096).decode("utf-8", "replace")
                    if _link_escapes(rel, target, hard=False):
                        raise UnsafeArchive(
                            f"symlink {info.filename!r} points outside the archive ({target!r})"
                        )
                    writer.out.skipped.append(f"{info.filename} -> {target}")
                elif info.is_dir():
                    writer.directory(rel)
                elif stat.S_IFMT(mode) and not stat.S_ISREG(mode):
                    # many writers leave the type bits at 0 for plain files; only a stated
                    # device, FIFO or socket is refused
                    raise UnsafeArchive(f"entry {info.filename!r} is a special file")
                else:
                    if info.file_size > writer.limits.total_bytes - writer.total:
                        raise UnsafeArchive(
                            f"entry {info.filename!r} claims {info.file_size} "
                            "bytes, over the size cap"
                        )
                    with zf.open(info) as stream:
                        writer.file(rel, stream)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        OSError,
        ValueError,
        NotImplementedError,
    ) as exc:
        if isinstance(exc, ArchiveError):
            raise
        raise ArchiveError(f"not a readable zip archive: {exc}") from exc


def extract_archive(data: bytes, target: Path, *, limits: Limits | None = None) -> Extracted:
    """Unpack a tar, tar.gz or zip archive into the empty directory ``target``.

    Raises :class:`ArchiveError` on the first unsafe entry; the caller discards ``target``
    (partly written, but only inside it).
    """
    if any(target.iterdir()):
        raise ArchiveError(f"{target} is not empty")
    writer = _Writer(target, len(data), limits or Limits())
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        _extract_zip(data, writer)
    else:
        _extract_tar(data, writer)
    return writer.out
