"""Regressions from the review of the back half of ``portcullis serve``: process lifetime.

Real child processes throughout; each test's children carry a unique marker in their command
line so that ``/proc`` tells whether any of them is still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from portcullis._exceptions import GatewayError
from portcullis.approval.seal import Sealer
from portcullis.policy.load import load_policy
from portcullis.serve.front import Front
from portcullis.serve.hub import Hub, Live
from portcullis.serve.identity import Access
from portcullis.serve.shared import SharedUpstream
from portcullis.serve.tokens import SessionState
from portcullis.serve.types import Principal
from portcullis.serve.upstream_stdio import StdioUpstream

pytestmark = pytest.mark.anyio

_ALICE = Principal("alice", "key")


def _marker() -> str:
    return f"portcullis-review-{secrets.token_hex(6)}"


def _sleeper(marker: str) -> list[str]:
    return [sys.executable, "-c", "import time; time.sleep(60)", marker]


def _running(marker: str) -> list[int]:
    """Pids of live processes whose command line holds ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        if marker.encode() in cmdline and "\nState:\tZ" not in status:
            found.append(int(entry))
    return found


async def _gone(marker: str, within_s: float = 8.0) -> bool:
    """Whether no process with ``marker`` runs, waiting (bounded) for one to go."""
    deadline = time.monotonic() + within_s
    while _running(marker):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


def _hub(
    tmp_path: Path,
    servers: dict[str, list[str]],
    *,
    shared: bool = False,
    record: Callable[[dict[str, Any]], None] | None = None,
) -> Hub:
    lines = ["version: 1", "servers:"]
    for name, argv in servers.items():
        lines += [f"  {name}:", f"    command: {json.dumps(argv[0])}"]
        if shared:
            lines.append("    shared: true")
        lines.append(f"    args: {json.dumps(argv[1:])}")
        lines.append("    tools: {default: allow}")
    path = tmp_path / "policy.yaml"
    path.write_text("\n".join(lines) + "\n")
    policy = load_policy(path, use_cache=False)
    key = secrets.token_bytes(32)
    records: list[dict[str, Any]] = []
    return Hub(
        policy,
        home=tmp_path,
        install_key=key,
        record=record or records.append,
        sealer=Sealer(key),
        channel=None,
        log=lambda _text: None,
    )


def _access(*servers: str) -> Access:
    return Access(principal=_ALICE, servers=servers)


async def test_failed_front_build_leaves_no_process(tmp_path: Path) -> None:
    """When one link of a front cannot start, the process another link spawned is stopped."""
    marker = _marker()
    hub = _hub(tmp_path, {"good": _sleeper(marker), "bad": [f"/nonexistent/{marker}"]})
    with pytest.raises(GatewayError, match="cannot start"):
        await hub.front(
            _access("good", "bad"), ["good", "bad"], aggregate=True, sid="s", modern=False
        )
    assert await _gone(marker), "a process of the failed front is still running"


async def test_closed_hub_starts_nothing(tmp_path: Path) -> None:
    """After Hub.close (shutdown) a front is refused and no process is started."""
    marker = _marker()
    hub = _hub(tmp_path, {"good": _sleeper(marker)})
    await hub.close()
    with pytest.raises(GatewayError, match="shutting down"):
        await hub.front(_access("good"), ["good"], aggregate=False, sid="s", modern=False)
    assert await _gone(marker)


async def test_reap_keeps_a_session_whose_get_stream_is_open(tmp_path: Path) -> None:
    """An idle legacy session with an open GET stream is not reaped; one without it is."""
    hub = _hub(tmp_path, {"good": _sleeper(_marker())})
    state = SessionState(sid="s", principal="key:alice", expires=time.time() + 60, path="/mcp")
    listening = Live(state, Front({}, aggregate=True))
    listening.front.stream = asyncio.Queue()
    idle = Live(state, Front({}, aggregate=True))
    for live in (listening, idle):
        live.last_used -= 100
    hub.sessions = {"listening": listening, "idle": idle}
    await hub.reap(1.0)
    assert list(hub.sessions) == ["listening"]


