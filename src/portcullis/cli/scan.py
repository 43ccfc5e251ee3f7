"""``portcullis scan``: find MCP client configurations and judge them."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]

_FORMATS = ("text", "json", "sarif", "markdown")
_SEVERITIES = ("info", "low", "medium", "high", "critical")


def register(sub: Any) -> None:
    """Add the ``scan`` command."""
    p = sub.add_parser(
        "scan",
        help="find MCP client configurations and check every server",
        description="Without PATH, scans every client configuration on this machine (user, "
        "project and managed scope). See docs/scan.md. Exit 0 clean, 1 findings at or above "
        "--fail-on, 2 the scan failed or a configuration could not be read.",
    )
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="files or folders")
    p.add_argument("--format", choices=_FORMATS, default="text")
    p.add_argument("--output", "-o", type=Path, metavar="FILE", help="write the report here")
    p.add_argument("--offline", action="store_true", help="no registry look-ups")
    p.add_argument(
        "--inspect",
        action="store_true",
        help="start each stdio server in the sandbox (after consent) and read its tools",
    )
    p.add_argument(
        "--yes",
        action="store_true",
        help="with --inspect: no consent prompt where the sandbox is available",
    )
    p.add_argument("--deep", action="store_true", help="download and scan package code")
    p.add_argument("--fail-on", choices=_SEVERITIES, default="high", metavar="SEVERITY")
    p.add_argument(
        "--baseline",
        type=Path,
        metavar="FILE",
        help="suppressions and accepted findings (by fingerprint); see docs/scan.md",
    )
    p.add_argument(
        "--update-baseline",
        action="store_true",
        help="write the current findings into --baseline (exit 0; 2 when the scan was incomplete)",
    )
    p.add_argument("--no-color", action="store_true", help="plain text even on a terminal")
    p.set_defaults(handler=_scan)


def _scan(args: argparse.Namespace) -> int:
    """Run the scan; anything that stops it short is exit 2, never 0 or 1.

    The CLI's own handler would turn a stray exception into 1 (findings) and a closed pipe
    into 0 (clean): neither may describe a scan that did not finish.
    """
    from portcullis._exceptions import ConfigError

    try:
        return _run(args)
    except (ConfigError, KeyboardInterrupt):
        raise
    except BrokenPipeError:
        import os

        # the reader went away; the report is lost, so the scan's verdict is unknown
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silences the exit-time flush
        return 2
    except Exception as exc:
        # the type only: an exception's text may quote a configuration or a server
        print(
            f"portcullis: the scan failed ({type(exc).__name__}); nothing it reported can be "
            "trusted as complete. Please report this bug",
            file=sys.stderr,
        )
        return 2


def _run(args: argparse.Namespace) -> int:
    from portcullis._exceptions import ConfigError
    from portcullis.scan.scanner import ScanOptions, rules_for, scan

    if args.yes and not args.inspect:
        raise ConfigError("--yes only applies to --inspect")
    if args.deep and args.offline:
        # --deep downloads: offline it would quietly scan no package code at all
        raise ConfigError("--deep downloads package archives; it cannot run with --offline")
    if args.update_baseline and args.baseline is None:
        raise ConfigError("--update-baseline needs --baseline FILE")
    options = ScanOptions(
        paths=args.paths,
        offline=args.offline,
        inspect=args.inspect,
        yes=args.yes,
        deep=args.deep,
        baseline=None if args.update_baseline else args.baseline,
    )
    # A consent prompt shares the terminal: no spinner over it. --yes does not rule a prompt
    # out (an unsandboxed start, or a repository's HTTP server that would get env secrets).
    asks = args.inspect
    with _Progress(enabled=sys.stderr.isatty() and not args.no_color and not asks) as progress:
        result = scan(options, progress.update)
    if args.update_baseline:
        from portcullis.scan import baseline

        baseline.write(args.baseline, result, reason="accepted with --update-baseline")
        print(f"portcullis: wrote {len(result.findings)} findings to {args.baseline}")
        return 2 if result.errors else 0
    from portcullis.scan.report import render

    rules = rules_for(result)
    state, previous = _history()
    out = args.output
    color = False if args.no_color or out is not None else None
    report = render(
        result, args.format, rules=rules, color=color, base=Path.cwd(), previous_run=previous
    )
    if state is not None:
        _keep(result, rules, state, previous)
    if out is None:
        sys.stdout.write(report if report.endswith("\n") else report + "\n")
    else:
        out.write_text(report, encoding="utf-8")
    code: int = result.exit_code(args.fail_on)
    return code


def _history() -> tuple[Path | None, Any]:
    """The state directory and the time of the previous scan (for "regular review")."""
    from portcullis._exceptions import PortcullisError
    from portcullis._state import state_dir
    from portcullis.scan import history

    try:
        state = state_dir()
        return state, history.previous_run(state)
    except (OSError, PortcullisError) as exc:
        print(f"portcullis: the scan history is not available: {exc}", file=sys.stderr)
        return None, None


def _keep(result: Any, rules: Any, state: Path, previous: Any) -> None:
    """Keep the report in the state directory; failing to is a warning, not a failed scan."""
    from portcullis._exceptions import PortcullisError
    from portcullis.scan import history
    from portcullis.scan.report import render

    try:
        rendered = render(result, "json", rules=rules, previous_run=previous)
        history.save_last(result, rendered, state)
    except (OSError, PortcullisError) as exc:
        print(f"portcullis: could not keep the report: {exc}", file=sys.stderr)


class _Progress:
    """A one-line status on stderr while the scan runs (terminals only)."""

    def __init__(self, enabled: bool) -> None:
        self._status: Any = None
        if enabled:
            from rich.console import Console

            self._status = Console(stderr=True).status("scanning")

    def __enter__(self) -> _Progress:
        if self._status is not None:
            self._status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.stop()

    def update(self, message: str) -> None:
        """Show ``message`` (server names in it come from configurations: never obeyed)."""
        if self._status is not None:
            from rich.markup import escape

            from portcullis.scan.report._common import safe

            # rich drops a few control codes but passes ESC through: a server name could
            # otherwise move the cursor, retitle the terminal or plant an OSC 8 link
            self._status.update(escape(safe(message)))
