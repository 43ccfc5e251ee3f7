"""``portcullis check``: one policy decision, as the gateway would make it."""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``check`` command."""
    p = sub.add_parser(
        "check",
        help="decide one tool call without running anything",
        description="Print the decision the gateway would make for one tool call, as JSON. "
        "Exit 0 allow, 1 deny or confirm, 2 error.",
    )
    p.add_argument("--policy", metavar="F", help="policy file (default: as `run` finds it)")
    p.add_argument("--server", metavar="NAME", help="the server entry of the policy")
    p.add_argument("--tool", metavar="T", required=True, help="the tool's name")
    p.add_argument("--args", metavar="JSON", default="{}", help="the call's arguments object")
    p.set_defaults(handler=_check)
    p.error = _usage_error


def _usage_error(message: str) -> NoReturn:
    # Scripts read check's stdout as JSON, usage mistakes included (DESIGN §4: exit 2, JSON).
    _emit({"error": f"usage: {message}"})
    sys.exit(2)


def _emit(obj: dict[str, Any]) -> None:
    import json

    sys.stdout.write(json.dumps(obj) + "\n")


def _check(args: argparse.Namespace) -> int:
    from portcullis._exceptions import ConfigError
    from portcullis.gateway.frames import StrictJSONError, loads_strict
    from portcullis.gateway.guards.tools import RuleSet
    from portcullis.gateway.pipeline import Deny, Verdict
    from portcullis.policy.load import load_policy, select_server

    try:
        try:
            call_args = loads_strict(args.args)
        except StrictJSONError as exc:
            raise ConfigError(f"--args is not usable JSON: {exc}") from None
        if not isinstance(call_args, dict):
            raise ConfigError("--args must be a JSON object")
        policy = load_policy(args.policy)
        server = select_server(policy, args.server, have_command=True)
    except ConfigError as exc:
        _emit({"error": str(exc)})
        return 2
    verdict: Verdict = RuleSet(server.tools, "tool", server.name).decide(args.tool)
    observe = server.mode == "observe"
    approvals_kept = server.observe.approvals == "keep"
    if not isinstance(verdict, Deny) or observe:
        from portcullis._state import state_dir
        from portcullis.detect.paths import default_protected
        from portcullis.gateway.guards.arguments import (
            ENFORCED_IN_OBSERVE,
            ArgumentGuard,
            Examined,
        )
        from portcullis.gateway.pipeline import Confirm

        # The same argument guards as the gateway (without a tool schema: names decide); in
        # observe mode also behind a rule's denial, combined as the gateway combines them.
        protected = default_protected(policy.source, str(state_dir(create=False)))
        guard = ArgumentGuard(server, protected=protected, cwd=server.launch.cwd)
        checked = guard.check_call(args.tool, call_args, seen=Examined() if observe else None)
        if isinstance(checked, Deny):
            kept = checked.rule in ENFORCED_IN_OBSERVE
            if observe and isinstance(verdict, Confirm) and approvals_kept and not kept:
                why = f"{checked.reason} (not enforced: observe mode); {verdict.reason}"
                verdict = Confirm(checked.rule, why)
            elif not isinstance(verdict, Deny) or kept:
                verdict = checked
    out: dict[str, Any] = {
        "decision": verdict.decision,
        "rule": verdict.rule,
        "reason": verdict.reason,
    }
    if server.mode == "observe":
        # Observe mode forwards what the policy decides, except that a confirm still asks a
        # person unless `observe: {approvals: relax}`, and protected paths are always refused;
        # the exit code is the decision's.
        from portcullis.gateway.guards.arguments import ENFORCED_IN_OBSERVE

        out["enforced"] = (
            verdict.decision == "confirm" and approvals_kept
        ) or verdict.rule in ENFORCED_IN_OBSERVE
    if server.unimplemented:
        out["warnings"] = [f"not enforced by this version: {k}" for k in server.unimplemented]
    _emit(out)
    return 0 if verdict.decision == "allow" else 1
