"""Fixtures shared by every test directory."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def home() -> Iterator[Path]:
    """A short state directory: AF_UNIX socket paths are limited to about 107 bytes."""
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="pc-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
