"""Rendering of the ``status`` report with rich."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.table import Table

from edge_core.report import StatusReport, gather

_MARK = {True: "[green]✓[/]", False: "[red]✗[/]", None: "[yellow]–[/]"}


def render(report: StatusReport, console: Console) -> None:
    console.print(
        f"[bold]cyberwave-edge-core {report.version}[/]  config: {report.config_dir}"
    )
    checks = Table(show_header=False, box=None, pad_edge=False)
    checks.add_column(width=2)
    checks.add_column(style="bold")
    checks.add_column(overflow="fold")
    for check in report.checks:
        detail = check.detail
        if check.fix:
            detail += f"\n[dim]→ {check.fix}[/]"
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
            detail = row.image + (f"\n[dim]→ {row.note}[/]" if row.note else "")
            color = "green" if row.state == "running" else "red"
            # A twin whose metadata never became a container has no name.
            name = row.name or f"twin {(row.twin_uuid or '?')[:8]}"
            table.add_row(_MARK[row.ok], name, f"[{color}]{row.state}[/]", detail)
        console.print(table)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}")


def show_status(*, as_json: bool, online: bool) -> int:
    report = gather(online=online)
    if as_json:
        print(json.dumps(report.to_json(), indent=2, default=str))
    else:
        # Piped output (logs, support tickets) keeps whole lines.
        console = Console() if sys.stdout.isatty() else Console(width=160)
        render(report, console)
    return 0 if report.healthy else 1
