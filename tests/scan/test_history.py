"""The kept last report and the bounded index of earlier runs."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from portcullis._exceptions import ConfigError
from portcullis.scan import history
from portcullis.scan.model import ScanResult


def _state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return state


def test_save_and_load_last(tmp_path: Path) -> None:
    """The rendered JSON is kept verbatim and loads back as a dict."""
    state = _state(tmp_path)
    assert history.load_last(state) is None
    assert history.previous_run(state) is None
    rendered = json.dumps({"version": 1, "findings": []})
    path = history.save_last(ScanResult(started="2026-11-24T10:00:00Z"), rendered, state)
    assert path == state / "scan" / "last.json"
    assert path.read_text() == rendered + "\n"
    assert history.load_last(state) == {"version": 1, "findings": []}


def test_permissions(tmp_path: Path) -> None:
    """Files are 0600 and the scan directory 0700."""
    state = _state(tmp_path)
    history.save_last(ScanResult(), "{}", state)
    assert stat.S_IMODE((state / "scan").stat().st_mode) == 0o700
    for name in ("last.json", "runs.json"):
        assert stat.S_IMODE((state / "scan" / name).stat().st_mode) == 0o600


def test_previous_run_and_index(tmp_path: Path) -> None:
    """The index records time and counts; previous_run is the latest run's start."""
    state = _state(tmp_path)
    history.save_last(
        ScanResult(started="2026-10-01T08:00:00+00:00", duration_s=1.23456), "{}", state
    )
    history.save_last(ScanResult(started="2026-11-20T09:30:00Z"), "{}", state)
    assert history.previous_run(state) == datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    runs = history.runs(state)
    assert [r["started"] for r in runs] == ["2026-10-01T08:00:00Z", "2026-11-20T09:30:00Z"]
    assert runs[0]["duration_s"] == 1.235
    assert runs[0]["severity"] == {"critical": 0, "high": 0, "medium": 0, "low": 0, "info": 0}


def test_index_is_bounded(tmp_path: Path) -> None:
    """Only the last MAX_RUNS runs are kept."""
    state = _state(tmp_path)
    for i in range(history.MAX_RUNS + 5):
        history.save_last(
            ScanResult(started=f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z"), "{}", state
        )
    runs = history.runs(state)
    assert len(runs) == history.MAX_RUNS
    assert runs[-1]["started"] == "2026-01-01T00:00:54Z"


def test_damaged_index_does_not_stop_a_scan(tmp_path: Path) -> None:
    """A damaged runs.json means no previous run, and the next save starts it afresh."""
    state = _state(tmp_path)
    history.save_last(ScanResult(), "{}", state)
    (state / "scan" / "runs.json").write_text("{broken")
    assert history.previous_run(state) is None
    history.save_last(ScanResult(started="2026-11-24T00:00:00Z"), "{}", state)
    assert len(history.runs(state)) == 1


def test_damaged_last_report_is_an_error(tmp_path: Path) -> None:
    """A damaged last.json is reported with its line, not shown as empty."""
    state = _state(tmp_path)
    history.save_last(ScanResult(), "{}", state)
    (state / "scan" / "last.json").write_text('{\n  "version": 1,,\n}')
    with pytest.raises(history.HistoryError, match=r"last\.json:2:16"):
        history.load_last(state)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_group_writable_directory_is_refused(tmp_path: Path) -> None:
    """The scan directory is trusted by the console, so loose permissions are refused."""
    state = _state(tmp_path)
    history.save_last(ScanResult(), "{}", state)
    os.chmod(state / "scan", 0o777)
    with pytest.raises(ConfigError, match="writable by others"):
        history.save_last(ScanResult(), "{}", state)


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_symlinked_last_report_is_not_followed(tmp_path: Path) -> None:
    """A last.json planted as a symlink is not read through."""
    state = _state(tmp_path)
    history.save_last(ScanResult(), "{}", state)
    target = tmp_path / "elsewhere.json"
    target.write_text("{}")
    (state / "scan" / "last.json").unlink()
    (state / "scan" / "last.json").symlink_to(target)
    with pytest.raises(history.HistoryError, match="cannot read"):
        history.load_last(state)
