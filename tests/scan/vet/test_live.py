"""``vet_packages`` against the real registries this machine's npm and pip configuration name.

Skipped, with the reason printed, when the registries cannot be reached (probed once per
session). Only a handful of requests are made.
"""

from __future__ import annotations

from pathlib import Path

from portcullis.scan.vet import vet_packages

from .conftest import FS, Live, make_server, npm_ref, pypi_ref


def test_real_official_server_exists(live: Live, cache_dir: Path) -> None:
    """The official filesystem server exists; nothing about it is an error."""
    found, errors = vet_packages(
        [(make_server(), npm_ref(FS))], offline=False, deep=False, cache_dir=cache_dir
    )
    assert errors == []
    rules = {f.rule for f in found}
    assert "package-not-found" not in rules
    assert "package-typosquat" not in rules


def test_real_missing_package(live: Live, cache_dir: Path) -> None:
    """A random name that nobody published is package-not-found."""
    name = "portcullis-no-such-package-7f3a9c1e"
    found, errors = vet_packages(
        [(make_server(), npm_ref(name)), (make_server("py"), pypi_ref(name))],
        offline=False,
        deep=False,
        cache_dir=cache_dir,
    )
    assert errors == []
    assert [f.rule for f in found] == ["package-not-found", "package-not-found"]


def test_real_vulnerable_pypi_release(live: Live, cache_dir: Path) -> None:
    """Pycrypto 2.6.1 is listed with vulnerabilities by the index's JSON API."""
    found, errors = vet_packages(
        [(make_server(), pypi_ref("pycrypto", "2.6.1"))],
        offline=False,
        deep=False,
        cache_dir=cache_dir,
    )
    assert errors == []
    [vuln] = [f for f in found if f.rule == "package-vulnerable"]
    assert "CVE-2013-7459" in vuln.message


def test_real_deep_scan(live: Live, cache_dir: Path) -> None:
    """--deep downloads, verifies, unpacks and scans a small real package cleanly."""
    refs = [
        (make_server(), npm_ref(FS, "2026.8.31")),
        (make_server("time"), pypi_ref("mcp-server-time", "2026.10.19")),
    ]
    found, errors = vet_packages(refs, offline=False, deep=True, cache_dir=cache_dir)
    assert errors == []
    bad = {"package-dangerous-code", "package-integrity-mismatch", "package-unsafe-archive"}
    assert not bad & {f.rule for f in found}
