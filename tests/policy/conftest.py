"""Fixtures for the policy tests: an isolated home, config dir and state dir for every test."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
DESIGN_EXAMPLE = DATA / "design_example.yaml"

WritePolicy = Callable[..., Path]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point HOME, XDG_CONFIG_HOME and PORTCULLIS_HOME into tmp_path; unset PORTCULLIS_POLICY."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("PORTCULLIS_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("PORTCULLIS_POLICY", raising=False)
    return home


@pytest.fixture
def write_policy(tmp_path: Path) -> WritePolicy:
    """Write dedented YAML to a file (default ``policy.yaml`` in tmp_path) and return its path."""

    def write(text: str, name: str = "policy.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """The state directory the isolated environment points at."""
    return tmp_path / "state"
