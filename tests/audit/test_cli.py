"""``portcullis audit verify|tail|query``, end to end through ``python -m portcullis``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from portcullis._state import install_key
from portcullis.audit import AuditLog

from .conftest import lines, sample, set_lines


@pytest.fixture
def default_log(home: Path) -> Path:
    """The default log in the state dir, with ten records written with the install key."""
    path = home / "audit.jsonl"
    with AuditLog(path, install_key(home)) as log:
        for i in range(10):
            log.append(sample(i))
    return path


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portcullis", "audit", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
        check=False,
    )


def test_verify_intact_exits_0(default_log: Path) -> None:
    """Verify on an intact default log exits 0 and says how many records it checked."""
    out = cli("verify")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("OK 10 records")
    assert out.stderr == ""


def test_verify_broken_exits_1_and_names_the_record(default_log: Path) -> None:
    """Verify on a changed record exits 1, naming seq, file and line on stderr."""
    raw = lines(default_log)
    raw[4] = raw[4].replace(b'"decision":"allow"', b'"decision":"deny"')
    set_lines(default_log, raw)
    out = cli("verify")
    assert out.returncode == 1
    assert out.stdout.strip() == "BROKEN at seq 4 (audit.jsonl line 5); 4 records verified"
    assert f"seq 4 ({default_log} line 5)" in out.stderr
    assert "mac does not match" in out.stderr


def test_verify_truncated_exits_1(default_log: Path) -> None:
    """Verify on a log missing its last records exits 1 and names the anchor mismatch."""
    set_lines(default_log, lines(default_log)[:8])
    out = cli("verify")
    assert out.returncode == 1
    assert "truncated" in out.stderr


def test_verify_json_report(default_log: Path) -> None:
    """Verify --json prints the report's fields as one JSON object."""
    out = cli("verify", "--json")
    report = json.loads(out.stdout)
    assert report["ok"] is True
    assert report["records"] == 10
    assert report["first_bad"] is None


def test_verify_missing_log_exits_2(home: Path, tmp_path: Path) -> None:
    """Verify of a log that does not exist exits 2 with a message naming it."""
    out = cli("verify", "--log", str(tmp_path / "nope.jsonl"))
    assert out.returncode == 2
    assert "no audit log" in out.stderr
    assert "nope.jsonl" in out.stderr


def test_verify_with_key_file_from_another_machine(tmp_path: Path, home: Path) -> None:
    """Verify --key-file checks a copied log with the key of the machine that wrote it."""
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    other_key = install_key(other)
    log = tmp_path / "copied" / "audit.jsonl"
    with AuditLog(log, other_key) as writer:
        writer.append(sample(0))
    install_key(home)  # this machine's own, different key
    assert cli("verify", "--log", str(log)).returncode == 1
    out = cli("verify", "--log", str(log), "--key-file", str(other / "install.key"))
    assert out.returncode == 0, out.stderr
    hex_key = tmp_path / "key.hex"
    hex_key.write_text(other_key.hex() + "\n")
    assert cli("verify", "--log", str(log), "--key-file", str(hex_key)).returncode == 0


def test_verify_bad_key_file_exits_2(default_log: Path, tmp_path: Path) -> None:
    """A key file that is not a 32-byte key (or 64 hex digits) exits 2."""
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"short")
    out = cli("verify", "--key-file", str(bad))
    assert out.returncode == 2
    assert "32-byte" in out.stderr


def test_verify_without_install_key_exits_2(tmp_path: Path, home: Path) -> None:
    """Verify with no install key in the state dir exits 2 instead of minting a new key."""
    log = tmp_path / "elsewhere" / "audit.jsonl"
    with AuditLog(log, bytes(32)) as writer:
        writer.append(sample(0))
    out = cli("verify", "--log", str(log))
    assert out.returncode == 2
    assert "--key-file" in out.stderr
    assert not (home / "install.key").exists()


def test_tail_prints_last_records(default_log: Path) -> None:
    """Tail -n 3 prints the last three records as JSON Lines."""
    out = cli("tail", "-n", "3")
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["seq"] for line in out.stdout.splitlines()] == [7, 8, 9]
    assert out.stdout.splitlines()[-1].encode() + b"\n" == lines(default_log)[-1]


def test_tail_negative_n_exits_2(default_log: Path) -> None:
    """Tail with a negative -n is a usage error (exit 2)."""
    out = cli("tail", "-n", "-1")
    assert out.returncode == 2


def test_tail_follow_prints_new_records_and_stops_on_ctrl_c(default_log: Path) -> None:
    """Tail --follow prints new records as they come and exits 130 on SIGINT, quietly."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "portcullis", "audit", "tail", "-n", "1", "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["seq"] == 9
        with AuditLog(default_log, install_key(default_log.parent)) as log:
            log.append(sample(10))
        assert json.loads(proc.stdout.readline())["seq"] == 10
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
        assert proc.stderr is not None
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_query_filters_as_jsonl(default_log: Path) -> None:
    """Query --tool and --decision print only the matching records, one per line."""
    out = cli("query", "--tool", "write_*", "--decision", "deny")
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["seq"] for line in out.stdout.splitlines()] == [0]


def test_query_json_array(default_log: Path) -> None:
    """Query --json prints one JSON array."""
    out = cli("query", "--server", "files", "--json")
    assert [r["seq"] for r in json.loads(out.stdout)] == [1, 3, 5, 7, 9]
    empty = cli("query", "--server", "nothing", "--json")
    assert json.loads(empty.stdout) == []


def test_query_time_window_and_principal(default_log: Path) -> None:
    """Query --since/--until and --principal narrow the records."""
    records = [json.loads(line) for line in lines(default_log)]
    out = cli(
        "query", "--since", records[2]["ts"], "--until", records[5]["ts"], "--principal", "alice"
    )
    assert [json.loads(line)["seq"] for line in out.stdout.splitlines()] == [2, 3, 4]


def test_query_bad_time_exits_2(default_log: Path) -> None:
    """Query with an unparseable --since exits 2 naming the flag."""
    out = cli("query", "--since", "last tuesday")
    assert out.returncode == 2
    assert "--since" in out.stderr


def test_query_reports_skipped_lines(default_log: Path) -> None:
    """Query says on stderr how many unreadable lines it skipped."""
    set_lines(default_log, [*lines(default_log), b"torn"])
    out = cli("query", "--method", "tools/call")
    assert out.returncode == 0
    assert len(out.stdout.splitlines()) == 10
    assert "skipped 1 unreadable line" in out.stderr


def test_audit_without_subcommand_exits_2(home: Path) -> None:
    """A bare ``portcullis audit`` is a usage error."""
    assert cli().returncode == 2


def test_verify_finds_the_log_the_policy_names(home: Path, tmp_path: Path) -> None:
    """Without --log, verify reads the log the policy's audit.path names, as run writes it."""
    elsewhere = tmp_path / "logs" / "gw.jsonl"
    elsewhere.parent.mkdir()
    with AuditLog(elsewhere, install_key(home)) as log:
        log.append(sample(0))
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"version: 1\naudit:\n  path: {elsewhere}\n")
    out = cli("verify", "--policy", str(policy))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("OK 1 records")
    assert cli("verify").returncode == 2  # the state dir's default log does not exist
