"""The ``wrap`` and ``unwrap`` commands: plan, show, confirm, write; exit 0, 1 or 2.

Exit codes: 0 done (or, with ``--dry-run``, something would change), 1 nothing to do or
refused (declined at the prompt, a file changed on disk), 2 an error (a broken file, with its
line; a generated policy that does not validate).
"""

from __future__ import annotations

import os
import platform
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from portcullis._exceptions import ConfigError, PolicyError
from portcullis.scan.model import ConfigFile
from portcullis.wrap.apply import (
    ChangedOnDisk,
    apply_plan,
    default_policy_path,
    keyring_lookup,
    keyring_usable,
    load_targets,
    policy_refs,
    portcullis_command,
    read_policy,
    sandbox_available,
)
from portcullis.wrap.plan import Plan, WrapOptions, plan_unwrap, plan_wrap
from portcullis.wrap.policy import validate

__all__ = ["Request", "run_unwrap", "run_wrap"]


@dataclass(frozen=True)
class Request:
    """What the user asked for on the command line."""

    target: str | None = None
    servers: frozenset[str] | None = None
    dry_run: bool = False
    yes: bool = False
    policy: str | None = None
    restore_secrets: bool = False
    leave_secrets: bool = False


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _ask(question: str) -> bool:
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:
        return False


def _targets(request: Request, err: TextIO) -> list[ConfigFile]:
    try:
        files, notes = load_targets(
            request.target,
            home=Path.home(),
            cwd=Path.cwd(),
            env=os.environ,
            system=platform.system(),
        )
    except ConfigError as exc:
        # The message names files (and may quote them): no terminal escapes from there either.
        raise ConfigError(_printable(str(exc))) from None
    for note in notes:
        print(_printable(f"portcullis: note: {note}"), file=err)
    return files


# Control characters (ESC, CR, backspace…) from a server name, an argument or a comment of a
# hostile project file would let it rewrite the summary on the terminal before the prompt.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]|\r(?!\n)")


def _printable(text: str) -> str:
    """``text`` with control characters escaped, newlines and tabs kept."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def _show(plan: Plan, verb: str, out: TextIO, err: TextIO) -> None:
    for f in plan.files:
        if not f.notes and not f.changed:
            continue
        print(_printable(f"{f.client}: {f.path}"), file=out)
        for note in f.notes:
            print(_printable(f"  {note}"), file=out)
            if note.warn:
                print(_printable(f"portcullis: {note}"), file=err)
    for note in plan.notes:
        print(_printable(str(note)), file=out)
        if note.warn:
            print(_printable(f"portcullis: {note}"), file=err)
    diff = plan.diff()
    if diff:
        print("", file=out)
        print(_printable(diff), end="", file=out)
    count = sum(len(f.servers) for f in plan.files)
    files = sum(1 for f in plan.files if f.changed)
    print(
        f"\n{verb} {count} server{'' if count == 1 else 's'} "
        f"in {files} file{'' if files == 1 else 's'}",
        file=out,
    )


def _write(
    plan: Plan, request: Request, out: TextIO, err: TextIO, ask: Callable[[str], bool]
) -> int:
    if request.dry_run:
        print("dry run: nothing written", file=out)
        return 0
    if not request.yes and _interactive() and not ask("Write these changes? [y/N] "):
        print("nothing written", file=out)
        return 1
    try:
        backups = apply_plan(plan)
    except ChangedOnDisk as exc:
        print(_printable(f"portcullis: refused: {exc}"), file=err)
        return 1
    except OSError as exc:
        print(_printable(f"portcullis: cannot write: {exc}"), file=err)
        return 2
    for backup in backups:
        print(_printable(f"backup: {backup}"), file=out)
    print("done", file=out)
    return 0


def run_wrap(
    request: Request,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    ask: Callable[[str], bool] = _ask,
) -> int:
    """``portcullis wrap``: route the chosen servers through ``portcullis run``."""
    out, err = out or sys.stdout, err or sys.stderr
    files = _targets(request, err)
    policy_path = (
        Path(request.policy).expanduser().absolute() if request.policy else default_policy_path()
    )
    options = WrapOptions(
        gateway=portcullis_command(),
        policy_path=policy_path,
        policy_text=read_policy(policy_path),
        home=str(Path.home()),
        servers=request.servers,
        keyring=keyring_usable(),
        sandbox=sandbox_available(),
        cwd=os.getcwd(),
    )
    plan = plan_wrap(files, options)
    if plan.policy is not None:
        try:
            validate(plan.policy.after, str(plan.policy.path), plan.policy.added)
        except PolicyError as exc:
            print(
                _printable(f"portcullis: the generated policy does not validate: {exc}"), file=err
            )
            print("portcullis: nothing written", file=err)
            return 2
    if not plan.changed:
        _show(plan, "would wrap", out, err)
        print("nothing to wrap", file=out)
        return 1
    _show(plan, "wrap" if not request.dry_run else "would wrap", out, err)
    if plan.policy is not None:
        added = ", ".join(plan.policy.added)
        print(_printable(f"policy: {plan.policy.path} (servers {added} added)"), file=out)
    return _write(plan, request, out, err, ask)


def run_unwrap(
    request: Request,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    ask: Callable[[str], bool] = _ask,
) -> int:
    """``portcullis unwrap``: restore the wrapped servers' own commands."""
    out, err = out or sys.stdout, err or sys.stderr
    if request.restore_secrets and request.leave_secrets:
        raise ConfigError("--restore-secrets and --leave-secrets contradict each other")
    files = _targets(request, err)
    plan = plan_unwrap(
        files,
        servers=request.servers,
        restore=keyring_lookup if request.restore_secrets else None,
        leave_secrets=request.leave_secrets,
        policy_refs=policy_refs,
    )
    if not plan.changed:
        _show(plan, "would unwrap", out, err)
        print("nothing to unwrap", file=out)
        return 1
    _show(plan, "unwrap" if not request.dry_run else "would unwrap", out, err)
    print(
        "the policy file is not changed: its server blocks may hold your own edits "
        "(remove them yourself if you no longer need them)",
        file=out,
    )
    return _write(plan, request, out, err, ask)
