"""Version ordering and ranges for npm and PyPI."""

from __future__ import annotations

import pytest

from portcullis.scan.vet.versions import (
    npm_key,
    npm_max_satisfying,
    npm_satisfies,
    pypi_key,
    pypi_max_satisfying,
    pypi_satisfies,
)

NPM = ["0.2.5", "0.3.0", "1.0.0", "1.2.3", "1.9.0", "2.0.0-rc.1", "2.0.0", "2.1.0"]


@pytest.mark.parametrize(
    ("spec", "best"),
    [
        ("^1.2.0", "1.9.0"),
        ("~1.2.0", "1.2.3"),
        ("1.x", "1.9.0"),
        (">=1.0.0 <2.0.0", "1.9.0"),
        ("1.0.0 - 1.9.0", "1.9.0"),
        ("^0.2.1", "0.2.5"),
        ("*", "2.1.0"),
        ("<1.0.0 || >=2.1.0", "2.1.0"),
        ("^3.0.0", None),
        ("not a range!", None),
    ],
)
def test_npm_ranges(spec: str, best: str | None) -> None:
    """The newest version in a range is what npx would run."""
    assert npm_max_satisfying(NPM, spec) == best


def test_npm_prereleases_need_an_explicit_range() -> None:
    """A prerelease only matches a range that names a prerelease of the same version."""
    assert npm_satisfies("2.0.0-rc.1", ">=1.0.0") is False
    assert npm_satisfies("2.0.0-rc.1", ">=2.0.0-rc.0") is True
    assert npm_key("2.0.0-rc.1") < npm_key("2.0.0")  # type: ignore[operator]
    assert npm_key("latest") is None


def test_pypi_ordering_and_specifiers() -> None:
    """PEP 440 order (dev < pre < final < post) and the usual specifiers."""
    order = ["1.0.dev1", "1.0a1", "1.0rc1", "1.0", "1.0.post1", "1.1"]
    assert sorted(reversed(order), key=lambda v: pypi_key(v) or ()) == order
    assert pypi_key("1.0") == pypi_key("1.0.0")
    releases = ["1.0", "1.9", "2.0.dev1", "2.0", "2.1a1"]
    assert pypi_max_satisfying(releases, ">=1.0,<2") == "1.9"
    assert pypi_max_satisfying(releases, "~=1.0") == "1.9"
    assert pypi_max_satisfying(releases, "==1.*") == "1.9"
    assert pypi_max_satisfying(releases, "!=2.0") == "1.9"
    assert pypi_max_satisfying(releases, ">1") == "2.0"
    assert pypi_satisfies("1.0", "bogus") is None
