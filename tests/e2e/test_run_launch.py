"""Starting and stopping the server: launch from the policy, its environment, its process group."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    TIMEOUT,
    Gateway,
    RawClient,
    everything,
    fixture_server,
    is_alive,
    raw_server,
    text_of,
)

pytestmark = pytest.mark.e2e


def launch_policy(command: list[str], env: dict[str, str]) -> str:
    """A policy whose only server, "probe", is launched by the gateway itself."""
    return "\n".join(
        [
            "version: 1",
            "servers:",
            "  probe:",
            f"    command: {json.dumps(command[0])}",
            f"    args: {json.dumps(command[1:])}",
            f"    env: {json.dumps(env)}",
            "    tools: {default: allow}",
            "",
        ]
    )


@pytest.mark.anyio
async def test_launch_from_policy_resolves_env_and_scrubs_the_rest(gw: Gateway) -> None:
    """--server launches the policy's command; ${env:X} is resolved and other variables dropped."""
    policy = launch_policy(
        everything(),
        {"PROBE_TOKEN": "${env:E2E_SOURCE_TOKEN}", "PROBE_LITERAL": "plain $${not-a-ref}"},
    )
    env = gw.env(
        E2E_SOURCE_TOKEN="resolved-7f3a",
        E2E_UNRELATED="must-not-leak",
        E2E_PASSED="named-by-pass-env",
    )
    async with gw.client(
        None, policy, options=["--server", "probe", "--pass-env", "E2E_PASSED"], env=env
    ) as client:
        result = await client.call_tool("get-env", {})
    seen = json.loads(text_of(result))
    assert seen["PROBE_TOKEN"] == "resolved-7f3a"
    assert seen["PROBE_LITERAL"] == "plain ${not-a-ref}"
    assert seen["E2E_PASSED"] == "named-by-pass-env"
    for name in ("E2E_UNRELATED", "E2E_SOURCE_TOKEN", "PORTCULLIS_HOME"):
        assert name not in seen, f"{name} leaked into the server's environment"
    assert "must-not-leak" not in text_of(result)
    assert gw.audit_records()[0]["server"] == "probe"


def test_missing_env_reference_refuses_to_start(gw: Gateway) -> None:
    """A ${env:X} reference to an unset variable is a configuration error (exit 2) naming it."""
    policy = launch_policy(everything(), {"PROBE_TOKEN": "${env:E2E_NOT_SET_ANYWHERE}"})
    done = gw.run(None, policy, options=["--server", "probe"])
    assert done.returncode == 2, done.stderr
    assert "PROBE_TOKEN" in done.stderr
    assert "E2E_NOT_SET_ANYWHERE" in done.stderr


def test_a_client_command_never_receives_another_commands_env(gw: Gateway) -> None:
    """A config saying `--server probe -- OTHER` cannot run OTHER with probe's secrets (exit 2)."""
    policy = launch_policy(everything(), {"PROBE_TOKEN": "${env:E2E_SOURCE_TOKEN}"})
    env = gw.env(E2E_SOURCE_TOKEN="secret-7f3a")
    done = gw.run(fixture_server(), policy, options=["--server", "probe"], env=env)
    assert done.returncode == 2, done.stderr
    assert "not the one servers.probe" in done.stderr
    assert "secret-7f3a" not in done.stdout + done.stderr


def test_env_without_a_command_in_the_policy_is_refused_with_a_client_command(gw: Gateway) -> None:
    """A block with env but no command would give its secrets to whatever the client names."""
    policy = "version: 1\nservers:\n  probe:\n    env: {A: b}\n    tools: {default: allow}\n"
    done = gw.run(fixture_server(), policy, options=["--server", "probe"])
    assert done.returncode == 2, done.stderr
    assert "no command" in done.stderr


@pytest.mark.anyio
async def test_the_policys_own_command_after_dashes_gets_its_env(gw: Gateway) -> None:
    """The same command on both sides (as `wrap` writes it) starts with the block's env."""
    policy = launch_policy(everything(), {"PROBE_TOKEN": "${env:E2E_SOURCE_TOKEN}"})
    env = gw.env(E2E_SOURCE_TOKEN="resolved-7f3a")
    async with gw.client(everything(), policy, options=["--server", "probe"], env=env) as client:
        result = await client.call_tool("get-env", {})
    assert json.loads(text_of(result))["PROBE_TOKEN"] == "resolved-7f3a"


def test_unknown_server_name_refuses_to_start(gw: Gateway) -> None:
    """--server naming a server the policy lacks is a configuration error that lists the servers."""
    done = gw.run(None, launch_policy(everything(), {}), options=["--server", "nope"])
    assert done.returncode == 2, done.stderr
    assert "'nope'" in done.stderr
    assert "probe" in done.stderr


def _start_with_pids(gw: Gateway, tmp_path: Path) -> tuple[RawClient, int, int]:
    pid_file, grandchild_file = tmp_path / "server.pid", tmp_path / "grandchild.pid"
    raw = gw.raw(
        fixture_server("--pid-file", str(pid_file), "--grandchild-pid-file", str(grandchild_file))
    )
    raw.initialize()  # the server is up, so both pid files are written
    server, grandchild = int(pid_file.read_text()), int(grandchild_file.read_text())
    assert is_alive(server)
    assert is_alive(grandchild)
    return raw, server, grandchild


def _wait_gone(pid: int) -> bool:
    """Whether ``pid`` is gone; polls because a killed process is reaped asynchronously."""
    import time

    deadline = time.monotonic() + TIMEOUT
    while is_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_client_hangup_kills_server_and_its_children(gw: Gateway, tmp_path: Path) -> None:
    """When the client closes stdin the gateway exits and the server's whole group is gone."""
    raw, server, grandchild = _start_with_pids(gw, tmp_path)
    raw.close_stdin()
    assert raw.wait() == 0
    assert _wait_gone(server), "the server outlived the gateway"
    assert _wait_gone(grandchild), "a process the server started outlived the gateway"


def test_sigterm_kills_server_and_its_children(gw: Gateway, tmp_path: Path) -> None:
    """SIGTERM to the gateway kills the server's whole process group; the gateway exits 143."""
    raw, server, grandchild = _start_with_pids(gw, tmp_path)
    os.kill(raw.proc.pid, signal.SIGTERM)
    status = raw.wait()
    assert _wait_gone(server), "the server outlived the gateway"
    assert _wait_gone(grandchild), "a process the server started outlived the gateway"
    assert status == 128 + signal.SIGTERM


def test_invalid_policy_refuses_to_start(gw: Gateway) -> None:
    """A misspelt policy key is a configuration error (exit 2) naming its line."""
    done = gw.run(everything(), "version: 1\ndefaults:\n  tool: {default: allow}\n")
    assert done.returncode == 2, done.stderr
    assert "policy.yaml:3: defaults.tool: unknown key" in done.stderr


def test_missing_server_command_fails_with_message(gw: Gateway, tmp_path: Path) -> None:
    """A server command that does not exist fails the run with a message naming it."""
    missing = tmp_path / "no-such-mcp-server"
    done = gw.run([str(missing)])
    assert done.returncode != 0
    assert str(missing) in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("written", ["off", '"off"'])
def test_guards_written_off_are_accepted(gw: Gateway, written: str) -> None:
    """pin: false, redact: [] and injection: off (as DESIGN writes it) let run start."""
    policy = (
        "version: 1\ndefaults:\n  pin: false\n  redact: []\n"
        f"  injection: {written}\n  tools: {{default: allow}}\n"
    )
    done = gw.run(raw_server(), policy)  # stdin is empty: the client hangs up at once
    assert done.returncode == 0, done.stderr
