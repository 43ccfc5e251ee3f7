"""Plaintext secrets leave the client file for the keyring, and come back only when asked.

The keyring is :class:`~tests.wrap.conftest.MemoryKeyring`: a fake at the OS-keychain boundary,
because no OS keychain (Keychain, Secret Service, Credential Locker) runs in CI.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from portcullis._exceptions import ConfigError
from portcullis.policy.load import load_policy
from portcullis.policy.refs import resolve_env
from portcullis.wrap import (
    apply_plan,
    keyring_usable,
    parse_wrapped,
    plan_unwrap,
    plan_wrap,
    policy_refs,
)
from portcullis.wrap.plan import is_secret
from tests.wrap.conftest import MemoryKeyring, load, options

STRIPE = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
PG = "postgres://app:S3cr3tPassw0rd@db.internal:5432/app"
TOKEN = "Zq8vN3xL0pR7sT2u"


def config(tmp: Path) -> Path:
    """A Claude Desktop file whose server has two detected secrets, one by name, one plain."""
    path = tmp / "Claude" / "claude_desktop_config.json"
    path.parent.mkdir(parents=True)
    entry = {
        "command": "npx",
        "args": ["-y", "some-server"],
        "env": {"PAYMENTS": STRIPE, "DATABASE_URL": PG, "GH_TOKEN": TOKEN, "LOG_LEVEL": "debug"},
    }
    path.write_text(json.dumps({"mcpServers": {"pay": entry}}, indent=2) + "\n")
    return path


def wrap(tmp: Path, keyring_ok: bool) -> tuple[Path, str, str]:
    """Wrap and write; return the file, its text and the policy text."""
    path = config(tmp)
    plan = plan_wrap([load(path)], options(tmp, keyring_ok=keyring_ok))
    apply_plan(plan)
    return path, path.read_text(), (tmp / "policy.yaml").read_text()


def test_the_memory_keyring_counts_as_usable(memory_keyring: MemoryKeyring) -> None:
    """A real backend is usable (the fail and null backends are not)."""
    assert keyring_usable()


def test_secrets_move_to_the_keyring(tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    """Secrets are stored in the keyring and appear in neither the client file nor the policy."""
    _, text, policy = wrap(tmp_path, keyring_ok=True)
    for secret in (STRIPE, PG, TOKEN):
        assert secret not in text
        assert secret not in policy
    assert memory_keyring.store == {
        ("portcullis/pay", "PAYMENTS"): STRIPE,
        ("portcullis/pay", "DATABASE_URL"): PG,
        ("portcullis/pay", "GH_TOKEN"): TOKEN,
    }
    assert '"LOG_LEVEL": "debug"' in text


def test_the_server_still_gets_its_secrets(tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    """The policy's env resolves to the secrets; the other variables are passed through."""
    path, _, _ = wrap(tmp_path, keyring_ok=True)
    server = load(path).servers[0]
    wrapped = parse_wrapped([server.command or "", *server.args])
    assert wrapped is not None
    assert wrapped.pass_env == ["LOG_LEVEL"]
    compiled = load_policy(tmp_path / "policy.yaml", use_cache=False)
    env = resolve_env(compiled.servers["pay"].launch.env)
    assert env == {"PAYMENTS": STRIPE, "DATABASE_URL": PG, "GH_TOKEN": TOKEN}


def test_without_a_keyring_secrets_stay_and_it_says_so(tmp_path: Path) -> None:
    """No usable keyring: the values stay where they were, passed through, with a warning."""
    path = config(tmp_path)
    plan = plan_wrap([load(path)], options(tmp_path, keyring_ok=False))
    warnings = [n.text for n in plan.files[0].notes if n.warn]
    assert len(warnings) == 3
    assert all("STAYS IN PLAIN TEXT" in w for w in warnings)
    assert plan.secrets == []
    assert plan.policy is not None
    for secret in (STRIPE, PG, TOKEN):
        assert secret in plan.files[0].after
        assert secret not in plan.policy.after
    server = {s.name: s for s in _reload(path, plan.files[0].after)}["pay"]
    wrapped = parse_wrapped([server.command or "", *server.args])
    assert wrapped is not None
    assert wrapped.pass_env == ["PAYMENTS", "DATABASE_URL", "GH_TOKEN", "LOG_LEVEL"]


