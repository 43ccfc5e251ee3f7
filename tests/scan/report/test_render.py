"""render(): dispatch, errors, and the import cost promise."""

from __future__ import annotations

import subprocess
import sys

import pytest

from portcullis.scan.model import ScanResult
from portcullis.scan.report import FORMATS, render

from .conftest import NOW, RULES, make_result


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_renders(fmt) -> None:
    """Every format produces non-empty text ending in a newline."""
    out = render(make_result(), fmt, rules=RULES, color=False, now=NOW)
    assert out.strip()
    assert out.endswith("\n")


def test_unknown_format() -> None:
    """An unknown format is a ValueError naming the valid ones."""
    with pytest.raises(ValueError, match="text, json, sarif, markdown"):
        render(ScanResult(), "html", rules={})  # type: ignore[arg-type]


def test_rule_missing_from_mapping() -> None:
    """A finding whose rule is not in the mapping still renders in every format."""
    for fmt in FORMATS:
        assert render(make_result(), fmt, rules={}, color=False, now=NOW)


def test_json_and_sarif_do_not_import_rich() -> None:
    """Machine formats stay free of rich (import cost)."""
    code = (
        "import sys\n"
        "from portcullis.scan.model import ScanResult\n"
        "from portcullis.scan.report import render\n"
        "render(ScanResult(), 'json', rules={}); render(ScanResult(), 'sarif', rules={})\n"
        "render(ScanResult(), 'markdown', rules={})\n"
        "assert not [m for m in sys.modules if m == 'rich' or m.startswith('rich.')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
