"""Precision and recall on the labelled poisoning set (tests/detect/data/poisoning.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path

from portcullis.detect.findings import SEVERITIES
from portcullis.detect.injection import scan_injection

DATA = Path(__file__).parent / "data" / "poisoning.jsonl"


def _rows() -> list[dict[str, str]]:
    rows = [json.loads(line) for line in DATA.read_text("utf-8").splitlines() if line.strip()]
    return [r for r in rows if "label" in r]


def test_set_is_large_enough_and_well_formed():
    """At least 60 malicious and 60 clean entries, each with text, where, label and source."""
    rows = _rows()
    assert sum(r["label"] == "malicious" for r in rows) >= 60
    assert sum(r["label"] == "clean" for r in rows) >= 60
    assert all({"text", "where", "label", "source"} <= r.keys() for r in rows)


def test_precision_and_recall_floors():
    """Any finding at medium or above counts as a detection; floors hold on the set."""
    tp = fp = fn = 0
    for r in _rows():
        hit = any(
            SEVERITIES.index(f.severity) >= SEVERITIES.index("medium")
            for f in scan_injection(r["text"], where=r["where"])
        )
        if r["label"] == "malicious":
            tp += hit
            fn += not hit
        else:
            fp += hit
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    print(f"poisoning set: precision {precision:.3f} recall {recall:.3f} (tp={tp} fp={fp} fn={fn})")
    assert recall >= 0.95
    assert precision >= 0.95
