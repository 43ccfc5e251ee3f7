"""Live inspection: real servers in the sandbox, a poisoned server, consent, failures, HTTP.

Servers: the npm filesystem and everything servers (tests/servers), PyPI mcp-server-time (in the
venv), and tests/scan/servers/poisoned.py in its modes. Every test that starts a stdio server in
the sandbox is skipped, saying why, where bubblewrap cannot run.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portcullis.pins import PinStore
from portcullis.scan.consent import question as _question
from portcullis.scan.inspect import (
    RULES,
    InspectionReport,
    always,
    inspect_servers,
    tty_consent,
)
from portcullis.scan.model import Server
from portcullis.scan.probe import resolve_refs

REPO = Path(__file__).resolve().parents[2]
POISONED = REPO / "tests" / "scan" / "servers" / "poisoned.py"
NODE_BIN = REPO / "tests" / "servers" / "node_modules" / ".bin"
# A bound so a broken inspection fails a test instead of hanging it; never asserted on.
BOUND_S = 120.0


@pytest.fixture
def state() -> Iterator[Path]:
    """A private state directory (short, under /tmp)."""
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="pc-scan-"))
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


@pytest.fixture
def sandbox(state: Path) -> None:
    """Skip, saying why, where the sandbox cannot run."""
    from portcullis.sandbox import detect

    why = detect.unavailable(state)
    if why is not None:
        print(f"sandbox unavailable: {why}")
        pytest.skip(f"the sandbox is not available here: {why}")


def entry(name: str, command: str, *args: str, **extra: Any) -> Server:
    """A configured stdio server as discovery would produce it."""
    return Server(
        name=name,
        client="cursor",
        scope="user",
        file=Path("/tmp/pc-scan-config/mcp.json"),
        pointer=f"/mcpServers/{name}",
        line=3,
        transport="stdio",
        command=command,
        args=list(args),
        **extra,
    )


def poisoned(name: str, *args: str, **extra: Any) -> Server:
    """The poisoned fixture server in a mode."""
    return entry(name, sys.executable, str(POISONED), *args, **extra)


def scan(state: Path, *servers: Server, **options: Any) -> InspectionReport:
    """inspect_servers with --yes and a quiet log."""
    options.setdefault("consent", always())
    options.setdefault("yes", True)
    return inspect_servers(list(servers), state_dir=state, log=lambda _: None, **options)


def rules(report: InspectionReport, server: str | None = None) -> dict[tuple[str, str | None], Any]:
    return {(f.rule, f.tool): f for f in report.findings if server is None or f.server == server}


def test_rules_cover_every_emitted_rule(state: Path, sandbox: None) -> None:
    """Every finding's rule is in RULES, with its title."""
    report = scan(state, poisoned("poison", "poison"), poisoned("whatsapp", "whatsapp"))
    assert report.findings
    for finding in report.findings:
        assert finding.rule in RULES
        assert finding.title == RULES[finding.rule].title


def test_poisoned_server(state: Path, sandbox: None) -> None:
    """<IMPORTANT> poisoning, shadowing of another server's tool and poisoned instructions."""
    report = scan(state, poisoned("poison", "poison"), poisoned("whatsapp", "whatsapp"))
    assert report.errors == []
    found = rules(report, "poison")
    poisoning = found[("tool-poisoning", "add")]
    assert poisoning.severity in ("high", "critical")
    assert "id_rsa" in poisoning.evidence
    assert "/description" in poisoning.evidence
    shadow = found[("cross-server-shadowing", "send_email")]
    assert "send_message" in shadow.message
    assert "whatsapp" in shadow.message
    assert ("injection-in-instructions", None) in found
    assert ("tool-poisoning", "get_weather") not in found
    assert not [f for f in report.findings if f.server == "whatsapp" and f.severity != "info"]
    summary = {s["server"]: s for s in report.inspected}
    assert summary["poison"]["tools"] == ["add", "send_email", "get_weather"]
    assert summary["poison"]["instructions"] is True


def test_stealth_server(state: Path, sandbox: None) -> None:
    """A paraphrased injection and a Unicode-tag message (decoded in the evidence) are found."""
    report = scan(state, poisoned("stealth", "stealth"))
    found = rules(report)
    assert ("tool-poisoning", "add") in found
    hidden = found[("hidden-unicode", "send_email")]
    assert "audit@evil.example" in hidden.evidence
    assert ("hidden-instructions", "send_email") in found
    assert all(ord(c) < 0xE0000 for f in report.findings for c in f.evidence + f.message)