async def test_stdio_start_after_close_is_refused() -> None:
    """A StdioUpstream closed before it started never spawns its process."""
    marker = _marker()
    up = StdioUpstream(
        "s",
        _sleeper(marker),
        env=dict(os.environ),
        cwd=None,
        max_message_bytes=1 << 20,
        log=lambda _t: None,
    )
    await up.close()
    with pytest.raises(GatewayError, match="closed"):
        await up.start()
    assert up.pid is None
    assert await _gone(marker, 0.5)


async def test_shared_last_view_leaving_during_start_stops_the_process() -> None:
    """The last view leaving while the shared process starts does not leave it running."""
    marker = _marker()
    up = StdioUpstream(
        "s",
        _sleeper(marker),
        env=dict(os.environ),
        cwd=None,
        max_message_bytes=1 << 20,
        log=lambda _t: None,
    )
    shared = SharedUpstream(up)
    view = shared.view()
    starting = asyncio.create_task(view.start())
    await asyncio.sleep(0)  # the view's start has begun the shared start
    await asyncio.wait_for(view.close(), 15)
    with contextlib.suppress(GatewayError):  # refused: closed before it started
        await asyncio.wait_for(starting, 15)
    assert await _gone(marker), "the shared process outlived its last view"


class _Recorder:
    """An in-process Upstream that records what is sent to it (routing is under test)."""

    def __init__(self) -> None:
        self.name = "rec"
        self.sent: list[dict[str, Any]] = []
        self.on_frame: Any = None
        self.on_gone: Any = None

    async def start(self) -> None:
        pass

    async def send(self, raw: bytes) -> None:
        self.sent.append(msgspec.json.decode(raw))

    async def cancel(self, rid: Any) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_shared_server_request_is_refused_not_left_hanging() -> None:
    """A request from a shared server is answered with an error instead of never."""
    rec = _Recorder()
    shared = SharedUpstream(rec)
    shared.view()
    rec.on_frame(b'{"jsonrpc":"2.0","id":"srv-1","method":"sampling/createMessage","params":{}}')
    for _ in range(50):
        if rec.sent:
            break
        await asyncio.sleep(0.01)
    assert rec.sent and rec.sent[0]["id"] == "srv-1"
    assert rec.sent[0]["error"]["code"] == -32601


async def test_shared_cancel_forgets_the_request() -> None:
    """A cancelled request's late answer is dropped and its routing entry does not linger."""
    rec = _Recorder()
    shared = SharedUpstream(rec)
    view = shared.view()
    inbox: list[Any] = []
    view.on_frame = inbox.append
    await view.send(b'{"jsonrpc":"2.0","id":7,"method":"tools/list"}')
    await view.cancel(7)
    rec.on_frame(b'{"jsonrpc":"2.0","id":7,"result":{}}')
    assert inbox == []
    assert shared._owners == {}


async def _front_of_exited_server(tmp_path: Path) -> tuple[Hub, Front]:
    hub = _hub(tmp_path, {"dies": [sys.executable, "-c", "pass"]})
    front = await hub.front(_access("dies"), ["dies"], aggregate=False, sid="s", modern=False)
    link = front.links["dies"]
    for _ in range(200):
        if link.gone:
            break
        await asyncio.sleep(0.05)
    assert link.gone
    return hub, front


async def test_request_to_an_exited_server_is_answered_at_once(tmp_path: Path) -> None:
    """A request reaching a link whose server exited gets an error, not the upstream timeout."""
    from portcullis.gateway import frames as fr

    _, front = await _front_of_exited_server(tmp_path)
    try:
        waiter = front.request(fr.decode_frame(b'{"jsonrpc":"2.0","id":1,"method":"ping"}'))
        final, raw = await asyncio.wait_for(waiter.queue.get(), 10)
        assert final
        assert msgspec.json.decode(raw)["error"]["code"] == fr.UPSTREAM_GONE
    finally:
        await front.close()


