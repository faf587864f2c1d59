"""Rendering of the ``status`` report with rich."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edge_core.report import ContainerRow, StatusReport, gather

_MARK = {True: "[green]✓[/]", False: "[red]✗[/]", None: "[yellow]–[/]"}

# Outcomes shown next to the engine's state: the engine says "exited", the
# edge core says why it keeps it that way.
_FLAGGED = ("flapping", "held", "orphan")


def render(report: StatusReport, console: Console) -> None:
    console.print(
        f"[bold]cyberwave-edge-core {report.version}[/]  config: {report.config_dir}"
    )
    checks = Table(show_header=False, box=None, pad_edge=False)
    checks.add_column(width=2)
    checks.add_column(style="bold")
    checks.add_column(overflow="fold")
    for check in report.checks:
        detail = escape(check.detail)
        if check.fix:
            detail += f"\n[dim]→ {escape(check.fix)}[/]"
        checks.add_row(_MARK[check.ok], check.name, detail)
    console.print(checks)
    if report.containers:
        console.print("[bold]containers[/]")
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(width=2)
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(overflow="fold")
        for row in report.containers:
            table.add_row(*_container_cells(row))
        console.print(table)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")


def _container_cells(row: ContainerRow) -> tuple[str, str, str, str]:
    """Mark, name, state and detail of one container row."""
    # A twin whose metadata never became a container has no name.
    name = row.name or f"twin {(row.twin_uuid or '?')[:8]}"
    state = row.state
    if row.outcome in _FLAGGED:
        state += f", {row.outcome}"
    color = _state_color(row)
    detail = escape(row.image)
    if row.note:
        note_color = "red" if row.outcome == "flapping" else "dim"
        detail += f"\n[{note_color}]→ {escape(row.note)}[/]"
    return _MARK[row.ok], escape(name), f"[{color}]{escape(state)}[/]", detail


def _state_color(row: ContainerRow) -> str:
    if row.outcome == "flapping":
        return "bold red"
    if row.outcome in ("held", "orphan"):
        return "yellow"
    return "green" if row.state == "running" and not row.note else "red"


def show_status(*, as_json: bool, online: bool) -> int:
    report = gather(online=online)
    if as_json:
        print(json.dumps(report.to_json(), indent=2, default=str))
    else:
        if sys.stdout.isatty():
            render(report, Console())
        else:
            # Piped output (logs, support tickets) keeps whole lines, without
            # the padding that lines up columns on a terminal.
            console = Console(width=160)
            with console.capture() as captured:
                render(report, console)
            for line in captured.get().splitlines():
                print(line.rstrip())
    return 0 if report.healthy else 1
