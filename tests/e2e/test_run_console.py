"""Approvals on the console channel: a real gateway, answered by a second process.

The test process is the MCP client (it starts the gateway), so, like an agent's own shell, the
processes it starts may not answer. The person at another terminal is played by processes
started outside the test's process tree and session (:func:`as_person`): they read the queue
with its codes and run ``python -m portcullis approvals``. The guarded server's own ``shell``
tool and the client's children try the same and must be refused.
"""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from tests.e2e.conftest import TIMEOUT, Gateway, fixture_server, text_of

pytestmark = pytest.mark.e2e

CONSOLE = """\
version: 1
approvals: {channels: [console], timeout_s: 60}
defaults:
  tools: {default: allow, confirm: [echo]}
"""


# Double fork with setsid: the command ends up outside the test's process tree and session, as
# a command typed at another terminal would be.
_DETACH = """
import os, subprocess, sys
argv, out, rc = sys.argv[1:-2], sys.argv[-2], sys.argv[-1]
if os.fork():
    os._exit(0)
os.setsid()
if os.fork():
    os._exit(0)
with open(out, "w") as fh:
    code = subprocess.call(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
with open(rc + ".tmp", "w") as fh:
    fh.write(str(code))
os.rename(rc + ".tmp", rc)
"""
_PENDING = "import json, sys; from pathlib import Path; from portcullis.approval.console import "
_PENDING += "pending; print(json.dumps(pending(Path(sys.argv[1]))))"


def as_person(gw: Gateway, *argv: str) -> tuple[int, str]:
    """Run ``argv`` as a person at another terminal; return its status and output."""
    tag = f"person-{time.monotonic_ns()}"
    out, rc = gw.tmp / f"{tag}.out", gw.tmp / f"{tag}.rc"
    launcher = [sys.executable, "-c", _DETACH, *argv, str(out), str(rc)]
    subprocess.run(launcher, env=gw.env(), cwd=gw.tmp, timeout=TIMEOUT, check=True)
    deadline = time.monotonic() + TIMEOUT
    while not rc.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"{argv} did not finish")
        time.sleep(0.02)
    return int(rc.read_text()), out.read_text()


def approvals_cli(gw: Gateway, *args: str) -> tuple[int, str]:
    """``python -m portcullis approvals ARGS`` typed by the person."""
    return as_person(gw, sys.executable, "-m", "portcullis", "approvals", *args)