async def test_reap_stops_a_session_whose_server_exited(tmp_path: Path) -> None:
    """A recently used legacy session whose server exited is dropped, to be rebuilt on use."""
    hub, front = await _front_of_exited_server(tmp_path)
    state = SessionState(sid="s", principal="key:alice", expires=time.time() + 60, path="/mcp")
    hub.sessions["s"] = Live(state, front)
    await hub.reap(3600.0)
    assert hub.sessions == {}


async def test_failed_link_build_leaves_no_shared_view(tmp_path: Path) -> None:
    """A link that fails to build does not leave a view keeping the shared process alive."""
    marker = _marker()
    hub = _hub(tmp_path, {"pool": _sleeper(marker)}, shared=True)
    broken = Access(principal=_ALICE, servers=("pool",), tools=(("x", None),))  # type: ignore[arg-type]
    with pytest.raises(AttributeError):  # the bad rules break the build
        await hub.front(broken, ["pool"], aggregate=False, sid="p", modern=True)
    assert all(not shared.views for shared in hub._shared.values())
    front = await hub.front(_access("pool"), ["pool"], aggregate=False, sid="p", modern=True)
    assert _running(marker)
    await front.close()
    assert await _gone(marker), "the shared process outlived its only real view"


async def test_reap_forgets_the_pool_locks_of_pools_gone(tmp_path: Path) -> None:
    """The per-principal pool locks do not outlive their pools (no growth per principal seen)."""
    hub = _hub(tmp_path, {"good": _sleeper(_marker())})
    hub._pool_locks[("key:gone", "/mcp")] = asyncio.Lock()
    await hub.reap(1.0)
    assert hub._pool_locks == {}


_FIXTURE = str(Path(__file__).resolve().parents[1] / "fixtures" / "mcp_server.py")


async def test_call_is_refused_when_the_audit_cannot_be_written(tmp_path: Path) -> None:
    """With the audit log failing (AuditError), a tools/call is refused and never runs."""
    from portcullis._exceptions import AuditError
    from portcullis.gateway import frames as fr

    broken = {"on": False}

    def record(_fields: dict[str, Any]) -> None:
        if broken["on"]:
            raise AuditError("disk full")

    hub = _hub(tmp_path, {"fx": [sys.executable, _FIXTURE]}, record=record)
    front = await hub.front(_access("fx"), ["fx"], aggregate=False, sid="a", modern=False)
    try:
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
        waiter = front.request(fr.decode_frame(msgspec.json.encode(init)))
        final, _raw = await asyncio.wait_for(waiter.queue.get(), 30)
        assert final
        front.notify(fr.decode_frame(b'{"jsonrpc":"2.0","method":"notifications/initialized"}'))
        broken["on"] = True
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "must not run"}},
        }
        waiter = front.request(fr.decode_frame(msgspec.json.encode(call)))
        while True:
            final, raw = await asyncio.wait_for(waiter.queue.get(), 30)
            if final:
                break
        answer = msgspec.json.decode(raw)
        assert "must not run" not in raw.decode()
        assert "audit" in json.dumps(answer).lower()
        assert "error" in answer or answer["result"].get("isError")
    finally:
        await front.close()


async def test_child_environment_holds_no_gateway_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stdio server started by the hub sees the base variables, not the gateway's secrets."""
    monkeypatch.setenv("PORTCULLIS_REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    monkeypatch.setenv("SESSION_KEY", "s" * 40)
    out = tmp_path / "env.json"
    dump = "import json, os, sys; open(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))"
    hub = _hub(tmp_path, {"env": [sys.executable, "-c", dump, str(out)]})
    front = await hub.front(_access("env"), ["env"], aggregate=False, sid="e", modern=False)
    try:
        env: dict[str, str] = {}
        for _ in range(200):
            with contextlib.suppress(OSError, ValueError):  # not written (whole) yet
                env = json.loads(out.read_text())
                break
            await asyncio.sleep(0.05)
    finally:
        await front.close()
    assert "PATH" in env
    assert "PORTCULLIS_REDIS_URL" not in env
    assert "SESSION_KEY" not in env
    assert "hunter2" not in json.dumps(env)
