"""The process around the daemon: configuration, logging, signals, exit code.

``run()`` is what ``cyberwave-edge-core`` with no command does (protocol.md
5.1 with the rules of 7b): read ``credentials.json`` and every setting once,
configure logging with the token registered for redaction, prepare the
config dir (layout, ownership, leftovers of interrupted writes, the
fingerprint), then hand over to the ``Daemon`` until SIGTERM or SIGINT.
An unusable configuration is one line on stderr and exit code 1.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import MutableMapping
from types import FrameType

from edge_core.config.credentials import Credentials, apply_envs, load_credentials
from edge_core.config.files import sweep_temp_files
from edge_core.config.fingerprint import resolve_fingerprint
from edge_core.config.paths import (
    ensure_layout,
    migrate_legacy,
    repair_ownership,
    resolve_config_dir,
    target_owner,
)
from edge_core.config.settings import Settings, load_settings
from edge_core.daemon import EXIT_FATAL, Daemon
from edge_core.errors import ConfigError
from edge_core.logsetup import configure_logging, format_exception_line

log = logging.getLogger(__name__)


def _install_signals(daemon: Daemon) -> None:
    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        daemon.request_stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _fatal(message: str) -> int:
    sys.stderr.write(f"cyberwave-edge-core: {message}\n")
    return EXIT_FATAL


def prepare(environ: MutableMapping[str, str]) -> tuple[Settings, Credentials]:
    """Read the configuration the way the daemon does, raising ConfigError."""
    config_dir = resolve_config_dir(environ)
    migrate_legacy(config_dir)
    credentials = load_credentials(config_dir)
    apply_envs(credentials.envs, environ)
    settings = load_settings(environ, envs=credentials.envs, config_dir=config_dir)
    return settings, credentials


def run(environ: MutableMapping[str, str] | None = None) -> int:
    """Run the daemon in this process; returns the exit code."""
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    if os.name == "posix":
        os.umask(0o077)
    redactor = configure_logging(env.get("CYBERWAVE_EDGE_LOG_LEVEL", "INFO"))
    debug = logging.getLogger().isEnabledFor(logging.DEBUG)
    # As it was before credentials.json's envs were copied in, so that a
    # remote restart can apply a changed envs block again.
    before_envs = dict(env)
    try:
        settings, credentials = prepare(env)
    except ConfigError as exc:
        return _fatal(str(exc))
    redactor = configure_logging(settings.log_level)
    redactor.add_secret(credentials.token)
    if settings.mqtt_password:
        redactor.add_secret(settings.mqtt_password)
    for warning in settings.warnings:
        log.warning("%s", warning)
    try:
        owner = target_owner(settings.config_dir, env)
        ensure_layout(settings.config_dir, owner)
        if owner is not None:
            repair_ownership(settings.config_dir, owner)
        run = settings.config_dir / "run"
        for directory in (
            settings.config_dir,
            run,
            run / "twin-backups",
            run / "twin-base",
        ):
            sweep_temp_files(directory)
        fingerprint = resolve_fingerprint(settings.config_dir, env, persist=True)
    except ConfigError as exc:
        return _fatal(str(exc))
    except OSError as exc:
        if debug:
            log.exception("cannot prepare %s", settings.config_dir)
        return _fatal(f"{settings.config_dir}: {format_exception_line(exc)}")
    daemon = Daemon(
        settings=settings,
        credentials=credentials,
        fingerprint=fingerprint,
        redactor=redactor,
        environ=before_envs,
    )
    _install_signals(daemon)
    try:
        return daemon.run()
    except Exception as exc:
        if debug or logging.getLogger().isEnabledFor(logging.DEBUG):
            log.exception("the edge core stopped on an unexpected error")
        else:
            log.error(
                "the edge core stopped on an unexpected error: %s (run with "
                "CYBERWAVE_EDGE_LOG_LEVEL=DEBUG for the traceback)",
                format_exception_line(exc),
            )
        return EXIT_FATAL
