"""Fixtures shared by every test directory."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private state directory (``0700``), made ``$PORTCULLIS_HOME`` for the test.

    Short (under /tmp) because the approval queue's AF_UNIX socket paths are limited to about
    107 bytes.
    """
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="pc-"))
    monkeypatch.setenv("PORTCULLIS_HOME", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)
