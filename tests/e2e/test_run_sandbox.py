"""Real servers in the bubblewrap sandbox, and escape attempts from inside it.

The fixture server's ``shell`` tool plays a compromised server: it runs commands inside the
sandbox and reports what happened. The gateway gets a made-up home directory with an ssh key
in it, so that "the server cannot read ~/.ssh" is tested against a file that exists.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import FIXTURES, TIMEOUT, Gateway, filesystem, fixture_server, text_of

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("bwrap") is None,
        reason="bubblewrap is not installed (.ci/run installs it: apt-get install bubblewrap)",
    ),
]


class Box:
    """A test's sandbox setting: a fake home with secrets, a root, a file outside it."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.home = gw.tmp / "home"
        (self.home / ".ssh").mkdir(parents=True)
        (self.home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
        self.root = gw.tmp / "root"
        self.root.mkdir()
        (self.root / "inside.txt").write_text("inside the root")
        self.outside = gw.tmp / "outside"
        self.outside.mkdir()
        (self.outside / "secret.txt").write_text("outside the root")

    def env(self, **extra: str) -> dict[str, str]:
        return self.gw.env(HOME=str(self.home), SECRET_TOKEN="must-not-leak", **extra)

    def policy(self, sandbox: str, *, paths: str = "", extra: str = "") -> str:
        return (
            "version: 1\n"
            "defaults:\n"
            "  tools: {default: allow}\n"
            f"  sandbox: {sandbox}\n" + (f"  paths: {paths}\n" if paths else "") + extra
        )


@pytest.fixture
def box(gw: Gateway) -> Box:
    return Box(gw)


def shell_sandbox(box: Box, network: str = "none") -> str:
    """The fixture server's sandbox: python profile, the fixtures directory read-only."""
    return f"{{profile: python, network: {network}, filesystem: {{read_only: [{FIXTURES}]}}}}"


PROBE = """
import json, os, socket, sys
def attempt(fn):
    try:
        return fn()
    except OSError as exc:
        return "denied: " + (exc.strerror or type(exc).__name__)
print(json.dumps({name: attempt(fn) for name, fn in {
    "ssh": lambda: open(sys.argv[1]).read(),
    "outside": lambda: open(sys.argv[2]).read(),
    "inside": lambda: open(sys.argv[3]).read(),
    "write-root": lambda: open(sys.argv[3] + ".new", "w").write("x"),
    "gateway-env": lambda: open(f"/proc/{sys.argv[4]}/environ").read()[:20],
    "policy": lambda: open(sys.argv[5]).read()[:20],
    "audit": lambda: open(sys.argv[6]).read()[:20],
    "loopback": lambda: socket.create_connection(("127.0.0.1", int(sys.argv[7])), 3).close(),
    "env": lambda: sorted(os.environ),
}.items()}))
"""


def probe_argv(box: Box, port: int, gateway_pid: int) -> list[str]:
    """The PROBE program's command line for this test's files."""
    return [
        sys.executable,
        "-c",
        PROBE,
        str(box.home / ".ssh" / "id_ed25519"),
        str(box.outside / "secret.txt"),
        str(box.root / "inside.txt"),
        str(gateway_pid),
        str(box.gw.tmp / "policy.yaml"),
        str(box.gw.home / "audit.jsonl"),
        str(port),
    ]


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port on the host's loopback that nothing inside the sandbox may reach."""
    sock = socket.create_server(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def gateway_pid_of(gw: Gateway) -> int:
    """The pid of the newest `portcullis run` of this test (its environment is the target)."""
    out = subprocess.run(
        ["pgrep", "-f", f"portcullis run --policy {gw.tmp}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    return int(out[-1]) if out else 1


@pytest.mark.anyio
@pytest.mark.parametrize("read_only", [False, True])
async def test_escape_attempts_fail_and_the_root_works(
    gw: Gateway, box: Box, listener: int, read_only: bool
) -> None:
    """Escapes fail (~/.ssh, outside, env, policy, audit, loopback); the root works."""
    paths = f"{{roots: [{box.root}], read_only: {str(read_only).lower()}}}"
    policy = box.policy(shell_sandbox(box), paths=paths)
    async with gw.client(fixture_server(), policy, env=box.env()) as client:
        argv = probe_argv(box, listener, gateway_pid_of(gw))
        result = await client.call_tool("shell", {"argv": argv})
    text = text_of(result)
    assert text.startswith("exit 0"), text
    seen = json.loads(text.split("\n", 1)[1])
    for name in ("ssh", "outside", "gateway-env", "policy", "audit", "loopback"):
        assert str(seen[name]).startswith("denied"), (name, seen[name])
    assert seen["inside"] == "inside the root"
    if read_only:
        assert seen["write-root"].startswith("denied")
    else:
        assert seen["write-root"] == 1
    assert "SECRET_TOKEN" not in seen["env"]
    assert set(seen["env"]) <= {"HOME", "PATH", "TMPDIR", "PWD", "LC_CTYPE"}


@pytest.mark.anyio
async def test_symlink_out_of_the_root_is_harmless_without_the_path_guard(
    gw: Gateway, box: Box
) -> None:
    """A symlink in the root pointing outside leads nowhere, with no path guard at all."""
    (box.root / "escape").symlink_to(box.outside / "secret.txt")
    sandbox = (
        f"{{profile: python, filesystem: {{read_only: [{FIXTURES}], read_write: [{box.root}]}}}}"
    )
    async with gw.client(fixture_server(), box.policy(sandbox), env=box.env()) as client:
        result = await client.call_tool("shell", {"argv": ["cat", str(box.root / "escape")]})
    text = text_of(result)
    assert "outside the root" not in text
    assert "No such file or directory" in text


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_time_server_runs_sandboxed(gw: Gateway, box: Box, mode: str) -> None:
    """PyPI mcp-server-time works under the python profile, in both eras."""
    time_server = [str(Path(sys.executable).parent / "mcp-server-time")]
    policy = box.policy("{profile: python}")
    async with gw.client(time_server, policy, mode=mode, env=box.env()) as client:
        result = await client.call_tool("get_current_time", {"timezone": "Europe/Paris"})
    assert not result.is_error, text_of(result)
    assert "Europe/Paris" in text_of(result)


@pytest.mark.anyio
async def test_filesystem_server_runs_sandboxed(gw: Gateway, box: Box) -> None:
    """Npm server-filesystem works under the node profile; it sees only its root."""
    policy = box.policy("{profile: node}", paths=f"{{roots: [{box.root}]}}")
    async with gw.client(filesystem(box.root), policy, env=box.env()) as client:
        inside = await client.call_tool("read_text_file", {"path": str(box.root / "inside.txt")})
        listed = await client.call_tool("list_directory", {"path": str(box.root)})
    assert text_of(inside) == "inside the root"
    assert "inside.txt" in text_of(listed)


@pytest.fixture(scope="module")
def npx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Npx's cache with the pinned server-filesystem installed by a real npx run."""
    cache = tmp_path_factory.mktemp("npm")
    version = json.loads(
        (
            Path(__file__).parents[1]
            / "servers/node_modules/@modelcontextprotocol/server-filesystem/package.json"
        ).read_text()
    )["version"]
    root = tmp_path_factory.mktemp("npxroot")
    done = subprocess.run(
        ["npx", "-y", f"@modelcontextprotocol/server-filesystem@{version}", str(root)],
        env={**os.environ, "npm_config_cache": str(cache), "npm_config_update_notifier": "false"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert (cache / "_npx").is_dir(), done.stderr
    (cache / "version").write_text(version)
    return cache


@pytest.mark.anyio
async def test_npx_server_runs_from_the_pinned_cache(
    gw: Gateway, box: Box, npx_cache: Path
) -> None:
    """`npx -y server-filesystem@VERSION` runs inside from npx's cache, read-only."""
    version = (npx_cache / "version").read_text()
    server = ["npx", "-y", f"@modelcontextprotocol/server-filesystem@{version}", str(box.root)]
    extra = f"    env: {{npm_config_cache: {npx_cache}}}\n"
    policy = (
        "version: 1\n"
        "servers:\n"
        "  files:\n"
        f"    command: npx\n"
        f"    args: {json.dumps(server[1:])}\n" + extra + "    tools: {default: allow}\n"
        f"    paths: {{roots: [{box.root}]}}\n"
        "    sandbox: {profile: node}\n"
    )
    async with gw.client(None, policy, options=["--server", "files"], env=box.env()) as client:
        inside = await client.call_tool("read_text_file", {"path": str(box.root / "inside.txt")})
    assert text_of(inside) == "inside the root"


@pytest.fixture(scope="module")
def uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A uv cache with mcp-server-time's tool environment built by a real uvx run."""
    cache = tmp_path_factory.mktemp("uv")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "uvx"), "mcp-server-time@2026.10.19", "--help"],
        env={**os.environ, "UV_CACHE_DIR": str(cache)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return cache


@pytest.mark.anyio
async def test_uvx_tool_runs_from_uvs_cache(gw: Gateway, box: Box, uv_cache: Path) -> None:
    """`uvx mcp-server-time@VERSION` runs inside from the environment uv built, read-only."""
    uvx = Path(sys.executable).parent / "uvx"
    policy = (
        "version: 1\n"
        "servers:\n"
        "  time:\n"
        f"    command: {uvx}\n"
        "    args: [mcp-server-time@2026.10.19]\n"
        f"    env: {{UV_CACHE_DIR: {uv_cache}}}\n"
        "    tools: {default: allow}\n"
        "    sandbox: {profile: python}\n"
    )
    async with gw.client(None, policy, options=["--server", "time"], env=box.env()) as client:
        result = await client.call_tool("get_current_time", {"timezone": "UTC"})
    assert not result.is_error, text_of(result)
    assert "UTC" in text_of(result)


def test_unpinned_npx_is_refused(gw: Gateway, box: Box) -> None:
    """Npx without a version cannot run in the sandbox: there is no known package to bind."""
    policy = box.policy("{profile: node}")
    done = gw.run(["npx", "-y", "@modelcontextprotocol/server-filesystem", str(box.root)], policy)
    assert done.returncode == 2
    assert "is not pinned" in done.stderr


def test_required_sandbox_missing_refuses_to_start(gw: Gateway, box: Box) -> None:
    """No bubblewrap (PATH without it) and sandbox.required: exit 2, saying how to fix it."""
    policy = box.policy(shell_sandbox(box))
    done = gw.run(fixture_server(), policy, env=box.env(PATH=str(box.gw.tmp)))
    assert done.returncode == 2, done.stderr
    assert "bubblewrap (bwrap) is not installed" in done.stderr
    assert "apt-get install bubblewrap" in done.stderr


def test_optional_sandbox_missing_runs_with_a_warning(gw: Gateway, box: Box) -> None:
    """sandbox.required: false without bubblewrap: the server runs, stderr and audit say so."""
    sandbox = f"{{required: false, profile: python, filesystem: {{read_only: [{FIXTURES}]}}}}"
    raw = gw.raw(fixture_server(), box.policy(sandbox), env=box.env(PATH=str(box.gw.tmp)))
    raw.initialize()
    assert raw.call("echo", {"text": "hi"})["result"]["content"][0]["text"] == "hi"
    raw.close_stdin()
    raw.wait()
    assert "runs WITHOUT the sandbox" in gw.stderr()
    flagged = [r for r in gw.audit_records() if r.get("rule") == "sandbox.unavailable"]
    assert flagged and flagged[0]["decision"] == "flag"


def test_read_only_roots_need_the_sandbox(gw: Gateway, box: Box) -> None:
    """paths.read_only without sandbox: refused, because nothing else could enforce it."""
    pid_file = gw.tmp / "server.pid"
    paths = f"{{roots: [{box.root}], read_only: true}}"
    policy = f"version: 1\ndefaults:\n  tools: {{default: allow}}\n  paths: {paths}\n"
    done = gw.run(fixture_server("--pid-file", str(pid_file)), policy)
    assert done.returncode == 2, done.stderr
    assert "paths.read_only needs `sandbox:`" in done.stderr
    assert not pid_file.exists(), "the server was started"


def test_home_directory_bind_is_refused(gw: Gateway, box: Box) -> None:
    """A filesystem bind of the home directory itself is refused at start."""
    sandbox = f"{{profile: python, filesystem: {{read_only: [{box.home}]}}}}"
    done = gw.run(fixture_server(), box.policy(sandbox), env=box.env())
    assert done.returncode == 2
    assert "would expose your home directory" in done.stderr


def test_sandbox_test_command_proves_the_policy(gw: Gateway, box: Box) -> None:
    """`portcullis sandbox test` shows the binds and every probe comes out as expected."""
    policy = gw.policy(
        "version: 1\n"
        "servers:\n"
        "  shell:\n"
        f"    command: {sys.executable}\n"
        f"    args: [{FIXTURES / 'mcp_server.py'}]\n"
        "    tools: {default: allow}\n"
        f"    paths: {{roots: [{box.root}], read_only: true}}\n"
        f"    sandbox: {shell_sandbox(box)}\n"
    )
    done = gw.cli(
        "sandbox", "test", "--policy", str(policy), "--server", "shell", "--json", env=box.env()
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert all(row["ok"] for row in report["probes"])
    names = {row["probe"] for row in report["probes"]}
    assert {"read ~/.ssh", "ptrace", "read the policy file"} <= names
    binds = {b["path"]: b["kind"] for b in report["binds"]}
    assert binds[str(box.root)] == "ro"
    assert str(box.home) not in binds


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from the allowed host"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def allowed_host() -> Iterator[int]:
    """A local HTTP server standing in for an allowed host (no other network here)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


FETCH = """
import sys, urllib.request
for url in sys.argv[1:]:
    try:
        print(url, urllib.request.urlopen(url, timeout=10).read().decode())
    except Exception as exc:
        print(url, "refused:", exc)
"""


@pytest.mark.anyio
async def test_egress_only_to_allowed_hosts(gw: Gateway, box: Box, allowed_host: int) -> None:
    """allow_hosts: the allowed host answers through the proxy; others are refused."""
    urls = f"  urls: {{allow_hosts: ['localhost:{allowed_host}'], deny_private: false}}\n"
    policy = box.policy(shell_sandbox(box, "allow_hosts"), extra=urls)
    allowed = f"http://localhost:{allowed_host}/"
    literal = f"http://127.0.0.1:{allowed_host}/"
    other = "http://example.invalid/"
    async with gw.client(fixture_server(), policy, env=box.env()) as client:
        result = await client.call_tool(
            "shell", {"argv": [sys.executable, "-c", FETCH, allowed, literal, other]}
        )
    lines = text_of(result).splitlines()[1:]
    assert lines[0] == f"{allowed} hello from the allowed host", lines
    assert lines[1].startswith(f"{literal} refused:") and "403" in lines[1]
    assert lines[2].startswith(f"{other} refused:") and "403" in lines[2]
    decisions = [r for r in gw.audit_records() if r.get("method") == "sandbox/egress"]
    assert {r["decision"] for r in decisions} == {"allow", "deny"}
