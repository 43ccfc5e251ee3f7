"""Replaying recorded calls through a candidate policy (``portcullis policy test``).

Every c2s ``tools/call``, ``prompts/get`` and ``resources/read`` record of the log is decided
again with the candidate's tool rules (``RuleSet``) and argument guards (``ArgumentGuard``, with
the tool's input schema from the log's ``tools/list`` records), exactly as the gateway would.
The arguments are the record's ``args`` when the audit kept them (``full`` or ``redacted``), else
rebuilt from ``observed.inputs`` (JSON pointer → value). A record with neither can only be judged
by its tool rule: when that denies, the call is still reported; otherwise it is counted as not
replayable. So is a call rebuilt from ``observed.inputs`` that lacks an argument the candidate
guards by name (an SQL or URL argument, a constraint) and the tool declares: the policy then did
not examine it, so the log cannot say what it held.

What changed is compared with what the log says happened then:

- ``newly_denied``: allowed or confirmed then, denied now;
- ``newly_confirm``: allowed then, needs a person's approval now;
- ``newly_allowed``: denied then (by a tool or argument rule) and allowed or confirmed now, or
  confirmed then and allowed now.

Denials by rules a replay cannot judge (pins, the audit log, protocol errors, injection blocks)
are counted as ``not_comparable``. Pure apart from the path guard's look at the file system
(symlinks are resolved, as the gateway does).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from portcullis.policy.compiled import CompiledPolicy, ServerPolicy
from portcullis.policy.learn import CALL_METHODS, subject_of, tool_inventory

__all__ = [
    "Change",
    "ChangeGroup",
    "RecordedCall",
    "ReplayReport",
    "rebuild_args",
    "recorded_calls",
    "replay",
]

Decision = Literal["allow", "confirm", "deny"]
Kind = Literal["newly_denied", "newly_confirm", "newly_allowed"]
# The rule families a replay decides again; a denial by any other rule is not comparable.
_JUDGED: Final = (
    "tools.",
    "prompts.",
    "resources.",
    "paths.",
    "sql.",
    "urls.",
    "arguments.",
    "constraints.",
)
_SUBJECT: Final = {"tools/call": "tool", "prompts/get": "prompt", "resources/read": "resource"}
_MAX_EXAMPLE: Final = 200
# How portcullis.gateway.guards.arguments.cap_observed marks a value cut at the cap.
_CUT: Final = re.compile(r"…\[\+\d+ chars\]\Z")


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One call record, ready to be decided again."""

    server: str
    method: str
    subject: str
    then: Decision
    rule: str
    args: dict[str, Any] | None  # None: the log kept neither args nor observed inputs
    ts: str | None = None
    rebuilt: bool = False  # args rebuilt from observed.inputs: only what the guards examined then


@dataclass(slots=True)
class Change:
    """One call whose decision changed."""

    kind: Kind
    call: RecordedCall
    now: Decision
    rule: str
    reason: str


@dataclass(slots=True)
class ChangeGroup:
    """Changes of one kind for one server and subject, with the first as the example."""

    kind: Kind
    server: str
    method: str
    subject: str
    then: Decision
    now: Decision
    rule: str
    reason: str
    example: str
    count: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The group as JSON (``--json``)."""
        return {
            "kind": self.kind,
            "server": self.server,
            "method": self.method,
            "subject": self.subject,
            "then": self.then,
            "now": self.now,
            "rule": self.rule,
            "reason": self.reason,
            "example": self.example,
            "count": self.count,
        }


@dataclass(slots=True)
class ReplayReport:
    """What a replay found: counts and the changed calls, grouped."""

    calls: int = 0
    replayed: int = 0
    unchanged: int = 0
    not_replayable: dict[str, int] = field(default_factory=dict)  # "server tool" -> count
    not_comparable: dict[str, int] = field(default_factory=dict)  # rule -> count
    unknown_servers: dict[str, int] = field(default_factory=dict)  # not in the candidate
    groups: list[ChangeGroup] = field(default_factory=list)

    def count(self, kind: Kind) -> int:
        """How many calls changed this way."""
        return sum(g.count for g in self.groups if g.kind == kind)

    @property
    def tightened(self) -> bool:
        """Whether a call that went through then would now be denied or need approval."""
        return bool(self.count("newly_denied") or self.count("newly_confirm"))

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON (``--json``)."""
        return {
            "calls": self.calls,
            "replayed": self.replayed,
            "unchanged": self.unchanged,
            "newly_denied": self.count("newly_denied"),
            "newly_confirm": self.count("newly_confirm"),
            "newly_allowed": self.count("newly_allowed"),
            "not_replayable": sum(self.not_replayable.values()),
            "not_replayable_by_tool": self.not_replayable,
            "not_comparable": self.not_comparable,
            "unknown_servers": self.unknown_servers,
            "changes": [g.as_dict() for g in self.groups],
        }


