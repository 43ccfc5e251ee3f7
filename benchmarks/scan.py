"""Static scan time: 20 servers across 5 client files, offline (target: <= 1 s, DESIGN §6).

Builds a fixture home (Claude Desktop, Cursor, VS Code, Codex TOML, Goose YAML; 4 servers
each: a filesystem server at /, a token in env, a pinned uvx server, a Docker image with a
database URL) and times, in one run and interleaved:

* `startup`: `portcullis --version`, the floor of any CLI invocation;
* `scan PATHS`: `portcullis scan --offline --format json FILE...` (the 5 files);
* `scan (discover)`: `portcullis scan --offline --format json` with HOME pointing at the
  fixture, so discovery looks in every client's locations;
* `scan (text)`: the terminal report (rich) of the same files;
* in-process `scan()` without the interpreter start, to show where the time goes.

    .venv/bin/python benchmarks/scan.py [--runs 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FAKE_KEY = "ghp_" + "R4nd0mT0k3nV4lu3F0rB3nchm4rk1ng00" + "1x"


def _servers(n: int, prefix: str) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for i in range(n):
        name = f"{prefix}-{i}"
        if i % 4 == 0:
            out[name] = {
                "command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-filesystem", "/"],
            }
        elif i % 4 == 1:
            out[name] = {
                "command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-github"],
                "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": FAKE_KEY},
            }
        elif i % 4 == 2:
            out[name] = {"command": "uvx", "args": ["mcp-server-time==2026.10.19"]}
        else:
            out[name] = {
                "command": "docker",
                "args": ["run", "-i", "--rm", "-e", "DATABASE_URL", "mcp/postgres:latest"],
                "env": {"DATABASE_URL": "postgresql://admin:s3cretpass@db.internal/production"},
            }
    return out


def build(home: Path, project: Path) -> list[Path]:
    """Write the five client files; return their paths."""
    files = []
    desktop = home / ".config" / "Claude" / "claude_desktop_config.json"
    cursor = home / ".cursor" / "mcp.json"
    vscode = project / ".vscode" / "mcp.json"
    codex = home / ".codex" / "config.toml"
    goose = home / ".config" / "goose" / "config.yaml"
    for path in (desktop, cursor, vscode, codex, goose):
        path.parent.mkdir(parents=True, exist_ok=True)
        files.append(path)
    desktop.write_text(json.dumps({"mcpServers": _servers(4, "desktop")}, indent=2))
    cursor.write_text("// Cursor\n" + json.dumps({"mcpServers": _servers(4, "cursor")}, indent=2))
    vscode.write_text(json.dumps({"servers": _servers(4, "vscode")}, indent=2))
    lines = []
    for name, entry in _servers(4, "codex").items():
        lines.append(f"[mcp_servers.{name}]")
        lines.append(f"command = {json.dumps(entry['command'])}")
        lines.append(f"args = {json.dumps(entry['args'])}")
        for key, value in dict(entry.get("env", {})).items():  # type: ignore[call-overload]
            lines.append(f"env = {{ {key} = {json.dumps(value)} }}")
        lines.append("")
    codex.write_text("\n".join(lines))
    ylines = ["extensions:"]
    for name, entry in _servers(4, "goose").items():
        ylines += [f"  {name}:", "    type: stdio", "    enabled: true"]
        ylines.append(f"    cmd: {entry['command']}")
        ylines.append(f"    args: {json.dumps(entry['args'])}")
        env = dict(entry.get("env", {}))  # type: ignore[call-overload]
        if env:
            ylines.append("    envs:")
            ylines += [f"      {k}: {json.dumps(v)}" for k, v in env.items()]
    goose.write_text("\n".join(ylines) + "\n")
    return files


def _time(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int, str]:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, proc.returncode, proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    exe = [sys.executable, "-m", "portcullis"]
    with tempfile.TemporaryDirectory(prefix="pc-scan-bench-") as tmp:
        home = Path(tmp) / "home"
        project = home / "project"
        files = build(home, project)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            "PORTCULLIS_HOME": str(Path(tmp) / "state"),
            "XDG_CONFIG_HOME": str(home / ".config"),
        }
        configs = {
            "startup": [*exe, "--version"],
            "scan PATHS": [*exe, "scan", "--offline", "--format", "json", *map(str, files)],
            "scan (discover)": [*exe, "scan", "--offline", "--format", "json"],
            "scan (text)": [*exe, "scan", "--offline", "--no-color", *map(str, files)],
        }
        times: dict[str, list[float]] = {k: [] for k in configs}
        found: dict[str, int] = {}
        for run in range(args.runs):
            names = list(configs)
            names = names[run % len(names) :] + names[: run % len(names)]
            for name in names:
                elapsed, code, out = _time(configs[name], env, project)
                if code not in (0, 1) and name != "startup":
                    print(f"{name} failed with exit {code}:\n{out}", file=sys.stderr)
                    return 1
                times[name].append(elapsed)
                if name == "scan PATHS":
                    report = json.loads(out)
                    found = {"servers": report["summary"]["servers"]}
                    found["findings"] = len(report["findings"])
        os.environ.update(env)
        from portcullis.scan.scanner import ScanOptions, scan

        inproc = []
        for _ in range(args.runs):
            start = time.perf_counter()
            scan(ScanOptions(paths=files, offline=True, state_dir=Path(tmp) / "state"))
            inproc.append(time.perf_counter() - start)
    rows = {name: statistics.median(v) for name, v in times.items()}
    rows["in-process scan()"] = statistics.median(inproc)
    floor = rows["startup"]
    if args.json:
        print(json.dumps({"median_s": rows, "found": found, "runs": args.runs}, indent=2))
        return 0
    print(f"{found.get('servers')} servers, {found.get('findings')} findings; {args.runs} runs")
    print(f"{'what':<22}{'median':>10}{'x startup':>11}")
    for name, value in rows.items():
        print(f"{name:<22}{value * 1000:>8.0f} ms{value / floor:>10.1f}x")
    verdict = "MET" if rows["scan PATHS"] <= 1.0 else "MISSED"
    print(f"target: scan PATHS <= 1 s: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
