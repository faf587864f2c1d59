"""The ``cyberwave-edge-core`` command.

Only click is imported at module level so that ``--version`` and
``--help`` stay fast; the daemon and the status gathering (httpx, docker,
paho) are imported by the command that needs them.
"""

from __future__ import annotations

import sys

import click

from edge_core import __version__


class _LazyGroup(click.Group):
    """A group whose ``models`` subgroup (and its imports) load only when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), "models"])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name != "models":
            return super().get_command(ctx, cmd_name)
        from edge_core.cli.models import models

        return models


@click.group(
    cls=_LazyGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, "--version", prog_name="cyberwave-edge-core")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Cyberwave Edge Core: run this device's driver containers.

    With no command, runs the edge core daemon (as systemd does).
    """
    if ctx.invoked_subcommand is not None:
        return
    import logging
    import os

    from edge_core.service import run

    code = run()
    # Pulls and launches still under way run in worker threads that the
    # interpreter would wait for at exit; containers are Docker's to keep,
    # so leave at once.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@cli.command(short_help="Show what runs, what is wrong and what to do.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--offline", is_flag=True, help="Do not contact the backend or broker.")
def status(as_json: bool, offline: bool) -> None:
    """Show credentials, connectivity, the edge and its containers (read-only)."""
    from edge_core.cli.status import show_status

    sys.exit(show_status(as_json=as_json, online=not offline))


def main() -> None:
    cli(prog_name="cyberwave-edge-core")
