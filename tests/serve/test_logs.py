"""serve's stderr log: text for people, one JSON object a line for collectors."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from portcullis.serve import logs


@pytest.fixture(autouse=True)
def _text_after() -> Iterator[None]:
    yield
    logs.configure("text")


def test_text_lines_name_the_gateway_and_the_server(capsys: pytest.CaptureFixture[str]) -> None:
    """Text mode keeps the familiar prefixes."""
    logs.configure("text")
    logs.log("listening on http://127.0.0.1:1")
    logs.log("cannot send", server="files")
    logs.server_stderr("files", "ready")
    assert capsys.readouterr().err.splitlines() == [
        "portcullis serve: listening on http://127.0.0.1:1",
        "portcullis serve: [files] cannot send",
        "[server files] ready",
    ]


def test_json_lines_are_objects_with_fields(capsys: pytest.CaptureFixture[str]) -> None:
    """JSON mode writes one parseable object per event, with level, logger and fields."""
    logs.configure("json")
    logs.log("reloaded", level="warning", digest="abc")
    logs.server_stderr("files", 'a "quoted"\nline')
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["msg"] == "reloaded" and first["level"] == "warning"
    assert first["logger"] == "portcullis.serve" and first["digest"] == "abc"
    assert first["ts"].endswith("Z")
    assert second == {**second, "server": "files", "stream": "stderr", "msg": 'a "quoted"\nline'}
