r"""The terminal report (``--format text``), drawn with rich into a string.

Everything that came from a config file or a server (names, paths, messages, evidence) is
escaped twice over: control, format and other invisible characters are shown as ``\uXXXX``
(so a malicious config cannot move the cursor, recolour or hide text), and data only ever enters
rich as :class:`rich.text.Text` on a console with markup, emoji and highlighting off (so
``[bold]`` or ``:smile:`` in a server name is printed as written). With ``color=False`` the
output is plain ASCII-boxed text for CI logs.

rich is imported inside :func:`render`: importing it costs more than the whole JSON report.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from portcullis.scan.model import Finding, Rule, ScanResult, Severity
from portcullis.scan.report._common import (
    notes,
    plural,
    rule_title,
    safe,
    scope_line,
    sorted_findings,
    summary_line,
    suppression_info,
)
from portcullis.scan.report.scorecard import Status, scorecard

if TYPE_CHECKING:
    from rich.box import Box
    from rich.console import Console
    from rich.text import Text

__all__ = ["render"]

SEVERITY_STYLE: dict[Severity, str] = {
    "critical": "bold white on red",
    "high": "bold red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}
STATUS_STYLE: dict[Status, str] = {
    "pass": "bold green",
    "fail": "bold red",
    "warn": "bold yellow",
    "unknown": "magenta",
}


def render(
    result: ScanResult,
    *,
    rules: Mapping[str, Rule],
    color: bool | None = None,
    width: int | None = None,
    previous_run: datetime | None = None,
    now: datetime | None = None,
) -> str:
    """The report as text; ``color=None`` colours only when stdout is a terminal.

    ``width=None`` is the terminal's width when stdout is a terminal, else 100 columns.
    """
    from rich import box
    from rich.console import Console

    tty = sys.stdout.isatty()
    if color is None:
        color = tty and "NO_COLOR" not in os.environ
    if width is None:
        width = shutil.get_terminal_size((100, 24)).columns if tty else 100
    buf = io.StringIO()
    console = Console(
        file=buf,
        force_terminal=color,
        no_color=not color,
        width=width,
        markup=False,
        emoji=False,
        highlight=False,
        # Plain ASCII boxes in CI logs, which often mangle box-drawing characters.
        safe_box=True,
        legacy_windows=False,
    )
    boxes = box.SIMPLE_HEAD if color else box.ASCII2
    _header(console, result)
    _scorecard(console, result, boxes, previous_run, now)
    _findings(console, result, rules)
    _suppressed(console, result)
    _notes(console, result)
    _errors(console, result, boxes)
    console.print()
    console.print(_t(summary_line(result), style="bold"))
    # rich pads lines to the full width; trailing blanks only clutter logs and diffs.
    return "\n".join(line.rstrip(" ") for line in buf.getvalue().split("\n"))


def _t(text: str, style: str = "") -> Text:
    """A Text of our own words (no markup parsing: rich sees it literally)."""
    from rich.text import Text

    return Text(text, style=style)


def _data(value: object, style: str = "", *, newlines: bool = False) -> Text:
    """A Text of data from a config or server, with hidden characters escaped."""
    from rich.text import Text

    return Text(safe(value, newlines=newlines), style=style)


def _header(console: Console, result: ScanResult) -> None:
    from rich.text import Text

    line = Text.assemble(("Portcullis scan", "bold"), f": {scope_line(result)}")
    if result.started:
        line.append(f" (started {safe(result.started)})", style="dim")
    console.print(line)
    console.print()


def _scorecard(
    console: Console,
    result: ScanResult,
    boxes: Box,
    previous_run: datetime | None,
    now: datetime | None,
) -> None:
    from rich.table import Table

    table = Table(title="Scorecard", title_justify="left", box=boxes, show_edge=False)
    table.add_column("Checklist item", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Servers", justify="right", no_wrap=True)
    table.add_column("Why")
    for item in scorecard(result, previous_run=previous_run, now=now):
        servers = f"{item.affected}/{item.servers}" if item.affected else "-"
        table.add_row(
            _t(item.title),
            _t(item.status.upper(), STATUS_STYLE[item.status]),
            _t(servers),
            _data(item.reason),
        )
    console.print(table)
    console.print()


def _findings(console: Console, result: ScanResult, rules: Mapping[str, Rule]) -> None:
    from rich.padding import Padding
    from rich.table import Table

    if not result.findings:
        console.print(_t("No findings.", "bold green"))
        return
    console.print(_t("Findings", "bold underline"))
    clients = {str(f.path): (f.client, f.scope) for f in result.files}
    for file, by_server in _grouped(result.findings):
        console.print()
        heading = _data(file or "(no file)", "bold")
        if file in clients:
            client, scope = clients[file]
            heading.append(f"  ({safe(client)}, {scope})", style="dim")
        console.print(heading)
        for server, findings in by_server:
            label = f"server {safe(server)}" if server is not None else "client settings"
            console.print(Padding(_t(label, "bold cyan"), (0, 0, 0, 2)))
            grid = Table.grid(padding=(0, 1))
            grid.add_column(width=8, no_wrap=True)
            grid.add_column()
            for f in findings:
                grid.add_row(_t(f.severity.upper(), SEVERITY_STYLE[f.severity]), _body(f, rules))
            console.print(Padding(grid, (0, 0, 0, 4)))


def _body(f: Finding, rules: Mapping[str, Rule]) -> Text:
    from rich.text import Text

    body = Text()
    body.append(safe(f.rule), style="bold")
    body.append("  ")
    body.append(safe(rule_title(f, rules)), style="dim")
    body.append("\n")
    body.append(safe(f.message, newlines=True))
    where = safe(f.file or "?") + (f":{f.line}" if f.line is not None else "")
    body.append("\nat ", style="dim")
    body.append(where)
    if f.tool:
        body.append("  tool ", style="dim")
        body.append(safe(f.tool))
    if f.evidence:
        body.append("\nevidence: ", style="dim")
        body.append(safe(f.evidence))
    if f.fix:
        body.append("\nfix: ", style="green")
        body.append(safe(f.fix.strip(), newlines=True))
    return body


def _grouped(
    findings: list[Finding],
) -> list[tuple[str | None, list[tuple[str | None, list[Finding]]]]]:
    """Findings by file then server; groups with the worst findings first."""
    files: dict[str | None, dict[str | None, list[Finding]]] = {}
    for f in sorted_findings(findings):
        files.setdefault(f.file, {}).setdefault(f.server, []).append(f)
    # sorted_findings put the worst first, and dicts keep insertion order, so the first file
    # and server seen are the ones with the worst finding.
    return [(file, list(servers.items())) for file, servers in files.items()]


def _suppressed(console: Console, result: ScanResult) -> None:
    from rich.padding import Padding
    from rich.text import Text

    if not result.suppressed:
        return
    console.print()
    console.print(
        _t(
            f"Suppressed: {plural(len(result.suppressed), 'finding')} (baseline; not counted)",
            "bold",
        )
    )
    for f in sorted_findings(result.suppressed):
        info = suppression_info(result, f)
        line = Text()
        line.append(f"{f.severity:<8} ", style=SEVERITY_STYLE[f.severity])
        line.append(safe(f.rule))
        if f.server:
            line.append(" on ")
            line.append(safe(f.server))
        line.append(": ", style="dim")
        line.append(safe(info["reason"]))
        if info["expires"]:
            line.append(f" (until {safe(info['expires'])})", style="dim")
        console.print(Padding(line, (0, 0, 0, 2)))


def _notes(console: Console, result: ScanResult) -> None:
    from rich.padding import Padding

    items = notes(result)
    if not items:
        return
    console.print()
    console.print(_t("Warnings", "bold yellow"))
    for note in items:
        console.print(Padding(_data("! " + note, "yellow"), (0, 0, 0, 2)))


def _errors(console: Console, result: ScanResult, boxes: Box) -> None:
    from rich.panel import Panel
    from rich.text import Text

    if not result.errors:
        return
    body = Text()
    for i, e in enumerate(result.errors):
        if i:
            body.append("\n")
        where = ":".join(str(p) for p in (e.file, e.line) if p is not None)
        body.append("x ", style="bold red")
        if where:
            body.append(safe(where), style="bold")
            body.append(": ")
        if e.server:
            body.append("server ")
            body.append(safe(e.server), style="bold")
            body.append(": ")
        body.append(safe(e.message, newlines=True))
        body.append(f" [{safe(e.kind)}]", style="dim")
    console.print()
    console.print(
        Panel(
            body,
            box=boxes,
            title=_t(f"Could not scan ({len(result.errors)})", "bold red"),
            title_align="left",
            border_style="red",
            subtitle=_t("the scan is incomplete: exit status 2", "red"),
            subtitle_align="left",
        )
    )