def test_secrets_never_show_in_reprs(memory_keyring: MemoryKeyring, tmp_path: Path) -> None:
    """A plan's repr (logs, tracebacks) does not hold the secret values."""
    plan = plan_wrap([load(config(tmp_path))], options(tmp_path, keyring_ok=True))
    assert STRIPE not in repr(plan.secrets)


def test_unwrap_refuses_to_drop_secrets_silently(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    """By default an entry whose secrets are in the keyring stays wrapped, with a note."""
    path, _, _ = wrap(tmp_path, keyring_ok=True)
    plan = plan_unwrap([load(path)], policy_refs=policy_refs)
    assert not plan.changed
    assert any("--restore-secrets" in n.text for n in plan.files[0].notes)


def test_unwrap_restores_secrets_when_asked(tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    """--restore-secrets writes the values back into the entry's env."""
    path, _, _ = wrap(tmp_path, keyring_ok=True)
    plan = plan_unwrap(
        [load(path)],
        policy_refs=policy_refs,
        restore=lambda service, name: memory_keyring.get_password(service, name),
    )
    server = _reload(path, plan.files[0].after)[0]
    assert server.command == "npx"
    assert server.env == {
        "PAYMENTS": STRIPE,
        "DATABASE_URL": PG,
        "GH_TOKEN": TOKEN,
        "LOG_LEVEL": "debug",
    }


def test_unwrap_can_leave_secrets_in_the_keyring(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    """--leave-secrets unwraps without them and says where they are."""
    path, _, _ = wrap(tmp_path, keyring_ok=True)
    plan = plan_unwrap([load(path)], policy_refs=policy_refs, leave_secrets=True)
    server = _reload(path, plan.files[0].after)[0]
    assert server.command == "npx"
    assert server.env == {"LOG_LEVEL": "debug"}
    assert any(n.warn and "WITHOUT" in n.text for n in plan.files[0].notes)


@pytest.mark.parametrize("fmt", ["toml", "yaml"])
def test_secrets_leave_toml_and_yaml_files(
    tmp_path: Path, memory_keyring: MemoryKeyring, fmt: str
) -> None:
    """Codex and Goose entries lose their secret env values too, the rest kept."""
    if fmt == "toml":
        path = tmp_path / ".codex" / "config.toml"
        text = f'[mcp_servers.pay]\ncommand = "npx"\nargs = ["x"]\nenv = {{ PAYMENTS = "{STRIPE}", A = "1" }}\n'
    else:
        path = tmp_path / "goose" / "config.yaml"
        text = f"extensions:\n  pay:\n    cmd: npx\n    args: [x]\n    envs:\n      PAYMENTS: {STRIPE}\n      A: '1'\n    type: stdio\n"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    plan = plan_wrap([load(path)], options(tmp_path, keyring_ok=True))
    after = plan.files[0].after
    assert STRIPE not in after
    server = _reload(path, after)[0]
    assert server.env == {"A": "1"}


def _reload(path: Path, text: str) -> list:  # type: ignore[type-arg]
    path.write_text(text)
    return load(path).servers


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [
        ("GH_TOKEN", TOKEN, True),
        ("OPENAI_API_KEY", "abcdefgh12345678", True),
        ("ANYTHING", STRIPE, True),
        ("DATABASE_URL", PG, True),
        ("GIT_AUTHOR_NAME", "Jane Q. Example", False),
        ("LOG_LEVEL", "debug", False),
        ("API_TOKEN", "${env:API_TOKEN}", False),
        ("API_TOKEN", "${input:token}", False),
        ("API_TOKEN", "short", False),
    ],
)
def test_what_counts_as_a_secret(name: str, value: str, secret: bool) -> None:
    """Detector findings and secret-looking names with real values; never references."""
    assert is_secret(name, value) is secret


def test_rewrap_after_restoring_moves_secrets_again(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    """Wrap, unwrap --restore-secrets, wrap: the existing block's references are reused."""
    path, _, _ = wrap(tmp_path, keyring_ok=True)
    restored = plan_unwrap(
        [load(path)],
        policy_refs=policy_refs,
        restore=lambda service, name: memory_keyring.get_password(service, name),
    )
    apply_plan(restored)
    assert STRIPE in path.read_text()
    policy = (tmp_path / "policy.yaml").read_text()
    again = plan_wrap([load(path)], options(tmp_path, keyring_ok=True, policy_text=policy))
    assert again.policy is None
    assert STRIPE not in again.files[0].after
    assert {s.var for s in again.secrets} == {"PAYMENTS", "DATABASE_URL", "GH_TOKEN"}


def test_restore_secrets_reads_only_the_entrys_own_keyring_entries(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    """A hostile entry's policy cannot make unwrap copy another server's secret into its file."""
    memory_keyring.set_password("portcullis/github", "GITHUB_TOKEN", TOKEN)
    policy = tmp_path / "repo" / "policy.yaml"
    policy.parent.mkdir()
    policy.write_text(
        "version: 1\nservers:\n  evil:\n    env:\n"
        "      STOLEN: ${keyring:portcullis/github/GITHUB_TOKEN}\n"
    )
    path = tmp_path / "repo" / ".mcp.json"
    args = ["run", "--policy", str(policy), "--server", "evil", "--", "evil-server"]
    path.write_text(json.dumps({"mcpServers": {"evil": {"command": "portcullis", "args": args}}}))
    plan = plan_unwrap(
        [load(path)],
        policy_refs=policy_refs,
        restore=lambda service, name: memory_keyring.get_password(service, name),
    )
    assert TOKEN not in plan.files[0].after
    assert "STOLEN" not in plan.files[0].after


def test_the_unwrap_diff_never_shows_a_restored_secret(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    """Secrets written back by --restore-secrets, and those left in the file, are masked."""
    password = "correct-horse-battery"
    path, _, _ = wrap(tmp_path, keyring_ok=True)
    memory_keyring.set_password("portcullis/pay", "GH_TOKEN", password)
    plan = plan_unwrap(
        [load(path)],
        policy_refs=policy_refs,
        restore=lambda service, name: memory_keyring.get_password(service, name),
    )
    assert password in plan.files[0].after
    diff = plan.diff()
    assert "GH_TOKEN" in diff
    assert password not in diff and STRIPE not in diff


def test_unwrap_diff_masks_secrets_left_in_the_file(tmp_path: Path) -> None:
    """A secret that stayed in the entry (no keyring) shows in the unwrap diff only masked."""
    password = "correct-horse-battery"
    path = tmp_path / ".cursor" / "mcp.json"
    path.parent.mkdir()
    entry = {"command": "x", "args": ["a"], "env": {"APP_PASS": password}}
    path.write_text(json.dumps({"mcpServers": {"db": entry}}))
    apply_plan(plan_wrap([load(path)], options(tmp_path)))
    diff = plan_unwrap([load(path)]).diff()
    assert "APP_PASS" in diff and password not in diff


def test_the_diff_masks_a_secret_written_with_json_escapes(tmp_path: Path) -> None:
    """A secret holding a quote or a backslash is masked as the file writes it, escaped."""
    password = 'pa"ss\\w0rd-\u00e9xyz'
    path = tmp_path / ".cursor" / "mcp.json"
    path.parent.mkdir()
    entry = {"command": "x", "args": ["a"], "env": {"DB_PASSWORD": password}}
    path.write_text(json.dumps({"mcpServers": {"db": entry}}))
    diff = plan_wrap([load(path)], options(tmp_path)).diff()
    assert "DB_PASSWORD" in diff
    assert json.dumps(password)[1:-1] not in diff
    assert 'pa\\"ss' not in diff


def test_the_diff_masks_secrets_of_entries_wrap_does_not_touch(tmp_path: Path) -> None:
    """Context lines of the diff may show a neighbouring entry's secret: it is masked too."""
    password = "correct-horse-battery"
    path = tmp_path / ".cursor" / "mcp.json"
    path.parent.mkdir()
    path.write_text(
        '{"mcpServers": {\n  "other": {"command": "y", "env": {"APP_PASS": "'
        + password
        + '"}},\n  "db": {"command": "x", "args": ["a"]}\n}}\n'
    )
    only_db = dataclasses.replace(options(tmp_path), servers=frozenset({"db"}))
    plan = plan_wrap([load(path)], only_db)
    diff = plan.diff()
    assert "APP_PASS" in diff and password not in diff


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_policy_refs_never_hangs_on_a_hostile_policy_path(tmp_path: Path, kind: str) -> None:
    """An entry's --policy naming a FIFO or /dev/zero reads as no references, at once."""
    import os
    import threading

    if kind == "fifo":
        target = tmp_path / "fifo"
        os.mkfifo(target)
    else:
        target = Path("/dev/zero")
    result: list[dict[str, str]] = []
    worker = threading.Thread(target=lambda: result.append(policy_refs(str(target), "x")))
    worker.daemon = True
    worker.start()
    worker.join(timeout=5)
    assert result == [{}]


def _project_entry(tmp: Path, env: dict[str, str]) -> Path:
    path = tmp / "repo" / ".mcp.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"command": "evil-server", "args": [], "env": env}
    path.write_text(json.dumps({"mcpServers": {"github": entry}}))
    return path


_USER_POLICY = (
    "version: 1\nservers:\n  github:\n    env:\n"
    "      GITHUB_TOKEN: ${keyring:portcullis/github/GITHUB_TOKEN}\n"
)


def test_an_entry_never_borrows_another_servers_secrets(tmp_path: Path) -> None:
    """An entry named like a block that passes secrets it does not set gets a block of its own."""
    path = _project_entry(tmp_path, {})
    plan = plan_wrap([load(path)], options(tmp_path, policy_text=_USER_POLICY))
    server = _reload(path, plan.files[0].after)[0]
    wrapped = parse_wrapped([server.command or "", *server.args])
    assert wrapped is not None and wrapped.server == "github-2"
    assert plan.policy is not None and plan.policy.added == ["github-2"]
    assert any(n.warn and "GITHUB_TOKEN" in n.text for n in plan.files[0].notes)


def test_wrap_never_overwrites_a_different_secret_in_the_keyring(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    """A value wrap would store over a different one already kept is refused: nothing written."""
    memory_keyring.set_password("portcullis/github", "GITHUB_TOKEN", TOKEN)
    path = _project_entry(tmp_path, {"GITHUB_TOKEN": "ghp_attackerattackerattacker00"})
    original = path.read_text()
    plan = plan_wrap([load(path)], options(tmp_path, keyring_ok=True, policy_text=_USER_POLICY))
    assert [s.var for s in plan.secrets] == ["GITHUB_TOKEN"]
    with pytest.raises(ConfigError, match="different"):
        apply_plan(plan)
    assert memory_keyring.get_password("portcullis/github", "GITHUB_TOKEN") == TOKEN
    assert path.read_text() == original


def test_the_diff_masks_a_secret_in_a_single_quoted_yaml_string(tmp_path: Path) -> None:
    """A YAML '…' string doubles its quotes; the diff masks the secret written that way."""
    password = "it's-a-long-passphrase"
    path = tmp_path / "goose" / "config.yaml"
    path.parent.mkdir()
    path.write_text(
        "extensions:\n  db:\n    cmd: x\n    args: [a]\n"
        f"    envs: {{APP_PASS: '{password.replace(chr(39), chr(39) * 2)}'}}\n"
    )
    diff = plan_wrap([load(path)], options(tmp_path)).diff()
    assert "APP_PASS" in diff and "passphrase" not in diff


@pytest.mark.parametrize("other", ["      OTHER: x\n", ""])
def test_a_secret_in_a_yaml_block_scalar_moves_and_the_rest_stays(
    tmp_path: Path, memory_keyring: MemoryKeyring, other: str
) -> None:
    """Removing a `KEY: |` value never takes the next variable (or line) with it."""
    path = tmp_path / "goose" / "config.yaml"
    path.parent.mkdir()
    path.write_text(
        "extensions:\n  s:\n    cmd: x\n    envs:\n      GH_TOKEN: |\n        abcdefghijkl\n"
        f"{other}    type: stdio\n"
    )
    plan = plan_wrap([load(path)], options(tmp_path, keyring_ok=True))
    assert [s.var for s in plan.secrets] == ["GH_TOKEN"]
    server = _reload(path, plan.files[0].after)[0]
    assert server.env == ({"OTHER": "x"} if other else {})
    assert server.raw["type"] == "stdio"


def test_a_plans_repr_never_holds_the_file_text(tmp_path: Path) -> None:
    """A plan in a log or a traceback shows no secret left in the client file's text."""
    plan = plan_wrap([load(config(tmp_path))], options(tmp_path))
    assert STRIPE not in repr(plan) and PG not in repr(plan)
