"""The ``models`` commands: look at and fill the ML model cache by hand.

``list`` and ``verify`` work on any site; ``ensure`` downloads only when
``credentials.json`` exists and ``--offline`` is not given, so on an
air-gapped site it registers and checks pre-staged files. Rendering only:
every decision is the model cache's (``edge_core.models``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO, cast

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as ProgressBars
from rich.table import Table

from edge_core.config.credentials import (
    apply_envs,
    credentials_path,
    load_credentials,
)
from edge_core.config.paths import WORKERS_DIR, Owner, resolve_config_dir, target_owner
from edge_core.config.settings import Settings, load_settings
from edge_core.errors import ConfigError, EdgeCoreError
from edge_core.logsetup import configure_logging
from edge_core.models import (
    CachedModel,
    EnsureResult,
    ModelError,
    ModelManager,
    Outcome,
    Phase,
    Progress,
    Verification,
    Verified,
    cache_dir,
    discover_models,
    open_cache,
)
from edge_core.models.progress import human_bytes

_OUTCOME_TEXT = {
    Outcome.PRESTAGED: "[green]ready[/] (pre-staged)",
    Outcome.CACHED: "[green]ready[/] (cached, verified)",
    Outcome.DOWNLOADED: "[green]ready[/] (downloaded)",
    Outcome.FALLBACK: "[yellow]ready[/] (cached copy; download failed)",
    Outcome.DEFERRED: "[yellow]deferred[/] (the worker's runtime fetches it)",
}
_VERIFIED_TEXT = {
    Verified.YES: "[green]yes[/]",
    Verified.CORRUPT: "[red]CORRUPT[/]",
    Verified.STALE: "[yellow]changed since[/]",
    Verified.NEVER: "[dim]never[/]",
}


@dataclass(frozen=True)
class _Site:
    settings: Settings
    owner: Owner | None
    has_credentials: bool


class _ConsoleStream:
    """A log stream that prints through rich, so bars and lines do not mix."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def write(self, text: str) -> int:
        self._console.print(text, end="", markup=False, highlight=False, soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        return


@click.group("models")
def models() -> None:
    """Inspect and fill the ML model cache (models/ in the config dir)."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def list_command(as_json: bool) -> None:
    """Show every cached model: file, size, runtime, source, verified."""
    site = _site()
    rows = ModelManager(cache_dir(site.settings)).list_models()
    if as_json:
        print(json.dumps([_row_json(row) for row in rows], indent=2))
        return
    console = _console()
    if not rows:
        console.print(f"no models in {cache_dir(site.settings)}")
        return
    table = Table(box=None, pad_edge=False)
    for title in ("model", "file", "size", "runtime", "source", "verified"):
        table.add_column(title, overflow="fold")
    for row in rows:
        table.add_row(
            row.model_id,
            row.path.name if row.path else "[red]unusable[/]",
            _size(row.size_bytes),
            row.runtime or "-",
            row.source,
            _VERIFIED_TEXT[row.verified] if row.path else "-",
        )
    console.print(table)
    for row in rows:
        if row.problem:
            console.print(f"[red]✗[/] {row.model_id}: {row.problem}")


@models.command("ensure")
@click.argument("model_ids", nargs=-1)
@click.option("--offline", is_flag=True, help="Use only files already on disk.")
@click.option("-v", "--verbose", is_flag=True, help="Log every step.")
def ensure_command(model_ids: tuple[str, ...], offline: bool, verbose: bool) -> None:
    """Make models ready (download or verify); default: the workers' models."""
    site = _site()
    console = _console()
    stream = cast(TextIO, _ConsoleStream(console))
    configure_logging("INFO" if verbose else "WARNING", stream=stream)
    ids = list(model_ids) or _discovered(site.settings, console)
    if not ids:
        console.print("no models to ensure")
        return
    if not site.has_credentials and not offline:
        console.print(
            "[yellow]no credentials.json: only files already on disk are used[/]"
        )
    with open_cache(site.settings, owner=site.owner, offline=offline) as manager:
        results = _ensure_with_bars(manager, ids, console)
    failed = 0
    for model_id, result in zip(ids, results, strict=True):
        if isinstance(result, ModelError):
            failed += 1
            console.print(f"[red]✗[/] {model_id}: {result}")
            continue
        where = f" → {result.path}" if result.path else ""
        console.print(f"[green]✓[/] {model_id}: {_OUTCOME_TEXT[result.outcome]}{where}")
        for note in result.notes:
            console.print(f"  [dim]{note}[/]")
    sys.exit(1 if failed else 0)


@models.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON.")
def verify_command(as_json: bool) -> None:
    """Re-hash every cached model and report corrupt ones (exit 1 if any)."""
    site = _site()
    console = _console()
    manager = ModelManager(cache_dir(site.settings), owner=site.owner)
    with _bars(console, enabled=not as_json) as bars:
        verdicts = manager.verify_all(on_progress=bars.update)
    if as_json:
        print(json.dumps([_verdict_json(item) for item in verdicts], indent=2))
    else:
        for item in verdicts:
            mark = "[red]✗[/]" if item.failed else "[green]✓[/]"
            console.print(f"{mark} {item.model_id}: {item.check.value}: {item.detail}")
        if not verdicts:
            console.print(f"no models in {cache_dir(site.settings)}")
    sys.exit(1 if any(item.failed for item in verdicts) else 0)


@models.command("evict")
@click.argument("model_ids", nargs=-1, required=True)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def evict_command(model_ids: tuple[str, ...], yes: bool) -> None:
    """Delete models from the cache (pre-staged files too) to force a download."""
    site = _site()
    console = _console()
    if not yes:
        names = ", ".join(model_ids)
        click.confirm(f"delete {names} from {cache_dir(site.settings)}?", abort=True)
    manager = ModelManager(cache_dir(site.settings), owner=site.owner)
    failed = False
    for model_id in model_ids:
        try:
            removed = manager.evict(model_id)
        except EdgeCoreError as exc:
            failed = True
            console.print(f"[red]✗[/] {model_id}: {exc}")
            continue
        state = "evicted" if removed else "was not cached"
        console.print(f"[green]✓[/] {model_id}: {state}")
    sys.exit(1 if failed else 0)


# -- helpers -----------------------------------------------------------------


def _site() -> _Site:
    environ = dict(os.environ)
    config_dir = resolve_config_dir(environ)
    envs: dict[str, str] = {}
    has_credentials = credentials_path(config_dir).exists()
    if has_credentials:
        try:
            envs = dict(load_credentials(config_dir).envs)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    apply_envs(envs, environ)
    settings = load_settings(environ, envs=envs, config_dir=config_dir)
    return _Site(settings, target_owner(config_dir, environ), has_credentials)


def _console() -> Console:
    # Every message stays one line however long its paths (soft wrap: the
    # terminal folds it, rich inserts no newline), so it can be copied or
    # grepped whole; piped tables get a fixed width.
    if sys.stdout.isatty():
        return Console(soft_wrap=True)
    return Console(width=160, soft_wrap=True)


def _discovered(settings: Settings, console: Console) -> list[str]:
    found = discover_models(settings.config_dir / WORKERS_DIR)
    for problem in found.problems:
        console.print(f"[yellow]warning:[/] {problem}")
    return list(found.model_ids)


class _Bars:
    """One rich progress bar per (model, phase), fed by ``Progress`` events."""

    def __init__(self, bars: ProgressBars | None) -> None:
        self._bars = bars
        self._tasks: dict[tuple[str, Phase], TaskID] = {}

    def update(self, event: Progress) -> None:
        if self._bars is None:
            return
        key = (event.model_id, event.phase)
        task = self._tasks.get(key)
        if task is None:
            verb = "download" if event.phase is Phase.DOWNLOAD else "verify"
            task = self._bars.add_task(f"{verb} {event.model_id}", total=event.total)
            self._tasks[key] = task
        self._bars.update(task, completed=event.done, total=event.total)
        if event.finished:
            self._bars.remove_task(task)
            del self._tasks[key]


@contextmanager
def _bars(console: Console, *, enabled: bool = True) -> Iterator[_Bars]:
    if not enabled:
        yield _Bars(None)
        return
    bars = ProgressBars(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    with bars:
        yield _Bars(bars)


def _ensure_with_bars(
    manager: ModelManager, ids: Sequence[str], console: Console
) -> list[EnsureResult | ModelError]:
    results: list[EnsureResult | ModelError] = []
    with _bars(console) as bars:
        for model_id in ids:
            try:
                results.append(manager.ensure_model(model_id, on_progress=bars.update))
            except ModelError as exc:
                results.append(exc)
    return results


def _size(size: int | None) -> str:
    return "-" if size is None else human_bytes(size)


def _row_json(row: CachedModel) -> dict[str, object]:
    return {
        "model_id": row.model_id,
        "path": str(row.path) if row.path else None,
        "size_bytes": row.size_bytes,
        "runtime": row.runtime,
        "source": row.source,
        "checksum_sha256": row.checksum_sha256,
        "verified": row.verified.value,
        "problem": row.problem,
    }


def _verdict_json(item: Verification) -> dict[str, object]:
    return {
        "model_id": item.model_id,
        "check": item.check.value,
        "path": str(item.path) if item.path else None,
        "detail": item.detail,
        "sha256": item.sha256,
        "failed": item.failed,
    }