def client_cli(gw: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    """The same, run by the client itself (as an agent's shell tool would)."""
    return gw.cli("approvals", *args)


def queue(gw: Gateway) -> list[dict[str, Any]]:
    """What the person sees in the queue (with codes)."""
    status, out = as_person(gw, sys.executable, "-c", _PENDING, str(gw.home / "approvals"))
    assert status == 0, out
    entries: list[dict[str, Any]] = json.loads(out)
    return entries


def wait_pending(gw: Gateway, count: int = 1) -> list[dict[str, Any]]:
    """Poll the queue until ``count`` requests are pending; return them."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        entries = queue(gw)
        if len(entries) >= count:
            return entries
    pytest.fail(f"no pending approval appeared; gateway stderr:\n{gw.stderr()}")


def wait_empty(gw: Gateway) -> None:
    """Poll the queue until nothing is pending."""
    deadline = time.monotonic() + TIMEOUT
    while queue(gw):
        if time.monotonic() > deadline:
            pytest.fail("the pending approval was never withdrawn")


def approval_records(gw: Gateway, tool: str = "echo") -> list[dict[str, Any]]:
    """The audit records of approval decisions about ``tool``."""
    return [
        r
        for r in gw.audit_records()
        if r.get("tool") == tool and r["direction"] == "c2s" and "approval" in r
    ]


async def call_and_answer(
    gw: Gateway, client: Any, text: str, answer: Callable[[dict[str, Any]], Awaitable[None]]
) -> Any:
    """Call echo(text); once the request is in the queue, ``answer`` it; return the result."""
    results: list[Any] = []

    async def call() -> None:
        results.append(await client.call_tool("echo", {"text": text}))

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        [entry] = await anyio.to_thread.run_sync(wait_pending, gw)
        await answer(entry)
    return results[0]


async def person_says(gw: Gateway, decision: str, entry: dict[str, Any]) -> None:
    """The person answers ``entry`` with its code from another terminal."""
    status, out = await anyio.to_thread.run_sync(
        approvals_cli, gw, decision, entry["id"], "--code", entry["code"]
    )
    assert status == 0, out


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
@pytest.mark.parametrize("decision", ["approve", "deny"])
async def test_console_answer_from_a_second_process(gw: Gateway, mode: str, decision: str) -> None:
    """approve/deny ID --code from another process decides the call; the audit names the user."""

    async def answer(entry: dict[str, Any]) -> None:
        assert entry["subject"] == "echo"
        assert '"text": "approved text"' in entry["shown"]
        await person_says(gw, decision, entry)

    async with gw.client(fixture_server(), CONSOLE, mode=mode) as client:
        result = await call_and_answer(gw, client, "approved text", answer)
    user = getpass.getuser()
    final = approval_records(gw)[-1]
    if decision == "approve":
        assert not result.is_error, text_of(result)
        assert text_of(result) == "approved text"
        assert final["decision"] == "confirm"
        assert final["approval"] == {"channel": "console", "outcome": "approved", "approver": user}
    else:
        assert result.is_error
        assert f"denied by {user} on the console" in text_of(result)
        assert final["decision"] == "deny"
        assert final["approval"] == {"channel": "console", "outcome": "denied", "approver": user}
    wait_empty(gw)


def test_console_refuses_without_or_with_a_wrong_code(gw: Gateway) -> None:
    """The id alone is not enough: no code exits 2, a wrong code exits 1; the call still waits."""
    raw = gw.raw(fixture_server(), CONSOLE)
    raw.initialize()
    raw.send(
        {"id": 3, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}}
    )
    [entry] = wait_pending(gw)
    status, listed = approvals_cli(gw, "list", "--json")
    assert status == 0
    assert entry["code"] not in listed  # scripts never get the code
    assert entry["id"] in listed
    status, out = approvals_cli(gw, "approve", entry["id"])
    assert status == 2
    assert "code" in out
    assert approvals_cli(gw, "approve", entry["id"], "--code", "AAA-AAA")[0] == 1
    assert approvals_cli(gw, "approve", "no-such-id", "--code", entry["code"])[0] == 1
    assert queue(gw)[0]["id"] == entry["id"]  # still waiting
    assert approvals_cli(gw, "deny", entry["id"], "--code", entry["code"])[0] == 0
    answer = raw.response(3)["result"]
    assert answer["isError"] is True


def test_the_clients_own_processes_cannot_answer(gw: Gateway) -> None:
    """A process the MCP client starts (an agent's shell tool) is refused and shown no codes."""
    raw = gw.raw(fixture_server(), CONSOLE)
    raw.initialize()
    raw.send(
        {"id": 3, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}}
    )
    [entry] = wait_pending(gw)
    listed = client_cli(gw, "list", "--json")
    assert entry["code"] not in listed.stdout
    own = client_cli(gw, "approve", entry["id"], "--code", entry["code"])
    assert own.returncode == 2
    assert "MCP client" in own.stderr
    assert queue(gw)[0]["id"] == entry["id"]
    assert approvals_cli(gw, "deny", entry["id"], "--code", entry["code"])[0] == 0
    assert raw.response(3)["result"]["isError"] is True


@pytest.mark.anyio
async def test_a_server_cannot_approve_its_own_call(gw: Gateway) -> None:
    """The server's shell tool runs `approvals approve` with the right id and code: refused."""
    argv = [sys.executable, "-m", "portcullis", "approvals"]

    async def answer(entry: dict[str, Any]) -> None:
        own = await client.call_tool(
            "shell", {"argv": [*argv, "approve", entry["id"], "--code", entry["code"]]}
        )
        listed = await client.call_tool("shell", {"argv": [*argv, "list", "--json"]})
        assert text_of(own).startswith("exit 2"), text_of(own)
        assert "started by an MCP server" in text_of(own)
        assert entry["code"] not in text_of(listed)
        assert '"shown"' not in text_of(listed)  # nor the arguments of waiting calls
        # The call is still waiting; the person denies it.
        assert (await anyio.to_thread.run_sync(queue, gw))[0]["id"] == entry["id"]
        await person_says(gw, "deny", entry)

    options = ["--pass-env", "PORTCULLIS_HOME"]
    async with gw.client(fixture_server(), CONSOLE, options=options) as client:
        result = await call_and_answer(gw, client, "self-approved", answer)
    assert result.is_error
    assert approval_records(gw)[-1]["approval"]["outcome"] == "denied"


def test_console_timeout_denies(gw: Gateway) -> None:
    """Nobody answers within timeout_s: the call is denied and leaves the queue."""
    raw = gw.raw(fixture_server(), CONSOLE.replace("timeout_s: 60", "timeout_s: 1"))
    raw.initialize()
    answer = raw.call("echo", {"text": "x"})["result"]
    assert answer["isError"] is True
    assert "nobody answered in time" in answer["content"][0]["text"]
    assert queue(gw) == []
    assert approval_records(gw)[-1]["approval"] == {"channel": "console", "outcome": "timeout"}


MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "portcullis-e2e-raw", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


@pytest.mark.parametrize("era", ["legacy", "2026-07-28"])
def test_cancellation_withdraws_the_console_entry(gw: Gateway, era: str) -> None:
    """The client's notifications/cancelled removes the request from the queue."""
    raw = gw.raw(fixture_server(), CONSOLE)
    params: dict[str, Any] = {"name": "echo", "arguments": {"text": "x"}}
    if era == "legacy":
        raw.initialize()
    else:
        params["_meta"] = MODERN_META
    raw.send({"id": 4, "method": "tools/call", "params": params})
    [entry] = wait_pending(gw)
    raw.send({"method": "notifications/cancelled", "params": {"requestId": 4}})
    wait_empty(gw)
    assert approvals_cli(gw, "approve", entry["id"], "--code", entry["code"])[0] == 1
    later = {**params, "name": "big", "arguments": {"nbytes": 2}}
    assert "result" in raw.request("tools/call", later)
    final = approval_records(gw)[-1]
    assert final["approval"] == {"channel": "console", "outcome": "cancelled"}
    assert final["era"] == era


def test_an_approval_covers_one_call_with_those_arguments(gw: Gateway) -> None:
    """After an approval, the same tool with another argument is asked again."""
    raw = gw.raw(fixture_server(), CONSOLE)
    raw.initialize()
    raw.send(
        {"id": 5, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "a"}}}
    )
    [first] = wait_pending(gw)
    assert approvals_cli(gw, "approve", first["id"], "--code", first["code"])[0] == 0
    assert raw.response(5)["result"]["content"][0]["text"] == "a"
    raw.send(
        {"id": 6, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "b"}}}
    )
    [second] = wait_pending(gw)
    assert second["id"] != first["id"]
    assert second["digest"] != first["digest"]
    assert approvals_cli(gw, "deny", second["id"], "--code", second["code"])[0] == 0
    assert raw.response(6)["result"]["isError"] is True