def test_benign_server_is_clean(state: Path, sandbox: None) -> None:
    """The benign mode yields only the first-inspection pin note."""
    report = scan(state, poisoned("benign", "benign"))
    assert report.errors == []
    assert [f.rule for f in report.findings] == ["definitions-pinned"]
    assert report.findings[0].severity == "info"
    assert "pinned 3 tools" in report.findings[0].message


def test_rug_pull_between_scans(state: Path, sandbox: None, tmp_path: Path) -> None:
    """First scan pins, the second shows definition-changed with a diff; nothing is approved."""
    flag = tmp_path / "rug.state"
    server = poisoned("rug", "rug", str(flag))
    first = scan(state, server)
    assert [f.rule for f in first.findings] == ["definitions-pinned"]
    # The sandbox keeps the server from writing its own state: flip it as an update would.
    assert not flag.exists()
    flag.write_text("poisoned\n")
    second = scan(state, server)
    changed = rules(second)[("definition-changed", "add")]
    assert changed.severity == "high"
    assert "IMPORTANT" in changed.evidence
    assert "(approved)" in changed.evidence
    assert "(current)" in changed.evidence
    assert any("add: changed" in c for c in second.inspected[0]["changes"])
    # The gateway's store sees the same file, with the change pending approval.
    (pins,) = PinStore(state / "pins").entries("rug")
    assert "add" in pins.pending["tools"]
    assert pins.pins["tools"]["add"]["description"] == "Add two numbers."
    third = scan(state, server)
    assert ("definition-changed", "add") in rules(third)


def test_real_servers_in_the_sandbox(state: Path, sandbox: None, tmp_path: Path) -> None:
    """The npm filesystem and everything servers and mcp-server-time list cleanly, sandboxed."""
    for exe in ("mcp-server-filesystem", "mcp-server-everything"):
        if not (NODE_BIN / exe).exists():
            pytest.fail(f"{NODE_BIN / exe} is missing: npm ci --prefix tests/servers")
    root = tmp_path / "root"
    root.mkdir()
    report = scan(
        state,
        entry("files", str(NODE_BIN / "mcp-server-filesystem"), str(root)),
        entry("everything", str(NODE_BIN / "mcp-server-everything"), "stdio"),
        entry("time", str(Path(sys.executable).parent / "mcp-server-time")),
        timeout_s=60.0,
    )
    assert report.errors == []
    summary = {s["server"]: s for s in report.inspected}
    assert "read_text_file" in summary["files"]["tools"]
    assert "echo" in summary["everything"]["tools"]
    assert summary["everything"]["prompts"]
    assert summary["everything"]["resources"]
    assert summary["time"]["tools"] == ["get_current_time", "convert_time"]
    assert {f.rule for f in report.findings} <= {"definitions-pinned", "toxic-flow"}
    assert {p.server for p in PinStore(state / "pins").entries()} == {"files", "everything", "time"}


def test_modern_only_server(state: Path, sandbox: None) -> None:
    """A 2026-07-28-only server is read through server/discover with per-request _meta."""
    report = scan(state, poisoned("modern", "modern"))
    assert report.errors == []
    found = rules(report)
    assert ("tool-poisoning", "add") in found
    assert ("injection-in-instructions", None) in found


def test_yes_with_sandbox_does_not_ask(state: Path, sandbox: None) -> None:
    """--yes with the sandbox available starts the server without asking."""

    def never(server: Server, argv: list[str], sandboxed: bool) -> bool:
        raise AssertionError("consent must not be asked")

    report = scan(state, poisoned("benign", "benign"), consent=never)
    assert report.errors == []
    assert report.inspected


def test_without_yes_consent_is_asked_with_the_command(state: Path, sandbox: None) -> None:
    """Without --yes the exact command is shown, marked sandboxed; a no skips the server."""
    asked: list[tuple[list[str], bool]] = []

    def no(server: Server, argv: list[str], sandboxed: bool) -> bool:
        asked.append((argv, sandboxed))
        return False

    report = scan(state, poisoned("benign", "benign"), consent=no, yes=False)
    assert asked == [([sys.executable, str(POISONED), "benign"], True)]
    (error,) = report.errors
    assert error.kind == "inspect"
    assert error.server == "benign"
    assert error.message.startswith("not started:")
    assert "--yes" in error.message
    assert report.inspected == []


