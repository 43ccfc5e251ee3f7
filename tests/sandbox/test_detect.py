"""Whether bubblewrap can run here, and the reason given when it cannot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from portcullis.sandbox import detect


def test_missing_bwrap_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """No bwrap on the PATH: the reason says how to install it."""
    monkeypatch.setenv("PATH", "/nonexistent")
    why = detect.unavailable()
    assert why is not None
    assert "apt-get install bubblewrap" in why


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_probe_result_is_cached_per_boot_and_binary(tmp_path: Path) -> None:
    """The probe runs once; the answer is kept in the state directory."""
    assert detect.unavailable(tmp_path) is None
    cache = tmp_path / "sandbox-probe.json"
    assert cache.exists()
    text = cache.read_text()
    cache.write_text(text.replace('"unavailable": ""', '"unavailable": "cached reason"'))
    assert detect.unavailable(tmp_path) == "cached reason"
