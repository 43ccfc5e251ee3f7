"""The wrap and unwrap commands: dry run, backup, confirmation, races, exit codes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from portcullis.cli.main import main
from portcullis.wrap import ChangedOnDisk, apply_plan, plan_wrap
from portcullis.wrap import command as command_module
from portcullis.wrap.command import Request, run_wrap
from tests.wrap.conftest import CONFIGS, load, options, write_config


@pytest.fixture
def env(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME, config dir and state dir; the current directory is a project."""
    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.setenv("HOME", str(user))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(user / ".config"))
    monkeypatch.delenv("PORTCULLIS_POLICY", raising=False)
    monkeypatch.delenv("APPDATA", raising=False)
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    return user


def policy_file(user: Path) -> Path:
    """Where wrap writes the policy by default."""
    return user / ".config" / "portcullis" / "policy.yaml"


def test_dry_run_writes_nothing(
    tmp_path: Path, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run shows both diffs and leaves every file as it was."""
    path = write_config(tmp_path, "claude-desktop")
    original = path.read_text()
    assert main(["wrap", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"+++ {path} (new)" in out
    assert f"+++ {policy_file(env)} (new)" in out
    assert "dry run: nothing written" in out
    assert path.read_text() == original
    assert not policy_file(env).exists()
    assert list(path.parent.iterdir()) == [path]


def test_wrap_writes_with_a_backup(
    tmp_path: Path, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--yes writes the file (same mode), a 0600 backup of the original, and a valid policy."""
    path = write_config(tmp_path, "claude-desktop")
    path.chmod(0o640)
    original = path.read_text()
    assert main(["wrap", str(path), "--yes"]) == 0
    backups = list(path.parent.glob("claude_desktop_config.json.portcullis-backup-*"))
    assert len(backups) == 1
    assert backups[0].read_text() == original
    assert stat.S_IMODE(backups[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.read_text() != original
    assert "backup:" in capsys.readouterr().out
    assert main(["policy", "validate", str(policy_file(env))]) == 0


def test_nothing_to_wrap_exits_1(tmp_path: Path, env: Path) -> None:
    """A second wrap finds every server wrapped already."""
    path = write_config(tmp_path, "codex")
    assert main(["wrap", str(path), "--yes"]) == 0
    assert main(["wrap", str(path), "--yes"]) == 1


def test_unwrap_restores_and_keeps_the_policy(
    tmp_path: Path, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unwrap gives back the original file and leaves the policy alone, saying so."""
    path = write_config(tmp_path, "goose")
    original = path.read_text()
    assert main(["wrap", str(path), "--yes"]) == 0
    policy = policy_file(env).read_text()
    capsys.readouterr()
    assert main(["unwrap", str(path), "--yes"]) == 0
    assert path.read_text() == original
    assert policy_file(env).read_text() == policy
    assert "the policy file is not changed" in capsys.readouterr().out
    assert main(["unwrap", str(path), "--yes"]) == 1


def test_a_file_changed_before_writing_is_refused(tmp_path: Path) -> None:
    """If the client wrote the file after it was read, nothing is written."""
    path = write_config(tmp_path, "claude-desktop")
    plan = plan_wrap([load(path)], options(tmp_path))
    path.write_text(path.read_text().replace('"X": "1"', '"X": "2"'))
    edited = path.read_text()
    with pytest.raises(ChangedOnDisk):
        apply_plan(plan)
    assert path.read_text() == edited
    assert not (tmp_path / "policy.yaml").exists()
    assert list(path.parent.iterdir()) == [path]


def test_a_race_is_exit_1(
    tmp_path: Path, env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command reports the refusal and exits 1."""
    path = write_config(tmp_path, "claude-desktop")

    def edit_then_agree(question: str) -> bool:
        path.write_text(path.read_text() + " ")
        return True

    monkeypatch.setattr(command_module, "_interactive", lambda: True)
    assert run_wrap(Request(target=str(path)), ask=edit_then_agree) == 1
    assert "changed since it was read" in capsys.readouterr().err


def test_declining_the_prompt_writes_nothing(
    tmp_path: Path, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal wrap asks first; no means nothing is written (exit 1)."""
    path = write_config(tmp_path, "claude-desktop")
    original = path.read_text()
    monkeypatch.setattr(command_module, "_interactive", lambda: True)
    assert run_wrap(Request(target=str(path)), ask=lambda q: False) == 1
    assert path.read_text() == original
    assert not policy_file(env).exists()


def test_a_broken_file_is_exit_2_with_its_line(
    tmp_path: Path, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that does not parse is an error naming the line."""
    path = tmp_path / ".cursor" / "mcp.json"
    path.parent.mkdir()
    path.write_text('{\n  "mcpServers": {\n    "a": {"command": "x",,}\n  }\n}\n')
    assert main(["wrap", str(path)]) == 2
    assert "line 3" in capsys.readouterr().err


def test_an_invalid_policy_means_nothing_written(
    tmp_path: Path, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """When the merged policy does not validate, exit 2 and write nothing."""
    path = write_config(tmp_path, "claude-desktop")
    original = path.read_text()
    bad = tmp_path / "bad-policy.yaml"
    bad.write_text("version: 1\ndefaults:\n  tols: {default: allow}\n")
    assert main(["wrap", str(path), "--yes", "--policy", str(bad)]) == 2
    assert "does not validate" in capsys.readouterr().err
    assert path.read_text() == original
    assert bad.read_text() == "version: 1\ndefaults:\n  tols: {default: allow}\n"


def test_a_client_id_wraps_its_files(tmp_path: Path, env: Path) -> None:
    """`wrap cursor` finds the user's Cursor file and wraps it; other clients are untouched."""
    _, text, _ = CONFIGS["jsonc"]
    cursor = env / ".cursor" / "mcp.json"
    cursor.parent.mkdir()
    cursor.write_text(text)
    other = write_config(env, "codex")
    before = other.read_text()
    assert main(["wrap", "cursor", "--yes"]) == 0
    assert "portcullis" in cursor.read_text()
    assert other.read_text() == before


def test_an_unknown_client_is_exit_2(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A word that is neither a client nor a file is an error listing the clients."""
    assert main(["wrap", "cursr"]) == 2
    assert "claude-desktop" in capsys.readouterr().err


def test_only_named_servers(tmp_path: Path, env: Path) -> None:
    """--server limits the change to the named entries."""
    path = write_config(tmp_path, "zed")
    assert main(["wrap", str(path), "--server", "new", "--yes"]) == 0
    text = path.read_text()
    assert '"fs": {"command": {"path": "npx"' in text
    assert '"new": {"source": "custom", "command": "/' in text


def test_a_broken_client_file_is_exit_2(
    tmp_path: Path, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wrap cursor` with a broken Cursor file is an error naming the file and line."""
    cursor = env / ".cursor" / "mcp.json"
    cursor.parent.mkdir()
    cursor.write_text('{\n  "mcpServers": [\n')
    assert main(["wrap", "cursor", "--dry-run"]) == 2
    assert f"{cursor}:" in capsys.readouterr().err


def test_without_a_target_broken_files_are_skipped(
    tmp_path: Path, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Plain `wrap` notes a broken file and wraps the good ones."""
    cursor = env / ".cursor" / "mcp.json"
    cursor.parent.mkdir()
    cursor.write_text('{\n  "mcpServers": [\n')
    codex = write_config(env, "codex")
    assert main(["wrap", "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert f"{cursor}:" in captured.err and "skipped" in captured.err
    assert f"+++ {codex} (new)" in captured.out


def test_the_diff_never_shows_a_secret_that_stays_in_the_file(
    tmp_path: Path, env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a keyring the token stays in the client file, but the printed diff masks it."""
    token = "ghp_" + "Zq8mR2vX7kP4nW9tY3bL6cJ1hF5dG0sA8eQ2"
    path = tmp_path / "claude_desktop_config.json"
    path.write_text(
        '{"mcpServers": {"gh": {"command": "npx", "args": ["-y", "pkg@1.0.0"],\n'
        f'  "env": {{"GITHUB_TOKEN": "{token}"}}}}}}}}\n'
    )
    monkeypatch.setattr(command_module, "keyring_usable", lambda: False, raising=False)
    assert main(["wrap", str(path), "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "GITHUB_TOKEN" in captured.out
    assert token not in captured.out + captured.err
    assert "[REDACTED:secret]" in captured.out


def test_control_characters_never_reach_the_terminal(
    tmp_path: Path, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name or comment holding terminal escapes cannot rewrite the summary before the prompt."""
    path = tmp_path / ".cursor" / "mcp.json"
    path.parent.mkdir()
    path.write_text(
        '{"mcpServers": {"\\u001b[2K\\u001b[1Aok\\r": {\n'
        '  "command": "x", // \x1b]0;owned\x07\n'
        '  "args": ["a"]}}}\n'
    )
    assert main(["wrap", str(path), "--dry-run"]) == 0
    captured = capsys.readouterr()
    for ch in ("\x1b", "\x07", "\r"):
        assert ch not in captured.out + captured.err
    assert "\\x1b[2K" in captured.out


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_a_file_keeps_its_owner(tmp_path: Path) -> None:
    """Run as root (sudo), the rewritten file and its backup stay owned by the user."""
    path = write_config(tmp_path, "claude-desktop")
    os.chown(path, 4242, 4343)
    backups = apply_plan(plan_wrap([load(path)], options(tmp_path)))
    for written in (path, *backups):
        assert (written.stat().st_uid, written.stat().st_gid) == (4242, 4343)


def test_a_read_only_file_is_refused_before_anything_is_written(
    tmp_path: Path, env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only client file is not replaced, and the policy is not written either (exit 2)."""
    path = write_config(tmp_path, "claude-desktop")
    original = path.read_text()
    real_access = os.access
    # Faked: as root (CI containers) every file counts as writable.
    monkeypatch.setattr(
        os, "access", lambda p, mode: Path(p) != path.resolve() and real_access(p, mode)
    )
    assert main(["wrap", str(path), "--yes"]) == 2
    assert "read-only" in capsys.readouterr().err
    assert path.read_text() == original
    assert not policy_file(env).exists()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_a_client_write_during_the_slow_write_is_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is compared again after the temporary file is synced, right before the rename."""
    path = write_config(tmp_path, "claude-desktop")
    plan = plan_wrap([load(path)], options(tmp_path))
    real_fsync = os.fsync
    edited = path.read_text().replace('"X": "1"', '"X": "2"')

    def client_writes(fd: int) -> None:
        real_fsync(fd)
        # The client saves while wrap syncs the temporary file of the client's own file.
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(path.parent / f".{path.name}.")):
            path.write_text(edited)

    monkeypatch.setattr(os, "fsync", client_writes)
    with pytest.raises(ChangedOnDisk):
        apply_plan(plan)
    assert path.read_text() == edited
    assert not list(path.parent.glob(".*.tmp"))


def test_a_server_name_that_matches_nothing_is_reported(
    tmp_path: Path, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--server` with a typo says so instead of a bare "nothing to wrap"."""
    path = write_config(tmp_path, "claude-desktop")
    assert main(["wrap", str(path), "--server", "gihtub", "--dry-run"]) == 1
    assert "no server named 'gihtub'" in capsys.readouterr().err


def test_a_portcullis_found_through_a_relative_path_entry_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With "." on PATH, a `portcullis` in the current directory is never written as command."""
    import sys

    from portcullis.wrap import portcullis_command

    python = tmp_path / "py" / "bin" / "python3"
    python.parent.mkdir(parents=True)
    python.write_text("")
    repo = tmp_path / "repo"
    repo.mkdir()
    planted = repo / "portcullis"
    planted.write_text("#!/bin/sh\n")
    planted.chmod(0o755)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PATH", ".")
    monkeypatch.setattr(sys, "executable", str(python))
    assert portcullis_command() == [str(python), "-m", "portcullis"]


def test_a_broken_policy_file_is_exit_2_not_a_traceback(
    tmp_path: Path, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A policy file that is not valid YAML is reported (exit 2) and nothing is written."""
    path = write_config(tmp_path, "claude-desktop")
    original = path.read_text()
    policy = policy_file(env)
    policy.parent.mkdir(parents=True)
    policy.write_text("version: 1\nservers: [\n")
    assert main(["wrap", str(path), "--yes"]) == 2
    assert "does not validate" in capsys.readouterr().err
    assert path.read_text() == original


def test_a_symlinked_file_is_written_through_its_link(tmp_path: Path) -> None:
    """A dotfile manager's link stays a link; its target is rewritten (mode kept), backed up."""
    real = write_config(tmp_path / "dotfiles", "claude-desktop")
    real.chmod(0o640)
    link = tmp_path / "home" / "claude_desktop_config.json"
    link.parent.mkdir()
    link.symlink_to(real)
    original = real.read_text()
    backups = apply_plan(plan_wrap([load(link)], options(tmp_path)))
    assert link.is_symlink() and link.resolve() == real
    assert real.read_text() != original
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert [b.parent for b in backups] == [real.parent]
    assert backups[0].read_text() == original
    assert list(link.parent.iterdir()) == [link]


def test_a_bom_and_crlf_survive_wrap_and_unwrap_on_disk(tmp_path: Path) -> None:
    """A UTF-8 BOM is written back, and CRLF endings come back byte for byte after unwrap."""
    from portcullis.wrap import plan_unwrap

    path = write_config(tmp_path, "jsonc")
    original = b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n")
    path.write_bytes(original)
    apply_plan(plan_wrap([load(path)], options(tmp_path)))
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    apply_plan(plan_unwrap([load(path)]))
    assert path.read_bytes() == original


def test_a_full_disk_leaves_the_file_and_no_temporary_file(
    tmp_path: Path, env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A write that fails (ENOSPC) is exit 2; the original stays, the temporary file is gone."""
    import errno

    path = write_config(tmp_path, "claude-desktop")
    original = path.read_text()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert main(["wrap", str(path), "--yes"]) == 2
    assert "No space left" in capsys.readouterr().err
    assert path.read_text() == original
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert not list(policy_file(env).parent.glob("*.tmp"))


def test_an_error_naming_a_file_shows_no_terminal_escapes(
    tmp_path: Path, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken file whose name holds an escape sequence is reported with it escaped."""
    path = tmp_path / "evil\x1b[2J.json"
    path.write_text('{"mcpServers": {')
    assert main(["wrap", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b[2J" in err


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_a_policy_file_created_meanwhile_is_not_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A policy file that appears while wrap writes its new one is kept, and wrap refuses."""
    path = write_config(tmp_path, "claude-desktop")
    plan = plan_wrap([load(path)], options(tmp_path))
    policy = tmp_path / "policy.yaml"
    real_fsync = os.fsync

    def someone_creates_it(fd: int) -> None:
        real_fsync(fd)
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path / ".policy.yaml.")):
            policy.write_text("version: 1\n# mine\n")

    monkeypatch.setattr(os, "fsync", someone_creates_it)
    with pytest.raises(ChangedOnDisk):
        apply_plan(plan)
    assert policy.read_text() == "version: 1\n# mine\n"