def test_yes_without_sandbox_still_asks(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the sandbox unavailable, --yes does not skip consent; yes runs it unsandboxed."""
    from portcullis.sandbox import detect

    monkeypatch.setattr(detect, "unavailable", lambda *_: "bubblewrap is not installed (test)")
    asked: list[bool] = []

    def no(server: Server, argv: list[str], sandboxed: bool) -> bool:
        asked.append(sandboxed)
        return False

    refused = scan(state, poisoned("benign", "benign"), consent=no)
    assert asked == [False]
    (error,) = refused.errors
    assert "sandbox is not available" in error.message

    def yes(server: Server, argv: list[str], sandboxed: bool) -> bool:
        asked.append(sandboxed)
        return True

    agreed = scan(state, poisoned("benign", "benign"), consent=yes)
    assert asked == [False, False]
    assert agreed.errors == []
    assert agreed.inspected[0]["tools"] == ["add", "send_email", "get_weather"]


CHILD = """
import json, sys
from pathlib import Path
from portcullis.scan.inspect import inspect_servers, tty_consent
from portcullis.scan.model import Server

server = Server(name="benign", client="cursor", scope="user", file=Path("/tmp/x.json"),
                pointer="/mcpServers/benign", line=1, transport="stdio",
                command=sys.executable, args=[sys.argv[1], "benign"])
report = inspect_servers([server], consent=tty_consent(), state_dir=Path(sys.argv[2]),
                         yes=False, log=lambda _: None)
print(json.dumps([e.to_dict() for e in report.errors]))
"""


def test_no_terminal_skips_and_never_hangs(state: Path) -> None:
    """Without a controlling terminal (new session, stdin a pipe) the server is skipped."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(POISONED), str(state)],
        input=b"y\n",  # on stdin, which must never count as an answer
        capture_output=True,
        start_new_session=True,
        timeout=BOUND_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    (error,) = json.loads(done.stdout)
    assert error["kind"] == "inspect"
    assert error["server"] == "benign"
    assert error["message"].startswith("not started: no consent")


def _ask_on_pty(
    server: Server, *, typed_ahead: bytes, reply: bytes, timeout_s: float
) -> tuple[bool, str]:
    """Ask on a pseudo-terminal: ``typed_ahead`` before the question, ``reply`` after it."""
    import threading

    master, slave = os.openpty()
    got: list[bool] = []
    try:
        if typed_ahead:
            os.write(master, typed_ahead)
        asking = threading.Thread(
            target=lambda: got.append(
                tty_consent(timeout_s=timeout_s, tty=os.ttyname(slave))(
                    server, [sys.executable, str(POISONED), "benign"], True
                )
            )
        )
        asking.start()
        shown = ""
        while "[y/N]" not in shown:  # the echo and the question may come apart
            ready, _, _ = select.select([master], [], [], BOUND_S)
            assert ready, shown
            shown += os.read(master, 65536).decode()
        if reply:
            os.write(master, reply)
        asking.join(BOUND_S)
    finally:
        os.close(master)
        os.close(slave)
    return got[0], shown


def test_tty_consent_reads_the_terminal() -> None:
    """tty_consent shows the command with env names only and takes "y" from the terminal."""
    server = poisoned("benign", "benign", env={"API_KEY": "sk-not-shown-anywhere"})
    answer, shown = _ask_on_pty(server, typed_ahead=b"", reply=b"y\n", timeout_s=BOUND_S)
    assert answer is True
    assert "API_KEY" in shown
    assert "sk-not-shown-anywhere" not in shown
    assert str(POISONED) in shown
    assert "sandbox: yes" in shown


def test_tty_consent_ignores_keys_typed_before_the_question() -> None:
    """A "y" typed ahead (meant for an earlier prompt) does not start the next server."""
    server = poisoned("benign", "benign")
    answer, _ = _ask_on_pty(server, typed_ahead=b"y\n", reply=b"", timeout_s=1.0)
    assert answer is False


def test_tty_consent_without_terminal_is_no() -> None:
    """No terminal to open means no."""
    server = poisoned("benign", "benign")
    assert tty_consent(tty="/nonexistent/tty")(server, ["x"], True) is False


def _processes_with(token: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if token.encode() in cmdline:
            found.append(int(proc.name))
    return found


def test_server_that_never_answers(state: Path, sandbox: None) -> None:
    """A silent server times out with an inspect error, and its processes are gone."""
    token = f"pc-hang-{uuid.uuid4().hex}"
    report = scan(state, poisoned("hang", "hang", token), timeout_s=2.0)
    (error,) = report.errors
    assert error.kind == "inspect"
    assert "timed out" in error.message
    assert _processes_with(token) == []


def test_server_that_dies(state: Path, sandbox: None) -> None:
    """A server that exits at once is reported with its exit status and stderr tail."""
    report = scan(state, poisoned("die", "die"))
    (error,) = report.errors
    assert "server-start-failed" in error.message
    assert "status 3" in error.message
    assert "cannot open the database" in error.message


def test_missing_command_is_a_start_failure(state: Path, sandbox: None) -> None:
    """A command that does not exist is an inspect error, not a crash."""
    report = scan(state, entry("ghost", "/nonexistent/mcp-server-ghost"))
    (error,) = report.errors
    assert error.kind == "inspect"
    assert "server-start-failed" in error.message


@pytest.fixture
def http_server() -> Iterator[str]:
    """The poisoned server behind a loopback Streamable HTTP endpoint; yields its URL."""
    proc = subprocess.Popen(
        [sys.executable, str(POISONED), "http"],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("PORT "), line
        yield f"http://127.0.0.1:{int(line.split()[1])}/mcp"
    finally:
        proc.kill()
        proc.wait(BOUND_S)
        if proc.stdout is not None:
            proc.stdout.close()


def test_http_server(state: Path, http_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An HTTP server is read over Streamable HTTP (JSON and SSE answers, session id)."""
    monkeypatch.setenv("PC_TEST_TOKEN", "secret-value")
    server = Server(
        name="remote",
        client="cursor",
        scope="user",
        file=Path("/tmp/pc-scan-config/mcp.json"),
        pointer="/mcpServers/remote",
        line=7,
        transport="http",
        url=http_server,
        headers={"Authorization": "Bearer ${PC_TEST_TOKEN}"},
    )

    def never(server: Server, argv: list[str], sandboxed: bool) -> bool:
        raise AssertionError("connecting is not starting: no consent needed")

    report = scan(state, server, consent=never, yes=False)
    assert report.errors == []
    assert report.inspected[0]["tools"] == ["add", "send_email", "get_weather"]
    assert ("tool-poisoning", "add") in rules(report)
    (pins,) = PinStore(state / "pins").entries("remote")
    assert pins.launch is not None
    assert pins.launch.url == http_server


def test_http_server_unreachable(state: Path) -> None:
    """A server that refuses the connection is an inspect error."""
    server = Server(
        name="gone",
        client="cursor",
        scope="user",
        file=Path("/tmp/pc-scan-config/mcp.json"),
        pointer="/mcpServers/gone",
        line=7,
        transport="sse",
        url="http://127.0.0.1:9/sse",
    )
    report = scan(state, server, timeout_s=5.0)
    (error,) = report.errors
    assert error.kind == "inspect"
    assert "SSE transport is not inspected" in error.message


def test_resolve_refs_only_what_the_entry_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """${VAR} and ${env:VAR} resolve from the environment; missing ones are named."""
    monkeypatch.setenv("PC_A", "alpha")
    monkeypatch.delenv("PC_MISSING", raising=False)
    values, missing = resolve_refs(
        {"A": "${PC_A}", "B": "x-${env:PC_A}", "C": "${PC_MISSING}", "D": "plain"}
    )
    assert values == {"A": "alpha", "B": "x-alpha", "C": "", "D": "plain"}
    assert missing == ["PC_MISSING"]


def test_disabled_servers_are_not_started(state: Path) -> None:
    """A disabled entry is neither started nor reported as an error."""
    report = scan(state, poisoned("off", "benign", enabled=False))
    assert report.errors == []
    assert report.inspected == []


def test_detector_crash_is_a_finding(
    state: Path, sandbox: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A detector that raises yields a finding, never a clean pass."""
    import portcullis.detect.injection as injection

    def boom(obj: dict[str, Any]) -> list[Any]:
        raise RuntimeError("detector bug")

    monkeypatch.setattr(injection, "scan_definition", boom)
    report = scan(state, poisoned("benign", "benign"))
    failed = [f for f in report.findings if f.rule == "inspect-detector-failed"]
    assert {f.tool for f in failed} >= {"add", "send_email", "get_weather"}
    assert all(f.severity == "high" for f in failed)


def test_server_requests_get_an_error(state: Path, sandbox: None) -> None:
    """A roots/list request from the server during listing is answered with an error."""
    report = scan(state, poisoned("asks", "asks"))
    assert report.errors == []
    assert report.inspected[0]["tools"] == ["add", "send_email", "get_weather"]


def test_oversized_message_is_an_error(
    state: Path, sandbox: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message over the size cap ends the listing with an error."""
    from portcullis.scan import probe

    monkeypatch.setattr(probe, "MAX_MESSAGE_BYTES", 64)
    report = scan(state, poisoned("benign", "benign"))
    (error,) = report.errors
    assert "over 64 bytes" in error.message


def test_same_server_in_two_clients_starts_once(state: Path, sandbox: None) -> None:
    """Identical entries in two clients are started (and asked about) once, reported twice."""
    asked: list[str] = []

    def yes(server: Server, argv: list[str], sandboxed: bool) -> bool:
        asked.append(server.client)
        return True

    first = poisoned("benign", "benign")
    second = poisoned("benign", "benign")
    second.client = "claude-code"
    report = scan(state, first, second, consent=yes, yes=False)
    assert asked == ["cursor"]
    assert [s["client"] for s in report.inspected] == ["cursor", "claude-code"]


def test_toxic_flow_across_servers(state: Path, sandbox: None, tmp_path: Path) -> None:
    """Chats (untrusted, send out) plus files (private) in one client make a toxic flow."""
    report = scan(
        state,
        poisoned("whatsapp", "whatsapp"),
        entry("files", str(NODE_BIN / "mcp-server-filesystem"), str(tmp_path)),
        timeout_s=60.0,
    )
    (flow,) = [f for f in report.findings if f.rule == "toxic-flow"]
    assert flow.severity == "high"
    assert flow.server == "whatsapp"
    assert flow.tool == "whatsapp:list_chats + files:directory_tree + whatsapp:send_message"
    assert "private-data: files:directory_tree (+" in flow.evidence
    other = poisoned("whatsapp", "whatsapp")
    other.client = "claude-code"
    apart = scan(state, other, entry("files", str(NODE_BIN / "mcp-server-filesystem"), "/tmp"))
    assert [f for f in apart.findings if f.rule == "toxic-flow"] == []


def test_redirect_is_not_followed(state: Path) -> None:
    """An HTTP server that redirects elsewhere is an error; the redirect is not followed."""
    import http.server
    import threading

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(307)
            self.send_header("Location", "http://attacker.invalid/mcp")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        server = Server(
            name="hop",
            client="cursor",
            scope="user",
            file=Path("/tmp/pc-scan-config/mcp.json"),
            pointer="/mcpServers/hop",
            line=7,
            transport="http",
            url=f"http://127.0.0.1:{httpd.server_address[1]}/mcp",
        )
        report = scan(state, server)
    finally:
        httpd.shutdown()
        httpd.server_close()
    (error,) = report.errors
    assert "redirects are not followed" in error.message


def test_child_script_is_valid() -> None:
    """The no-terminal child script compiles (guards the test above from a typo)."""
    compile(textwrap.dedent(CHILD), "<child>", "exec")


def test_stderr_tail_never_shows_the_secrets_it_was_given(
    state: Path, sandbox: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dying server that prints its env: the error masks referenced and literal values."""
    monkeypatch.setenv("PC_LEAK_TOKEN", "Zq8vR2mK7xW4pL9nT3bY6cH1")
    code = (
        "import os, sys; sys.stderr.write('auth failed for ' + os.environ['API_TOKEN'] + ' and '"
        " + os.environ['DB_PASSWORD'] + '\\n'); sys.exit(3)"
    )
    server = entry(
        "leaky",
        sys.executable,
        "-c",
        code,
        env={"API_TOKEN": "${PC_LEAK_TOKEN}", "DB_PASSWORD": "correct-horse-battery"},
    )
    (error,) = scan(state, server).errors
    assert "auth failed for" in error.message
    assert "Zq8vR2mK7xW4pL9nT3bY6cH1" not in error.message
    assert "correct-horse-battery" not in error.message


def _remote(url: str, scope: Any) -> Server:
    return Server(
        name="remote",
        client="claude-code",
        scope=scope,
        file=Path("/tmp/pc-scan-repo/.mcp.json"),
        pointer="/mcpServers/remote",
        line=3,
        transport="http",
        url=url,
        headers={"Authorization": "Bearer ${PC_TEST_TOKEN}"},
    )


def test_repo_config_cannot_send_env_secrets_without_a_person(
    state: Path, http_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project/given entry whose headers name env vars is not connected under --yes alone."""
    monkeypatch.setenv("PC_TEST_TOKEN", "secret-value")
    asked: list[list[str]] = []

    def refuse(server: Server, argv: list[str], sandboxed: bool) -> bool:
        asked.append(argv)
        return False

    for scope in ("given", "project", "plugin"):
        report = scan(state, _remote(http_server, scope), consent=refuse, yes=True)
        (error,) = report.errors
        assert "PC_TEST_TOKEN" in error.message and "--yes does not cover" in error.message
        assert report.inspected == []
    assert asked == [["connect", http_server]] * 3
    agreed = scan(state, _remote(http_server, "given"), consent=always(), yes=True)
    assert agreed.errors == [] and agreed.inspected


def test_http_error_hides_url_credentials(state: Path) -> None:
    """A failing HTTP server's error shows its URL without the userinfo or query values."""
    server = _remote("http://user:pa55word-xyz@127.0.0.1:9/mcp?key=s3cr3t-query", "user")
    (error,) = scan(state, server, timeout_s=5.0).errors
    assert "pa55word-xyz" not in error.message and "s3cr3t-query" not in error.message


def test_http_question_names_variables_not_values() -> None:
    """The HTTP consent question shows the URL (redacted) and the variable names."""
    question = _question(_remote("https://u:pw-123456@evil.example/mcp", "given"), [], False)
    assert "PC_TEST_TOKEN" in question and "pw-123456" not in question


def test_stderr_tail_cannot_forge_report_lines(state: Path, sandbox: None) -> None:
    """The stderr tail in an error message is one line: a server cannot add report lines."""
    code = "import sys; sys.stderr.write('boom\\n\\u2714 No findings.\\n'); sys.exit(3)"
    (error,) = scan(state, entry("forger", sys.executable, "-c", code)).errors
    assert "boom" in error.message and "\n" not in error.message


def test_repo_entry_pulling_env_secrets_needs_a_person(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--yes does not start a given/project entry whose env reads ${VAR} from this shell."""
    monkeypatch.setenv("PC_TEST_TOKEN", "secret-value")
    asked: list[str] = []

    def refuse(server: Server, argv: list[str], sandboxed: bool) -> bool:
        asked.append(server.name)
        return False

    hostile = poisoned("repo", "benign", env={"TOKEN": "${PC_TEST_TOKEN}"})
    hostile.scope = "given"
    report = scan(state, hostile, consent=refuse, yes=True)
    (error,) = report.errors
    assert asked == ["repo"]
    assert "PC_TEST_TOKEN" in error.message and "--yes does not cover" in error.message
    assert "PC_TEST_TOKEN" in _question(hostile, ["x"], True)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://169.254.1.2:8080/mcp",
    ],
)
def test_metadata_and_link_local_addresses_are_never_contacted(state: Path, url: str) -> None:
    """A config pointing --inspect at the cloud metadata service is refused, not requested."""
    server = Server(
        name="meta",
        client="claude-code",
        scope="project",
        file=Path("/tmp/pc-scan-config/.mcp.json"),
        pointer="/mcpServers/meta",
        line=3,
        transport="http",
        url=url,
    )
    report = scan(state, server)
    (error,) = report.errors
    assert "no MCP server lives there" in error.message
    assert report.inspected == [] or all(not s.get("tools") for s in report.inspected)
