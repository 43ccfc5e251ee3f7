"""``portcullis sandbox test``: what a server will see in its sandbox, proven by probes."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``sandbox`` command group."""
    p = sub.add_parser(
        "sandbox",
        help="show and test a server's sandbox",
        description="See docs/sandbox.md. Exit 0 every probe as expected, 1 a probe "
        "escaped or failed, 2 error (no sandbox configured, or not available here).",
    )
    cmds = p.add_subparsers(dest="sandbox_command", metavar="SUBCOMMAND")
    cmds.required = True
    test = cmds.add_parser(
        "test",
        help="print the binds, network and environment, then run escape probes inside",
    )
    test.add_argument("--policy", metavar="F", help="policy file (default: as `run` finds it)")
    test.add_argument("--server", metavar="NAME", required=True)
    test.add_argument("--json", action="store_true", help="machine-readable output")
    test.set_defaults(handler=_test)


def _test(args: argparse.Namespace) -> int:
    import json
    import os
    import socket
    import subprocess

    from portcullis._exceptions import ConfigError
    from portcullis._state import state_dir
    from portcullis.detect.paths import default_protected
    from portcullis.policy.load import load_policy, select_server
    from portcullis.policy.refs import resolve_env
    from portcullis.sandbox.launch import Sandboxed, prepare
    from portcullis.sandbox.probes import PROBE_SOURCE, expectations

    policy = load_policy(args.policy)
    server = select_server(policy, args.server, have_command=False)
    if server.sandbox is None:
        raise ConfigError(f'server "{server.name}" has no `sandbox:` block')
    launch = server.launch
    if not launch.command:
        raise ConfigError(f'server "{server.name}" has no command')
    home = state_dir()
    env = resolve_env(launch.env)
    notes: list[str] = []
    result = prepare(
        server,
        [launch.command, *launch.args],
        env=env,
        passthrough=os.environ,
        protected=default_protected(policy.source, str(home)),
        state_dir=home,
        log=notes.append,
    )
    if not isinstance(result, Sandboxed):
        raise ConfigError(f"the sandbox is not available here: {result}")
    plan = result.plan
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        loopback = f"127.0.0.1:{listener.getsockname()[1]}"
        probes = expectations(
            home=os.path.expanduser("~"),
            policy_file=policy.source,
            state_dir=str(home),
            roots=list(server.roots),
            roots_read_only=server.paths.read_only,
            read_write=list(server.sandbox.read_write),
            gateway_pid=os.getpid(),
            loopback=loopback,
            network=server.sandbox.network,
            env_names=sorted(plan.env),
        )
        spec = json.dumps([[p.name, p.kind, p.target] for p in probes])
        runner = [result.python, "-I", "-S", "-c", PROBE_SOURCE, spec]
        argv = [*plan.argv[: plan.command_at], *runner]
        done = subprocess.run(
            argv, env=plan.env, capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        listener.close()
        result.close()
    try:
        seen = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        raise ConfigError(f"the probes did not run in the sandbox: {done.stderr.strip()}") from None
    rows = []
    for probe in probes:
        got = str(seen.get(probe.name, "missing"))
        if probe.kind == "env":
            names = set(got.removeprefix("seen: ").split(","))
            ok = names <= set(probe.expect.split(","))
        else:
            ok = got.split(" ", 1)[0] == probe.expect
        rows.append({"probe": probe.name, "expected": probe.expect, "result": got, "ok": ok})
    report = {
        "server": server.name,
        "network": plan.network,
        "cwd": plan.cwd,
        "binds": [{"kind": b.kind, "path": b.dest, "why": b.why} for b in plan.binds],
        "env": sorted(plan.env),
        "probes": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
    return 0 if all(r["ok"] for r in rows) else 1


def _print(report: dict[str, Any]) -> None:
    print(
        f"server {report['server']}: network {report['network']}, working directory {report['cwd']}"
    )
    print("filesystem (everything else is absent):")
    for bind in report["binds"]:
        print(f"  {bind['kind']:<9} {bind['path']}  ({bind['why']})")
    print(f"environment: {', '.join(report['env'])}")
    print("probes:")
    for row in report["probes"]:
        mark = "ok  " if row["ok"] else "FAIL"
        print(f"  {mark} {row['probe']}: expected {row['expected']}, got {row['result']}")