def rebuild_args(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments rebuilt from ``observed.inputs``: JSON pointers → values.

    A numeric segment makes an array (``/paths/0``); gaps are filled with None, which no guard
    reads. A pointer that conflicts with an earlier one is skipped.
    """
    root: dict[str, Any] = {}
    for pointer in sorted(inputs, key=_pointer_order):
        if not isinstance(pointer, str) or not pointer.startswith("/"):
            continue
        parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]
        _put(root, parts, inputs[pointer])
    return root


def _pointer_order(pointer: Any) -> tuple[Any, ...]:
    text = str(pointer)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in text.split("/"))


def _put(node: Any, parts: list[str], value: Any) -> None:
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        nxt: Any = value if last else ([] if parts[index + 1].isdigit() else {})
        if isinstance(node, dict):
            if last:
                node.setdefault(part, value)
                return
            node = node.setdefault(part, nxt)
        elif isinstance(node, list) and part.isdigit() and int(part) < 10_000:
            slot = int(part)
            node.extend([None] * (slot + 1 - len(node)))
            if last:
                if node[slot] is None:
                    node[slot] = value
                return
            if node[slot] is None:
                node[slot] = nxt
            node = node[slot]
        else:
            return  # conflicts with an earlier pointer


def recorded_calls(
    records: Iterable[Mapping[str, Any]], *, server: str | None = None, since: str | None = None
) -> tuple[list[RecordedCall], dict[str, dict[str, Any]]]:
    """The log's call records, and each server's tool input schemas (server → tool → schema)."""
    calls: list[RecordedCall] = []
    listings: list[Mapping[str, Any]] = []
    for rec in records:
        name = rec.get("server")
        if not isinstance(name, str) or (server is not None and name != server):
            continue
        method = rec.get("method")
        if method == "tools/list":
            listings.append(rec)
            continue
        if method not in CALL_METHODS or rec.get("direction") != "c2s":
            continue
        ts = rec.get("ts")
        if since is not None and (not isinstance(ts, str) or ts < since):
            continue
        subject = subject_of(rec)
        decision = rec.get("decision")
        if subject is None or decision not in ("allow", "confirm", "deny"):
            continue
        calls.append(
            RecordedCall(
                server=name,
                method=str(method),
                subject=subject,
                then=decision,
                rule=str(rec.get("rule", "")),
                args=_args_of(rec),
                ts=ts if isinstance(ts, str) else None,
                rebuilt=not isinstance(rec.get("args"), dict),
            )
        )
    schemas = {
        name: {tool: info.input_schema for tool, info in tools.items()}
        for name, tools in tool_inventory(listings).items()
    }
    return calls, schemas


def _args_of(rec: Mapping[str, Any]) -> dict[str, Any] | None:
    args = rec.get("args")
    if isinstance(args, dict):
        return args
    observed = rec.get("observed")
    if isinstance(observed, Mapping):
        inputs = observed.get("inputs")
        if observed.get("omitted") or (
            isinstance(inputs, Mapping)
            and any(isinstance(v, str) and _CUT.search(v) for v in inputs.values())
        ):
            return None  # some inputs were left out or cut at the cap: not what was sent
        return rebuild_args(inputs) if isinstance(inputs, Mapping) else {}
    if rec.get("method") == "resources/read":
        return {}  # the URI is the subject: nothing else to rebuild
    return None


class _Judge:
    """The candidate's rules and guards for one server, compiled once."""

    def __init__(self, policy: ServerPolicy, protected: Sequence[str]) -> None:
        from portcullis.gateway.guards.arguments import ArgumentGuard
        from portcullis.gateway.guards.tools import RuleSet

        self.rules = {
            "tools/call": RuleSet(policy.tools, "tool", policy.name),
            "prompts/get": RuleSet(policy.prompts, "prompt", policy.name),
            "resources/read": RuleSet(policy.resources, "resource", policy.name),
        }
        self.arguments = ArgumentGuard(policy, protected=protected, cwd=policy.launch.cwd)

    def decide(self, call: RecordedCall, schema: Any) -> tuple[Decision, str, str] | None:
        """The candidate's (decision, rule, reason), or None when it cannot be known."""
        verdict = self.rules[call.method].decide(call.subject)
        if verdict.decision == "deny":
            return "deny", verdict.rule, verdict.reason
        if call.args is None or (call.rebuilt and self._unseen(call, schema)):
            return None
        if call.method == "resources/read":
            checked = self.arguments.check_uri(call.subject)
        else:
            checked = self.arguments.check_call(call.subject, call.args, schema)
        if checked.decision == "deny":
            return "deny", checked.rule, checked.reason
        return verdict.decision, verdict.rule, verdict.reason

    def _unseen(self, call: RecordedCall, schema: Any) -> bool:
        """Whether the candidate guards an argument the rebuilt inputs may be missing.

        Inputs are what the guards of the policy *then* examined: an argument the candidate
        reads by name (SQL, URL, constraints, named path arguments) that the tool declares
        (or may declare: schema unknown) but the record lacks is unknown, not absent.
        """
        if call.method == "resources/read" or call.args is None:
            return False
        wanted = self.arguments.named_arguments(call.subject, schema)
        if not wanted:
            return False
        present = _names_and_pointers(call.args)
        declared = _declared(schema)
        return any(
            name not in present and (declared is None or name in declared or name[:1] == "/")
            for name in wanted
        )


def _names_and_pointers(value: Any, pointer: str = "", depth: int = 0) -> set[str]:
    """Every member name and JSON pointer in rebuilt arguments."""
    found: set[str] = set()
    if depth > 64:
        return found
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        child = f"{pointer}/{str(key).replace('~', '~0').replace('/', '~1')}"
        found.add(child)
        if isinstance(value, dict):
            found.add(str(key))
        found |= _names_and_pointers(item, child, depth + 1)
    return found


def _declared(schema: Any, depth: int = 0) -> set[str] | None:
    """Property names the schema declares at any depth; None when there is no schema."""
    if not isinstance(schema, dict):
        return None if depth == 0 else set()
    names: set[str] = set()
    if depth > 64:
        return names
    for key, sub in schema.items():
        if key == "properties" and isinstance(sub, dict):
            names.update(str(k) for k in sub)
            for prop in sub.values():
                names |= _declared(prop, depth + 1) or set()
        elif isinstance(sub, dict):
            names |= _declared(sub, depth + 1) or set()
        elif isinstance(sub, list):
            for part in sub:
                names |= _declared(part, depth + 1) or set()
    return names


def replay(
    calls: Iterable[RecordedCall],
    policy: CompiledPolicy,
    *,
    schemas: Mapping[str, Mapping[str, Any]] | None = None,
    protected: Sequence[str] = (),
) -> ReplayReport:
    """Decide every recorded call again with ``policy`` and report what changed."""
    report = ReplayReport()
    judges: dict[str, _Judge] = {}
    groups: dict[tuple[str, str, str, str, str], ChangeGroup] = {}
    for call in calls:
        report.calls += 1
        server = policy.servers.get(call.server)
        if server is None:
            report.unknown_servers[call.server] = report.unknown_servers.get(call.server, 0) + 1
            continue
        if call.then == "deny" and not call.rule.startswith(_JUDGED):
            report.not_comparable[call.rule] = report.not_comparable.get(call.rule, 0) + 1
            continue
        judge = judges.get(call.server)
        if judge is None:
            judge = judges[call.server] = _Judge(server, protected)
        schema = (schemas or {}).get(call.server, {}).get(call.subject)
        decided = judge.decide(call, schema if call.method == "tools/call" else None)
        if decided is None:
            key = f"{call.server} {call.subject}"
            report.not_replayable[key] = report.not_replayable.get(key, 0) + 1
            continue
        report.replayed += 1
        now, rule, reason = decided
        kind = _kind(call.then, now)
        if kind is None:
            report.unchanged += 1
            continue
        gkey = (kind, call.server, call.method, call.subject, rule)
        group = groups.get(gkey)
        if group is None:
            group = groups[gkey] = ChangeGroup(
                kind,
                call.server,
                call.method,
                call.subject,
                call.then,
                now,
                rule,
                reason,
                _example(call),
            )
            report.groups.append(group)
        group.count += 1
    order = {"newly_denied": 0, "newly_confirm": 1, "newly_allowed": 2}
    report.groups.sort(key=lambda g: (order[g.kind], g.server, g.subject, g.rule))
    return report


def _kind(then: Decision, now: Decision) -> Kind | None:
    if then == now:
        return None
    if now == "deny":
        return "newly_denied"
    if then == "allow":
        return "newly_confirm"
    return "newly_allowed"


def _example(call: RecordedCall) -> str:
    import json

    from portcullis.detect.redact import redact_value

    what = _SUBJECT.get(call.method, "call")
    if call.args:
        shown = json.dumps(redact_value(call.args, pii=True)[0], ensure_ascii=False)
    elif call.method == "resources/read":
        shown = json.dumps(redact_value(call.subject, pii=True)[0], ensure_ascii=False)
    else:
        shown = "{}" if call.args is not None else "(arguments not kept)"
    if len(shown) > _MAX_EXAMPLE:
        shown = shown[: _MAX_EXAMPLE - 1] + "…"
    when = f" at {call.ts}" if call.ts else ""
    return f"{what} {call.subject} {shown}{when}"