FALLBACK = """\
version: 1
approvals: {channels: [elicitation, console], timeout_s: 60}
defaults:
  tools: {default: allow, confirm: [echo]}
"""


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_client_without_elicitation_falls_back_to_the_console(gw: Gateway, mode: str) -> None:
    """No elicitation capability: the next channel (console) is asked instead."""
    async with gw.client(fixture_server(), FALLBACK, mode=mode) as client:
        result = await call_and_answer(
            gw, client, "via console", lambda entry: person_says(gw, "approve", entry)
        )
    assert text_of(result) == "via console"
    assert approval_records(gw)[-1]["approval"]["channel"] == "console"


def test_queue_is_private_and_cleaned_up(gw: Gateway) -> None:
    """The queue directory is 0700 and the gateway leaves no socket behind when it ends."""
    raw = gw.raw(fixture_server(), CONSOLE)
    raw.initialize()
    queue = gw.home / "approvals"
    assert queue.stat().st_mode & 0o777 == 0o700
    assert list(queue.glob("*.sock"))
    raw.close_stdin()
    assert raw.wait() == 0
    assert list(queue.glob("*.sock")) == []
    status, out = approvals_cli(gw, "list", "--json")
    assert status == 0
    assert json.loads(out) in ([], {"pending": []})


def test_client_hanging_up_withdraws_and_audits_the_question(gw: Gateway) -> None:
    """The client goes away mid-question: the entry leaves the queue and the audit says so."""
    raw = gw.raw(fixture_server(), CONSOLE)
    raw.initialize()
    raw.send(
        {"id": 9, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}}
    )
    wait_pending(gw)
    raw.close_stdin()
    assert raw.wait() == 0
    assert queue(gw) == []
    final = approval_records(gw)[-1]
    assert final["approval"] == {"channel": "console", "outcome": "cancelled"}
    assert "the session ended before anyone answered" in final["reason"]
