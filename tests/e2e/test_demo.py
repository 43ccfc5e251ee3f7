"""``portcullis demo`` end to end, with the real filesystem server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SERVERS = Path(__file__).resolve().parents[1] / "servers"

pytestmark = pytest.mark.e2e


def test_demo_shows_filtered_list_refusal_and_verified_audit(tmp_path: Path) -> None:
    """The demo lists filtered tools, reads a file, is refused a write, and verifies its audit."""
    if not (SERVERS / "node_modules" / "@modelcontextprotocol" / "server-filesystem").is_dir():
        pytest.fail("server-filesystem is not installed: run `npm ci --prefix tests/servers`")
    # Run from tests/servers so that npx finds the pinned server there instead of downloading it.
    env = dict(os.environ, PORTCULLIS_HOME=str(tmp_path / "home"))
    done = subprocess.run(
        [sys.executable, "-m", "portcullis", "demo"],
        cwd=SERVERS,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "write_file" not in out.split("2. read_text_file")[0]
    assert "may be read" in out
    assert "is outside the allowed roots" in out
    assert "aws_access_key_id = [REDACTED:aws-access-key-id]" in out
    assert 'tool "write_file" matches the deny pattern "write_*"' in out
    assert "tools.deny" in out
    assert "the head matches the anchor" in out
    assert out.rstrip().endswith("Demo complete.")
    # The demo keeps its state in its own temporary directory, not in the user's.
    assert not (tmp_path / "home").exists()
